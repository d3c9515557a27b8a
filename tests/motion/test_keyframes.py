"""Keyframe parsing, validation, evaluation and serialisation (demo_core/motion/keyframes.py).

The cases in ``web/tests/keyframe_vectors.json`` are checked here and by ``web/tests`` (node), so
the Python engine and the JS editor agree on messages, normalised text and curve values.  The
expected values there come from the scalar reference below, not from the module under test;
regenerate the file with ``python tests/motion/test_keyframes.py --write-vectors``.
"""

from __future__ import annotations

import json
import math
import random
import struct
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from demo_core.errors import DemoInputError  # noqa: E402
from demo_core.motion.keyframes import (  # noqa: E402
    KeyframeSet,
    KeyframeTrack,
    apply_keyframe_mode,
    evaluate_keyframes,
    evaluate_track,
    parse_keyframes,
    to_dict,
    to_json,
    track_tangents,
)

VECTORS = ROOT / "web" / "tests" / "keyframe_vectors.json"


def track_of(keys, interp="smooth", mode="offset", name="pose.yaw") -> KeyframeTrack:
    return parse_keyframes({name: {"mode": mode, "interp": interp, "keys": keys}}).tracks[name]


def at(track: KeyframeTrack, *times: float) -> list[float]:
    return evaluate_track(track, torch.tensor(times, dtype=torch.float64)).tolist()


# ------------------------------------------------------------------------------------------------
# Scalar reference (written independently of the module: linear scan, polynomial form)


def reference_value(keys: list[list[float]], interp: str, t: float) -> float:
    times = [k[0] for k in keys]
    values = [k[1] for k in keys]
    if t < times[0]:
        return values[0]
    if t >= times[-1]:
        return values[-1]
    i = max(j for j in range(len(times)) if times[j] <= t)
    t_0, t_1, v_0, v_1 = times[i], times[i + 1], values[i], values[i + 1]
    if interp == "step":
        return v_0
    if interp == "linear":
        return v_0 + (v_1 - v_0) * (t - t_0) / (t_1 - t_0)

    def slope(k: int) -> float:  # Fritsch–Butland: weighted harmonic mean of the secants, 0 at ends
        if k == 0 or k == len(times) - 1:
            return 0.0
        h_a, h_b = times[k] - times[k - 1], times[k + 1] - times[k]
        s_a, s_b = (values[k] - values[k - 1]) / h_a, (values[k + 1] - values[k]) / h_b
        if s_a * s_b <= 0:
            return 0.0
        return 3 * (h_a + h_b) / ((2 * h_b + h_a) / s_a + (h_b + 2 * h_a) / s_b)

    h, m_0, m_1 = t_1 - t_0, slope(i), slope(i + 1)
    delta = (v_1 - v_0) / h
    c_2 = (3 * delta - 2 * m_0 - m_1) / h
    c_3 = (m_0 + m_1 - 2 * delta) / (h * h)
    s = t - t_0
    y = v_0 + s * (m_0 + s * (c_2 + s * c_3))
    return min(max(y, min(v_0, v_1)), max(v_0, v_1))


# ------------------------------------------------------------------------------------------------
# Interpolation maths


def test_linear_is_exact_at_midpoints():
    track = track_of([[0.0, 0.0], [2.0, 10.0], [4.0, -3.0], [5.0, 1.0]], interp="linear")
    assert at(track, 1.0, 3.0, 4.5) == [5.0, 3.5, -1.0]
    assert at(track, 0.5) == [2.5]


def test_every_interp_passes_through_its_keys_exactly():
    keys = [[0.1, 0.3], [0.7, 1.9], [1.3, 1.9], [2.0, -4.25], [2.2, 7.0]]
    for interp in ("step", "linear", "smooth"):
        track = track_of(keys, interp=interp)
        assert at(track, *[k[0] for k in keys]) == [k[1] for k in keys], interp


