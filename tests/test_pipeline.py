"""End-to-end pipeline and CLI on the FLOAT tiny fixture model (random weights, 64×64)."""

from __future__ import annotations

import math

import av
import pytest
import torch

from demo_core.cli import main as cli_main
from demo_core.errors import DemoInputError
from demo_core.pipeline import (
    GenerationSettings,
    encode_audio,
    encode_portrait,
    generate_video,
    iter_frames,
    retime_motion,
    sample_motion,
)
from tests.conftest import SHARED, TINY, require_shared


def _speech(seconds: float, rate: int = 16000, channels: int = 1) -> torch.Tensor:
    t = torch.arange(int(seconds * rate)) / rate
    wave = 0.3 * torch.sin(2 * math.pi * 180 * t) * (0.6 + 0.4 * torch.sin(2 * math.pi * 4 * t))
    return wave.expand(channels, -1).clone()


def test_steps_and_seed(float_tiny_model):
    image = torch.rand(96, 80, 3, generator=torch.Generator().manual_seed(0))
    portrait = encode_portrait(float_tiny_model, image, crop="center")
    audio = encode_audio(float_tiny_model, _speech(1.0), 16000, emotion="neutral")
    assert audio.features.shape[1] == 25
    s = GenerationSettings(steps=3, seed=5)
    m1 = sample_motion(float_tiny_model, portrait, audio, s)
    m2 = sample_motion(float_tiny_model, portrait, audio, s)
    assert torch.equal(m1, m2)
    m3 = sample_motion(float_tiny_model, portrait, audio, GenerationSettings(steps=4, seed=5))
    assert not torch.allclose(m1, m3)
    m4 = sample_motion(float_tiny_model, portrait, audio, GenerationSettings(steps=3, seed=6))
    assert not torch.allclose(m1, m4)


@pytest.mark.parametrize("fps", [10, 25, 30, 60])
def test_frame_count_at_any_fps(float_tiny_model, fps):
    image = torch.rand(1, 64, 64, 3)
    portrait = encode_portrait(float_tiny_model, image, crop="none")
    audio = encode_audio(float_tiny_model, _speech(1.3, 44100, 2), 44100, emotion="happy")
    motion = sample_motion(float_tiny_model, portrait, audio, GenerationSettings(steps=1))
    out = retime_motion(motion, audio, 25.0, fps)
    assert out.shape[1] == math.ceil(1.3 * fps)
    frames = torch.cat(list(iter_frames(float_tiny_model, portrait, out[:, :5], batch=2)), dim=1)
    assert frames.shape == (1, min(5, out.shape[1]), 3, 64, 64)


def test_generate_video_and_cli(tmp_path, float_tiny_model):
    require_shared()
    portrait = SHARED / "data" / "portraits" / "violet.png"
    speech = SHARED / "data" / "speech" / "arctic_a0009.wav"
    out = tmp_path / "talk.mp4"
    code = cli_main(["generate", "--checkpoint", str(TINY / "float_tiny.safetensors"), "--image", str(portrait),
                     "--audio", str(speech), "--out", str(out), "--fps", "30", "--steps", "2", "--no-progress"])
    assert code == 0 and out.exists()
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        n = sum(1 for _ in c.decode(v))
        assert c.streams.audio, "audio stream missing"
    with av.open(str(speech)) as c:
        secs = c.streams.audio[0].duration * c.streams.audio[0].time_base
    assert n == math.ceil(float(secs) * 30)
    # never overwrite: a second run gets a numbered name
    image = torch.rand(64, 64, 3)
    second = generate_video(float_tiny_model, image, _speech(0.5), 16000, out, GenerationSettings(steps=1))
    assert second != out and second.exists() and out.exists()
    assert not list(tmp_path.glob(".*partial*"))


def test_cli_errors_are_one_line(tmp_path, capsys):
    code = cli_main(["generate", "--checkpoint", str(tmp_path / "nope.safetensors"), "--out", str(tmp_path / "o.mp4")])
    assert code == 2
    err = capsys.readouterr().err
    assert "nope.safetensors" in err and "Traceback" not in err
    code = cli_main(["generate", "--checkpoint", str(tmp_path), "--fps", "5", "--out", str(tmp_path / "o.mp4")])
    assert code == 2 and "fps" in capsys.readouterr().err


