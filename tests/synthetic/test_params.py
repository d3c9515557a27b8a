"""FrameParams container and the factor grouping."""

from __future__ import annotations

import pytest
import torch

from demo_core.errors import DemoInputError
from demo_core.synthetic.params import FACTOR_NAMES, NEUTRAL, PARAM_NAMES, PARAM_RANGES, PARAM_UNITS, FrameParams


def test_factor_groups_partition_the_names():
    grouped = [n for names in FACTOR_NAMES.values() for n in names]
    assert sorted(grouped) == sorted(PARAM_NAMES) and len(grouped) == len(set(grouped)) == 12
    assert FACTOR_NAMES["lip"] == ("mouth_open", "mouth_width", "mouth_round")
    assert FACTOR_NAMES["pose"] == ("yaw", "pitch", "roll", "tx", "ty", "scale")
    assert FACTOR_NAMES["gaze"] == ("gaze_x", "gaze_y") and FACTOR_NAMES["blink"] == ("blink",)
    assert set(PARAM_UNITS) == set(PARAM_RANGES) == set(NEUTRAL) == set(PARAM_NAMES)


def test_roundtrips_and_broadcast():
    p = FrameParams.from_dict({"yaw": [1.0, 2.0, 3.0], "blink": 0.5})
    assert len(p) == 3 and torch.equal(p.blink, torch.full((3,), 0.5)) and torch.equal(p.scale, torch.ones(3))
    assert torch.equal(FrameParams.from_tensor(p.as_tensor()).as_tensor(), p.as_tensor())
    assert len(p[1:]) == 2 and len(p[0]) == 1
    assert len(FrameParams.cat([p, p])) == 6
    assert float(p.replace(yaw=100.0).clamped().yaw.max()) == PARAM_RANGES["yaw"][1]


def test_errors():
    with pytest.raises(DemoInputError):
        FrameParams.from_dict({"jaw": 1.0})
    with pytest.raises(DemoInputError):
        FrameParams.from_dict({"yaw": [1.0, 2.0], "pitch": [1.0, 2.0, 3.0]})