def test_step_holds_each_key_until_the_next():
    track = track_of([[1.2, 0.0], [1.3, 1.0], [1.45, 0.0]], interp="step", mode="absolute", name="blink.closure")
    assert at(track, 1.2, 1.25, 1.2999, 1.3, 1.44, 1.45, 9.0) == [0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0]


@pytest.mark.parametrize("interp", ["step", "linear", "smooth"])
def test_holds_before_first_and_after_last_key(interp):
    track = track_of([[1.0, 2.0], [2.0, 5.0]], interp=interp)
    assert at(track, 0.0, 0.5, 0.999) == [2.0, 2.0, 2.0]
    assert at(track, 2.0, 2.5, 100.0) == [5.0, 5.0, 5.0]


def test_single_key_is_constant():
    track = track_of([[1.5, -7.0]])
    assert at(track, 0.0, 1.5, 3.0) == [-7.0, -7.0, -7.0]


def test_two_key_smooth_is_smoothstep():
    track = track_of([[0.0, 0.0], [3.0, 15.0]])
    t = torch.linspace(0, 3, 301, dtype=torch.float64)
    u = t / 3
    expected = 15 * (3 * u**2 - 2 * u**3)
    assert torch.allclose(evaluate_track(track, t), expected, atol=1e-12, rtol=0)


def test_fifteen_degrees_yaw_at_three_seconds():
    kset = parse_keyframes('{"pose.yaw": [[0, 0], [3, 15]]}')
    curves = evaluate_keyframes(kset, 100, 25)
    yaw = curves["pose.yaw"]
    assert yaw.dtype == torch.float32 and yaw.shape == (100,)
    assert yaw[75].item() == 15.0
    assert yaw[0].item() == 0.0
    assert yaw.max().item() == 15.0  # never above 15
    assert torch.all(yaw[75:] == 15.0)  # holds afterwards
    assert torch.all(yaw[1:] >= yaw[:-1])  # monotone ramp


def test_smooth_slopes_follow_fritsch_butland_and_match_scipy_inside():
    interpolate = pytest.importorskip("scipy.interpolate")
    keys = [[0.0, 0.0], [0.5, 1.0], [1.5, 4.0], [2.0, 4.5], [3.5, 2.0], [4.0, 2.5], [5.0, 9.0]]
    times, values = [k[0] for k in keys], [k[1] for k in keys]
    slopes = track_tangents(times, values)
    assert slopes[0] == 0.0 and slopes[-1] == 0.0  # zero end slopes (C1 with the hold)
    assert slopes[3] == 0.0 and slopes[4] == 0.0  # local extrema are flat
    pchip = interpolate.PchipInterpolator(times, values)
    track = track_of(keys)
    # segments away from the ends only depend on interior slopes, which equal scipy's PCHIP
    t = torch.linspace(0.5, 4.0, 701, dtype=torch.float64)
    assert torch.allclose(evaluate_track(track, t), torch.from_numpy(pchip(t.numpy())), atol=1e-9, rtol=0)
    assert max(abs(a - b) for a, b in zip(slopes[1:-1], pchip.derivative()(times)[1:-1])) < 1e-12


def test_smooth_is_c1_at_interior_keys():
    track = track_of([[0.0, 0.0], [1.0, 2.0], [1.5, 5.0], [3.0, 6.0]])
    eps = 1e-6
    for t_k in (1.0, 1.5):
        left, mid, right = at(track, t_k - eps, t_k, t_k + eps)
        assert abs((mid - left) / eps - (right - mid) / eps) < 1e-3


def cumulative_keys(steps: list[tuple[float, float]], accumulate_values: bool) -> list[list[float]]:
    """Keys at cumulative time steps; values cumulative too (monotone) or taken as they are."""
    keys, t, v = [], 0.0, 0.0
    for dt, dv in steps:
        t, v = t + dt, (v + dv if accumulate_values else dv)
        keys.append([t, v])
    return keys


