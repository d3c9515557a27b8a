"""The one module that talks to ComfyUI's host modules.

``folder_paths``, ``comfy.utils`` and ``comfy.model_management`` are imported here and nowhere
else.  Without ComfyUI (tests, plain Python) every function falls back to something sensible:
no progress bar, no interrupt, ``cuda``/``cpu`` picked by torch, a temporary output folder.

Models folder: ``models/demo`` is registered under the key ``demo`` with ComfyUI's checkpoint
extensions.  A ``demo`` entry the user configured in ``extra_model_paths.yaml`` keeps its folders;
the default folder is appended to them.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Callable

import torch

try:
    import folder_paths
except ImportError:  # not running inside ComfyUI
    folder_paths = None
try:
    import comfy.model_management as model_management
    import comfy.utils as comfy_utils
except ImportError:
    model_management = None
    comfy_utils = None

__all__ = [
    "MODELS_KEY",
    "EMBEDDED_PREFIX",
    "NO_CHECKPOINT",
    "register_models_folder",
    "list_checkpoints",
    "resolve_checkpoint",
    "progress_bar",
    "progress_callback",
    "check_interrupt",
    "torch_device",
    "resolve_device",
    "intermediate_device",
    "output_directory",
    "temp_directory",
    "save_targets",
    "soft_empty_cache",
]

log = logging.getLogger("comfyui-demo")

MODELS_KEY = "demo"
EMBEDDED_PREFIX = "(embedded) "
NO_CHECKPOINT = "(no checkpoint found: put one in models/demo)"
PACK_DIR = Path(__file__).resolve().parent.parent
EMBEDDED_MODELS = PACK_DIR / "assets" / "models"
EMBEDDED_DEFAULT = EMBEDDED_MODELS / "demo_synthetic_64.safetensors"
# Hugging Face sub-model folders that FLOAT's float.pth reads beside itself: not checkpoints to pick.
_SUBMODEL_FOLDERS = ("wav2vec2-base-960h", "wav2vec-english-speech-emotion-recognition")
_EXTENSIONS = {".safetensors", ".sft", ".pth", ".pt", ".ckpt", ".bin"}


# ------------------------------------------------------------------------------------ models folder


def register_models_folder() -> None:
    """Register ``models/demo`` with ComfyUI, keeping folders the user configured for ``demo``."""
    if folder_paths is None:
        return
    default_dir = os.path.join(folder_paths.models_dir, MODELS_KEY)
    extensions = set(folder_paths.supported_pt_extensions) | {".safetensors"}
    if MODELS_KEY in folder_paths.folder_names_and_paths:
        dirs, known = folder_paths.folder_names_and_paths[MODELS_KEY]
        dirs = list(dirs) + ([default_dir] if default_dir not in dirs else [])
        extensions |= set(known)
    else:
        dirs = [default_dir]
    folder_paths.folder_names_and_paths[MODELS_KEY] = (dirs, extensions)


def _fallback_models_dir() -> Path:
    """Models folder without ComfyUI: ``$DEMO_MODELS_DIR`` or ``./models/demo``."""
    return Path(os.environ.get("DEMO_MODELS_DIR", Path.cwd() / "models" / MODELS_KEY))


def _folder_files() -> list[str]:
    if folder_paths is not None:
        names = folder_paths.get_filename_list(MODELS_KEY)
    else:
        root = _fallback_models_dir()
        names = [p.relative_to(root).as_posix() for p in root.rglob("*")
                 if p.is_file() and p.suffix.lower() in _EXTENSIONS] if root.is_dir() else []
    return sorted(n for n in names if not set(Path(n).parts) & set(_SUBMODEL_FOLDERS))


def _embedded_files() -> list[Path]:
    return sorted(EMBEDDED_MODELS.glob("*.safetensors")) if EMBEDDED_MODELS.is_dir() else []


def list_checkpoints() -> list[str]:
    """Checkpoint choices: the models folder's files, then the pack's embedded models.

    Never empty: with nothing installed the single entry :data:`NO_CHECKPOINT` explains where to
    put a file (and :func:`resolve_checkpoint` refuses it).
    """
    names = _folder_files() + [EMBEDDED_PREFIX + p.stem for p in _embedded_files()]
    return names or [NO_CHECKPOINT]


def default_checkpoint() -> str:
    """The embedded default model when present, else the first choice."""
    embedded = EMBEDDED_PREFIX + EMBEDDED_DEFAULT.stem
    names = list_checkpoints()
    return embedded if embedded in names else names[0]


def resolve_checkpoint(name: str) -> Path:
    """Path of a checkpoint choice from :func:`list_checkpoints`.

    Raises:
        FileNotFoundError: the choice names no existing file.
    """
    if name.startswith(EMBEDDED_PREFIX):
        path = EMBEDDED_MODELS / f"{name[len(EMBEDDED_PREFIX):]}.safetensors"
    elif name == NO_CHECKPOINT:
        raise FileNotFoundError(f"no checkpoint installed: put a FLOAT or DEMO checkpoint in models/{MODELS_KEY}")
    elif folder_paths is not None:
        found = folder_paths.get_full_path(MODELS_KEY, name)
        if found is None:
            raise FileNotFoundError(f"checkpoint {name!r} not found in the models/{MODELS_KEY} folders")
        path = Path(found)
    else:
        path = _fallback_models_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {name!r} not found (looked for {str(path)!r})")
    return path


# ------------------------------------------------------------------------------ progress / cancel


class _NoProgress:
    """Stand-in for ``comfy.utils.ProgressBar`` outside ComfyUI."""

    def __init__(self, total: int) -> None:
        self.total, self.current = total, 0

    def update_absolute(self, value: int, total: int | None = None, preview=None) -> None:
        self.current, self.total = value, total or self.total

    def update(self, value: int) -> None:
        self.update_absolute(self.current + value)


def progress_bar(total: int, node_id: str | None = None):
    """ComfyUI's progress bar for node ``node_id`` (a no-op object outside ComfyUI)."""
    if comfy_utils is None:
        return _NoProgress(total)
    return comfy_utils.ProgressBar(total, node_id=node_id)


