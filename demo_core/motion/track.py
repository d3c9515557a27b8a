"""A motion trajectory with its timing: what flows between sampling, editing, saving and rendering.

A :class:`MotionTrack` holds motion latents ``(B, T, W)`` at a known frame rate.  Latents are
either *absolute* (rendered as ``h_source + latent``, what the flow model samples) or *relative*
(offsets from the portrait's own motion, added to ``Portrait.source_motion`` at render time, what
a driving video gives).

Edits work on the coefficients ``λ = latents @ basis`` over the model's orthonormal motion
dictionary ``basis`` (W, M), which the track carries, so an edit needs no model:
:meth:`MotionTrack.with_coefficients` moves the latents by ``(λ' − λ) @ basisᵀ`` and keeps the part
of the latents outside the dictionary unchanged.  ``factors`` (a DEMO model's factor layout as a
plain dict, see :mod:`demo_core.motion.factors`) names the coefficients: lip, pose yaw, gaze x...

Tracks are small (T × W floats per portrait) and live on the CPU in float32; the pipeline moves
them to the model's device when rendering.

Files are ``.safetensors`` with tensors ``latents`` (and ``basis``) and one metadata entry,
``motion``, holding JSON: ``{"format", "format_version", "fps", "source", "relative", "factors"}``.

Example:
    >>> track = MotionTrack(torch.zeros(1, 50, 512), fps=25.0, source="sampled")
    >>> track.num_frames, track.seconds
    (50, 2.0)
"""

from __future__ import annotations

import json
import math
import numbers
import os
import secrets
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from demo_core.errors import DemoInputError

__all__ = ["MotionTrack", "MOTION_FORMAT", "MOTION_FORMAT_VERSION"]

MOTION_FORMAT = "comfyui-demo-motion"
MOTION_FORMAT_VERSION = 1