monotone_keys = st.lists(st.tuples(st.floats(0.01, 3.0), st.floats(0.0, 50.0)), min_size=1, max_size=8).map(
    lambda steps: cumulative_keys(steps, accumulate_values=True)
)
any_keys = st.lists(st.tuples(st.floats(0.01, 3.0), st.floats(-100.0, 100.0)), min_size=1, max_size=8).map(
    lambda steps: cumulative_keys(steps, accumulate_values=False)
)


@settings(max_examples=150, deadline=None)
@given(keys=monotone_keys, decreasing=st.booleans())
def test_smooth_is_monotone_between_monotone_keys(keys, decreasing):
    if decreasing:
        keys = [[t, -v] for t, v in keys]
    track = track_of(keys)
    t = torch.linspace(0.0, keys[-1][0] + 1.0, 2001, dtype=torch.float64)
    y = evaluate_track(track, t)
    diffs = (y[1:] - y[:-1]) * (-1 if decreasing else 1)
    assert diffs.min().item() >= -1e-9
    lo, hi = min(k[1] for k in keys), max(k[1] for k in keys)
    assert lo <= y.min().item() and y.max().item() <= hi


@settings(max_examples=150, deadline=None)
@given(keys=any_keys, interp=st.sampled_from(["step", "linear", "smooth"]))
def test_no_overshoot_between_neighbouring_keys(keys, interp):
    track = track_of(keys, interp=interp)
    for (t_0, v_0), (t_1, v_1) in zip(keys, keys[1:]):
        y = evaluate_track(track, torch.linspace(t_0, t_1, 97, dtype=torch.float64))
        assert min(v_0, v_1) <= y.min().item() and y.max().item() <= max(v_0, v_1)


@settings(max_examples=100, deadline=None)
@given(keys=any_keys, interp=st.sampled_from(["step", "linear", "smooth"]))
def test_module_matches_scalar_reference(keys, interp):
    track = track_of(keys, interp=interp)
    times = [i * 0.037 for i in range(int(keys[-1][0] / 0.037) + 5)] + [k[0] for k in keys]
    got = at(track, *times)
    for t, y in zip(times, got):
        ref = reference_value(keys, interp, t)
        assert abs(y - ref) <= 1e-9 * max(1.0, abs(ref)), (t, y, ref)


def test_evaluate_is_pure_and_keeps_dtype():
    track = track_of([[0.0, 1.0], [1.0, 3.0]], interp="linear")
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float32)
    before = t.clone()
    out = evaluate_track(track, t)
    assert out.dtype == torch.float32 and out.tolist() == [1.0, 2.0, 3.0]
    assert torch.equal(t, before)
    assert evaluate_track(track, torch.tensor([0, 1])).dtype == torch.float64


def test_evaluate_keyframes_frame_times_and_arguments():
    kset = parse_keyframes({"gaze.x": {"mode": "absolute", "interp": "linear", "keys": [[0, 0], [1, 1]]}})
    out = evaluate_keyframes(kset, 11, 10, dtype=torch.float64)
    assert out["gaze.x"].tolist() == pytest.approx([k / 10 for k in range(11)], abs=1e-15)
    assert evaluate_keyframes(kset, 0, 25)["gaze.x"].shape == (0,)
    for bad in (-1, 2.5, True):
        with pytest.raises(DemoInputError, match="num_frames"):
            evaluate_keyframes(kset, bad, 25)
    for bad in (0, -25, float("nan"), float("inf"), "25"):
        with pytest.raises(DemoInputError, match="fps"):
            evaluate_keyframes(kset, 10, bad)
    with pytest.raises(DemoInputError, match="frame_times"):
        evaluate_track(kset.tracks["gaze.x"], torch.zeros(2, 3))


def test_apply_keyframe_mode():
    generated = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])  # (B, T)
    curve = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)  # (T,)
    assert apply_keyframe_mode(generated, curve, "offset").tolist() == [[1.5, 3.0, 5.0], [4.5, 6.0, 8.0]]
    assert apply_keyframe_mode(generated, curve, "gain").tolist() == [[0.5, 2.0, 6.0], [2.0, 5.0, 12.0]]
    absolute = apply_keyframe_mode(generated, curve, "absolute")
    assert absolute.tolist() == [[0.5, 1.0, 2.0]] * 2 and absolute.dtype == torch.float32
    with pytest.raises(DemoInputError, match="mode"):
        apply_keyframe_mode(generated, curve, "add")


