"""DemoSaveMotion, DemoLoadMotion and DemoPreviewMotion: motion tracks as files and as pictures."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from demo_core.motion.track import MotionTrack
from demo_core.pipeline import track_with_model_basis

from . import comfy_host
from .errors import node_errors
from .plot import motion_curves, plot_curves
from .types import CATEGORY_ROOT, DEMO_MODEL, DEMO_MOTION

__all__ = ["DemoSaveMotion", "DemoLoadMotion", "DemoPreviewMotion", "MOTION_SUFFIX", "list_motion_files"]

MOTION_SUFFIX = ".motion.safetensors"
NO_MOTION_FILE = "(no motion file in the output folder)"


def list_motion_files() -> list[str]:
    """Motion files under the output folder, as paths relative to it (never empty: see NO_MOTION_FILE)."""
    root = comfy_host.output_directory()
    found = []
    for folder, _dirs, files in os.walk(root) if root.is_dir() else ():
        found += [Path(folder, f).relative_to(root).as_posix() for f in files
                  if f.endswith(MOTION_SUFFIX) and not f.startswith(".")]
    return sorted(found) or [NO_MOTION_FILE]


def _motion_path(motion_file: str, path: str) -> Path:
    if path.strip():
        return Path(path.strip()).expanduser()
    if motion_file == NO_MOTION_FILE:
        raise FileNotFoundError("no motion file chosen: save one with Demo Save Motion or enter a path")
    return comfy_host.output_directory() / motion_file


class DemoSaveMotion:
    """Save a motion track to the output folder."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "motion": (DEMO_MOTION, {"tooltip": "The motion to save."}),
                "filename_prefix": ("STRING", {
                    "default": "demo/motion",
                    "tooltip": "Name inside ComfyUI's output folder (may include a subfolder); a counter is "
                               "appended, nothing is overwritten."}),
            }
        }

    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("path",)
    OUTPUT_TOOLTIPS = ("Path of the motion file written.",)
    FUNCTION = "save"
    OUTPUT_NODE = True
    CATEGORY = f"{CATEGORY_ROOT}/motion"
    DESCRIPTION = (f"Writes the motion (latents, fps, motion dictionary) as a small {MOTION_SUFFIX} file that "
                   "Demo Load Motion reads back, to reuse or edit a performance without sampling again.")

    @node_errors
    def save(self, motion, filename_prefix):
        (target, subfolder), = comfy_host.save_targets(filename_prefix, MOTION_SUFFIX[1:])
        path = motion.to_file(target)
        return {"ui": {"text": [os.path.join(subfolder, path.name)]}, "result": (str(path),)}


class DemoLoadMotion:
    """Load a saved motion track."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "motion_file": (list_motion_files(), {"tooltip": f"{MOTION_SUFFIX} files in ComfyUI's output folder."}),
            },
            "optional": {
                "path": ("STRING", {"default": "", "tooltip": "A motion file anywhere on disk; overrides motion_file "
                                                              "when not empty."}),
            },
        }

    RETURN_TYPES = (DEMO_MOTION, "FLOAT", "INT")
    RETURN_NAMES = ("motion", "fps", "frames")
    OUTPUT_TOOLTIPS = ("The motion read from the file.", "Its frame rate.", "Its number of frames.")
    FUNCTION = "load"
    CATEGORY = f"{CATEGORY_ROOT}/motion"
    DESCRIPTION = "Reads a motion file written by Demo Save Motion."

    @classmethod
    def IS_CHANGED(cls, motion_file, path=""):
        try:
            stat = _motion_path(motion_file, path).stat()
        except (FileNotFoundError, OSError):
            return ""
        return f"{stat.st_mtime_ns}:{stat.st_size}"

    @node_errors
    def load(self, motion_file, path=""):
        track = MotionTrack.from_file(_motion_path(motion_file, path))
        return (track, track.fps, track.num_frames)


class DemoPreviewMotion:
    """Plot a motion track's curves."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "motion": (DEMO_MOTION, {"tooltip": "The motion to plot."}),
                "portrait_index": ("INT", {"default": 0, "min": 0, "max": 63,
                                           "tooltip": "Which portrait's track to plot when there are several."}),
                "width": ("INT", {"default": 768, "min": 256, "max": 4096, "step": 8, "tooltip": "Plot width."}),
                "height": ("INT", {"default": 512, "min": 128, "max": 4096, "step": 8, "tooltip": "Plot height."}),
            },
            "optional": {
                "model": (DEMO_MODEL, {"tooltip": "Needed only for motion that carries no motion dictionary: "
                                                  "projects the latents on the model's motion directions."}),
            },
        }

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("plot",)
    OUTPUT_TOOLTIPS = ("The plot as an image (also shown on the node).",)
    FUNCTION = "preview"
    OUTPUT_NODE = True
    CATEGORY = f"{CATEGORY_ROOT}/motion"
    DESCRIPTION = ("Plots one curve per motion coefficient over time (the coordinates λ on the model's motion "
                   "dictionary; named by factor for DEMO models), all on one scale.")

    @node_errors
    def preview(self, motion, portrait_index, width, height, model=None):
        if portrait_index >= motion.batch:
            raise ValueError(f"portrait_index: {portrait_index} is out of range, the motion has {motion.batch} tracks")
        if motion.basis is None and model is None:
            raise ValueError("motion: it carries no motion dictionary; connect the model to project it")
        if motion.basis is None:
            motion = track_with_model_basis(model, motion)
        curves = motion.coefficients[portrait_index].float().cpu().numpy().T  # (M, T)
        title = f"{motion.source} motion{' (relative)' if motion.relative else ''}"
        rgb = plot_curves(curves, fps=motion.fps, labels=motion.coefficient_names(), width=width,
                          height=height, title=title)
        image = torch.from_numpy(rgb.astype(np.float32) / 255.0)[None]  # (1, H, W, 3)
        ui = {"images": [_save_preview(rgb)], "demo_curves": motion_curves(motion, portrait_index)}
        return {"ui": ui, "result": (image,)}


def _save_preview(rgb: np.ndarray) -> dict:
    folder = comfy_host.temp_directory()
    folder.mkdir(parents=True, exist_ok=True)
    name = f"demo_motion_{secrets.token_hex(5)}.png"
    Image.fromarray(rgb).save(folder / name, compress_level=1)
    return {"filename": name, "subfolder": "", "type": "temp"}
