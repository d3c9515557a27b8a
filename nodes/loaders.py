"""DemoLoadModel: a FLOAT-format or DEMO-format checkpoint from ``models/demo`` → DEMO_MODEL."""

from __future__ import annotations

import logging
import os
import weakref
from collections import OrderedDict
from pathlib import Path

import torch

from demo_core.models.loader import load_model

from . import comfy_host
from .errors import node_errors
from .types import CATEGORY_ROOT, DEMO_MODEL

__all__ = ["DemoLoadModel", "load_cached", "checkpoint_of"]

log = logging.getLogger("comfyui-demo")

DEVICES = ["auto", "cpu", "cuda", "mps"]
DTYPES = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = 2  # models kept loaded across graph runs (ComfyUI also keeps each loader's output)
_CHECKPOINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> the file it was loaded from


def checkpoint_of(model) -> Path | None:
    """The checkpoint file a model was loaded from by Demo Load Model (None for a model made elsewhere).

    FLOAT-family factor calibrations live beside that file (``<checkpoint>.factors.json``).
    """
    return _CHECKPOINTS.get(model) if model is not None else None


def load_cached(path, device: torch.device, dtype: torch.dtype):
    """Load a model once per (path, mtime, device, dtype); the least recently used one is dropped."""
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_mtime_ns, stat.st_size, str(device), dtype)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    # ComfyUI runs nodes under torch.inference_mode(); parameters made there would be inference tensors, which
    # cannot be used outside it nor have their version read (weight caches do): build the model outside it.
    with torch.inference_mode(False):
        model, report = load_model(path, device=device, dtype=dtype)
    log.info("DemoLoadModel: %s on %s as %s", report.summary(), device, dtype)
    _CACHE[key] = model
    _CHECKPOINTS[model] = Path(path)
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
        comfy_host.soft_empty_cache()
    return model


class DemoLoadModel:
    """Load a talking-portrait model."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "checkpoint": (comfy_host.list_checkpoints(), {
                    "default": comfy_host.default_checkpoint(),
                    "tooltip": "Checkpoint in models/demo: FLOAT's float.pth or FLOAT.safetensors (with its wav2vec2 "
                               "folders beside it) or a DEMO .safetensors; '(embedded)' is the small model shipped "
                               "with the pack."}),
                "device": (DEVICES, {"default": "auto",
                                     "tooltip": "Where the model runs: auto follows ComfyUI (GPU when there is one)."}),
                "dtype": (list(DTYPES), {"default": "auto",
                                         "tooltip": "Weight precision: auto is float32 (the verified precision); "
                                                    "bfloat16/float16 halve GPU memory."}),
            }
        }

    RETURN_TYPES = (DEMO_MODEL,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The loaded model: audio and emotion encoders, motion flow transformer and renderer.",)
    FUNCTION = "load"
    CATEGORY = f"{CATEGORY_ROOT}/loaders"
    DESCRIPTION = ("Loads a FLOAT-family talking-portrait checkpoint (FLOAT's own files load unchanged). "
                   "The model stays cached between runs until the file changes.")

    @classmethod
    def IS_CHANGED(cls, checkpoint, device, dtype):
        try:
            stat = os.stat(comfy_host.resolve_checkpoint(checkpoint))
        except (FileNotFoundError, OSError):
            return ""
        return f"{stat.st_mtime_ns}:{stat.st_size}"

    @node_errors
    def load(self, checkpoint, device, dtype):
        path = comfy_host.resolve_checkpoint(checkpoint)
        return (load_cached(path, comfy_host.resolve_device(device), DTYPES[dtype] or torch.float32),)