# ------------------------------------------------------------------------------------------------
# Parsing, compact form, round trip


BRIEF_EXAMPLE = """{"version": 1,
 "tracks": {
   "pose.yaw":      {"mode": "offset",   "interp": "smooth", "keys": [[0.0, 0.0], [3.0, 15.0]]},
   "gaze.x":        {"mode": "absolute", "interp": "linear", "keys": [[1.0, 0.0], [2.0, 0.8]]},
   "blink.closure": {"mode": "absolute", "interp": "step",   "keys": [[1.2, 0.0], [1.3, 1.0], [1.45, 0.0]]},
   "lip.gain":      {"mode": "gain",     "interp": "linear", "keys": [[0.0, 1.0], [4.0, 0.5]]}
 }}"""


def test_full_form_parses_into_sorted_tracks():
    kset = parse_keyframes(BRIEF_EXAMPLE)
    assert list(kset.tracks) == ["blink.closure", "gaze.x", "lip.gain", "pose.yaw"]
    blink = kset.tracks["blink.closure"]
    assert (blink.mode, blink.interp) == ("absolute", "step")
    assert blink.times.dtype == torch.float64 and blink.times.tolist() == [1.2, 1.3, 1.45]
    assert blink.values.tolist() == [0.0, 1.0, 0.0]


def test_compact_form_is_normalised():
    compact = parse_keyframes('{"pose.yaw": [[0, 0], [3, 15]], "lip.gain": [[0, 1], [4, 0.5]]}')
    full = parse_keyframes(
        {
            "version": 1,
            "tracks": {
                "pose.yaw": {"mode": "offset", "interp": "smooth", "keys": [[0.0, 0.0], [3.0, 15.0]]},
                "lip.gain": {"mode": "gain", "interp": "smooth", "keys": [[0.0, 1.0], [4.0, 0.5]]},
            },
        }
    )
    assert compact == full
    # a track object may also leave out mode and interp, and "tracks" may hold bare key lists
    assert parse_keyframes({"tracks": {"pose.yaw": {"keys": [[0, 0], [3, 15]]}}}) == parse_keyframes(
        {"version": 1, "tracks": {"pose.yaw": [[0, 0], [3, 15]]}}
    )


@pytest.mark.parametrize("empty", ["", "   \n", "{}", '{"version": 1}', '{"tracks": {}}', {}])
def test_empty_inputs_give_the_empty_set(empty):
    kset = parse_keyframes(empty)
    assert kset.tracks == {}
    assert to_json(kset) == '{"version": 1, "tracks": {}}'


def test_generic_and_gain_track_names():
    kset = parse_keyframes({"lip.c0": [[0, 1]], "expression.c12": [[0, 1]], "gaze.gain": [[0, 1]]})
    assert kset.tracks["lip.c0"].mode == "offset" and kset.tracks["gaze.gain"].mode == "gain"


def test_round_trip_and_stable_text():
    kset = parse_keyframes(BRIEF_EXAMPLE)
    text = to_json(kset)
    assert text == (
        '{"version": 1, "tracks": {\n'
        '  "blink.closure": {"mode": "absolute", "interp": "step", "keys": [[1.2, 0.0], [1.3, 1.0], [1.45, 0.0]]},\n'
        '  "gaze.x": {"mode": "absolute", "interp": "linear", "keys": [[1.0, 0.0], [2.0, 0.8]]},\n'
        '  "lip.gain": {"mode": "gain", "interp": "linear", "keys": [[0.0, 1.0], [4.0, 0.5]]},\n'
        '  "pose.yaw": {"mode": "offset", "interp": "smooth", "keys": [[0.0, 0.0], [3.0, 15.0]]}\n'
        "}}"
    )
    assert parse_keyframes(text) == kset
    assert to_json(parse_keyframes(text)) == text
    assert parse_keyframes(to_dict(kset)) == kset
    assert parse_keyframes(kset) == kset
    assert json.loads(text) == to_dict(kset)


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
track_names = st.sampled_from(["pose.yaw", "pose.scale", "gaze.y", "blink.closure", "lip.gain", "lip.c3", "emotion.c0"])
key_lists = st.lists(
    st.tuples(st.floats(0, 1e6, allow_nan=False), finite), min_size=1, max_size=6, unique_by=lambda k: k[0]
)
modes = st.sampled_from(["offset", "absolute", "gain"])
interps = st.sampled_from(["step", "linear", "smooth"])