# -- streaming memory (issue #6): segmented log-mel encoding, in-place motion, no extra copies ----------------


@pytest.fixture(scope="module")
def tiny_demo():
    from demo_core.models.demo_model import DemoModel
    from tests.models.demo_tiny import tiny_demo_config

    torch.manual_seed(0)
    return DemoModel(tiny_demo_config()).eval()


@pytest.mark.parametrize("rate, channels", [(16000, 1), (44100, 2)])
def test_encode_audio_segments_logmel_clips_like_the_whole_clip(monkeypatch, tiny_demo, rate, channels):
    """A log-mel model's audio is encoded a few frames at a time (awkward segment size, clip not a multiple
    of it) from the raw waveform with whole-clip statistics: the same features as the whole-clip encoder."""
    import demo_core.pipeline as pipeline
    from demo_core.io.media import prepare_waveform
    from demo_core.models.audio_encoder import normalize_waveform

    wave = _speech(3.37, rate, channels) + 0.01 * torch.randn(channels, int(3.37 * rate))
    whole = encode_audio(tiny_demo, wave, rate, emotion="neutral")  # 85 frames < 500: one segment
    monkeypatch.setattr(pipeline.encoding, "DEFAULT_SEGMENT_FRAMES", 7)
    audio = encode_audio(tiny_demo, wave, rate, emotion="neutral")
    mono = prepare_waveform(wave, rate)
    with torch.no_grad():
        ref = tiny_demo.audio_encoder(normalize_waveform(mono[None]), audio.features.shape[1])
    assert audio.features.shape == ref.shape == (1, 85, 16)
    torch.testing.assert_close(whole.features, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(audio.features, ref, atol=1e-5, rtol=0)
    assert torch.equal(audio.waveform, mono) and audio.num_frames(25) == 85


def test_sample_motion_equals_the_concatenated_windows(tiny_demo):
    from demo_core.pipeline import iter_motion

    portrait = encode_portrait(tiny_demo, torch.rand(64, 64, 3), crop="none")
    audio = encode_audio(tiny_demo, _speech(1.1), 16000, emotion="neutral")  # 28 frames: windows of 8, last 4
    s = GenerationSettings(steps=2, seed=3)
    motion = sample_motion(tiny_demo, portrait, audio, s)
    assert motion.shape == (1, 28, 32)
    assert torch.equal(motion, torch.cat(list(iter_motion(tiny_demo, portrait, audio, s)), dim=1))


@pytest.mark.parametrize("fps", [25, 30])
def test_generate_video_with_a_logmel_model(monkeypatch, tmp_path, tiny_demo, fps):
    """End to end with segmented audio encoding, at the native fps (no retiming copy) and at another."""
    import demo_core.pipeline as pipeline

    monkeypatch.setattr(pipeline.encoding, "DEFAULT_SEGMENT_FRAMES", 9)
    out = generate_video(tiny_demo, torch.rand(64, 64, 3), _speech(1.3), 16000, tmp_path / "talk.mp4",
                         GenerationSettings(steps=1, fps=fps, render_batch=4), crop="none")
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(c.streams.video[0])) == math.ceil(1.3 * fps)
        assert c.streams.audio


def test_prepared_audio_with_its_source_length_gives_the_same_condition(tiny_demo):
    """The CLI's path: 16 kHz mono from load_audio_mono plus the original length = the original audio."""
    from demo_core.io.media import prepare_waveform

    rate, n = 44100, 44100 + 1234  # 1.028 s: its 16 kHz length rounds up
    wave = _speech(n / rate, rate, 2)
    original = encode_audio(tiny_demo, wave, rate, emotion="neutral")
    mono = prepare_waveform(wave, rate)
    prepared = encode_audio(tiny_demo, mono, 16000, emotion="neutral", source=(wave.shape[1], rate))
    assert torch.equal(prepared.features, original.features) and torch.equal(prepared.waveform, original.waveform)
    assert (prepared.source_samples, prepared.source_rate) == (original.source_samples, original.source_rate)
    assert prepared.num_frames(30) == original.num_frames(30) == math.ceil(30 * n / rate)
    for bad in ((0, 16000), (100,), (1.5, 16000), "x"):
        with pytest.raises(DemoInputError, match="source"):
            encode_audio(tiny_demo, mono, 16000, source=bad)


