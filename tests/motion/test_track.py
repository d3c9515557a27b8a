"""MotionTrack: validation, coefficients on the carried basis, edits, and the file round trip."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from demo_core.errors import DemoInputError
from demo_core.motion.track import MOTION_FORMAT, MotionTrack

FACTORS = {"blocks": [{"name": "lip", "size": 2}, {"name": "pose", "size": 2, "axes": ["yaw"]}]}


def _basis(width: int = 8, m: int = 4) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(width, m, generator=torch.Generator().manual_seed(1)))
    return q  # (W, M), orthonormal columns


def _track(batch: int = 2, frames: int = 30, width: int = 8, **kw) -> MotionTrack:
    latents = torch.randn(batch, frames, width, generator=torch.Generator().manual_seed(0))
    return MotionTrack(latents, kw.pop("fps", 30.0), kw.pop("source", "sampled"), basis=_basis(width), **kw)


def test_properties():
    track = _track(batch=2, frames=45, width=8, fps=30)
    assert (track.batch, track.num_frames, track.dim) == (2, 45, 8)
    assert track.seconds == pytest.approx(1.5)
    assert isinstance(track.fps, float)
    assert MotionTrack(torch.zeros(1, 3, 8), 25).coefficients is None


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"latents": torch.zeros(4, 8)}, "latents"),
        ({"latents": torch.zeros(1, 4, 8, dtype=torch.int64)}, "latents"),
        ({"latents": torch.zeros(1, 0, 8)}, "latents"),
        ({"fps": 0.0}, "fps"),
        ({"fps": float("nan")}, "fps"),
        ({"fps": True}, "fps"),
        ({"basis": torch.zeros(5, 3)}, "basis"),
        ({"basis": torch.zeros(8)}, "basis"),
        ({"basis": _basis(8, 3), "factors": FACTORS}, "layout names 4"),
        ({"factors": FACTORS}, "basis has none"),
        ({"basis": _basis(8, 4), "factors": {"blocks": [{"name": "lip"}]}}, "factors"),
    ],
)
def test_invalid_inputs_name_the_argument(kwargs, needle):
    args = {"latents": torch.zeros(1, 4, 8), "fps": 25.0, **kwargs}
    with pytest.raises(DemoInputError, match=needle):
        MotionTrack(**args)


def test_coefficients_are_coordinates_on_the_basis():
    track = _track()
    assert track.coefficients.shape == (2, 30, 4)
    assert torch.allclose(track.coefficients, track.latents @ track.basis)
    inside = track.with_latents(track.coefficients @ track.basis.T)  # the part of the latents in the dictionary
    assert torch.allclose(inside.coefficients, track.coefficients, atol=1e-5)


def test_with_coefficients_edits_only_the_dictionary_part():
    track = _track()
    edited_coefficients = track.coefficients.clone()
    edited_coefficients[..., 1] *= 3.0
    edited = track.with_coefficients(edited_coefficients, source="edited")
    assert torch.allclose(edited.coefficients, edited_coefficients, atol=1e-5)
    outside = lambda t: t.latents - t.coefficients @ t.basis.T  # noqa: E731  (component off the dictionary)
    assert torch.allclose(outside(edited), outside(track), atol=1e-5)
    assert edited.source == "edited" and edited.fps == track.fps
    back = edited.with_coefficients(track.coefficients)  # the inverse edit gives back the input
    assert torch.allclose(back.latents, track.latents, atol=1e-5)
    with pytest.raises(DemoInputError, match="expected shape"):
        track.with_coefficients(edited_coefficients[..., :2])
    with pytest.raises(DemoInputError, match="no basis"):
        MotionTrack(torch.zeros(1, 2, 8), 25).with_coefficients(torch.zeros(1, 2, 4))


def test_coefficient_names():
    assert _track().coefficient_names() == ["c0", "c1", "c2", "c3"]
    assert _track(factors=FACTORS).coefficient_names() == ["lip.c0", "lip.c1", "pose.yaw", "pose.c1"]
    assert MotionTrack(torch.zeros(1, 2, 8), 25).coefficient_names() == []


def test_with_latents_keeps_the_rest():
    track = _track(factors=FACTORS, relative=True)
    edited = track.with_latents(track.latents * 2)
    assert edited.basis is track.basis and edited.factors == FACTORS and edited.relative
    assert torch.equal(edited.latents, track.latents * 2)
    assert track.with_latents(track.latents, source="x").source == "x"


def test_file_round_trip(tmp_path):
    track = _track(relative=True, source="video", factors=FACTORS)
    path = track.to_file(tmp_path / "a.motion.safetensors")
    back = MotionTrack.from_file(path)
    assert torch.equal(back.latents, track.latents) and torch.equal(back.basis, track.basis)
    assert (back.fps, back.source, back.relative, back.factors) == (30.0, "video", True, FACTORS)
    assert [p.name for p in tmp_path.iterdir()] == ["a.motion.safetensors"]  # no partial file left


def test_round_trip_without_basis_and_from_other_dtype(tmp_path):
    track = MotionTrack(torch.randn(1, 5, 4, dtype=torch.float64), 25)
    back = MotionTrack.from_file(track.to_file(tmp_path / "b.safetensors"))
    assert back.basis is None and back.factors is None and back.latents.dtype == torch.float32
    assert torch.allclose(back.latents, track.latents.float())


def test_never_overwrites_unless_asked(tmp_path):
    path = tmp_path / "m.motion.safetensors"
    _track(frames=10).to_file(path)
    with pytest.raises(FileExistsError):
        _track(frames=20).to_file(path)
    assert MotionTrack.from_file(path).num_frames == 10
    _track(frames=20).to_file(path, overwrite=True)
    assert MotionTrack.from_file(path).num_frames == 20
    assert len(list(tmp_path.iterdir())) == 1


def test_reading_other_files_fails_clearly(tmp_path):
    with pytest.raises(DemoInputError, match="does not exist"):
        MotionTrack.from_file(tmp_path / "missing.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    with pytest.raises(DemoInputError, match="not a readable safetensors"):
        MotionTrack.from_file(garbage)
    weights = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(2)}, str(weights))
    with pytest.raises(DemoInputError, match="not a motion file"):
        MotionTrack.from_file(weights)
    newer = tmp_path / "newer.safetensors"
    info = {"format": MOTION_FORMAT, "format_version": 99, "fps": 25.0, "source": "x", "relative": False}
    save_file({"latents": torch.zeros(1, 2, 3)}, str(newer), metadata={"motion": json.dumps(info)})
    with pytest.raises(DemoInputError, match="version 99"):
        MotionTrack.from_file(newer)
