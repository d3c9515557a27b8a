"""Renderer: shapes, range, determinism, smoothness, and the per-factor pixel supports."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from demo_core.synthetic.head import HeadRenderer, render
from demo_core.synthetic.identity import Identity, sample_identity
from demo_core.synthetic.params import PARAM_NAMES, FrameParams

S = 64


def _frames(identity, size=S, **values):
    return render(FrameParams.from_dict(values), identity, size)


@pytest.mark.parametrize("size", [32, 64, 128])
def test_shape_range_dtype(size):
    p = FrameParams.from_dict({"yaw": [-25.0, 0.0, 25.0], "mouth_open": [0.0, 1.0, 0.5], "blink": [0, 0.5, 1]})
    img = render(p, sample_identity(3), size)
    assert img.shape == (3, 3, size, size) and img.dtype == torch.float32
    assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0
    assert torch.isfinite(img).all()


def test_deterministic_and_identity_from_generator():
    a = sample_identity(11)
    b = sample_identity(torch.Generator().manual_seed(11))
    assert a.to_dict() | {"seed": None} == b.to_dict() | {"seed": None}
    assert Identity.from_dict(a.to_dict()) == a
    p = FrameParams.from_dict({"yaw": torch.linspace(-20, 20, 5), "gaze_x": 0.5})
    assert torch.equal(render(p, a, S), render(p, sample_identity(11), S))


def test_chunking_does_not_change_pixels():
    p = FrameParams.from_dict({"yaw": torch.linspace(-20, 20, 7), "mouth_open": torch.linspace(0, 1, 7)})
    ident = sample_identity(4)
    whole = HeadRenderer(ident, S).render(p)
    chunked = HeadRenderer(ident, S, chunk_pixels=2 * S * S).render(p)
    assert torch.allclose(whole, chunked, atol=1e-6)


def _support(ident, base: dict, **change) -> torch.Tensor:
    """Pixels (H,W) that differ when ``change`` is applied on top of ``base``."""
    a = _frames(ident, **base)[0]
    b = _frames(ident, **(base | change))[0]
    return (a - b).abs().amax(0) > 1e-6


POSES = [{}, {"yaw": 18.0, "pitch": -8.0}, {"yaw": -22.0, "roll": 9.0, "tx": 0.08, "scale": 1.1},
         {"pitch": 12.0, "ty": -0.1, "scale": 0.9}]


@pytest.mark.parametrize("pose_i", range(len(POSES)))
def test_lip_and_eye_supports_are_disjoint(pose_i):
    ident = sample_identity(100 + pose_i)
    base = POSES[pose_i] | {"mouth_open": 0.2, "gaze_x": 0.1}
    lip = torch.zeros(S, S, dtype=torch.bool)
    for change in ({"mouth_open": 0.9}, {"mouth_width": 1.0}, {"mouth_width": -1.0}, {"mouth_round": 1.0}):
        lip |= _support(ident, base, **change)
    eye = _support(ident, base, blink=1.0) | _support(ident, base, gaze_x=-1.0, gaze_y=0.8)
    assert lip.sum() > 15 and eye.sum() > 10
    assert not (lip & eye).any(), "a lip parameter and an eye parameter change the same pixel"
    lip_rows = lip.any(1).nonzero().flatten()
    eye_rows = eye.any(1).nonzero().flatten()
    if not POSES[pose_i]:  # frontal: eyes strictly above the mouth
        assert int(eye_rows.max()) < int(lip_rows.min())


def test_factor_regions_at_neutral_pose():
    ident = sample_identity(7)
    mouth = _support(ident, {}, mouth_open=1.0)
    blink = _support(ident, {}, blink=1.0)
    gaze = _support(ident, {}, gaze_x=1.0)
    rows = lambda m: m.any(1).nonzero().flatten()  # noqa: E731
    # Eyes sit a little above the image centre, the mouth below it (see head.py geometry).
    assert rows(mouth).min() > S * 0.55 and rows(mouth).max() < S * 0.8
    assert rows(blink).min() > S * 0.3 and rows(blink).max() < S * 0.5
    assert (gaze & ~blink).sum() == 0, "gaze changes pixels outside the eye aperture"
    # Pose moves the whole head: eyes, mouth, hair and outline all change.
    yaw = _support(ident, {}, yaw=15.0)
    assert (yaw & mouth).sum() > 0.5 * mouth.sum() and (yaw & blink).sum() > 0.5 * blink.sum()
    assert yaw[: int(S * 0.25)].any(), "yaw must move the top of the head / hair"
    tx = _support(ident, {}, tx=0.1)
    assert tx[int(S * 0.9):].any(), "translation must move the body too"
    neck_rows = _support(ident, {}, yaw=15.0)[int(S * 0.93):]
    assert not neck_rows.any(), "rotation must not move the shoulders"


@pytest.mark.parametrize("name", PARAM_NAMES)
def test_small_changes_change_pixels_smoothly(name):
    ident = sample_identity(21)
    base = {"yaw": 5.0, "pitch": 3.0, "mouth_open": 0.4, "mouth_width": 0.2, "mouth_round": 0.3,
            "gaze_x": 0.2, "gaze_y": -0.1, "blink": 0.3, "scale": 1.0}
    step = {"yaw": 0.25, "pitch": 0.25, "roll": 0.25, "tx": 0.003, "ty": 0.003, "scale": 0.003}.get(name, 0.01)
    imgs = render(FrameParams.from_dict({**base, name: base.get(name, 0.0) + step * torch.arange(3.0)}), ident, S)
    d1 = (imgs[1] - imgs[0]).abs()
    d2 = (imgs[2] - imgs[0]).abs()
    assert d1.max() > 0, f"{name} has no visible effect"
    assert d1.max() < 0.25, f"{name}: a small step jumps a pixel by {float(d1.max()):.3f}"
    assert 1.3 < float(d2.sum() / d1.sum()) < 2.7, f"{name}: pixel change not ~linear in the step"


def test_identities_differ_visibly():
    p = FrameParams.neutral(1)
    faces = torch.stack([render(p, sample_identity(s), S)[0] for s in range(8)])
    c = S // 4
    crop = faces[:, :, c:-c, c:-c]
    for i in range(8):
        for j in range(i):
            assert (faces[i] - faces[j]).abs().mean() > 0.03
            assert (crop[i] - crop[j]).abs().mean() > 0.02


@settings(max_examples=12, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000), yaw=st.floats(-25, 25), pitch=st.floats(-15, 15), roll=st.floats(-12, 12),
       tx=st.floats(-0.12, 0.12), ty=st.floats(-0.1, 0.1), scale=st.floats(0.92, 1.08),
       mouth=st.tuples(st.floats(0, 1), st.floats(-1, 1), st.floats(0, 1)),
       eyes=st.tuples(st.floats(-1, 1), st.floats(-1, 1), st.floats(0, 1)))
def test_random_poses_keep_lip_and_eye_pixels_apart(seed, yaw, pitch, roll, tx, ty, scale, mouth, eyes):
    """Within the motion ranges, no pixel depends on both a lip factor and an eye factor."""
    ident = sample_identity(seed)
    base = {"yaw": yaw, "pitch": pitch, "roll": roll, "tx": tx, "ty": ty, "scale": scale}
    p = FrameParams.from_dict({
        **base,
        "mouth_open": [mouth[0], 1.0 - mouth[0], mouth[0], mouth[0]],
        "mouth_width": [mouth[1], -mouth[1], mouth[1], mouth[1]],
        "mouth_round": [mouth[2], 1.0 - mouth[2], mouth[2], mouth[2]],
        "gaze_x": [eyes[0], eyes[0], -eyes[0], eyes[0]], "gaze_y": [eyes[1], eyes[1], -eyes[1], eyes[1]],
        "blink": [eyes[2], eyes[2], eyes[2], 1.0 - eyes[2]],
    })
    img = render(p, ident, S)
    assert float(img.min()) >= 0 and float(img.max()) <= 1
    lip = (img[1] - img[0]).abs().amax(0) > 1e-6
    eye = ((img[2] - img[0]).abs().amax(0) > 1e-6) | ((img[3] - img[0]).abs().amax(0) > 1e-6)
    assert not (lip & eye).any()