def test_a_bfloat16_model_renders_and_float16_is_refused_on_the_cpu(tmp_path):
    """Half-precision weights (the loader node's and the CLI's dtype choice) render under autocast: layers in
    bfloat16, flow grids and warps in float32, the feature painter included; the frames stay close to the
    float32 model's.  float16 has no CPU convolutions: refused when loading, before any work is done."""
    from demo_core.cli import DEFAULT_CHECKPOINT
    from demo_core.models.loader import load_model

    full, _ = load_model(DEFAULT_CHECKPOINT)
    half, _ = load_model(DEFAULT_CHECKPOINT, dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16
    image = torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(0))
    p_full, p_half = (encode_portrait(m, image, crop="none") for m in (full, half))
    audio = encode_audio(full, _speech(0.6), 16000, emotion="neutral")
    motion = sample_motion(full, p_full, audio, GenerationSettings(steps=2, seed=1))  # float32
    ref = torch.cat(list(iter_frames(full, p_full, motion, batch=8)), dim=1)
    for m in (motion, motion.to(torch.bfloat16)):  # float32 motion (another model's) or the half model's own
        out = torch.cat(list(iter_frames(half, p_half, m, batch=8)), dim=1)
        assert out.dtype == m.dtype and out.shape == ref.shape
        assert float((out.float() - ref).abs().mean()) < 0.03
    out = generate_video(half, image, _speech(0.6), 16000, tmp_path / "half.mp4", GenerationSettings(steps=2))
    assert out.exists()
    with pytest.raises(DemoInputError, match="float16 needs a GPU"):
        load_model(DEFAULT_CHECKPOINT, dtype=torch.float16)


def test_the_portraits_render_knots_make_the_embedded_model_turn_the_asked_degrees():
    """Measured on the bundled portrait, the pose knots make a 15° / −15° yaw set render (read back by the
    model's encoder) within 1° of it; the encoder's calibration alone under-renders by more than 1.5°."""
    from demo_core.cli import DEFAULT_CHECKPOINT, DEFAULT_PORTRAIT
    from demo_core.io.media import load_image
    from demo_core.models.loader import load_model
    from demo_core.motion.edits import set_axis
    from demo_core.motion.factor_space import FactorSpace
    from demo_core.motion.render_axes import without_render_knots
    from demo_core.pipeline import model_factor_space, portrait_factor_space

    model, _ = load_model(DEFAULT_CHECKPOINT)
    portrait = encode_portrait(model, load_image(DEFAULT_PORTRAIT))
    base = model_factor_space(model)
    plain = FactorSpace(base.dictionary, without_render_knots(base.layout))
    measured = portrait_factor_space(model, portrait, plain)
    knots = measured.layout.block("pose").axis_render
    assert len(knots) == 6 and all(len(k) >= 5 for k in knots[:3]) and knots[3:] == ((), (), ())
    block = model.cfg.factors.block("pose")
    j = model.cfg.factors.slices()["pose"].start
    motion = portrait.source_motion[:, None].expand(1, 2, -1)
    errors = {}
    for name, space in (("encoder", plain), ("portrait", measured)):
        asked = torch.tensor([[15.0, -15.0]])
        frames = torch.cat(list(iter_frames(model, portrait, set_axis(motion, space, "pose", "yaw", asked))), 1)[0]
        read = block.axis_value("yaw", model.motion_autoencoder.encode(frames.clamp(-1, 1))[1][:, j])
        errors[name] = float((read - asked[0]).abs().max())
    assert errors["portrait"] < 1.0 < 1.5 < errors["encoder"], errors
