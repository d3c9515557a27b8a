"""Checkpoint I/O: the only place where weights are read or written.

Reads
  * FLOAT's ``float.pth`` (``torch.load(weights_only=True)``: a pickle that carries code is refused,
    never executed),
  * the unified ``FLOAT.safetensors``,
  * FLOAT's split parts (encoder / decoder / audio projection / FMT files, wav2vec2 folders in
    Hugging Face layout), given as a folder or a list of files: each file is recognised by its keys,
  * the pack's own format: one ``.safetensors`` file whose metadata carries ``format``,
    ``format_version`` and the model config as JSON.

Every problem is reported as a :class:`~demo_core.errors.CheckpointError` whose message names the
file and says what is wrong (missing, wrong-shaped or unreadable tensors, truncation, unsafe
pickles, a file that is not a checkpoint).
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch

from ..errors import CheckpointError

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LoadReport",
    "read_tensor_file",
    "collect_state_dict",
    "normalize_keys",
    "check_state_dict",
    "save_checkpoint",
    "CHECKPOINT_SUFFIXES",
]

FORMAT_NAME = "comfyui-demo"
FORMAT_VERSION = 1
SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
CHECKPOINT_SUFFIXES = SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES

# FLOAT's split-part files hold keys relative to these modules (recognised by their keys).
_LEGACY_WEIGHT_NORM = {".conv.weight_g": ".conv.parametrizations.weight.original0",
                       ".conv.weight_v": ".conv.parametrizations.weight.original1"}
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.", "generator.")


@dataclass
class LoadReport:
    """What loading found, for logs and error messages.

    Attributes:
        sources: the files read, in order.
        metadata: safetensors metadata of the main file (empty for pickles).
        missing: model keys absent from the files (only those that may be absent remain here).
        unexpected: file keys the model does not have (ignored, as FLOAT's loader does).
        config_source: ``"metadata"`` (stored config), ``"options"`` (FLOAT options given or found in a
            ``config.json`` beside the file) or ``"inferred"`` (derived from shapes).
    """

    sources: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    config_source: str = "inferred"

    def summary(self) -> str:
        parts = [f"read {', '.join(Path(s).name for s in self.sources)} (config {self.config_source})"]
        if self.missing:
            parts.append(f"{len(self.missing)} unused-at-inference keys absent ({_short_list(self.missing)})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} extra keys ignored ({_short_list(self.unexpected)})")
        return "; ".join(parts)


def _short_list(names: Iterable[str], limit: int = 6) -> str:
    names = list(names)
    head = ", ".join(names[:limit])
    return head + (f", ... and {len(names) - limit} more" if len(names) > limit else "")


# ----------------------------------------------------------------------------------------------
# Reading single files


def _check_safetensors_layout(path: Path) -> dict[str, Any]:
    """Validate the safetensors header against the file size; return the parsed header."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: not a safetensors file (only {size} bytes, no header).")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8 or n > 100_000_000:
            if f.read(1) != b"{":  # not even the start of a safetensors header (a JSON object)
                raise CheckpointError(
                    f"{path}: not a checkpoint: expected a .safetensors file or a PyTorch .pth/.pt/.ckpt file, "
                    f"but its content is neither (it starts with {head!r})."
                )
            raise CheckpointError(
                f"{path}: not a valid safetensors file or truncated: the header claims {n} bytes but the file "
                f"has {size} bytes. Re-download or re-export the file."
            )
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: the safetensors header is corrupted ({exc}).") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the safetensors header is not a JSON object.")
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            end = max(end, int(info["data_offsets"][1]))
        except (KeyError, TypeError, IndexError, ValueError):
            raise CheckpointError(f"{path}: the safetensors entry {name!r} has no valid data_offsets.") from None
    if 8 + n + end > size:
        raise CheckpointError(
            f"{path}: the file is truncated: its header describes {8 + n + end} bytes but only {size} bytes "
            f"are on disk (an interrupted download?). Re-download the checkpoint."
        )
    return header


