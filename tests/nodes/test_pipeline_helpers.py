"""Engine helpers added to demo_core.pipeline for the nodes: audio fitting, paste-back splitting, video paths."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from demo_core.errors import DemoInputError
from demo_core.face_crop import CropBox
from demo_core.motion.track import MotionTrack
from demo_core.pipeline import encode_portrait, fit_audio, paste_frames, write_track_video
from tests.nodes.conftest import portrait_image


@pytest.mark.parametrize("frames, fps, rate", [(75, 25, 16000), (40, 29.97, 44100), (1, 60, 22050), (0, 25, 8000)])
def test_fit_audio_length_is_exact(frames, fps, rate):
    expected = round(Fraction(frames) / Fraction(str(fps)) * rate)
    wave = torch.randn(1, 2, 1000)
    out = fit_audio(wave, rate, frames, fps)
    assert out.shape == (1, 2, expected)
    kept = min(1000, expected)
    assert torch.equal(out[..., :kept], wave[..., :kept]) and out[..., kept:].abs().sum() == 0


def test_paste_frames_splits_portrait_major():
    box = CropBox(8.0, 0.0, 16.0, 32, 16)  # the right half of a 32 × 16 image
    originals = torch.zeros(2, 16, 32, 3)
    rendered = torch.cat([torch.full((3, 8, 8, 3), 0.25), torch.full((3, 8, 8, 3), 0.75)])  # 2 portraits × 3 frames
    frames, masks = paste_frames(rendered, originals, [box, box], feather=0.0)
    assert frames.shape == (6, 16, 32, 3) and masks.shape == (2, 16, 32)
    assert torch.allclose(frames[:3, :, 8:24], torch.tensor(0.25), atol=1e-6)
    assert torch.allclose(frames[3:, :, 8:24], torch.tensor(0.75), atol=1e-6)
    assert frames[:, :, :8].abs().sum() == 0 and frames[:, :, 24:].abs().sum() == 0
    with pytest.raises(DemoInputError, match="cannot be split evenly among 4"):
        paste_frames(rendered, originals, [box] * 4)
    with pytest.raises(DemoInputError, match="expected 1 or 2 images"):
        paste_frames(rendered, torch.zeros(3, 16, 32, 3), [box, box])


def test_write_track_video_needs_one_path_per_portrait(demo_model, tmp_path):
    portrait = encode_portrait(demo_model, portrait_image(64, 64, batch=2), crop="none")
    track = MotionTrack(torch.zeros(1, 3, 512), 25.0, relative=True)
    with pytest.raises(DemoInputError, match="one output path per portrait"):
        write_track_video(demo_model, portrait, track, [tmp_path / "a.mp4"])
    paths = write_track_video(demo_model, portrait, track, [tmp_path / "a.mp4", tmp_path / "b.mp4"],
                              audio=torch.zeros(1, 6, 16000), audio_rate=16000)
    assert [p.name for p in paths] == ["a.mp4", "b.mp4"] and all(p.stat().st_size > 0 for p in paths)
    assert math.isclose(track.seconds, 0.12)