@settings(max_examples=150, deadline=None)
@given(
    tracks=st.dictionaries(
        track_names,
        st.tuples(modes, interps, key_lists),
        max_size=4,
    )
)
def test_round_trip_property(tracks):
    data = {n: {"mode": m, "interp": i, "keys": sorted(list(k) for k in keys)} for n, (m, i, keys) in tracks.items()}
    kset = parse_keyframes(data)
    text = to_json(kset)
    assert parse_keyframes(text) == kset
    assert to_json(parse_keyframes(text)) == text


def test_parse_does_not_modify_its_input():
    data = {"pose.yaw": {"keys": [[0, 0], [3, 15]]}}
    snapshot = json.dumps(data)
    parse_keyframes(data)
    assert json.dumps(data) == snapshot


# ------------------------------------------------------------------------------------------------
# Error messages name the offending key


@pytest.mark.parametrize(
    "source, fragment",
    [
        ('{"pose.yaw": [[0, 0], [1, 1], [-1.0, 2]]}', 'keyframes: track "pose.yaw" key 2: time -1.0 must be >= 0'),
        ('{"pose.yaw": [[0, 0], [1, 1], [1, 2]]}', 'track "pose.yaw" key 2: time 1.0 repeats the time of key 1'),
        ('{"pose.yaw": [[0, 0], [2, 1], [1, 2]]}', 'track "pose.yaw" key 2: time 1.0 is earlier than key 1 at 2.0'),
        ('{"gaze.x": [[0, 0], [1, NaN]]}', 'track "gaze.x" key 1: value nan must be a finite number'),
        ({"gaze.x": [[0, 0], [float("inf"), 1]]}, 'track "gaze.x" key 1: time inf must be a finite number'),
        ('{"pose.yaw": {"mode": "add", "keys": [[0, 0]]}}', 'track "pose.yaw": unknown mode "add" (expected one of'),
        ('{"pose.yaw": {"interp": "cubic", "keys": [[0, 0]]}}', 'track "pose.yaw": unknown interp "cubic"'),
        ('{"pose.yaw": [[0, 0], [1, 2, 3]]}', 'track "pose.yaw" key 1: expected a [time, value] pair, got array of'),
        ('{"pose.yaw": [["1", 0]]}', 'track "pose.yaw" key 0: time must be a number, got "1"'),
        ({"pose.yaw": [[0, True]]}, 'track "pose.yaw" key 0: value must be a number, got true'),
        ('{"pose.yaw": []}', 'track "pose.yaw": "keys" is empty'),
        ('{"pose.yaw": {"mode": "offset"}}', 'track "pose.yaw": missing "keys"'),
        ('{"pose.yaw": {"keys": [[0, 0]], "ease": "in"}}', 'track "pose.yaw": unknown field "ease"'),
        ('{"pose.yow": [[0, 0]]}', 'track "pose.yow": unknown axis "yow" for factor "pose"'),
        ('{"yaw": [[0, 0]]}', 'track "yaw": name must be "<factor>.<axis>"'),
        ('{"version": 2}', '"version" must be 1, got 2.0'),
        ('{"version": 1, "tracks": {}, "fps": 25}', 'unknown field "fps" (expected "version", "tracks")'),
        ("[1, 2]", "keyframes: expected a JSON object, got array"),
        ('{"pose.yaw": [[0, 0] [3, 15]]}', "keyframes: invalid JSON at line 1 column 22: Expecting ',' delimiter"),
        ('{\n  "pose.yaw": [[0, 0],\n    [3, 15]\n  "gaze.x": [[0, 0]]\n}', "invalid JSON at line 4 column 3"),
    ],
)
def test_error_messages_name_the_offending_key(source, fragment):
    with pytest.raises(DemoInputError) as info:
        parse_keyframes(source)
    assert fragment in str(info.value)


