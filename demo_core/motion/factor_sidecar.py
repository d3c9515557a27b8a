"""Factor calibrations of FLOAT-family checkpoints, manual direction maps, and their JSON sidecar files.

A FLOAT-family motion dictionary ``Q`` (W, M) has no factor names.  A :class:`FactorCalibration` gives
them: a :class:`FactorLayout` plus an orthogonal ``rotation`` R (M, M) so that factor coordinates are
``c = λ @ R`` (``λ = latents @ Q``).  It is measured (:mod:`demo_core.motion.calibration`) or written by
hand as a direction map, ``{"lip": [3, 7, 12], "pose": [0, 5], "eyes": [9]}`` (indices of ``Q``'s
columns, first = coordinate ``c0``; directions not named go to a ``residual`` block).

Sidecar file ``<checkpoint stem>.factors.json`` next to the checkpoint (schema version 1)::

    {"format": "comfyui-demo-factors",
     "format_version": 1,
     "num_directions": M,
     "source": "measured" | "manual",
     "layout": {"blocks": [{"name", "size", "axes", "axis_units", "axis_scale", "axis_offset"}, ...]},
     "directions": {"<factor>": [direction indices of Q owned by the block], ...},  # layout order
     "rotation": [[R_00 … R_0(M−1)], …],     # M rows; R[i, j] = weight of direction i in coordinate j
     "scores": {"categories": ["pose", "lip", "eyes", "other"], "values": [[4 floats] × M]} | null,
     "settings": {...}}                       # how it was measured (epsilon, face_scale, ...)

``rotation`` is non-zero only inside each block (rows = its ``directions``, columns = its coordinates).
Files are written atomically and never replaced unless ``overwrite=True``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import DemoInputError
from .factor_space import FactorSpace
from .factors import FactorBlock, FactorLayout

__all__ = [
    "FACTORS_FORMAT",
    "FACTORS_FORMAT_VERSION",
    "FactorCalibration",
    "calibration_from_directions",
    "parse_factor_map",
    "sidecar_path",
    "save_factor_calibration",
    "load_factor_calibration",
]

FACTORS_FORMAT = "comfyui-demo-factors"
FACTORS_FORMAT_VERSION = 1
SCORE_CATEGORIES = ("pose", "lip", "eyes", "other")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_TOL = 1e-4


@dataclass(frozen=True, eq=False)
class FactorCalibration:
    """Factor names for a FLOAT-family dictionary.

    Attributes:
        layout: the factor blocks (no semantic axes: coordinates are in dictionary units).
        rotation: (M, M) float64 orthogonal, factor coordinates ``c = λ @ rotation``.
        directions: block name → indices of the dictionary directions the block is built from.
        source: ``"measured"`` or ``"manual"``.
        scores: (M, 4) per-direction scores over (pose, lip, eyes, other), or None.
        settings: how it was made (JSON-safe).
    """

    layout: FactorLayout
    rotation: Tensor
    directions: dict[str, list[int]]
    source: str = "manual"
    scores: Tensor | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def num_directions(self) -> int:
        return self.layout.total

    def space(self, Q: Tensor) -> FactorSpace:
        """The :class:`FactorSpace` over dictionary ``Q`` (W, M)."""
        return FactorSpace(Q, self.layout, self.rotation)

    def to_dict(self) -> dict[str, Any]:
        scores = None if self.scores is None else {
            "categories": list(SCORE_CATEGORIES), "values": self.scores.double().tolist()}
        return {"format": FACTORS_FORMAT, "format_version": FACTORS_FORMAT_VERSION,
                "num_directions": self.num_directions, "source": self.source, "layout": self.layout.to_dict(),
                "directions": {n: list(self.directions[n]) for n in self.layout.names},
                "rotation": self.rotation.double().tolist(), "scores": scores, "settings": self.settings}


def _check_directions(directions: object, num_directions: int, name: str) -> dict[str, list[int]]:
    if not isinstance(directions, Mapping):
        raise DemoInputError(f"{name}: expected an object mapping factor names to direction indices, "
                             f"got {type(directions).__name__}")
    owner: dict[int, str] = {}
    out: dict[str, list[int]] = {}
    for key, indices in directions.items():
        if not isinstance(key, str) or not _NAME.match(key):
            raise DemoInputError(f"{name}: factor name {key!r} must be lower-case letters, digits and '_', "
                                 "starting with a letter")
        if not isinstance(indices, Sequence) or isinstance(indices, str) or len(indices) == 0:
            raise DemoInputError(f"{name}: {key!r} must be a non-empty list of direction indices, got {indices!r}")
        out[key] = []
        for i in indices:
            if isinstance(i, bool) or not isinstance(i, int):
                raise DemoInputError(f"{name}: {key!r}: direction {i!r} is not an integer")
            if not 0 <= i < num_directions:
                raise DemoInputError(f"{name}: {key!r}: direction {i} is out of range 0..{num_directions - 1}")
            if i in owner:
                raise DemoInputError(f"{name}: direction {i} is listed under both {owner[i]!r} and {key!r}")
            owner[i] = key
            out[key].append(i)
    return out


def calibration_from_directions(
    directions: Mapping[str, Sequence[int]],
    num_directions: int,
    *,
    block_rotations: Mapping[str, Tensor] | None = None,
    source: str = "manual",
    scores: Tensor | None = None,
    settings: Mapping[str, Any] | None = None,
    name: str = "factor map",
) -> FactorCalibration:
    """Build a calibration from direction indices per factor.

    Args:
        directions: factor → dictionary direction indices (block order = mapping order).  Directions
            not listed are appended to ``residual`` (created last when absent).
        num_directions: M, the dictionary size.
        block_rotations: factor → (n, n) orthogonal mix of its n directions (column j = coordinate j);
            default identity, i.e. coordinate j is direction ``directions[f][j]``.
        source, scores, settings: stored as given.
        name: input name for error messages.

    Returns:
        The :class:`FactorCalibration`.
    """
    if isinstance(num_directions, bool) or not isinstance(num_directions, int) or num_directions < 1:
        raise DemoInputError(f"num_directions: expected an integer >= 1, got {num_directions!r}")
    dirs = _check_directions(directions, num_directions, name)
    used = {i for v in dirs.values() for i in v}
    left = [i for i in range(num_directions) if i not in used]
    if left:
        dirs["residual"] = dirs.get("residual", []) + left
    rotations = dict(block_rotations or {})
    M = num_directions
    R = torch.zeros(M, M, dtype=torch.float64)
    start = 0
    for factor, idx in dirs.items():
        n = len(idx)
        u = rotations.pop(factor, None)
        u = torch.eye(n, dtype=torch.float64) if u is None else torch.as_tensor(u, dtype=torch.float64)
        if u.shape != (n, n) or (u.T @ u - torch.eye(n, dtype=torch.float64)).abs().max() > _TOL:
            raise DemoInputError(f"block_rotations[{factor!r}]: expected an orthogonal ({n}, {n}) matrix")
        R[torch.tensor(idx), start : start + n] = u
        start += n
    if rotations:
        raise DemoInputError(f"block_rotations: unknown factors {sorted(rotations)}")
    layout = FactorLayout(tuple(FactorBlock(f, len(idx)) for f, idx in dirs.items()))
    return FactorCalibration(layout, R, dirs, source, None if scores is None else scores.detach().double().cpu(),
                             dict(settings or {}))


def parse_factor_map(source: str | Mapping, num_directions: int) -> FactorCalibration:
    """A manual direction map (JSON text or object) → :class:`FactorCalibration` (source ``"manual"``).

    Example:
        >>> cal = parse_factor_map('{"pose": [37, 28, 15], "lip": [6, 25, 16]}', 40)
        >>> cal.layout.names
        ('pose', 'lip', 'residual')
    """
    data = source
    if isinstance(source, (str, bytes)):
        try:
            data = json.loads(source)
        except json.JSONDecodeError as err:
            raise DemoInputError(f"factor map: invalid JSON at line {err.lineno} column {err.colno}: "
                                 f"{err.msg}") from None
    return calibration_from_directions(data, num_directions, source="manual")


def sidecar_path(checkpoint: str | os.PathLike) -> Path:
    """``dir/name.pth`` → ``dir/name.factors.json`` (a path already ending in ``.factors.json`` is kept)."""
    p = Path(checkpoint)
    return p if p.name.endswith(".factors.json") else p.with_name(f"{p.stem}.factors.json")


def save_factor_calibration(calibration: FactorCalibration, checkpoint: str | os.PathLike, *,
                            overwrite: bool = False) -> Path:
    """Write ``calibration`` to the sidecar of ``checkpoint`` atomically.

    Raises:
        FileExistsError: the sidecar exists and ``overwrite`` is False.
    """
    path = sidecar_path(checkpoint)
    if path.exists() and not overwrite:
        raise FileExistsError(f"factor sidecar {str(path)!r} already exists (pass overwrite=True to replace it)")
    text = json.dumps(calibration.to_dict(), indent=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    try:
        tmp.write_text(text, encoding="utf-8")
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # FileExistsError instead of clobbering a file written meanwhile
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _calibration_from_dict(d: Any, where: str) -> FactorCalibration:
    if not isinstance(d, Mapping) or d.get("format") != FACTORS_FORMAT:
        raise DemoInputError(f"{where}: not a {FACTORS_FORMAT} file (\"format\" missing or wrong)")
    version = d.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FACTORS_FORMAT_VERSION:
        raise DemoInputError(f"{where}: \"format_version\" {version!r} is not supported (this version reads "
                             f"up to {FACTORS_FORMAT_VERSION})")
    M = d.get("num_directions")
    if isinstance(M, bool) or not isinstance(M, int) or M < 1:
        raise DemoInputError(f"{where}: \"num_directions\" must be a positive integer, got {M!r}")
    try:
        layout = FactorLayout.from_dict(d["layout"])
    except (KeyError, TypeError, DemoInputError) as err:
        raise DemoInputError(f"{where}: \"layout\" is invalid: {err}") from None
    if layout.total != M:
        raise DemoInputError(f"{where}: \"layout\" has {layout.total} coordinates, \"num_directions\" is {M}")
    dirs = _check_directions(d.get("directions"), M, f"{where}: \"directions\"")
    if list(dirs) != list(layout.names) or any(len(dirs[b.name]) != b.size for b in layout.blocks) \
            or sum(map(len, dirs.values())) != M:
        raise DemoInputError(f"{where}: \"directions\" must list every direction once, per layout block in order")
    try:
        R = torch.tensor(d["rotation"], dtype=torch.float64)
    except (KeyError, TypeError, ValueError):
        raise DemoInputError(f"{where}: \"rotation\" must be a {M}×{M} list of numbers") from None
    if R.shape != (M, M) or not torch.isfinite(R).all() or (R.T @ R - torch.eye(M, dtype=R.dtype)).abs().max() > _TOL:
        raise DemoInputError(f"{where}: \"rotation\" must be an orthogonal {M}×{M} matrix")
    mask = torch.zeros(M, M, dtype=torch.bool)
    for block, s in layout.slices().items():
        mask[torch.tensor(dirs[block])[:, None], torch.arange(M)[s][None, :]] = True
    if (R * ~mask).abs().max() > _TOL:
        raise DemoInputError(f"{where}: \"rotation\" mixes directions across blocks (see \"directions\")")
    scores = d.get("scores")
    if scores is not None:
        try:
            scores = torch.tensor(scores["values"], dtype=torch.float64)
        except (KeyError, TypeError, ValueError):
            raise DemoInputError(f"{where}: \"scores\" must be null or {{\"categories\", \"values\"}}") from None
        if scores.shape != (M, len(SCORE_CATEGORIES)):
            raise DemoInputError(f"{where}: \"scores\" values must be {M}×{len(SCORE_CATEGORIES)}")
    settings = d.get("settings") or {}
    if not isinstance(settings, Mapping):
        raise DemoInputError(f"{where}: \"settings\" must be an object")
    return FactorCalibration(layout, R, dirs, str(d.get("source", "manual")), scores, dict(settings))


def load_factor_calibration(path: str | os.PathLike, *, num_directions: int | None = None) -> FactorCalibration:
    """Read a sidecar (given the checkpoint path or the sidecar path itself).

    Args:
        path: checkpoint or ``.factors.json`` path.
        num_directions: if given, the model's M; a sidecar for another size raises.

    Raises:
        DemoInputError: missing or malformed file (the message names the offending key).
    """
    p = sidecar_path(path)
    if not p.is_file():
        raise DemoInputError(f"factor sidecar {str(p)!r} does not exist")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DemoInputError(f"factor sidecar {str(p)!r} is not readable JSON: {err}") from None
    cal = _calibration_from_dict(data, f"factor sidecar {p.name}")
    if num_directions is not None and cal.num_directions != num_directions:
        raise DemoInputError(f"factor sidecar {p.name}: \"num_directions\" is {cal.num_directions} but the "
                             f"model has {num_directions} directions")
    return cal
