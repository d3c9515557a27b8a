"""Factor calibrations: manual maps, the JSON sidecar round trip and validation that names the bad key."""

from __future__ import annotations

import json

import pytest
import torch

from demo_core.errors import DemoInputError
from demo_core.motion.factor_sidecar import (
    calibration_from_directions,
    load_factor_calibration,
    parse_factor_map,
    save_factor_calibration,
    sidecar_path,
)
from tests.motion.factor_helpers import orthonormal


def test_manual_map_builds_a_permutation():
    cal = parse_factor_map('{"pose": [5, 1, 3], "lip": [0, 7]}', 10)
    assert cal.layout.names == ("pose", "lip", "residual") and cal.source == "manual"
    assert cal.directions == {"pose": [5, 1, 3], "lip": [0, 7], "residual": [2, 4, 6, 8, 9]}
    lam = torch.arange(10, dtype=torch.float64)[None]
    assert (lam @ cal.rotation).tolist() == [[5, 1, 3, 0, 7, 2, 4, 6, 8, 9]]  # coordinate j = listed direction j
    Q = orthonormal(16, 10)
    space = cal.space(Q)
    torch.testing.assert_close(space.factor_basis("pose"), Q[:, [5, 1, 3]])
    # an explicit residual keeps its order and takes the directions not listed
    assert parse_factor_map({"residual": [3], "eyes": [2]}, 4).directions == {"residual": [3, 0, 1], "eyes": [2]}


@pytest.mark.parametrize("bad, message", [
    ({"lip": [3, 25]}, "'lip': direction 25 is out of range 0..19"),
    ({"lip": [1], "pose": [2, 1]}, "direction 1 is listed under both 'lip' and 'pose'"),
    ({"Lip": [1]}, "factor name 'Lip'"),
    ({"lip": []}, "'lip' must be a non-empty list"),
    ({"gaze": [1.5]}, "'gaze': direction 1.5 is not an integer"),
    ({"gaze": "3"}, "'gaze' must be a non-empty list"),
    ([1, 2], "expected an object"),
])
def test_manual_map_errors_name_the_key(bad, message):
    with pytest.raises(DemoInputError, match=message.replace("(", r"\(").replace(".", r"\.")):
        parse_factor_map(bad, 20)


def test_manual_map_json_errors():
    with pytest.raises(DemoInputError, match="invalid JSON at line 1"):
        parse_factor_map('{"lip": [1,}', 20)


def test_sidecar_round_trip_and_overwrite(tmp_path):
    g = torch.Generator().manual_seed(0)
    u = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))[0]
    scores = torch.rand(8, 4, generator=g, dtype=torch.float64)
    cal = calibration_from_directions({"lip": [2, 6, 0], "pose": [1]}, 8, block_rotations={"lip": u},
                                      source="measured", scores=scores, settings={"epsilon": 0.5})
    ckpt = tmp_path / "models" / "float.pth"
    assert sidecar_path(ckpt) == tmp_path / "models" / "float.factors.json"
    assert sidecar_path(tmp_path / "x.factors.json") == tmp_path / "x.factors.json"
    path = save_factor_calibration(cal, ckpt)
    assert path.name == "float.factors.json" and not list(path.parent.glob(".*partial"))
    back = load_factor_calibration(ckpt, num_directions=8)
    assert back.layout == cal.layout and back.directions == cal.directions and back.source == "measured"
    assert torch.equal(back.rotation, cal.rotation) and torch.equal(back.scores, scores)
    assert back.settings == {"epsilon": 0.5}
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_factor_calibration(parse_factor_map({"pose": [0]}, 8), ckpt)
    assert load_factor_calibration(path).source == "measured"  # untouched
    save_factor_calibration(parse_factor_map({"pose": [0]}, 8), ckpt, overwrite=True)
    assert load_factor_calibration(path).source == "manual"
    with pytest.raises(DemoInputError, match='"num_directions" is 8 but the model has 20'):
        load_factor_calibration(ckpt, num_directions=20)


@pytest.mark.parametrize("key, value, message", [
    ("format", "other", '"format"'),
    ("format_version", 2, '"format_version" 2'),
    ("num_directions", 7, '"layout" has 8 coordinates'),
    ("rotation", [[1.0] * 8] * 8, '"rotation" must be an orthogonal'),
    ("rotation", "identity", '"rotation" must be a 8×8'),
    ("directions", {"lip": [0, 1], "residual": [2, 3, 4, 5, 6, 7]}, '"directions" must list'),
    ("scores", {"values": [[0.0] * 3] * 8}, '"scores" values'),
])
def test_corrupted_sidecars_name_the_key(tmp_path, key, value, message):
    cal = parse_factor_map({"lip": [3, 1], "pose": [0]}, 8)
    path = save_factor_calibration(cal, tmp_path / "m.safetensors")
    data = json.loads(path.read_text())
    data[key] = value
    path.write_text(json.dumps(data))
    with pytest.raises(DemoInputError, match=message):
        load_factor_calibration(path)


def test_rotation_mixing_blocks_is_rejected(tmp_path):
    cal = parse_factor_map({"lip": [0], "pose": [1]}, 2)
    path = save_factor_calibration(cal, tmp_path / "m.pth")
    data = json.loads(path.read_text())
    data["rotation"] = [[0.6, 0.8], [-0.8, 0.6]]  # orthogonal, but mixes lip and pose
    path.write_text(json.dumps(data))
    with pytest.raises(DemoInputError, match="mixes directions across blocks"):
        load_factor_calibration(path)
    with pytest.raises(DemoInputError, match="does not exist"):
        load_factor_calibration(tmp_path / "missing.pth")