def test_known_tracks_lists_the_valid_ones():
    with pytest.raises(DemoInputError) as info:
        parse_keyframes('{"pose.yawn": [[0, 0]]}', known_tracks=["pose.yaw", "gaze.x"], name="DemoEditFactors: kf")
    assert str(info.value) == 'DemoEditFactors: kf: unknown track "pose.yawn" (valid tracks: "pose.yaw", "gaze.x")'
    assert "pose.yaw" in parse_keyframes('{"pose.yaw": [[0, 0]]}', known_tracks=("pose.yaw",)).tracks


def test_ranges_limit_key_values():
    source = '{"gaze.x": {"mode": "absolute", "keys": [[0, 0], [1, 1.5]]}}'
    with pytest.raises(DemoInputError) as info:
        parse_keyframes(source, ranges={"gaze.x": (-1, 1)})
    assert str(info.value) == 'keyframes: track "gaze.x" key 1: value 1.5 is outside the allowed range [-1.0, 1.0]'
    assert parse_keyframes(source, ranges={"gaze.y": (-1, 1)}).tracks["gaze.x"].values.tolist() == [0.0, 1.5]


def test_non_json_sources_are_rejected():
    with pytest.raises(DemoInputError, match="expected a JSON object, got number"):
        parse_keyframes(3)
    assert parse_keyframes(b'{"pose.yaw": [[0, 1]]}').tracks["pose.yaw"].values.tolist() == [1.0]


# ------------------------------------------------------------------------------------------------
# Shared vectors (also read by web/tests/keyframes.test.mjs)


def load_vectors() -> dict:
    return json.loads(VECTORS.read_text(encoding="utf-8"))


def parse_options(case: dict) -> dict:
    options = case.get("options", {})
    return {
        "known_tracks": options.get("known_tracks"),
        "ranges": options.get("ranges"),
        "name": options.get("name", "keyframes"),
    }


def test_vectors_evaluate():
    for case in load_vectors()["evaluate"]:
        kset = parse_keyframes(case["input"])
        curves = evaluate_keyframes(kset, case["num_frames"], case["fps"], dtype=torch.float64)
        assert sorted(curves) == sorted(case["expected"]), case["name"]
        for track, expected in case["expected"].items():
            got = curves[track].tolist()
            assert len(got) == len(expected), (case["name"], track)
            for k, (a, b) in enumerate(zip(got, expected)):
                assert abs(a - b) <= 1e-12 * max(1.0, abs(b)), (case["name"], track, k, a, b)


def test_vectors_expected_values_follow_the_reference():
    for case in load_vectors()["evaluate"]:
        kset = parse_keyframes(case["input"])
        for track, expected in case["expected"].items():
            tr = kset.tracks[track]
            ref = [reference_value(tr.keys, tr.interp, k / case["fps"]) for k in range(case["num_frames"])]
            assert ref == expected, (case["name"], track)


def test_vectors_serialize():
    for case in load_vectors()["serialize"]:
        assert to_json(parse_keyframes(case["input"])) == case["text"], case["input"]


def test_vectors_errors():
    for case in load_vectors()["errors"]:
        with pytest.raises(DemoInputError) as info:
            parse_keyframes(case["input"], **parse_options(case))
        assert str(info.value) == case["message"], case["input"]


def test_vectors_numbers():
    for text in load_vectors()["numbers"]:
        assert repr(float(text)) == text


# ------------------------------------------------------------------------------------------------
# Vector file generation