def _unwrap_pickled(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """Find the state dict inside a loaded pickle (plain dict or common wrappers)."""
    for _ in range(3):
        if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
        if isinstance(obj, dict):
            for key in ("state_dict", "model", "gen", "net", "weights"):
                if key in obj and isinstance(obj[key], dict):
                    obj = obj[key]
                    break
            else:
                break
        else:
            break
    if isinstance(obj, dict):
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise CheckpointError(f"{path}: the file loads but holds no tensors keyed by name (not a model checkpoint).")


def read_tensor_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read every tensor of one checkpoint file on the CPU.

    Args:
        path: a ``.safetensors`` file or a PyTorch pickle (``.pth``/``.pt``/``.ckpt``/``.bin``).

    Returns:
        ``(tensors, metadata)``; metadata is the safetensors ``__metadata__`` (empty for pickles).

    Raises:
        CheckpointError: missing, truncated, corrupted, unsafe (pickled code) or non-checkpoint files.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found.")
    with open(path, "rb") as f:
        magic = f.read(4)
    is_zip = magic[:2] == b"PK"
    is_pickle = magic[:1] == b"\x80"
    if path.suffix.lower() in SAFETENSORS_SUFFIXES or not (is_zip or is_pickle):
        header = _check_safetensors_layout(path)
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"{path}: the safetensors data cannot be read ({exc}).") from None
        meta = header.get("__metadata__") or {}
        return tensors, {str(k): str(v) for k, v in meta.items()}
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused to load: the pickle contains Python objects or code beyond plain tensors, and "
            f"this pack only loads weights (torch.load weights_only=True; nothing in it was executed). "
            f"Detail: {str(exc).splitlines()[0]}. Convert it to .safetensors with a trusted tool."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: the PyTorch file is truncated or corrupted ({str(exc).splitlines()[0]}). Re-download it."
        ) from None
    return _unwrap_pickled(obj, path), {}


# ----------------------------------------------------------------------------------------------
# Key normalisation and split parts


def normalize_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map legacy spellings onto FLOAT's current key names.

    * ``…pos_conv_embed.conv.weight_g/weight_v`` (torch < 2.1 weight norm) →
      ``…conv.parametrizations.weight.original0/original1``;
    * wrapper prefixes (``module.``, ``_orig_mod.``) shared by every key are removed.
    """
    out: dict[str, torch.Tensor] = {}
    keys = list(sd)
    for prefix in _WRAPPER_PREFIXES:
        if keys and all(k.startswith(prefix) for k in keys):
            keys_map = {k: k[len(prefix):] for k in keys}
            sd = {keys_map[k]: v for k, v in sd.items()}
            keys = list(sd)
    for k, v in sd.items():
        for old, new in _LEGACY_WEIGHT_NORM.items():
            if k.endswith(old):
                k = k[: -len(old)] + new
                break
        out[k] = v
    return out


def _classify_part(keys: set[str]) -> str:
    """Name the FLOAT sub-module a split-part file belongs to, from its keys."""
    if any(k.startswith(("motion_autoencoder.", "fmt.", "audio_encoder.", "emotion_encoder.")) for k in keys):
        return "full"
    if any(k.startswith("net_app.") for k in keys):
        return "motion_autoencoder.enc."
    if "direction.weight" in keys:
        return "motion_autoencoder.dec."
    if "x_embedder.proj.weight" in keys:
        return "fmt."
    if keys and keys <= {"0.weight", "0.bias", "1.weight", "1.bias"}:
        return "audio_encoder.audio_projection."
    if any("classifier.out_proj" in k for k in keys):
        return "emotion_encoder.wav2vec2_for_emotion."
    if any("feature_extractor.conv_layers" in k for k in keys):
        return "audio_encoder.wav2vec2."
    return "unknown"


def _rebase_part(part: str, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if part == "full":
        return sd
    out = {}
    for k, v in sd.items():
        if part == "audio_encoder.wav2vec2.":
            if k.startswith("lm_head."):  # CTC head of wav2vec2-base-960h: not part of FLOAT
                continue
            if k.startswith("wav2vec2."):
                k = k[len("wav2vec2."):]
        out[part + k] = v
    return out


def _files_in(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in CHECKPOINT_SUFFIXES)
    # Prefer safetensors over a same-stem pickle in the same folder (HF folders often hold both).
    chosen: dict[tuple[Path, str], Path] = {}
    for p in found:
        key = (p.parent, p.stem)
        if key not in chosen or p.suffix.lower() in SAFETENSORS_SUFFIXES:
            chosen[key] = p
    # Optimizer states and similar are not weights.
    return [p for p in chosen.values() if not p.name.startswith(("optimizer", "scheduler", "training_args"))]


def collect_state_dict(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
) -> tuple[dict[str, torch.Tensor], dict[str, str], list[str], dict[str, dict]]:
    """Read one checkpoint, or FLOAT's split parts, into one FLOAT-keyed state dict.

    Args:
        paths: a file, a folder (searched recursively) or several of them.

    Returns:
        ``(state_dict, metadata, sources, hf_configs)``: ``metadata`` is the first safetensors file's
        metadata; ``hf_configs`` maps a sub-model prefix (``"audio_encoder.wav2vec2."`` …) to the
        Hugging Face ``config.json`` found beside its weights, if any.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise CheckpointError(f"{p}: checkpoint file or folder not found.")
        files.extend(_files_in(p))
    if not files:
        raise CheckpointError(f"{', '.join(map(str, paths))}: no checkpoint files (.safetensors/.pth) found.")
    state: dict[str, torch.Tensor] = {}
    metadata: dict[str, str] = {}
    sources: list[str] = []
    hf_configs: dict[str, dict] = {}
    for f in files:
        tensors, meta = read_tensor_file(f)
        if meta and not metadata:
            metadata = meta
        tensors = normalize_keys(tensors)
        part = _classify_part(set(tensors))
        if part == "unknown":
            raise CheckpointError(
                f"{f}: none of its {len(tensors)} tensors belong to a FLOAT or DEMO model "
                f"(first keys: {_short_list(sorted(tensors), 4)})."
            )
        state.update(_rebase_part(part, tensors))
        sources.append(str(f))
        cfg_file = f.parent / "config.json"
        if part.endswith("wav2vec2.") or part.endswith("wav2vec2_for_emotion."):
            if cfg_file.is_file():
                try:
                    hf_configs[part] = json.loads(cfg_file.read_text())
                except json.JSONDecodeError:
                    raise CheckpointError(f"{cfg_file}: not valid JSON.") from None
    return state, metadata, sources, hf_configs


