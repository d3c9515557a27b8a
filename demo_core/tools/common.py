"""What the model tools share: clips read as the training loader reads them, rewriting a checkpoint with its own
weight dtype and metadata, and the command-line ending (one-line errors)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from ..errors import CheckpointError, DemoInputError

__all__ = ["training_clips", "load_float32", "save_like", "run_tool"]


def training_clips(folder: str | Path, size: int, count: int, frames: int) -> list[Tensor]:
    """The first ``count`` clips of ``folder`` prepared as for training (centre crop, ``size``², the clip's
    ``.frames.npy`` when present), their first ``frames`` frames each, (T, 3, S, S) in [-1, 1]."""
    from ..train.data import ClipStore, _to_model_frames
    from ..train.video import decode_clip

    videos = ClipStore.list_videos(Path(folder))[:count]
    if not videos:
        raise DemoInputError(f"--data {folder}: no clips (videos) found")
    return [_to_model_frames(decode_clip(v, size=size, crop="center", regions=False).frames[:frames]) for v in videos]


def load_float32(src: str | Path):
    """``(model in float32 on the CPU, eval mode; the stored weights' dtype; the metadata to carry over)``."""
    from ..io.checkpoints import read_tensor_file
    from ..models.loader import load_model

    tensors, metadata = read_tensor_file(src)
    dtype = next((v.dtype for k, v in tensors.items() if k.endswith("dec.direction.weight")), torch.float32)
    extra = {k: v for k, v in metadata.items() if k not in ("config", "format", "format_version")}
    del tensors
    model, _ = load_model(src, device="cpu", dtype=torch.float32)
    return model.eval(), dtype, extra


def save_like(dst: str | Path, model, dtype: torch.dtype, extra: dict) -> Path:
    """Write ``model`` (its config included) in ``dtype`` with ``extra`` metadata; an existing file is refused."""
    from ..io.checkpoints import save_checkpoint

    model = model.to(dtype)
    return save_checkpoint(dst, model, model.cfg.to_dict(), extra_metadata=extra)


def run_tool(work: Callable[[], Path]) -> int:
    """Run a tool's work: ``wrote PATH`` and 0, or a one-line error (bad input, unreadable or existing
    checkpoint) and 2."""
    try:
        out = work()
    except (DemoInputError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0
