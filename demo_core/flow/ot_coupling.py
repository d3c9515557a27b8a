"""Minibatch optimal-transport coupling of noise and data for flow-matching training.

Given a batch of noise samples ``x_0`` and data samples ``x_1`` (with their conditions), the exact OT
coupling under the squared Euclidean cost is the permutation ``σ`` minimising ``Σ_i ‖x_0[i] − x_1[σ(i)]‖²``
(a linear assignment problem, solved exactly with :func:`scipy.optimize.linear_sum_assignment`).  The data
side is re-ordered by ``σ`` and every condition is re-ordered with the same indices, so each data sample
keeps its own conditions.  The plan is deterministic (no sampling, no global random state).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from torch import Tensor

from ..errors import DemoInputError

__all__ = ["MinibatchOTCoupling"]


class MinibatchOTCoupling:
    """Exact minibatch OT pairing of ``x_0`` with ``x_1`` (squared Euclidean cost on flattened samples).

    Example:
        .. code-block:: python

            coupling = MinibatchOTCoupling()
            x_0, x_1, cond = coupling.couple(noise, windows, {"wa": wa, "wr": wr})
            # noise[i] is now paired with windows[σ(i)], which kept its wa and wr
    """

    def plan(self, x_0: Tensor, x_1: Tensor) -> Tensor:
        """The OT permutation.

        Args:
            x_0: (B, ...) noise.
            x_1: (B, ...) data (same shape).

        Returns:
            (B,) int64 ``σ`` on the CPU: ``x_0[i]`` is paired with ``x_1[σ[i]]``.
        """
        if not isinstance(x_0, Tensor) or not isinstance(x_1, Tensor) or x_0.shape != x_1.shape or x_0.ndim < 1:
            raise DemoInputError(
                f"MinibatchOTCoupling: x_0 and x_1 must be tensors of one shape (B, ...); got "
                f"{tuple(getattr(x_0, 'shape', ()))}, {tuple(getattr(x_1, 'shape', ()))}"
            )
        a = x_0.detach().reshape(x_0.shape[0], -1).to("cpu", torch.float64)  # (B, D)
        b = x_1.detach().reshape(x_1.shape[0], -1).to("cpu", torch.float64)  # (B, D)
        cost = torch.cdist(a, b).pow(2).numpy()  # (B, B)
        if not np.isfinite(cost).all():
            raise DemoInputError("MinibatchOTCoupling: x_0 or x_1 contains NaN or infinite values")
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(cost)
        sigma = np.empty(len(rows), dtype=np.int64)
        sigma[rows] = cols
        return torch.from_numpy(sigma)

    def couple(
        self, x_0: Tensor, x_1: Tensor, cond: Mapping[str, Tensor] | None = None
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Re-pair a batch by OT.

        Args:
            x_0: (B, ...) noise (kept in place).
            x_1: (B, ...) data.
            cond: conditions of the data samples, each (B, ...); permuted with the same indices as ``x_1``.

        Returns:
            ``(x_0, x_1[σ], {k: c[σ]})``.
        """
        sigma = self.plan(x_0, x_1)
        out = {}
        for k, c in (cond or {}).items():
            if not isinstance(c, Tensor) or c.ndim < 1 or c.shape[0] != x_1.shape[0]:
                raise DemoInputError(f"MinibatchOTCoupling: cond[{k!r}] must have batch size {x_1.shape[0]}")
            out[k] = c[sigma.to(c.device)]
        return x_0, x_1[sigma.to(x_1.device)], out
