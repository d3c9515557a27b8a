"""Probability paths for flow matching; fixes the time convention of the whole engine.

t = 0 is noise (``x_0``), t = 1 is data (``x_1``).  Velocity models learn ``dx_t`` along the path.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..errors import DemoInputError

__all__ = ["PathSample", "CondOTPath"]


@dataclass
class PathSample:
    """One draw from a probability path.

    Attributes:
        x_0: ``(B, ...)`` source (noise) sample.
        x_1: ``(B, ...)`` target (data) sample.
        t: ``(B,)`` flow times.
        x_t: ``(B, ...)`` point on the path at time ``t``.
        dx_t: ``(B, ...)`` path velocity at ``x_t`` (the regression target).
    """

    x_0: Tensor
    x_1: Tensor
    t: Tensor
    x_t: Tensor
    dx_t: Tensor


class CondOTPath:
    r"""Conditional optimal-transport (linear) path :math:`x_t = (1 - t) x_0 + t x_1`, :math:`\dot x_t = x_1 - x_0`.

    Example:
        .. code-block:: python

            path = CondOTPath()
            s = path.sample(torch.randn(4, 50, 512), x_1, torch.rand(4))
            loss = ((model(s.x_t, s.t, **cond) - s.dx_t) ** 2).mean()
    """

    def sample(self, x_0: Tensor, x_1: Tensor, t: Tensor) -> PathSample:
        """Point and velocity on the path.

        Args:
            x_0: ``(B, ...)`` noise.
            x_1: ``(B, ...)`` data, same shape as ``x_0``.
            t: ``(B,)`` times in [0, 1].

        Returns:
            :class:`PathSample` with ``x_t`` and ``dx_t`` shaped like ``x_0``.

        Raises:
            DemoInputError: when the shapes disagree.
        """
        if x_0.shape != x_1.shape:
            raise DemoInputError(f"CondOTPath.sample: x_0 {tuple(x_0.shape)} and x_1 {tuple(x_1.shape)} differ in shape")
        if x_0.ndim < 1 or t.ndim != 1 or t.shape[0] != x_0.shape[0]:
            raise DemoInputError(
                f"CondOTPath.sample: t must have shape (batch,) = ({x_0.shape[0] if x_0.ndim else '?'},); got {tuple(t.shape)}"
            )
        t_b = t.reshape(-1, *([1] * (x_0.ndim - 1))).to(x_0.dtype)  # (B, 1, ..., 1)
        x_t = (1 - t_b) * x_0 + t_b * x_1
        return PathSample(x_0=x_0, x_1=x_1, t=t, x_t=x_t, dx_t=x_1 - x_0)
