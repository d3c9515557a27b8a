"""Per-frame ground-truth factors of the synthetic talking head.

Every rendered frame is fully described by twelve scalars, grouped into the four factors the
DEMO motion encoder must disentangle (``FACTOR_NAMES``):

=============  ======================  ==================================================
name           unit / range            meaning
=============  ======================  ==================================================
yaw            degrees, about ±30      face turns towards the viewer's right when > 0
pitch          degrees, about ±20      chin up when > 0
roll           degrees, about ±15      head tilts counter-clockwise in the image when > 0
tx, ty         image half-sizes, ±0.2  whole figure shifts right / up (image spans -1..1)
scale          ratio, 0.8..1.2         whole figure zoom about the image centre (1 = neutral)
mouth_open     0..1                    jaw/lip opening (0 = lips together)
mouth_width    -1..1                   lip corners pulled in (-1) or spread (+1)
mouth_round    0..1                    lip rounding / protrusion (``oo``)
gaze_x         -1..1                   irises move to the viewer's right when > 0
gaze_y         -1..1                   irises move up when > 0
blink          0..1                    upper-eyelid closure (0 open, 1 closed)
=============  ======================  ==================================================
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Iterable, Mapping

import torch

from ..errors import DemoInputError

__all__ = ["PARAM_NAMES", "FACTOR_NAMES", "PARAM_UNITS", "PARAM_RANGES", "NEUTRAL", "FrameParams"]

PARAM_NAMES: tuple[str, ...] = (
    "yaw", "pitch", "roll", "tx", "ty", "scale",
    "mouth_open", "mouth_width", "mouth_round",
    "gaze_x", "gaze_y", "blink",
)

FACTOR_NAMES: dict[str, tuple[str, ...]] = {
    "lip": ("mouth_open", "mouth_width", "mouth_round"),
    "pose": ("yaw", "pitch", "roll", "tx", "ty", "scale"),
    "gaze": ("gaze_x", "gaze_y"),
    "blink": ("blink",),
}

PARAM_UNITS: dict[str, str] = {
    "yaw": "deg", "pitch": "deg", "roll": "deg",
    "tx": "image half-width (image spans -1..1), +right", "ty": "image half-height, +up",
    "scale": "zoom ratio (1 = neutral)",
    "mouth_open": "0..1", "mouth_width": "-1..1", "mouth_round": "0..1",
    "gaze_x": "-1..1, +viewer's right", "gaze_y": "-1..1, +up", "blink": "0 open .. 1 closed",
}

PARAM_RANGES: dict[str, tuple[float, float]] = {
    "yaw": (-30.0, 30.0), "pitch": (-20.0, 20.0), "roll": (-15.0, 15.0),
    "tx": (-0.2, 0.2), "ty": (-0.2, 0.2), "scale": (0.8, 1.2),
    "mouth_open": (0.0, 1.0), "mouth_width": (-1.0, 1.0), "mouth_round": (0.0, 1.0),
    "gaze_x": (-1.0, 1.0), "gaze_y": (-1.0, 1.0), "blink": (0.0, 1.0),
}

NEUTRAL: dict[str, float] = {name: (1.0 if name == "scale" else 0.0) for name in PARAM_NAMES}


@dataclass
class FrameParams:
    """Per-frame factors; every field is a float tensor of shape (N,) (units in the module doc)."""

    yaw: torch.Tensor
    pitch: torch.Tensor
    roll: torch.Tensor
    tx: torch.Tensor
    ty: torch.Tensor
    scale: torch.Tensor
    mouth_open: torch.Tensor
    mouth_width: torch.Tensor
    mouth_round: torch.Tensor
    gaze_x: torch.Tensor
    gaze_y: torch.Tensor
    blink: torch.Tensor

    def __post_init__(self) -> None:
        n = None
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, torch.Tensor):
                v = torch.as_tensor(v, dtype=torch.float32)
            v = v.to(torch.float32).reshape(-1)
            if n is None:
                n = v.numel()
            elif v.numel() != n:
                raise DemoInputError(f"FrameParams.{f.name}: expected {n} frames, got {v.numel()}")
            setattr(self, f.name, v)

    def __len__(self) -> int:
        return int(self.yaw.numel())

    @classmethod
    def neutral(cls, n: int, device: torch.device | str | None = None) -> "FrameParams":
        """``n`` frames of the neutral pose: frontal, mouth closed, eyes open and centred."""
        return cls(**{k: torch.full((n,), v, device=device) for k, v in NEUTRAL.items()})

    @classmethod
    def from_dict(cls, values: Mapping[str, object], n: int | None = None) -> "FrameParams":
        """Build from a mapping; missing names take neutral values, scalars are broadcast.

        Args:
            values: name -> scalar, sequence or tensor of shape (N,). Unknown names are an error.
            n: number of frames when every given value is a scalar (default: inferred, else 1).
        """
        unknown = set(values) - set(PARAM_NAMES)
        if unknown:
            raise DemoInputError(f"FrameParams: unknown parameter(s) {sorted(unknown)}; expected {PARAM_NAMES}")
        tensors = {k: torch.as_tensor(v, dtype=torch.float32).reshape(-1) for k, v in values.items()}
        if n is None:
            n = max([t.numel() for t in tensors.values()] + [1])
        out = {}
        for name in PARAM_NAMES:
            t = tensors.get(name, torch.tensor([NEUTRAL[name]]))
            out[name] = t.expand(n).clone() if t.numel() == 1 else t
        return cls(**out)

    def to_dict(self) -> dict[str, torch.Tensor]:
        """name -> tensor (N,), in ``PARAM_NAMES`` order."""
        return {name: getattr(self, name) for name in PARAM_NAMES}

    def as_tensor(self) -> torch.Tensor:
        """All factors stacked as (N, 12), columns in ``PARAM_NAMES`` order."""
        return torch.stack([getattr(self, name) for name in PARAM_NAMES], dim=1)

    @classmethod
    def from_tensor(cls, x: torch.Tensor) -> "FrameParams":
        """Inverse of :meth:`as_tensor`; ``x`` has shape (N, 12)."""
        if x.ndim != 2 or x.shape[1] != len(PARAM_NAMES):
            raise DemoInputError(f"FrameParams.from_tensor: expected (N, {len(PARAM_NAMES)}), got {tuple(x.shape)}")
        return cls(**{name: x[:, i] for i, name in enumerate(PARAM_NAMES)})

    def __getitem__(self, index) -> "FrameParams":
        """Frame selection (int, slice, index tensor); always returns a FrameParams."""
        return FrameParams(**{k: v[index].reshape(-1) for k, v in self.to_dict().items()})

    def to(self, device: torch.device | str) -> "FrameParams":
        return FrameParams(**{k: v.to(device) for k, v in self.to_dict().items()})

    def clamped(self) -> "FrameParams":
        """Copy with every factor clipped to ``PARAM_RANGES``."""
        return FrameParams(**{k: v.clamp(*PARAM_RANGES[k]) for k, v in self.to_dict().items()})

    def replace(self, **values) -> "FrameParams":
        """Copy with some factors replaced (scalars are broadcast to N frames)."""
        d = self.to_dict()
        for k, v in values.items():
            if k not in d:
                raise DemoInputError(f"FrameParams.replace: unknown parameter {k!r}")
            t = torch.as_tensor(v, dtype=torch.float32).reshape(-1)
            d[k] = t.expand(len(self)).clone() if t.numel() == 1 else t
        return FrameParams(**d)

    @staticmethod
    def cat(items: Iterable["FrameParams"]) -> "FrameParams":
        items = list(items)
        return FrameParams(**{k: torch.cat([getattr(p, k) for p in items]) for k in PARAM_NAMES})
