"""Resumable training checkpoints.

Layout of one checkpoint (a folder, made visible atomically by renaming ``step_XXXXXXXX.partial``)::

    step_00000500/
        model.safetensors    the whole model in the pack format (loads with ``load_model``)
        heads.safetensors    training-only modules (stage 1 InfoNCE heads), pack format
        trainer.pt           optimizer state, step, seed, torch RNG state (tensors and plain data only)

Every random draw of the training loop comes from a generator seeded by ``(seed, step)``, so the step and
the seed fully determine the rest of a run; the torch RNG state is stored as well, for code that uses it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError
from ..io.checkpoints import read_tensor_file, save_checkpoint

__all__ = ["save_training_state", "load_training_state", "latest_checkpoint", "prune_checkpoints"]

_PREFIX = "step_"


def save_training_state(root: Path, step: int, model: nn.Module, model_config: dict, optimizer, *,
                        heads: nn.Module | None = None, seed: int = 0) -> Path:
    """Write checkpoint ``root/step_{step:08d}`` atomically and return its path."""
    root = Path(root)
    final = root / f"{_PREFIX}{step:08d}"
    tmp = root / f"{_PREFIX}{step:08d}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_checkpoint(tmp / "model.safetensors", model, model_config, extra_metadata={"step": str(step)})
    if heads is not None:
        save_checkpoint(tmp / "heads.safetensors", heads, {"kind": "training-heads"})
    state = {"step": int(step), "seed": int(seed), "optimizer": optimizer.state_dict(),
             "torch_rng": torch.get_rng_state()}
    torch.save(state, tmp / "trainer.pt")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def latest_checkpoint(root: Path) -> Path | None:
    """The complete checkpoint with the highest step under ``root`` (None if there is none)."""
    root = Path(root)
    if not root.is_dir():
        return None
    done = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(_PREFIX) and p.name[len(_PREFIX):].isdigit()
            and (p / "trainer.pt").is_file()]
    return max(done, key=lambda p: int(p.name[len(_PREFIX):]), default=None)


def _load_weights(module: nn.Module, path: Path) -> None:
    tensors, _ = read_tensor_file(path)
    result = module.load_state_dict(tensors, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{path}: does not match the model being trained (missing {result.missing_keys[:3]}, "
            f"unexpected {result.unexpected_keys[:3]}); was the configuration changed?"
        )


def load_training_state(path: Path, model: nn.Module, optimizer, *, heads: nn.Module | None = None) -> int:
    """Restore model, heads, optimizer and torch RNG state from a checkpoint folder; returns its step."""
    path = Path(path)
    _load_weights(model, path / "model.safetensors")
    if heads is not None:
        _load_weights(heads, path / "heads.safetensors")
    state = torch.load(path / "trainer.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"])


def prune_checkpoints(root: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest complete checkpoints (and stale ``.partial`` folders)."""
    root = Path(root)
    if not root.is_dir():
        return
    for p in root.glob(f"{_PREFIX}*.partial"):
        shutil.rmtree(p, ignore_errors=True)
    done = sorted((p for p in root.iterdir() if p.is_dir() and p.name[len(_PREFIX):].isdigit()),
                  key=lambda p: int(p.name[len(_PREFIX):]))
    for p in done[: max(len(done) - max(keep, 1), 0)]:
        shutil.rmtree(p, ignore_errors=True)