@dataclass(frozen=True)
class MotionTrack:
    """Motion latents of B portraits over T frames at ``fps``.

    Attributes:
        latents: (B, T, W) float motion latents.
        fps: frames per second of ``latents`` (> 0).
        source: where the track came from (``"sampled"``, ``"video"``, ``"file"``, an edit name...).
        relative: latents are offsets from the portrait's own motion rather than absolute latents.
        basis: the model's orthonormal motion dictionary (W, M), or None when unknown.
        factors: the factor layout naming the M coefficients (``FactorLayout.to_dict()``), or None.
    """

    latents: torch.Tensor
    fps: float
    source: str = "unknown"
    relative: bool = False
    basis: torch.Tensor | None = None
    factors: dict | None = None

    def __post_init__(self) -> None:
        lat = self.latents
        if not isinstance(lat, torch.Tensor) or lat.dim() != 3 or not lat.is_floating_point():
            shape = tuple(lat.shape) if isinstance(lat, torch.Tensor) else type(lat).__name__
            raise DemoInputError(f"latents: expected a float tensor (B, T, W), got {shape}")
        if lat.shape[0] < 1 or lat.shape[1] < 1:
            raise DemoInputError(f"latents: expected at least one portrait and one frame, got {tuple(lat.shape)}")
        fps = self.fps
        if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(fps) or fps <= 0:
            raise DemoInputError(f"fps: expected a positive number, got {fps!r}")
        object.__setattr__(self, "fps", float(fps))
        basis = self.basis
        if basis is not None and (not isinstance(basis, torch.Tensor) or basis.dim() != 2
                                  or basis.shape[0] != lat.shape[2]):
            shape = tuple(basis.shape) if isinstance(basis, torch.Tensor) else type(basis).__name__
            raise DemoInputError(f"basis: expected shape ({lat.shape[2]}, M), got {shape}")
        size = self._factor_total()
        if size is not None and (basis is None or size != basis.shape[1]):
            raise DemoInputError(f"factors: the layout names {size} coefficients but the basis has "
                                 f"{'none' if basis is None else basis.shape[1]}")

    def _factor_total(self) -> int | None:
        if self.factors is None:
            return None
        try:
            return sum(int(block["size"]) for block in self.factors["blocks"])
        except (KeyError, TypeError, ValueError):
            raise DemoInputError(
                f"factors: expected {{'blocks': [{{'name', 'size', ...}}]}}, got {self.factors!r}") from None

    @property
    def batch(self) -> int:
        """Number of portraits B."""
        return int(self.latents.shape[0])

    @property
    def num_frames(self) -> int:
        """Number of frames T."""
        return int(self.latents.shape[1])

    @property
    def dim(self) -> int:
        """Latent width W."""
        return int(self.latents.shape[2])

    @property
    def seconds(self) -> float:
        """Duration ``T / fps`` in seconds."""
        return self.num_frames / self.fps

    @property
    def coefficients(self) -> torch.Tensor | None:
        """(B, T, M) coordinates of the latents on the basis, ``latents @ basis`` (None without a basis)."""
        if self.basis is None:
            return None
        return self.latents @ self.basis.to(self.latents)  # (B, T, M)

    def coefficient_names(self) -> list[str]:
        """Names of the coefficients, one per basis column.

        With ``factors``: ``<factor>.<axis>`` for semantic axes, else ``<factor>.c<i>`` (``i`` counted
        within the factor), as keyframe tracks name them; without: ``c0``, ``c1``...
        """
        if self.basis is None:
            return []
        if self.factors is None:
            return [f"c{i}" for i in range(self.basis.shape[1])]
        names = []
        for block in self.factors["blocks"]:
            axes = list(block.get("axes", ()))
            names += [f"{block['name']}.{axes[i]}" if i < len(axes) else f"{block['name']}.c{i}"
                      for i in range(int(block["size"]))]
        return names

    def with_latents(self, latents: torch.Tensor, **changes) -> "MotionTrack":
        """A new track with other latents (fps, source, basis... kept unless changed in ``changes``)."""
        return replace(self, latents=latents, **changes)

    def with_coefficients(self, coefficients: torch.Tensor, **changes) -> "MotionTrack":
        """A new track whose coefficients are ``coefficients`` (B, T, M).

        The latents move by ``(coefficients − self.coefficients) @ basisᵀ``: the component of the
        latents outside the dictionary is kept.

        Raises:
            DemoInputError: the track has no basis, or ``coefficients`` has the wrong shape.
        """
        current = self.coefficients
        if current is None:
            raise DemoInputError("coefficients: this track has no basis to map coefficients to latents")
        if not isinstance(coefficients, torch.Tensor) or coefficients.shape != current.shape:
            shape = tuple(coefficients.shape) if isinstance(coefficients, torch.Tensor) else type(coefficients).__name__
            raise DemoInputError(f"coefficients: expected shape {tuple(current.shape)}, got {shape}")
        delta = (coefficients.to(current) - current) @ self.basis.to(current).T  # (B, T, W)
        return replace(self, latents=self.latents + delta, **changes)

    def to_file(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the track as ``.safetensors``, atomically.

        Args:
            path: destination file.
            overwrite: replace an existing file; otherwise an existing file raises.

        Returns:
            The path written.

        Raises:
            FileExistsError: ``path`` exists and ``overwrite`` is False (also when another writer
                creates it first).
        """
        from safetensors.torch import save_file

        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"motion file {str(path)!r} already exists")
        tensors = {"latents": self.latents.detach().to("cpu", torch.float32).contiguous()}
        if self.basis is not None:
            tensors["basis"] = self.basis.detach().to("cpu", torch.float32).contiguous()
        info = {"format": MOTION_FORMAT, "format_version": MOTION_FORMAT_VERSION, "fps": self.fps,
                "source": self.source, "relative": self.relative, "factors": self.factors}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
        try:
            save_file(tensors, str(tmp), metadata={"motion": json.dumps(info)})
            if overwrite:
                os.replace(tmp, path)
            else:
                os.link(tmp, path)  # raises FileExistsError instead of clobbering a file made meanwhile
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "MotionTrack":
        """Read a track written by :meth:`to_file`.

        Raises:
            DemoInputError: missing file, not a safetensors file, or not a motion file.
        """
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise DemoInputError(f"motion file {str(path)!r} does not exist")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError) as err:
            raise DemoInputError(f"motion file {str(path)!r} is not a readable safetensors file: {err}") from err
        try:
            info = json.loads(meta["motion"])
        except (KeyError, json.JSONDecodeError):
            raise DemoInputError(f"{str(path)!r} is not a motion file (no 'motion' metadata)") from None
        if info.get("format") != MOTION_FORMAT or "latents" not in tensors:
            raise DemoInputError(f"{str(path)!r} is not a {MOTION_FORMAT} file")
        if int(info.get("format_version", 0)) > MOTION_FORMAT_VERSION:
            raise DemoInputError(f"{str(path)!r} has motion format version {info['format_version']}; "
                                 f"this version reads up to {MOTION_FORMAT_VERSION}: update the pack")
        return cls(tensors["latents"], float(info["fps"]), str(info.get("source", "file")),
                   bool(info.get("relative", False)), tensors.get("basis"), info.get("factors"))
