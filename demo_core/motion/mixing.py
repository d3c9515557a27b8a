"""Mix motion factors from several trajectories: A's lips, B's head pose, C's gaze.

``mix_factors`` starts from a base trajectory and, for every factor named in ``sources``, replaces that
factor's coordinates with the source's.  Factors not named, the residual block and the part of the
latents outside the dictionary (``r_⊥``) come from the base.  Factor sub-spaces are orthogonal, so the
order of the sources does not matter.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from ..errors import DemoInputError
from .edits import check_trajectory, replace_factor
from .factor_space import FactorSpace
from .factors import FactorLayout

__all__ = ["mix_factors"]


def mix_factors(
    sources: Mapping[str, Tensor],
    base: Tensor,
    Q: Tensor,
    layout: FactorLayout,
    *,
    rotation: Tensor | None = None,
    relative: bool = False,
    ref_frame: int = 0,
) -> Tensor:
    """Each named factor from its own trajectory, everything else from ``base``.

    Args:
        sources: factor name → trajectory (B|1, T, ·): latents (W), dictionary coefficients λ (M) or that
            factor's coordinates (k).  Bring lengths to T with
            :func:`~demo_core.motion.length_matching.match_length` first.
        base: (B, T, W) trajectory that supplies the other factors and ``r_⊥``.
        Q: (W, M) orthonormal direction dictionary.
        layout: factor layout of the M coordinates.
        rotation: (M, M) calibration rotation (factor coordinates = λ @ rotation), None for identity.
        relative: transfer each source's motion relative to its ``ref_frame`` onto the base's value at
            that frame (keeps the base portrait's rest pose), instead of the absolute coordinates.
        ref_frame: reference frame for ``relative``.

    Returns:
        (B, T, W) mixed latents (a new tensor; inputs are not modified).

    Example:
        .. code-block:: python

            mixed = mix_factors({"lip": speech, "pose": dance, "gaze": still}, base=speech, Q=Q, layout=layout)
    """
    space = FactorSpace(Q, layout, rotation)
    if not isinstance(sources, Mapping):
        raise DemoInputError(f"sources: expected a mapping factor name -> trajectory, got {type(sources).__name__}")
    check_trajectory(base, space, "base")
    out = base.clone()
    for factor, source in sources.items():
        if factor not in layout.names:
            raise DemoInputError(f"sources: unknown factor {factor!r} (the layout has {', '.join(layout.names)})")
        try:
            out = replace_factor(out, space, factor, source, relative=relative, ref_frame=ref_frame)
        except DemoInputError as err:
            raise DemoInputError(f"sources[{factor!r}]: {err}") from None
    return out