def check_interrupt() -> None:
    """Raise ComfyUI's interrupt exception if the user pressed cancel (no-op outside ComfyUI)."""
    if model_management is not None:
        model_management.throw_exception_if_processing_interrupted()


def progress_callback(node_id: str | None = None) -> Callable[[int, int], None]:
    """An engine ``callback(done, total)`` that checks for cancel, then moves the node's progress bar."""
    bar = None

    def callback(done: int, total: int) -> None:
        nonlocal bar
        check_interrupt()
        if bar is None:
            bar = progress_bar(total, node_id)
        bar.update_absolute(done, total)

    return callback


# ----------------------------------------------------------------------------------------- devices


def torch_device() -> torch.device:
    """ComfyUI's compute device; outside ComfyUI ``cuda`` when available, else ``cpu``."""
    if model_management is not None:
        return model_management.get_torch_device()
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(name: str) -> torch.device:
    """``auto`` → :func:`torch_device`; ``cpu``/``cuda``/``cuda:N``/``mps`` checked for availability.

    Raises:
        ValueError: the device does not exist on this machine.
    """
    if name == "auto":
        return torch_device()
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} is not available (this torch has no usable CUDA GPU); choose auto or cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} does not exist: {torch.cuda.device_count()} CUDA device(s) found")
    if device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"device {name!r} is not available on this machine; choose auto or cpu")
    return device


def intermediate_device() -> torch.device:
    """Where IMAGE/AUDIO/MASK outputs go (ComfyUI: CPU unless --gpu-only)."""
    if model_management is not None:
        return model_management.intermediate_device()
    return torch.device("cpu")


def soft_empty_cache() -> None:
    """Release cached GPU memory (ComfyUI's helper, or torch's)."""
    if model_management is not None:
        model_management.soft_empty_cache()
    elif torch.cuda.is_available():
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------ folders


def output_directory() -> Path:
    """ComfyUI's output folder; outside ComfyUI ``$DEMO_OUTPUT_DIR`` or ``<tmp>/comfyui-demo/output``."""
    if folder_paths is not None:
        return Path(folder_paths.get_output_directory())
    default = Path(tempfile.gettempdir()) / "comfyui-demo" / "output"
    return Path(os.environ.get("DEMO_OUTPUT_DIR", default))


def temp_directory() -> Path:
    """ComfyUI's temp folder (previews); outside ComfyUI a folder beside the output folder."""
    if folder_paths is not None:
        return Path(folder_paths.get_temp_directory())
    return output_directory().parent / "temp"


def save_targets(
    prefix: str, extension: str, count: int = 1, width: int = 0, height: int = 0
) -> list[tuple[Path, str]]:
    """Output file paths for ``prefix`` like ComfyUI's savers: ``<subfolder>/<name>_00001_.<ext>``.

    Args:
        prefix: filename prefix, may contain a subfolder and ComfyUI's ``%width%``-style tokens.
        extension: file extension without the dot (``mp4``, ``motion.safetensors``).
        count: number of consecutive files wanted.
        width, height: image size for the prefix tokens.

    Returns:
        ``[(path, subfolder), ...]``; paths do not exist yet when this is called (writers still
        refuse to overwrite, in case another job takes the name first).

    Raises:
        ValueError: the prefix points outside the output folder.
    """
    out = output_directory()
    if folder_paths is not None:
        folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(prefix, str(out), width, height)
        folder = Path(folder)
    else:
        folder = (out / prefix).parent.resolve()
        if out.resolve() not in (folder, *folder.parents):
            raise ValueError(f"filename_prefix {prefix!r} points outside the output folder")
        name, subfolder = Path(prefix).name, os.path.relpath(folder, out.resolve())
        subfolder = "" if subfolder == "." else subfolder
        taken = [p.name[len(name) + 1:].split("_")[0] for p in folder.glob(f"{name}_*_*")] if folder.is_dir() else []
        counter = max([int(t) for t in taken if t.isdigit()], default=0) + 1
    folder.mkdir(parents=True, exist_ok=True)
    return [(folder / f"{name}_{counter + i:05}_.{extension}", subfolder) for i in range(count)]
