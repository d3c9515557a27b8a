"""Factor coordinates of motion latents: the coordinate system every factor edit works in.

A motion latent ``r`` (W,) splits into named factor coordinates plus an orthogonal remainder::

    c = r @ B                      # (M,) factor coordinates, B = Q @ R (W, M) orthonormal
    r = c @ Bᵀ + r_⊥               # r_⊥ = r − c @ Bᵀ lies outside span(Q) and is kept by every edit

``Q`` (W, M) is the model's orthonormal direction dictionary (``MotionAutoEncoder.directions()``), so
``λ = r @ Q`` are its coefficients.  ``R`` (M, M) is an orthogonal re-ordering/rotation of those
coefficients (identity for DEMO-native models; from :mod:`demo_core.motion.calibration` for
FLOAT-family weights), so factor coordinates are ``c = λ @ R``.  A :class:`FactorLayout` names
contiguous runs of ``c``: block ``pose`` owns columns ``B[:, pose]`` and so on.

Changing one factor moves the latent by ``Δc_f @ B_fᵀ``, which leaves every other factor's
coordinates and ``r_⊥`` unchanged (exactly in exact arithmetic, to float rounding in practice).

Example:
    .. code-block:: python

        space = FactorSpace(Q, default_factor_layout())
        yaw_deg = space.axis_value(latents, "pose", "yaw")          # (B, T) degrees
        still = space.with_factor(latents, "pose", space.factor_coordinates(latents, "pose")[:, :1])
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import DemoInputError
from .factors import FactorBlock, FactorLayout

__all__ = ["FactorSpace", "describe_shape"]

_COORDINATE = re.compile(r"^c(0|[1-9][0-9]*)$")
_ORTHONORMAL_TOL = 1e-3  # FLOAT's float32 QR basis is orthonormal to ~1e-6; looser catches only real mistakes


def describe_shape(x: object) -> str:
    """``(2, 3)`` for a tensor, the type name otherwise (for error messages)."""
    return str(tuple(x.shape)) if isinstance(x, Tensor) else type(x).__name__


def _check_orthonormal_columns(m: Tensor, name: str) -> None:
    m = m.detach().cpu().double()  # float64 is not available on every device
    gram = m.T @ m  # (M, M)
    err = (gram - torch.eye(gram.shape[0], dtype=gram.dtype)).abs().max().item()
    if not err <= _ORTHONORMAL_TOL:
        raise DemoInputError(f"{name}: expected orthonormal columns (max |{name}ᵀ{name} − I| <= "
                             f"{_ORTHONORMAL_TOL}), got {err:.3g}")


@dataclass(frozen=True, eq=False)
class FactorSpace:
    """A direction dictionary, a factor layout and an optional rotation between them.

    Attributes:
        dictionary: ``Q`` (W, M) with orthonormal columns.
        layout: names the M factor coordinates (``layout.total == M``).
        rotation: ``R`` (M, M) orthogonal, factor coordinates ``c = λ @ R``; None means identity.

    Example:
        >>> Q = torch.linalg.qr(torch.randn(32, 20, dtype=torch.float64))[0]
        >>> space = FactorSpace(Q, default_factor_layout())
        >>> space.coordinates(torch.zeros(1, 5, 32)).shape
        torch.Size([1, 5, 20])
    """

    dictionary: Tensor
    layout: FactorLayout
    rotation: Tensor | None = None

    def __post_init__(self) -> None:
        Q, layout, R = self.dictionary, self.layout, self.rotation
        if not isinstance(layout, FactorLayout):
            raise DemoInputError(f"layout: expected a FactorLayout, got {type(layout).__name__}")
        if not isinstance(Q, Tensor) or Q.ndim != 2 or not Q.is_floating_point() or Q.shape[1] != layout.total:
            raise DemoInputError(f"Q: expected a float tensor (W, {layout.total}) (the layout has {layout.total} "
                                 f"coefficients), got {describe_shape(Q)}")
        if Q.shape[0] < Q.shape[1]:
            raise DemoInputError(f"Q: expected at least as many rows as columns, got {tuple(Q.shape)}")
        _check_orthonormal_columns(Q, "Q")
        basis = Q
        if R is not None:
            M = layout.total
            if not isinstance(R, Tensor) or R.shape != (M, M) or not R.is_floating_point():
                raise DemoInputError(f"rotation: expected a float tensor ({M}, {M}), got {describe_shape(R)}")
            _check_orthonormal_columns(R, "rotation")
            basis = Q @ R.to(Q)  # (W, M)
        object.__setattr__(self, "_basis", basis)
        slices = layout.slices()
        object.__setattr__(self, "_slices", slices)

    @classmethod
    def from_track(cls, track, calibration=None) -> "FactorSpace":
        """The space of a :class:`~demo_core.motion.track.MotionTrack`'s dictionary.

        Args:
            track: a track with ``basis`` (W, M); its ``factors`` layout is used when present (DEMO models).
            calibration: a :class:`~demo_core.motion.factor_sidecar.FactorCalibration` for FLOAT-family
                models (its layout and rotation win over ``track.factors``).

        Raises:
            DemoInputError: the track has no basis, or neither a layout nor a calibration is available.
        """
        basis = getattr(track, "basis", None)
        if basis is None:
            raise DemoInputError("track: has no motion dictionary (basis); attach the model's with the pipeline")
        if calibration is not None:
            return cls(basis, calibration.layout, calibration.rotation)
        if getattr(track, "factors", None) is None:
            raise DemoInputError("track: has no factor layout (a FLOAT-family model): calibrate the model or "
                                 "give a manual direction map, and pass it as calibration")
        return cls(basis, FactorLayout.from_dict(track.factors))

    # -- sizes and blocks --------------------------------------------------------------------------------

    @property
    def basis(self) -> Tensor:
        """``B = Q @ R`` (W, M): column ``j`` is the latent direction of factor coordinate ``j``."""
        return self._basis

    @property
    def width(self) -> int:
        """Latent width W."""
        return int(self.dictionary.shape[0])

    @property
    def total(self) -> int:
        """Number of factor coordinates M."""
        return self.layout.total

    def block(self, factor: str) -> FactorBlock:
        """The layout block ``factor`` (raises :class:`DemoInputError` naming the known factors)."""
        return self.layout.block(factor)

    def factor_slice(self, factor: str) -> slice:
        """Columns of ``basis`` owned by ``factor``."""
        return self._slices[self.block(factor).name]

    def factor_basis(self, factor: str, like: Tensor | None = None) -> Tensor:
        """``B_f`` (W, k), cast to ``like``'s dtype and device when given."""
        b = self._basis[:, self.factor_slice(factor)]  # (W, k)
        return b if like is None else b.to(device=like.device, dtype=like.dtype)

    def coordinate_index(self, factor: str, axis: str) -> tuple[int, float, float]:
        """Where an axis lives and its unit: ``(index within the block, scale, offset)``.

        ``axis`` is a semantic axis of the block (``"yaw"``; value = offset + coordinate × scale) or
        ``"c<i>"`` (coordinate ``i`` itself: scale 1, offset 0).
        """
        block = self.block(factor)
        match = _COORDINATE.match(axis) if isinstance(axis, str) else None
        if match is not None:
            i = int(match.group(1))
            if i >= block.size:
                raise DemoInputError(f"axis {factor}.{axis}: factor {factor!r} has coordinates c0..c{block.size - 1}")
            return i, 1.0, 0.0
        if not isinstance(axis, str) or axis not in block.axes:
            known = [*block.axes, *(f"c{i}" for i in range(block.size))]
            raise DemoInputError(f"axis {factor}.{axis}: unknown axis for factor {factor!r} (expected one of {known})")
        i = block.axis_index(axis)
        return i, block.axis_scale[i], (block.axis_offset[i] if block.axis_offset else 0.0)

    # -- latents <-> coordinates -------------------------------------------------------------------------

    def _check_latents(self, latents: Tensor, name: str) -> None:
        if not isinstance(latents, Tensor) or latents.ndim < 1 or latents.shape[-1] != self.width \
                or not latents.is_floating_point():
            raise DemoInputError(f"{name}: expected a float tensor (..., {self.width}), got {describe_shape(latents)}")

    def coordinates(self, latents: Tensor) -> Tensor:
        """All factor coordinates ``latents @ B`` (..., M)."""
        self._check_latents(latents, "latents")
        return latents @ self._basis.to(latents)  # (..., M)

    def factor_coordinates(self, latents: Tensor, factor: str) -> Tensor:
        """Coordinates of one factor ``latents @ B_f`` (..., k)."""
        self._check_latents(latents, "latents")
        return latents @ self.factor_basis(factor, latents)  # (..., k)

    def orthogonal_part(self, latents: Tensor) -> Tensor:
        """``r_⊥ = latents − (latents @ B) @ Bᵀ`` (..., W), the part no factor edit touches."""
        b = self._basis.to(latents)
        return latents - (latents @ b) @ b.T

    def split(self, latents: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """Per-factor coordinates ``{name: (..., k)}`` and the orthogonal remainder (..., W)."""
        c = self.coordinates(latents)  # (..., M)
        return {name: c[..., s] for name, s in self._slices.items()}, self.orthogonal_part(latents)

    def join(self, parts: dict[str, Tensor], orthogonal: Tensor) -> Tensor:
        """Inverse of :meth:`split`: ``Σ_f c_f @ B_fᵀ + r_⊥`` (every factor must be present)."""
        missing = [n for n in self.layout.names if n not in parts]
        if missing:
            raise DemoInputError(f"parts: missing factors {missing}")
        self._check_latents(orthogonal, "orthogonal")
        out = orthogonal
        for name in self.layout.names:
            out = out + parts[name].to(orthogonal) @ self.factor_basis(name, orthogonal).T  # (..., W)
        return out

    def shift_factor(self, latents: Tensor, factor: str, delta: Tensor) -> Tensor:
        """``latents + delta @ B_fᵀ``: move one factor's coordinates by ``delta`` (broadcast to (..., k))."""
        self._check_latents(latents, "latents")
        b_f = self.factor_basis(factor, latents)  # (W, k)
        delta = torch.as_tensor(delta, dtype=latents.dtype, device=latents.device)
        if delta.ndim == 0:
            delta = delta.expand(b_f.shape[1])  # (k,)
        return latents + delta @ b_f.T  # (..., W)

    def with_factor(self, latents: Tensor, factor: str, coordinates: Tensor) -> Tensor:
        """Latents whose ``factor`` coordinates are ``coordinates`` (broadcast to (..., k)); all else kept."""
        current = self.factor_coordinates(latents, factor)  # (..., k)
        target = torch.as_tensor(coordinates, dtype=latents.dtype, device=latents.device)
        return self.shift_factor(latents, factor, target - current)

    def to_value(self, factor: str, axis: str, coordinate: Tensor) -> Tensor:
        """Coordinate → the axis value it renders as, in the axis unit (the block's render knots if it has them,
        else ``offset + coordinate × scale``; ``"c<i>"`` is the coordinate itself)."""
        i, scale, offset = self.coordinate_index(factor, axis)
        block = self.block(factor)
        return block.rendered_value(axis, coordinate) if axis in block.axes else offset + coordinate * scale

    def to_coordinate(self, factor: str, axis: str, value: Tensor) -> Tensor:
        """Axis value → the coordinate that renders as it (inverse of :meth:`to_value`)."""
        i, scale, offset = self.coordinate_index(factor, axis)
        block = self.block(factor)
        return block.render_coefficient(axis, value) if axis in block.axes else (value - offset) / scale

    def axis_value(self, latents: Tensor, factor: str, axis: str) -> Tensor:
        """An axis in its unit (``"yaw"`` in degrees, ``"c2"`` raw) as rendered, shape ``latents.shape[:-1]``."""
        i, _, _ = self.coordinate_index(factor, axis)
        return self.to_value(factor, axis, self.factor_coordinates(latents, factor)[..., i])

    def as_factor_coordinates(self, x: Tensor, factor: str, name: str = "target") -> Tensor:
        """Read one factor's coordinates from latents, dictionary coefficients or the coordinates themselves.

        The last dimension decides: W → motion latents (``x @ B_f``); M → dictionary coefficients
        ``λ`` (``(λ @ R)[..., f]``, as ``MotionTrack.coefficients`` gives); k → already factor coordinates.

        Raises:
            DemoInputError: ``x`` is not a float tensor, its last size is none of W, M, k, or W == M
                (then latents and coefficients cannot be told apart).
        """
        block = self.block(factor)
        if not isinstance(x, Tensor) or x.ndim < 1 or not x.is_floating_point():
            raise DemoInputError(f"{name}: expected a float tensor, got {describe_shape(x)}")
        size = x.shape[-1]
        if size == self.width and size != self.total:
            return self.factor_coordinates(x, factor)
        if size == self.total and size != self.width:
            lam = x if self.rotation is None else x @ self.rotation.to(x)  # (..., M)
            return lam[..., self.factor_slice(factor)]
        if size == block.size:
            return x
        raise DemoInputError(f"{name}: last dimension {size} is none of latents ({self.width}), coefficients "
                             f"({self.total}) or {factor!r} coordinates ({block.size}); got {tuple(x.shape)}")
