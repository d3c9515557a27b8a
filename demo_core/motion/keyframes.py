"""Keyframe curves for motion factors: parse, validate, evaluate and serialise.

A keyframe set is plain JSON, written by hand or by the front-end editor (``web/js``)::

    {"version": 1,
     "tracks": {
       "pose.yaw":      {"mode": "offset",   "interp": "smooth", "keys": [[0.0, 0.0], [3.0, 15.0]]},
       "blink.closure": {"mode": "absolute", "interp": "step",   "keys": [[1.2, 0.0], [1.3, 1.0]]},
       "lip.gain":      {"mode": "gain",     "interp": "linear", "keys": [[0.0, 1.0], [4.0, 0.5]]}}}

* Keys are ``[time, value]``: time in seconds (``>= 0``, strictly increasing), value in the axis unit.
* Track names are ``<factor>.<axis>``: ``pose.yaw|pitch|roll`` (degrees), ``pose.tx|ty|scale``,
  ``gaze.x|y`` (-1..1), ``blink.closure`` (0..1), ``<factor>.gain`` (multiplier of the factor's
  deviation from its mean) and ``<factor>.c<i>`` (coordinate ``i`` of a factor without semantic axes).
* ``mode``: ``offset`` adds the curve to the generated value, ``absolute`` replaces it, ``gain``
  multiplies it (:func:`apply_keyframe_mode`).
* ``interp``: ``step`` holds each key until the next, ``linear``, or ``smooth``: a monotone cubic
  Hermite curve (Fritsch–Butland tangents, zero slope at the first and last key) that passes
  through every key and never leaves the range of the two keys around it.
* Before the first key and after the last the curve holds the key's value.
* Compact form: ``{"pose.yaw": [[0, 0], [3, 15]]}`` is the tracks object alone, and a track may be a
  bare key list. Defaults: ``interp`` smooth; ``mode`` gain for ``<factor>.gain`` tracks (whose
  neutral value is 1), offset for every other track.

The same rules, messages and maths are implemented in ``web/js/keyframe_model.js``;
``web/tests/keyframe_vectors.json`` holds cases both test suites check.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

from demo_core.errors import DemoInputError

__all__ = [
    "FORMAT_VERSION",
    "MODES",
    "INTERPS",
    "SEMANTIC_AXES",
    "KeyframeTrack",
    "KeyframeSet",
    "default_mode",
    "value_range",
    "check_value_ranges",
    "parse_keyframes",
    "to_dict",
    "to_json",
    "track_tangents",
    "evaluate_track",
    "evaluate_keyframes",
    "apply_keyframe_mode",
]

FORMAT_VERSION = 1
MODES = ("offset", "absolute", "gain")
INTERPS = ("step", "linear", "smooth")
DEFAULT_INTERP = "smooth"
# Named axes of the factors that have them; every factor also has "gain" and "c<i>".
SEMANTIC_AXES = {
    "pose": ("yaw", "pitch", "roll", "tx", "ty", "scale"),
    "gaze": ("x", "y"),
    "blink": ("closure",),
}
_TRACK_NAME = re.compile(r"^([a-z][a-z0-9_]*)\.([A-Za-z0-9_]+)$")
_COORDINATE_AXIS = re.compile(r"^c(0|[1-9][0-9]*)$")


@dataclass(frozen=True, eq=False)
class KeyframeTrack:
    """One validated curve.

    Attributes:
        name: ``<factor>.<axis>``, e.g. ``"pose.yaw"``.
        mode: ``"offset"``, ``"absolute"`` or ``"gain"``.
        interp: ``"step"``, ``"linear"`` or ``"smooth"``.
        times: Key times in seconds, float64, strictly increasing, ``>= 0``. Shape (K,), K >= 1.
        values: Key values in the axis unit, float64, finite. Shape (K,).
    """

    name: str
    mode: str
    interp: str
    times: torch.Tensor
    values: torch.Tensor

    @property
    def keys(self) -> list[list[float]]:
        """The keys as ``[[time, value], ...]`` Python floats."""
        return [[t, v] for t, v in zip(self.times.tolist(), self.values.tolist())]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KeyframeTrack):
            return NotImplemented
        return (self.name, self.mode, self.interp, self.keys) == (other.name, other.mode, other.interp, other.keys)

    __hash__ = None  # holds tensors


@dataclass(frozen=True)
class KeyframeSet:
    """Validated keyframe tracks, keyed by track name in sorted order.

    Example:
        >>> kset = parse_keyframes('{"pose.yaw": [[0, 0], [3, 15]]}')
        >>> float(evaluate_keyframes(kset, 76, 25)["pose.yaw"][75])
        15.0
    """

    tracks: dict[str, KeyframeTrack]
    version: int = FORMAT_VERSION


def default_mode(track_name: str) -> str:
    """Mode used when a track does not give one: ``gain`` for ``<factor>.gain``, else ``offset``."""
    return "gain" if track_name.endswith(".gain") else "offset"


# Limits of key values: the editor's (``axisInfo`` in web/js/keyframe_model.js), so whatever it can draw is
# accepted and hand-typed values outside are refused with the offending key instead of giving runaway motion.
AXIS_RANGES = {
    "pose.yaw": (-90.0, 90.0), "pose.pitch": (-90.0, 90.0), "pose.roll": (-90.0, 90.0),  # degrees
    "pose.tx": (-1.0, 1.0), "pose.ty": (-1.0, 1.0), "pose.scale": (0.25, 4.0),
    "gaze.x": (-1.0, 1.0), "gaze.y": (-1.0, 1.0), "blink.closure": (0.0, 1.0),
}
GAIN_RANGE = (-4.0, 4.0)
COORDINATE_RANGE = (-10.0, 10.0)  # ``<factor>.c<i>`` and axes without a named range


def value_range(track_name: str, mode: str) -> tuple[float, float]:
    """Allowed key values of a track: the axis range for ``absolute``, its width either side of 0 for ``offset``,
    -4..4 for ``gain``."""
    if mode == "gain":
        return GAIN_RANGE
    lo, hi = AXIS_RANGES.get(track_name, GAIN_RANGE if track_name.endswith(".gain") else COORDINATE_RANGE)
    return (lo, hi) if mode == "absolute" else (lo - hi, hi - lo)


def check_value_ranges(kset: "KeyframeSet", name: str = "keyframes") -> "KeyframeSet":
    """``kset`` validated again with :func:`value_range` limits on every track.

    Raises:
        DemoInputError: naming the track, the key and the allowed range of the first value outside it.
    """
    ranges = {t: value_range(t, track.mode) for t, track in kset.tracks.items()}
    return parse_keyframes(kset, ranges=ranges, name=name)


# --------------------------------------------------------------------------------------------
# Formatting shared with the JS side: numbers as Python's repr of a float, JSON type names.


def _format_number(x: float) -> str:
    return repr(float(x))


def _is_number(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _type_name(x: object) -> str:
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "boolean"
    if _is_number(x):
        return "number"
    if isinstance(x, str):
        return "string"
    if isinstance(x, Mapping):
        return "object"
    if isinstance(x, (list, tuple)):
        return "array"
    return type(x).__name__


def _describe(x: object) -> str:
    """A short rendering of a JSON value for messages: scalars literally, containers by type."""
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "true" if x else "false"
    if _is_number(x):
        return _format_number(x)
    if isinstance(x, str):
        return _quote(x)
    return _type_name(x)


def _quote(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _quoted_list(items: Iterable[str]) -> str:
    return ", ".join(_quote(s) for s in items)


# --------------------------------------------------------------------------------------------
# Parsing and validation


def _load_json(text: str, name: str) -> object:
    if not text.strip():
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        msg = re.sub(r" (starting )?at$", "", e.msg)  # "Unterminated string starting at" → "Unterminated string"
        raise DemoInputError(f"{name}: invalid JSON at line {e.lineno} column {e.colno}: {msg}") from None


def _check_track_name(track: object, known: list[str] | None, name: str) -> None:
    if not isinstance(track, str):
        raise DemoInputError(f"{name}: track names must be strings, got {_describe(track)}")
    if known is not None:
        if track not in known:
            raise DemoInputError(f'{name}: unknown track {_quote(track)} (valid tracks: {_quoted_list(known)})')
        return
    match = _TRACK_NAME.match(track)
    if match is None:
        raise DemoInputError(
            f'{name}: track {_quote(track)}: name must be "<factor>.<axis>", for example "pose.yaw"'
        )
    factor, axis = match.groups()
    semantic = SEMANTIC_AXES.get(factor, ())
    if axis not in semantic and axis != "gain" and _COORDINATE_AXIS.match(axis) is None:
        expected = _quoted_list([*semantic, "gain", "c<i>"])
        raise DemoInputError(
            f"{name}: track {_quote(track)}: unknown axis {_quote(axis)} for factor "
            f"{_quote(factor)} (expected one of {expected})"
        )


def _parse_keys(keys: object, where: str, value_range: tuple[float, float] | None) -> tuple[list, list]:
    if not isinstance(keys, (list, tuple)):
        raise DemoInputError(f'{where}: "keys" must be a list of [time, value] pairs, got {_type_name(keys)}')
    if len(keys) == 0:
        raise DemoInputError(f'{where}: "keys" is empty: give at least one [time, value] key')
    times: list[float] = []
    values: list[float] = []
    for k, key in enumerate(keys):
        at = f"{where} key {k}"
        if not isinstance(key, (list, tuple)) or len(key) != 2:
            got = f"array of length {len(key)}" if isinstance(key, (list, tuple)) else _describe(key)
            raise DemoInputError(f"{at}: expected a [time, value] pair, got {got}")
        t, v = key
        if not _is_number(t):
            raise DemoInputError(f"{at}: time must be a number, got {_describe(t)}")
        if not _is_number(v):
            raise DemoInputError(f"{at}: value must be a number, got {_describe(v)}")
        t, v = float(t), float(v)
        if not math.isfinite(t):
            raise DemoInputError(f"{at}: time {_format_number(t)} must be a finite number")
        if t < 0:
            raise DemoInputError(f"{at}: time {_format_number(t)} must be >= 0")
        if not math.isfinite(v):
            raise DemoInputError(f"{at}: value {_format_number(v)} must be a finite number")
        if times and t == times[-1]:
            raise DemoInputError(
                f"{at}: time {_format_number(t)} repeats the time of key {k - 1} (times must be strictly increasing)"
            )
        if times and t < times[-1]:
            raise DemoInputError(
                f"{at}: time {_format_number(t)} is earlier than key {k - 1} at {_format_number(times[-1])} "
                "(keys must be sorted by time)"
            )
        if value_range is not None and not value_range[0] <= v <= value_range[1]:
            lo, hi = value_range
            raise DemoInputError(
                f"{at}: value {_format_number(v)} is outside the allowed range "
                f"[{_format_number(lo)}, {_format_number(hi)}]"
            )
        times.append(t)
        values.append(v)
    return times, values


def _parse_track(track: str, spec: object, name: str, value_range) -> KeyframeTrack:
    where = f"{name}: track {_quote(track)}"
    mode, interp = default_mode(track), DEFAULT_INTERP
    if isinstance(spec, (list, tuple)):
        keys = spec
    elif isinstance(spec, Mapping):
        for field in spec:
            if field not in ("mode", "interp", "keys"):
                raise DemoInputError(
                    f'{where}: unknown field {_describe(field)} (expected "mode", "interp", "keys")'
                )
        if "keys" not in spec:
            raise DemoInputError(f'{where}: missing "keys"')
        mode, interp, keys = spec.get("mode", mode), spec.get("interp", interp), spec["keys"]
        if mode not in MODES:
            raise DemoInputError(f"{where}: unknown mode {_describe(mode)} (expected one of {_quoted_list(MODES)})")
        if interp not in INTERPS:
            raise DemoInputError(
                f"{where}: unknown interp {_describe(interp)} (expected one of {_quoted_list(INTERPS)})"
            )
    else:
        raise DemoInputError(
            f'{where}: expected a list of [time, value] keys or an object with "keys", got {_type_name(spec)}'
        )
    times, values = _parse_keys(keys, where, value_range)
    return KeyframeTrack(
        name=track,
        mode=mode,
        interp=interp,
        times=torch.tensor(times, dtype=torch.float64),  # (K,)
        values=torch.tensor(values, dtype=torch.float64),  # (K,)
    )


def parse_keyframes(
    source: str | Mapping | KeyframeSet,
    *,
    known_tracks: Iterable[str] | None = None,
    ranges: Mapping[str, tuple[float, float]] | None = None,
    name: str = "keyframes",
) -> KeyframeSet:
    """Parse and validate a keyframe set (full or compact form, see the module docstring).

    Args:
        source: JSON text (an empty or blank string is the empty set), an already decoded object,
            or a :class:`KeyframeSet` (validated again against ``known_tracks`` and ``ranges``).
        known_tracks: If given, the only track names accepted; otherwise any name that follows
            the ``<factor>.<axis>`` grammar is.
        ranges: Optional ``{track: (lo, hi)}``: key values of those tracks must lie in ``[lo, hi]``.
        name: Name of the input, put at the start of every error message.

    Returns:
        The validated :class:`KeyframeSet`, tracks sorted by name.

    Raises:
        DemoInputError: naming the offending track and key, for malformed JSON (with line and
            column), unknown fields, modes, interps or tracks, bad or unsorted times, non-finite
            values and values outside ``ranges``.
    """
    if isinstance(source, KeyframeSet):
        data: object = to_dict(source)
    elif isinstance(source, (bytes, bytearray)):
        data = _load_json(source.decode("utf-8", errors="replace"), name)
    elif isinstance(source, str):
        data = _load_json(source, name)
    else:
        data = source
    if not isinstance(data, Mapping):
        raise DemoInputError(f"{name}: expected a JSON object, got {_type_name(data)}")
    if "tracks" in data or "version" in data:  # full form
        for field in data:
            if field not in ("version", "tracks"):
                raise DemoInputError(f'{name}: unknown field {_describe(field)} (expected "version", "tracks")')
        version = data.get("version", FORMAT_VERSION)
        if not _is_number(version) or version != FORMAT_VERSION:
            raise DemoInputError(f'{name}: "version" must be {FORMAT_VERSION}, got {_describe(version)}')
        specs = data.get("tracks", {})
        if not isinstance(specs, Mapping):
            raise DemoInputError(
                f'{name}: "tracks" must be an object mapping track names to keys, got {_type_name(specs)}'
            )
    else:
        specs = data
    known = None if known_tracks is None else [str(t) for t in known_tracks]
    ranges = {} if ranges is None else ranges
    tracks = {}
    for track, spec in specs.items():
        _check_track_name(track, known, name)
        value_range = None if ranges.get(track) is None else tuple(float(x) for x in ranges[track])
        tracks[track] = _parse_track(track, spec, name, value_range)
    return KeyframeSet(tracks={t: tracks[t] for t in sorted(tracks)})


# --------------------------------------------------------------------------------------------
# Serialisation


def to_dict(kset: KeyframeSet) -> dict:
    """The full form as plain Python objects (tracks sorted by name)."""
    return {
        "version": kset.version,
        "tracks": {
            t: {"mode": tr.mode, "interp": tr.interp, "keys": tr.keys}
            for t, tr in sorted(kset.tracks.items())
        },
    }


def to_json(kset: KeyframeSet) -> str:
    """Normalised JSON text: full form, tracks sorted by name, one track per line.

    Numbers are written as shortest round-trip floats (``3.0``, ``0.1``, ``1e-05``), so
    ``parse_keyframes(to_json(s)) == s`` and ``web/js/keyframe_model.js`` writes the same bytes.
    """
    if not kset.tracks:
        return f'{{"version": {kset.version}, "tracks": {{}}}}'
    lines = []
    for t, tr in sorted(kset.tracks.items()):
        keys = ", ".join(f"[{_format_number(k)}, {_format_number(v)}]" for k, v in tr.keys)
        lines.append(f'  {_quote(t)}: {{"mode": "{tr.mode}", "interp": "{tr.interp}", "keys": [{keys}]}}')
    body = ",\n".join(lines)
    return f'{{"version": {kset.version}, "tracks": {{\n{body}\n}}}}'


# --------------------------------------------------------------------------------------------
# Evaluation


def track_tangents(times: list[float], values: list[float]) -> list[float]:
    """Slopes at the keys of the ``smooth`` curve (value units per second).

    Interior keys get the Fritsch–Butland weighted harmonic mean of the two neighbouring secant
    slopes, or 0 where the secants differ in sign or one is flat (a local extremum); the first and
    last keys get 0, which matches the hold outside the keys. These slopes satisfy the
    Fritsch–Carlson monotonicity condition, so each segment is monotone and stays between its keys.

    Args:
        times: Key times, strictly increasing. Length K.
        values: Key values. Length K.

    Returns:
        K slopes.
    """
    num_keys = len(times)
    slopes = [0.0] * num_keys
    for k in range(1, num_keys - 1):
        h_0, h_1 = times[k] - times[k - 1], times[k + 1] - times[k]
        d_0, d_1 = (values[k] - values[k - 1]) / h_0, (values[k + 1] - values[k]) / h_1
        if (d_0 > 0 and d_1 > 0) or (d_0 < 0 and d_1 < 0):
            w_0, w_1 = 2 * h_1 + h_0, h_1 + 2 * h_0
            slopes[k] = (w_0 + w_1) / (w_0 / d_0 + w_1 / d_1)
    return slopes


def evaluate_track(track: KeyframeTrack, frame_times: torch.Tensor) -> torch.Tensor:
    """Value of a track's curve at the given times.

    Args:
        track: A validated track.
        frame_times: Times in seconds, shape (T,).

    Returns:
        Curve values, shape (T,), computed in float64 and returned in ``frame_times``' dtype when it
        is floating point (float64 otherwise), on ``frame_times``' device.

    Raises:
        DemoInputError: if ``frame_times`` is not one-dimensional.
    """
    if not isinstance(frame_times, torch.Tensor) or frame_times.dim() != 1:
        got = tuple(frame_times.shape) if isinstance(frame_times, torch.Tensor) else type(frame_times).__name__
        raise DemoInputError(f"frame_times: expected a 1-D tensor of times in seconds, got {got}")
    out_dtype = frame_times.dtype if frame_times.is_floating_point() else torch.float64
    t = frame_times.detach().to(torch.float64)  # (T,)
    times = track.times.to(device=t.device, dtype=torch.float64)  # (K,)
    values = track.values.to(device=t.device, dtype=torch.float64)  # (K,)
    num_keys = times.shape[0]
    if num_keys == 1:
        return values[0].expand_as(t).to(out_dtype).clone()
    seg = (torch.searchsorted(times, t, right=True) - 1).clamp(0, num_keys - 2)  # (T,) segment index
    t_0, t_1 = times[seg], times[seg + 1]  # (T,)
    v_0, v_1 = values[seg], values[seg + 1]  # (T,)
    h = t_1 - t_0
    u = ((t - t_0) / h).clamp(0.0, 1.0)  # (T,) position inside the segment
    if track.interp == "step":
        y = v_0
    elif track.interp == "linear":
        y = v_0 + (v_1 - v_0) * u
    else:
        slopes = torch.tensor(track_tangents(times.tolist(), values.tolist()), dtype=torch.float64, device=t.device)
        m_0, m_1 = slopes[seg], slopes[seg + 1]  # (T,)
        u2 = u * u
        u3 = u2 * u
        h00 = 2 * u3 - 3 * u2 + 1
        h10 = u3 - 2 * u2 + u
        h01 = -2 * u3 + 3 * u2
        h11 = u3 - u2
        y = h00 * v_0 + h10 * h * m_0 + h01 * v_1 + h11 * h * m_1
        # Exact maths never leaves [v_0, v_1] here; the clamp removes last-bit rounding overshoot.
        y = torch.minimum(torch.maximum(y, torch.minimum(v_0, v_1)), torch.maximum(v_0, v_1))
    y = torch.where(t < times[0], values[0], y)
    y = torch.where(t >= times[-1], values[-1], y)
    return y.to(out_dtype)


def evaluate_keyframes(
    kset: KeyframeSet,
    num_frames: int,
    fps: float,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> dict[str, torch.Tensor]:
    """Sample every track at the frame times ``t_k = k / fps``, ``k = 0 .. num_frames - 1``.

    Args:
        kset: A validated keyframe set.
        num_frames: Number of frames T, ``>= 0``.
        fps: Frames per second, a positive finite number.
        dtype: dtype of the returned tensors (the curves are computed in float64).
        device: Device of the returned tensors (default CPU).

    Returns:
        ``{track name: values (T,)}`` in the set's (sorted) order.

    Raises:
        DemoInputError: for a negative or non-integer ``num_frames`` or an invalid ``fps``.
    """
    if isinstance(num_frames, bool) or not isinstance(num_frames, numbers.Integral) or num_frames < 0:
        raise DemoInputError(f"num_frames: expected an integer >= 0, got {num_frames!r}")
    if not _is_number(fps) or not math.isfinite(float(fps)) or float(fps) <= 0:
        raise DemoInputError(f"fps: expected a positive finite number of frames per second, got {fps!r}")
    frame_times = torch.arange(int(num_frames), dtype=torch.float64, device=device) / float(fps)  # (T,)
    return {t: evaluate_track(tr, frame_times).to(dtype) for t, tr in kset.tracks.items()}


def apply_keyframe_mode(generated: torch.Tensor, curve: torch.Tensor, mode: str) -> torch.Tensor:
    """Combine a generated per-frame quantity with a keyframe curve.

    Args:
        generated: Generated values, shape (..., T).
        curve: Curve values, shape (T,) (broadcast against ``generated``).
        mode: ``offset`` (``generated + curve``), ``absolute`` (``curve``) or ``gain``
            (``generated * curve``).

    Returns:
        A new tensor shaped like ``generated``, in its dtype and on its device.

    Raises:
        DemoInputError: for an unknown mode.
    """
    curve = curve.to(device=generated.device, dtype=generated.dtype)
    if mode == "offset":
        return generated + curve
    if mode == "absolute":
        return curve.expand_as(generated).clone()
    if mode == "gain":
        return generated * curve
    raise DemoInputError(f"mode: expected one of {_quoted_list(MODES)}, got {_describe(mode)}")
