"""Feature-region maps: they hold every pixel a mouth or eye change moves, follow the head, and stay small."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from demo_core.synthetic.head import render
from demo_core.synthetic.identity import sample_identity
from demo_core.synthetic.params import FrameParams
from demo_core.synthetic.regions import feature_regions, main, regions_path, write_regions

S = 64


def _params(**values):
    base = {"yaw": [0.0, 18.0, -12.0], "pitch": [0.0, -6.0, 8.0], "roll": [0.0, 5.0, -4.0],
            "tx": [0.0, 0.1, -0.08], "mouth_open": [0.0, 0.4, 0.1], "blink": [0.0, 0.0, 1.0]}
    base.update(values)
    return FrameParams.from_dict(base)


@pytest.mark.parametrize("seed", [1, 4])
def test_regions_hold_every_pixel_that_mouth_and_eye_changes_move(seed):
    idt = sample_identity(seed)
    p = _params()
    region = feature_regions(p, idt, S)
    assert region.shape == (3, S, S) and region.dtype == torch.bool
    base = render(p, idt, S)
    for change in ({"mouth_open": [0.7, 0.0, 0.9]}, {"mouth_width": 0.6, "mouth_round": 0.5},
                   {"blink": [0.6, 1.0, 0.2]}, {"gaze_x": -0.7, "gaze_y": 0.5}):
        moved = (render(p.replace(**change), idt, S) - base).abs().amax(dim=1) > 0.03
        assert bool(moved.any())
        assert not bool((moved & ~region).any()), change
    frac = region.float().mean(dim=(1, 2))
    assert bool((frac > 0.01).all()) and bool((frac < 0.15).all())  # mouth + eyes: a few % of the image
    corners = torch.zeros(S, S, dtype=torch.bool)
    corners[:6, :6] = corners[:6, -6:] = corners[-6:, :6] = corners[-6:, -6:] = True
    assert not bool((region & corners).any())


@pytest.mark.parametrize("seed", [1, 4])
def test_region_parts_separate_the_mouth_from_the_eyes(seed):
    idt = sample_identity(seed)
    p = _params()
    parts = feature_regions(p, idt, S, parts=True)
    assert parts.shape == (3, 2, S, S) and parts.dtype == torch.bool
    assert torch.equal(parts.any(dim=1), feature_regions(p, idt, S))  # their union is the one-map form
    assert not bool((parts[:, 0] & parts[:, 1]).any())  # mouth and eyes apart at 64²
    rows = torch.arange(S, dtype=torch.float32)[:, None]
    mouth_y, eyes_y = ((m.float() * rows).sum() / m.float().sum() for m in (parts[0, 0], parts[0, 1]))
    assert float(mouth_y) > float(eyes_y) + 8  # the mouth map lies below the eye map (image y down)
    base = render(p, idt, S)
    for change, k in (({"mouth_open": [0.7, 0.0, 0.9], "mouth_width": 0.6}, 0), ({"blink": [0.6, 1.0, 0.2]}, 1),
                      ({"gaze_x": -0.7, "gaze_y": 0.5}, 1)):
        moved = (render(p.replace(**change), idt, S) - base).abs().amax(dim=1) > 0.03
        assert bool(moved.any()) and not bool((moved & ~parts[:, k]).any()), change


def test_regions_follow_the_head():
    idt = sample_identity(2)
    left, right = (feature_regions(FrameParams.from_dict({"tx": tx}), idt, S)[0] for tx in (-0.25, 0.25))
    cols = torch.arange(S, dtype=torch.float32)
    centre = [float((r.float().sum(0) * cols).sum() / r.float().sum()) for r in (left, right)]
    assert centre[1] - centre[0] == pytest.approx(0.5 * S / 2, abs=1.5)  # tx is in image half-widths


def test_write_regions_from_a_labels_file(tmp_path):
    idt = sample_identity(5)
    p = _params()
    labels = {k: v.numpy() for k, v in p.to_dict().items()}
    stem = tmp_path / "clip_00000"
    np.savez(f"{stem}.labels.npz", identity_json=np.array(json.dumps(idt.to_dict())), size=np.int32(32), **labels)
    out = write_regions(f"{stem}.labels.npz")
    assert out == regions_path(stem) and out.is_file()
    saved = np.load(out)
    assert saved.dtype == np.uint8 and saved.shape == (3, 2, 32, 32) and set(np.unique(saved)) <= {0, 255}
    assert np.array_equal(saved > 0, feature_regions(p, idt, 32, parts=True).numpy())  # mouth, eyes
    saved[:] = 7
    np.save(out, saved)
    assert write_regions(f"{stem}.labels.npz") is None and np.load(out).max() == 7  # never recomputed silently
    assert main([str(tmp_path), "--overwrite"]) == 0 and set(np.unique(np.load(out))) <= {0, 255}