def build_vectors() -> dict:
    evaluate_cases = [
        ("fifteen degrees at 3 s", '{"pose.yaw": [[0, 0], [3, 15]]}', 101, 25),
        ("brief example", BRIEF_EXAMPLE, 120, 25),
        (
            "smooth with extremum, plateau and uneven spacing",
            '{"pose.pitch": [[0.0, 0.0], [0.4, 3.0], [1.1, 9.5], [1.3, 9.5], [2.0, -4.0], [2.05, -3.9], [3.3, 12.25]]}',
            110,
            30,
        ),
        (
            "linear at 29.97 fps",
            '{"gaze.y": {"mode": "absolute", "interp": "linear", "keys": [[0.1, -1.0], [0.35, 0.6], [1.7, 0.2]]}}',
            70,
            29.97,
        ),
        (
            "step off the frame grid",
            '{"blink.closure": {"mode": "absolute", "interp": "step", '
            '"keys": [[0.13, 1.0], [0.2, 0.0], [0.5, 0.75], [0.52, 0.0]]}}',
            20,
            24,
        ),
        (
            "single key and late start",
            '{"pose.roll": [[2.5, -4.5]], "lip.gain": [[1.0, 1.0], [2.0, 1.8], [2.5, 0.25]]}',
            80,
            25,
        ),
        (
            "small and large magnitudes",
            '{"lip.c3": [[0, 1e-06], [0.5, 0.003], [1, -2.5e-05]], '
            '"pose.tx": [[0, 123.456], [0.7, -9876.5], [1.2, 4.0]]}',
            40,
            25,
        ),
    ]
    evaluate = []
    for name, source, num_frames, fps in evaluate_cases:
        kset = parse_keyframes(source)
        expected = {
            t: [reference_value(tr.keys, tr.interp, k / fps) for k in range(num_frames)]
            for t, tr in kset.tracks.items()
        }
        case = {"name": name, "input": json.loads(source), "num_frames": num_frames, "fps": fps, "expected": expected}
        evaluate.append(case)

    serialize_sources = [
        BRIEF_EXAMPLE,
        "",
        '{"pose.yaw": [[0, 0], [3, 15]]}',
        '{"tracks": {"lip.gain": [[0, 1]], "gaze.x": {"interp": "step", "keys": [[0.1, -0.5]]}}}',
        '{"pose.tx": [[0, 1e-05], [1e-4, 0.1], [0.30000000000000004, 1e16], [2, 1e+22], [3, -0.0], '
        "[4, 1234567890123456.5]]}",
        '{"lip.c0": [[5e-324, 1.7976931348623157e308], [0.1, 2.2250738585072014e-308], [1e300, 123456789.123]]}',
    ]
    serialize = [{"input": s, "text": to_json(parse_keyframes(s))} for s in serialize_sources]

    error_cases = [
        ("[1, 2]", {}),
        ('"pose.yaw"', {}),
        ('{"version": 2, "tracks": {}}', {}),
        ('{"version": "1", "tracks": {}}', {}),
        ('{"version": 1, "tracks": {}, "fps": 25}', {}),
        ('{"tracks": []}', {}),
        ('{"yaw": [[0, 0]]}', {}),
        ('{"Pose.yaw": [[0, 0]]}', {}),
        ('{"pose.yow": [[0, 0]]}', {}),
        ('{"lip.x": [[0, 0]]}', {}),
        ('{"lip.c01": [[0, 0]]}', {}),
        ('{"pose.yaw": 3}', {}),
        ('{"pose.yaw": {"keys": [[0, 0]], "ease": "in"}}', {}),
        ('{"pose.yaw": {"mode": "offset"}}', {}),
        ('{"pose.yaw": {"mode": "add", "keys": [[0, 0]]}}', {}),
        ('{"pose.yaw": {"mode": null, "keys": [[0, 0]]}}', {}),
        ('{"pose.yaw": {"interp": "cubic", "keys": [[0, 0]]}}', {}),
        ('{"pose.yaw": {"keys": {}}}', {}),
        ('{"pose.yaw": []}', {}),
        ('{"pose.yaw": [[0, 0], [1, 2, 3]]}', {}),
        ('{"pose.yaw": [[0, 0], 5]}', {}),
        ('{"pose.yaw": [["1", 0]]}', {}),
        ('{"pose.yaw": [[0, null]]}', {}),
        ('{"pose.yaw": [[0, false]]}', {}),
        ('{"pose.yaw": [[0, 0], [1, 1], [-1.0, 2]]}', {}),
        ('{"pose.yaw": [[0, 0], [1, 1], [1, 2]]}', {}),
        ('{"pose.yaw": [[0, 0], [2, 1], [1, 2]]}', {}),
        ('{"pose.yaw": [[0, NaN]]}', {}),
        ('{"pose.yaw": [[Infinity, 0]]}', {}),
        ('{"pose.yaw": [[0, -Infinity]]}', {}),
        ('{"pose.yawn": [[0, 0]]}', {"known_tracks": ["pose.yaw", "gaze.x"]}),
        ('{"gaze.x": {"mode": "absolute", "keys": [[0, 0], [1, 1.5]]}}', {"ranges": {"gaze.x": [-1, 1]}}),
        ('{"gaze.x": [[0, 1e-07]]}', {"ranges": {"gaze.x": [0.5, 1]}, "name": "DemoEditFactors: keyframes"}),
        ('{"pose.yaw": [[0, 0] [3, 15]]}', {}),
        ('{\n  "pose.yaw": [[0, 0],\n    [3, 15]\n  "gaze.x": [[0, 0]]\n}', {}),
        ("{pose.yaw: [[0, 0]]}", {}),
        ("{'pose.yaw': [[0, 0]]}", {}),
        ('{"pose.yaw": [[0, 0]]} x', {}),
        ('{"pose.yaw": [[0, 0], [3, 15.]]}', {}),
        ('{"pose.yaw": [[0, tru]]}', {}),
        ('{"pose.yaw": [[0, 0]]', {}),
        ('{"pose.yaw": [[0, "a\nb"]]}', {}),
    ]
    errors = []
    for source, options in error_cases:
        try:
            parse_keyframes(source, **parse_options({"options": options}))
        except DemoInputError as e:
            errors.append({"input": source, **({"options": options} if options else {}), "message": str(e)})
        else:
            raise AssertionError(f"no error for {source!r}")

    rng = random.Random(20260101)
    numbers = ["0.1", "1e-05", "0.0001", "1e+16", "1000000000000000.0", "-2.5", "5e-324", "1.7976931348623157e+308"]
    for _ in range(300):
        bits = rng.getrandbits(64)
        x = struct.unpack("<d", struct.pack("<Q", bits))[0]
        if math.isfinite(x):
            numbers.append(repr(x))
    for _ in range(100):
        numbers.append(repr(round(rng.uniform(-1000, 1000), rng.randint(0, 6))))
    return {
        "comment": "Shared keyframe cases for demo_core/motion/keyframes.py and web/js/keyframe_model.js. "
        "Generated by: python tests/motion/test_keyframes.py --write-vectors. Frame k is at t = k / fps.",
        "evaluate": evaluate,
        "serialize": serialize,
        "errors": errors,
        "numbers": numbers,
    }


if __name__ == "__main__":
    if "--write-vectors" not in sys.argv[1:]:
        sys.exit("usage: python tests/motion/test_keyframes.py --write-vectors")
    VECTORS.parent.mkdir(parents=True, exist_ok=True)
    vectors = build_vectors()
    parts = [f' "comment": {json.dumps(vectors.pop("comment"))}']
    for section, cases in vectors.items():  # one case per line: readable diffs, small file
        rows = ",\n  ".join(json.dumps(case, ensure_ascii=False) for case in cases)
        parts.append(f' "{section}": [\n  {rows}\n ]')
    VECTORS.write_text("{\n" + ",\n".join(parts) + "\n}\n", encoding="utf-8")
    print(f"wrote {VECTORS}")