# ----------------------------------------------------------------------------------------------
# Checking against a model


def check_state_dict(
    model: torch.nn.Module,
    state: dict[str, torch.Tensor],
    *,
    source: str,
    optional: tuple[str, ...] = (),
    recomputed: tuple[str, ...] = (),
) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """Compare a state dict with a model's keys and shapes.

    Args:
        model: the model to load into.
        state: candidate tensors.
        source: file name(s) for messages.
        optional: key substrings that may be absent (unused at inference); their initial values stay.
        recomputed: key substrings of buffers that the model always recomputes (file values ignored).

    Returns:
        ``(to_load, missing_optional, unexpected)``.

    Raises:
        CheckpointError: required keys missing, shapes wrong, non-floating data for float tensors, or NaN/inf
            values (a corrupted file).
    """
    expected = model.state_dict()
    to_load: dict[str, torch.Tensor] = {}
    missing_required, missing_optional, wrong = [], [], []
    for key, ref in expected.items():
        if any(s in key for s in recomputed):
            continue
        if key not in state:
            (missing_optional if any(s in key for s in optional) else missing_required).append(key)
            continue
        t = state[key]
        if tuple(t.shape) != tuple(ref.shape):
            wrong.append(f"{key} has shape {tuple(t.shape)}, the model needs {tuple(ref.shape)}")
            continue
        if ref.is_floating_point() and not t.is_floating_point():
            wrong.append(f"{key} has dtype {t.dtype}, the model needs a floating-point tensor")
            continue
        to_load[key] = t
    problems = []
    if missing_required:
        groups: dict[str, int] = {}
        for k in missing_required:
            top = ".".join(k.split(".")[:2])
            groups[top] = groups.get(top, 0) + 1
        problems.append(
            f"{len(missing_required)} tensors are missing ({', '.join(f'{g}.* ×{n}' for g, n in groups.items())}; "
            f"first: {_short_list(missing_required, 3)})"
        )
    if wrong:
        problems.append(f"{len(wrong)} tensors have the wrong shape or type ({_short_list(wrong, 3)})")
    if problems:
        raise CheckpointError(f"{source}: does not match the model: " + "; ".join(problems) + ".")
    # A float64 sum is finite exactly when every value is (no float32/16 data can overflow it): one cheap pass.
    corrupt = [k for k, t in to_load.items()
               if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t.sum(dtype=torch.float64)))]
    if corrupt:
        raise CheckpointError(
            f"{source}: {len(corrupt)} tensors hold NaN or infinite values ({_short_list(corrupt, 3)}); expected "
            f"finite weights: the file is corrupted. Re-download or re-export it."
        )
    unexpected = sorted(k for k in state if k not in expected)
    return to_load, missing_optional, unexpected


# ----------------------------------------------------------------------------------------------
# Writing the pack's own format


def save_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    config: dict[str, Any],
    *,
    extra_metadata: dict[str, str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model``'s weights and ``config`` as one ``.safetensors`` file, atomically.

    Args:
        path: destination (``.safetensors``).
        model: the module whose ``state_dict()`` is saved (buffers that are recomputed are kept too;
            they are small).
        config: the JSON-serialisable model config (``cfg.to_dict()``).
        extra_metadata: more string metadata (training command, figures, ...).
        overwrite: replace an existing file; otherwise an existing file raises.

    Returns:
        The written path.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.exists() and not overwrite:
        raise CheckpointError(f"{path}: already exists; choose another name or pass overwrite=True.")
    meta = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION), "config": json.dumps(config)}
    meta.update(extra_metadata or {})
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name, suffix=".partial", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
