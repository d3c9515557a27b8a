"""Reliability: every awkward input gets a correct result or one clear error, and no work is ever lost.

One test per case of the reliability issue (images, audio, checkpoints, parameters at their limits, cancel,
long clips, output files), on the FLOAT tiny fixture model and a tiny DEMO model, so all of it runs in
seconds on a CPU.  Every error is checked for the input it names and the expectation it states.  Files are
written only under pytest's ``tmp_path``.  The node-level cases and the property test over lengths, rates,
frame rates and image sizes are in ``tests/nodes/test_reliability_nodes.py``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from scipy.io import wavfile

from demo_core import pipeline
from demo_core.cli import main as cli_main
from demo_core.errors import CheckpointError, DemoInputError
from demo_core.face_crop import CropBox
from demo_core.models.demo_model import DemoModel
from demo_core.models.loader import load_model
from demo_core.pipeline import (
    FactorEdits,
    GenerationSettings,
    edit_motion_track,
    encode_audio,
    encode_portrait,
    fit_audio,
    generate_video,
    make_generator,
    model_factor_space,
    motion_from_frames,
    paste_frames,
    render_track,
    sample_motion,
    sample_motion_track,
    sample_motion_track_conditioned,
)
from tests.conftest import ROOT, TINY, require_shared
from tests.models.demo_tiny import tiny_demo_config


def tiny_demo_model() -> DemoModel:
    """A seeded tiny DEMO model (64×64, log-mel audio encoder, named factors)."""
    torch.manual_seed(0)
    return DemoModel(tiny_demo_config()).eval()


@pytest.fixture(scope="module")
def demo_model():
    return tiny_demo_model()


@pytest.fixture(scope="module")
def tiny_weights():
    from safetensors.torch import load_file

    return load_file(str(require_shared(TINY / "float_tiny.safetensors")))


def speech(seconds: float, rate: int = 16000, channels: int = 1) -> torch.Tensor:
    """(C, n) voiced, amplitude-modulated tone, the same in every channel."""
    t = torch.arange(round(seconds * rate)) / rate
    wave = 0.3 * torch.sin(2 * math.pi * 180 * t) * (0.6 + 0.4 * torch.sin(2 * math.pi * 4 * t))
    return wave.expand(channels, -1).clone()


def portrait(height: int = 96, width: int = 80, batch: int = 1, channels: int = 3, seed: int = 0) -> torch.Tensor:
    """(B, H, W, C) smooth random colours in 0..1."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, channels, 6, 6, generator=g)
    image = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    return image.permute(0, 2, 3, 1).contiguous()  # (B, H, W, C)


def files_under(folder: Path) -> list[Path]:
    """Every file below ``folder``, hidden ones included."""
    return sorted(p for p in folder.rglob("*") if p.is_file())


def decoded_frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])])


# ---------------------------------------------------------------------------------------------------- images


def test_rgba_image_alpha_is_composited_over_black(float_tiny_model):
    rgb = portrait(64, 64)
    alpha = torch.ones(1, 64, 64, 1)
    alpha[:, :, 32:] = 0.0  # right half transparent
    rgba = torch.cat([rgb, alpha], dim=-1)  # (1, 64, 64, 4)
    composited = rgb.clone()
    composited[:, :, 32:] = 0.0
    a = encode_portrait(float_tiny_model, rgba, crop="none")
    b = encode_portrait(float_tiny_model, composited, crop="none")
    assert torch.equal(a.image, b.image) and torch.equal(a.source_motion, b.source_motion)


def test_grayscale_image_is_used_as_rgb(float_tiny_model):
    grey = portrait(70, 50, channels=1)  # (1, 70, 50, 1)
    a = encode_portrait(float_tiny_model, grey, crop="center")
    b = encode_portrait(float_tiny_model, grey.expand(-1, -1, -1, 3), crop="center")
    assert torch.equal(a.image, b.image)


def test_tiny_image_is_upscaled_with_a_note(float_tiny_model, caplog):
    caplog.set_level(logging.INFO, logger="demo_core.pipeline")
    encoded = encode_portrait(float_tiny_model, portrait(20, 24), crop="center")
    assert encoded.image.shape == (1, 3, 64, 64) and bool(torch.isfinite(encoded.h_source).all())
    assert any("20 px across" in r.getMessage() and "upscaled" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("height, width", [(15, 40), (40, 15), (1, 1)])
def test_image_below_16_pixels_is_refused(float_tiny_model, height, width):
    with pytest.raises(DemoInputError, match=rf"^image: {width}×{height} pixels is too small for a portrait; "
                                             r"expected at least 16×16"):
        encode_portrait(float_tiny_model, portrait(max(height, 2), max(width, 2))[:, :height, :width], crop="center")


def _memory(key: str) -> int:
    """A memory figure of this process from /proc/self/status (``VmRSS``, ``VmHWM``, ``RssAnon``), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _peak_growth(run) -> tuple[object, int | None]:
    """``(run(), growth)``: how far the resident set rose above its starting size while ``run`` ran.

    The kernel's peak (``VmHWM``) is reset to the current size first (``/proc/self/clear_refs``), so the peaks
    of imports and earlier work do not count; None when the reset is not allowed here.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return run(), None
    start = _memory("VmRSS")
    result = run()
    return result, _memory("VmHWM") - start


def _run_child(script: str, tmp_path: Path) -> dict:
    """Run ``script`` in a fresh Python (single-threaded) and return the JSON it prints last."""
    if not Path("/proc/self/status").exists():
        pytest.skip("needs Linux /proc to read the resident set size")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r})\n" + script],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result.get("growth", 0) is None:
        pytest.skip("this system does not allow resetting the peak resident set size (/proc/self/clear_refs)")
    return result


def _huge_image_child() -> None:
    """Child process of the 4K test: encode a 3840×2160 portrait, print the memory it took as JSON."""
    torch.set_num_threads(1)
    model = tiny_demo_model()
    encode_portrait(model, portrait(120, 100), crop="auto")  # warm up: OpenCV's detector, the allocator
    image = torch.rand(1, 2160, 3840, 3)
    encoded, growth = _peak_growth(lambda: encode_portrait(model, image, crop="auto"))
    print(json.dumps({"growth": growth, "input": image.numel() * 4, "shape": list(encoded.image.shape),
                      "box": encoded.crops[0].to_dict()}))


def test_huge_4k_image_is_downscaled_in_bounded_memory(tmp_path):
    """A 3840×2160 portrait costs little more than itself in memory (no full-size copies), in a fresh process."""
    result = _run_child("from tests.test_reliability import _huge_image_child; _huge_image_child()", tmp_path)
    assert result["shape"] == [1, 3, 64, 64]
    assert result["box"]["image_width"] == 3840 and result["box"]["size"] == 2160.0  # no face: centre crop
    # The square crop (2160² × 3 floats, and its resize) is the only large buffer: well under 1.5× the input
    # (over 3× before detection and the range check stopped copying the whole image).
    assert result["growth"] < 1.5 * result["input"], result


@pytest.mark.parametrize("height, width", [(97, 131), (131, 97), (64, 201), (33, 17)])
def test_non_square_and_odd_images_give_even_frames(float_tiny_model, height, width):
    image = portrait(height, width)
    for crop in ("auto", "center", "none"):
        encoded = encode_portrait(float_tiny_model, image, crop=crop)
        assert encoded.image.shape == (1, 3, 64, 64)
    encoded = encode_portrait(float_tiny_model, image, crop="center")
    track = sample_motion_track(float_tiny_model, encoded, encode_audio(float_tiny_model, speech(0.2), 16000, emotion="neutral"),
                                GenerationSettings(steps=1))
    frames = render_track(float_tiny_model, encoded, track, batch=4)
    pasted, masks = paste_frames(frames, image, encoded.crops)
    assert pasted.shape == (track.num_frames, height - height % 2, width - width % 2, 3)
    assert masks.shape == (1, height - height % 2, width - width % 2)


def test_batch_of_several_portraits(float_tiny_model):
    images = torch.cat([portrait(90, 70, seed=s) for s in range(3)])  # (3, 90, 70, 3)
    encoded = encode_portrait(float_tiny_model, images, crop="center")
    assert encoded.batch == 3 and len(encoded.crops) == 3
    audio = encode_audio(float_tiny_model, speech(0.3), 16000, emotion="neutral")
    track = sample_motion_track(float_tiny_model, encoded, audio, GenerationSettings(steps=1))
    assert track.latents.shape[:2] == (3, math.ceil(0.3 * 25))
    frames = render_track(float_tiny_model, encoded, track, batch=3)  # (3·T, 64, 64, 3), portrait-major
    t = track.num_frames
    assert frames.shape == (3 * t, 64, 64, 3)
    assert not torch.equal(frames[:t], frames[t:2 * t]) and not torch.equal(frames[t:2 * t], frames[2 * t:])


def test_image_without_a_visible_face_uses_the_centre_crop(float_tiny_model):
    flat = torch.full((1, 90, 120, 3), 0.5)
    encoded = encode_portrait(float_tiny_model, flat, crop="auto")
    assert encoded.crops == [CropBox(15.0, 0.0, 90.0, 120, 90)]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_or_inf_image_is_refused(float_tiny_model, value):
    image = portrait(64, 64)
    image[0, 10, 10, 1] = value
    with pytest.raises(DemoInputError, match=r"^image: contains NaN or infinite values; expected finite values"):
        encode_portrait(float_tiny_model, image)


@pytest.mark.parametrize("image, pattern", [
    (torch.rand(1, 64, 64, 3) * 255, r"^image: expected values in 0\.\.1 .* got values from"),
    ((torch.rand(64, 64, 3) * 255).to(torch.uint8), r"^image: expected float values in 0\.\.1, got dtype torch\.uint8"),
    (torch.rand(1, 64, 64, 5), r"^image: expected shape \(B, H, W, C\) .* C = 3 \(RGB\), 4 \(RGBA\) or 1"),
    (torch.rand(0, 64, 64, 3), r"^image: the image batch is empty .* expected at least one image"),
    ("portrait.png", r"^image: expected a tensor \(B, H, W, 3\)"),
])
def test_image_of_the_wrong_kind_is_refused(float_tiny_model, image, pattern):
    with pytest.raises(DemoInputError, match=pattern):
        encode_portrait(float_tiny_model, image)


def test_slight_overshoot_is_clipped_not_refused(float_tiny_model):
    image = portrait(64, 64)
    over = image * 1.04 - 0.02  # what a bicubic resize upstream produces
    a = encode_portrait(float_tiny_model, over, crop="none")
    b = encode_portrait(float_tiny_model, over.clamp(0, 1), crop="none")
    assert torch.equal(a.image, b.image)


# ----------------------------------------------------------------------------------------------------- audio


@pytest.mark.parametrize("waveform", [torch.zeros(0), torch.zeros(2, 0), torch.zeros(1, 1, 0)])
def test_empty_audio_is_refused(float_tiny_model, waveform):
    with pytest.raises(DemoInputError, match=r"^audio: the waveform is empty .*expected audio samples"):
        encode_audio(float_tiny_model, waveform, 16000)


@pytest.mark.parametrize("samples, rate", [(1, 16000), (300, 16000), (639, 16000), (150, 8000), (1700, 44100)])
def test_audio_shorter_than_one_frame_is_refused(float_tiny_model, samples, rate):
    ms = 1000 * math.ceil(samples * 16000 / rate) / 16000
    with pytest.raises(DemoInputError, match=rf"^audio: the clip lasts {ms:.1f} ms, shorter than one video frame "
                                             r"\(40 ms at 25 fps\); expected at least 40 ms of speech"):
        encode_audio(float_tiny_model, torch.full((samples,), 0.1), rate)


def test_audio_of_exactly_one_frame_gives_one_frame(float_tiny_model):
    audio = encode_audio(float_tiny_model, speech(0.04), 16000)  # 640 samples
    assert audio.features.shape[1] == 1 and audio.num_frames(25) == 1 and audio.num_frames(60) == 3


def test_silent_audio_gives_finite_idle_motion_without_warnings(float_tiny_model):
    encoded = encode_portrait(float_tiny_model, portrait(64, 64), crop="none")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        audio = encode_audio(float_tiny_model, torch.zeros(1, 16000), 16000, emotion="auto")
        track = sample_motion_track(float_tiny_model, encoded, audio, GenerationSettings(steps=2))
        frames = render_track(float_tiny_model, encoded, track, batch=8)
    assert bool(torch.isfinite(audio.features).all()) and bool(torch.isfinite(audio.emotion).all())
    assert track.num_frames == 25 and bool(torch.isfinite(track.latents).all())
    assert bool(torch.isfinite(frames).all())


@pytest.mark.parametrize("gain", [4.0, 40.0])
def test_clipped_audio_is_accepted(float_tiny_model, gain):
    clipped = (speech(0.5) * gain).clamp(-1.0, 1.0)  # hard clipping at full scale
    audio = encode_audio(float_tiny_model, clipped, 16000)
    assert audio.features.shape[1] == math.ceil(0.5 * 25) and bool(torch.isfinite(audio.features).all())
    louder = encode_audio(float_tiny_model, speech(0.5) * gain, 16000)  # beyond ±1 (a gain node upstream)
    assert bool(torch.isfinite(louder.features).all())


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_or_inf_audio_is_refused(float_tiny_model, value):
    wave = speech(0.5)
    wave[0, 100] = value
    with pytest.raises(DemoInputError, match=r"^audio: the waveform contains NaN or infinite values; expected finite"):
        encode_audio(float_tiny_model, wave, 16000)


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
def test_sample_rates_are_resampled_to_the_same_frames(float_tiny_model, rate):
    audio = encode_audio(float_tiny_model, speech(0.7, rate), rate, emotion="neutral")
    assert audio.features.shape[1] == math.ceil(0.7 * 25)
    assert audio.num_samples == math.ceil(round(0.7 * rate) * 16000 / rate)
    assert audio.num_frames(30) == math.ceil(0.7 * 30)


@pytest.mark.parametrize("channels", [2, 6])
def test_stereo_and_5_1_audio_is_mixed_to_mono(float_tiny_model, channels):
    mono = encode_audio(float_tiny_model, speech(0.5, 48000), 48000, emotion="neutral")
    multi = encode_audio(float_tiny_model, speech(0.5, 48000, channels)[None], 48000, emotion="neutral")  # (1, C, n)
    assert torch.allclose(multi.features, mono.features, atol=1e-5)


def test_audio_batch_of_several_clips_is_refused_by_the_engine(float_tiny_model):
    with pytest.raises(DemoInputError, match=r"^audio: expected one clip \(batch size 1\)"):
        encode_audio(float_tiny_model, torch.zeros(2, 1, 16000), 16000)


def _streaming_child(seconds: float, out_dir: str) -> None:
    """Child process of the long-clip test: ``generate_video`` on ``seconds`` of speech, memory as JSON on stdout.

    The tiny DEMO model runs for real (audio encoder, flow sampling with one step, retiming, the chunk loop,
    h264/AAC encoding); only the decoder network inside ``iter_decode`` is a cheap stand-in, so 6000 frames do
    not cost 6000 decoder passes.  Each chunk handed on by ``iter_frames`` is tracked with a weak reference,
    and the process's own (anonymous) memory is read after every chunk.
    """
    import weakref

    torch.set_num_threads(1)
    model = tiny_demo_model()
    size = model.cfg.image_size

    def stand_in_decoder(latent, feats):  # (N, W) → (N, 3, S, S), a fresh tensor per chunk like the real one
        return torch.tanh(latent[:, :3, None, None]).expand(-1, -1, size, size).clone(), None

    model.motion_autoencoder.dec.forward = stand_in_decoder
    refs: list = []
    stats = {"max_alive": 0, "anon": []}
    original = pipeline.iter_frames

    def tracked_iter_frames(*args, **kwargs):
        for chunk in original(*args, **kwargs):
            refs[:] = [r for r in refs if r() is not None]
            refs.append(weakref.ref(chunk))
            stats["max_alive"] = max(stats["max_alive"], len(refs))
            stats["anon"].append(_memory("RssAnon"))
            yield chunk

    pipeline.generation.iter_frames = tracked_iter_frames
    settings = GenerationSettings(steps=1, fps=10.0, render_batch=50)
    wave = speech(1.0)[0].repeat(round(seconds))  # (n,): one second repeated, no large temporaries
    image = portrait(64, 64)[0]
    path, growth = _peak_growth(lambda: generate_video(model, image, wave, 16000, Path(out_dir) / "long.mp4",
                                                       settings, crop="none"))
    anon = stats["anon"]
    warm = anon[max(1, len(anon) // 10)]  # the encoder's buffers exist once the first chunks are written
    with av.open(str(path)) as container:
        frames = container.streams.video[0].frames
    print(json.dumps({"frames": frames, "max_alive": stats["max_alive"], "chunks": len(anon),
                      "render_growth": max(anon) - warm, "growth": growth}))


@pytest.mark.slow
def test_ten_minute_clip_streams_in_bounded_memory(tmp_path):
    """10 minutes of speech → 6000 frames at 10 fps with memory flat while rendering; 1 minute for comparison."""
    results = {}
    for minutes in (1, 10):
        out = tmp_path / f"{minutes}min"
        out.mkdir()
        script = ("from tests.test_reliability import _streaming_child\n"
                  f"_streaming_child({60.0 * minutes}, {str(out)!r})")
        results[minutes] = _run_child(script, tmp_path)
        assert [p.name for p in files_under(out)] == ["long.mp4"]  # no partial file left beside it
    short, long = results[1], results[10]
    assert (short["frames"], long["frames"]) == (600, 6000)
    assert long["chunks"] == 6000 // 50
    # At most the chunk being written and the one being made are alive, whatever the length.
    assert short["max_alive"] <= 2 and long["max_alive"] <= 2
    all_frames = 6000 * 3 * 64 * 64 * 4  # 295 MB if the frames were kept
    assert long["render_growth"] < 24 * 2**20 < all_frames / 10, long
    assert long["render_growth"] < short["render_growth"] + 16 * 2**20, results
    # The whole run grows with the clip only through the audio (its float copies and spectrogram in the audio
    # encoder): well under 16 copies of the 9 extra minutes, which keeping the 5400 extra frames would exceed.
    extra_audio = 9 * 60 * 16000 * 4
    assert long["growth"] - short["growth"] < 16 * extra_audio, results


def test_driving_video_shorter_or_longer_than_the_audio(demo_model):
    """Pose from a driving video of 0.4 s or 2 s under 1 s of speech: the motion always lasts the speech."""
    space = model_factor_space(demo_model)
    encoded = encode_portrait(demo_model, portrait(64, 64), crop="none")
    audio = encode_audio(demo_model, speech(1.0), 16000)
    settings = GenerationSettings(steps=1, fps=30.0)
    for video_seconds in (0.4, 2.0):
        frames = portrait(64, 64, batch=round(25 * video_seconds), seed=1)
        video = motion_from_frames(demo_model, frames, 25.0, crop="none")
        for mode in ("loop", "pingpong", "hold"):
            track = sample_motion_track_conditioned(demo_model, encoded, audio, settings, {"pose": video}, space,
                                                    length_mode=mode)
            assert track.num_frames == 30 and bool(torch.isfinite(track.latents).all())
        # Rendering the driving video's own motion with this speech: the soundtrack is cut or padded to it.
        soundtrack = fit_audio(speech(1.0, 44100, 2), 44100, video.num_frames, video.fps)
        assert soundtrack.shape == (2, round(video.num_frames / 25 * 44100))


# ----------------------------------------------------------------------------------------------- checkpoints


def _save(tensors: dict, path: Path, metadata: dict | None = None) -> Path:
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


def test_checkpoint_with_missing_keys_names_them(tmp_path, tiny_weights):
    sd = dict(tiny_weights)
    del sd["fmt.blocks.1.attn.qkv.weight"]
    with pytest.raises(CheckpointError, match=r"missing\.safetensors: does not match the model: 1 tensors are "
                                              r"missing .*fmt\.blocks\.1\.attn\.qkv\.weight"):
        load_model(_save(sd, tmp_path / "missing.safetensors"))


def test_checkpoint_with_wrong_shapes_names_the_tensor(tmp_path, tiny_weights):
    sd = dict(tiny_weights)
    sd["fmt.decoder.linear.bias"] = torch.zeros(7)
    with pytest.raises(CheckpointError, match=r"wrong\.safetensors: .*fmt\.decoder\.linear\.bias has shape \(7,\), "
                                              r"the model needs \(512,\)"):
        load_model(_save(sd, tmp_path / "wrong.safetensors"))


def test_checkpoint_with_wrong_dtypes(tmp_path, tiny_weights):
    for dtype in (torch.int64, torch.bool):
        sd = dict(tiny_weights)
        sd["fmt.decoder.linear.bias"] = torch.zeros(512, dtype=dtype)
        with pytest.raises(CheckpointError, match=rf"ints\.safetensors: .*fmt\.decoder\.linear\.bias has dtype "
                                                  rf"{dtype}, the model needs a floating-point tensor"):
            load_model(_save(sd, tmp_path / "ints.safetensors"))
        (tmp_path / "ints.safetensors").unlink()
    half = {k: v.half() if v.is_floating_point() else v for k, v in tiny_weights.items()}
    model, _ = load_model(_save(half, tmp_path / "half.safetensors"))  # another float dtype is converted
    assert model.dtype == torch.float32


def test_truncated_safetensors_is_refused(tmp_path):
    data = require_shared(TINY / "float_tiny.safetensors").read_bytes()
    for cut, what in ((len(data) // 2, "the file is truncated"), (40, "not a valid safetensors file or truncated")):
        path = tmp_path / "partial.safetensors"
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=rf"partial\.safetensors: {what}.*Re-download"):
            load_model(path)


def test_corrupted_safetensors_is_refused(tmp_path):
    data = bytearray(require_shared(TINY / "float_tiny.safetensors").read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    header = bytearray(data)
    header[8 + 20:8 + 40] = b"\x00" * 20  # bytes in the JSON header destroyed
    (tmp_path / "header.safetensors").write_bytes(bytes(header))
    with pytest.raises(CheckpointError, match=r"header\.safetensors: the safetensors header is corrupted"):
        load_model(tmp_path / "header.safetensors")
    start, end = json.loads(data[8:8 + n])["fmt.decoder.linear.weight"]["data_offsets"]
    body = bytearray(data)
    body[8 + n + start:8 + n + start + 64] = b"\xff" * 64  # 16 weights overwritten: 0xffffffff is a float32 NaN
    (tmp_path / "body.safetensors").write_bytes(bytes(body))
    with pytest.raises(CheckpointError, match=r"body\.safetensors: 1 tensors hold NaN or infinite values "
                                              r"\(fmt\.decoder\.linear\.weight\); expected finite weights: the file "
                                              r"is corrupted"):
        load_model(tmp_path / "body.safetensors")


class _Payload:
    """Unpickling this object would create a file (code execution); the loader must never run it."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_carrying_code_is_refused_never_executed(tmp_path, tiny_weights):
    marker = tmp_path / "executed.txt"
    path = tmp_path / "float.pth"
    torch.save({**tiny_weights, "payload": _Payload(marker)}, path)
    with pytest.raises(CheckpointError, match=r"float\.pth: refused to load: the pickle contains Python objects or "
                                              r"code .*nothing in it was executed"):
        load_model(path)
    assert not marker.exists()


def test_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    (tmp_path / "notes.pth").write_text("these are my notes, not weights\n" * 10)
    (tmp_path / "photo.safetensors").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    for name in ("notes.pth", "photo.safetensors"):
        with pytest.raises(CheckpointError, match=rf"{name}: not a checkpoint: expected a \.safetensors file or a "
                                                  r"PyTorch \.pth/\.pt/\.ckpt file"):
            load_model(tmp_path / name)
    other = _save({"encoder.weight": torch.zeros(3, 3)}, tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match=r"other\.safetensors: none of its 1 tensors belong to a FLOAT or DEMO"):
        load_model(other)


def test_float_checkpoint_without_wav2vec2_says_where_to_put_it(tmp_path, tiny_weights):
    lean = _save({k: v for k, v in tiny_weights.items() if "wav2vec2" not in k}, tmp_path / "FLOAT.safetensors")
    with pytest.raises(CheckpointError, match=r"FLOAT\.safetensors: the wav2vec2 audio-encoder weights "
                                              r"\(audio_encoder\.wav2vec2\.\*\) are missing.*wav2vec2-base-960h"):
        load_model(lean)


# ------------------------------------------------------------------------------------ parameters at limits


def test_one_step_and_zero_guidance(float_tiny_model):
    encoded = encode_portrait(float_tiny_model, portrait(64, 64), crop="none")
    audio = encode_audio(float_tiny_model, speech(0.5), 16000)
    motion = sample_motion(float_tiny_model, encoded, audio, GenerationSettings(steps=1, a_cfg=0.0, e_cfg=0.0))
    assert motion.shape[1] == math.ceil(0.5 * 25) and bool(torch.isfinite(motion).all())
    with pytest.raises(DemoInputError, match=r"^steps: expected an integer from 1 to 1000, got 0"):
        GenerationSettings(steps=0).validate()
    with pytest.raises(DemoInputError, match=r"^a_cfg: expected a guidance scale from 0 to 20, got -0\.1"):
        GenerationSettings(a_cfg=-0.1).validate()


@pytest.mark.parametrize("fps", [10, 60, 29.97])
def test_fps_at_the_limits(float_tiny_model, fps):
    encoded = encode_portrait(float_tiny_model, portrait(64, 64), crop="none")
    audio = encode_audio(float_tiny_model, speech(1.3), 16000)
    track = sample_motion_track(float_tiny_model, encoded, audio, GenerationSettings(steps=1, fps=fps))
    assert track.num_frames == math.ceil(1.3 * fps - 1e-9) and track.fps == fps


@pytest.mark.parametrize("fps", [9.99, 60.01, float("nan"), "25"])
def test_fps_outside_the_limits_is_refused(fps):
    with pytest.raises(DemoInputError, match=r"^fps: expected a frame rate from 10 to 60, got"):
        GenerationSettings(fps=fps).validate()


def test_seeds_at_the_integer_bounds(float_tiny_model):
    encoded = encode_portrait(float_tiny_model, portrait(64, 64), crop="none")
    audio = encode_audio(float_tiny_model, speech(0.3), 16000)

    def motion(seed: int) -> torch.Tensor:
        return sample_motion(float_tiny_model, encoded, audio, GenerationSettings(steps=1, seed=seed))

    top = 2**64 - 1  # ComfyUI's largest seed (0xffffffffffffffff)
    assert torch.equal(motion(top), motion(top)) and torch.equal(motion(0), motion(0))
    assert not torch.equal(motion(top), motion(0))
    assert torch.equal(motion(-1), motion(top)) and torch.equal(motion(2**64), motion(0))  # CLI: modulo 2**64
    assert make_generator(-1).initial_seed() == top
    for bad in (1.5, "7", True):
        with pytest.raises(DemoInputError, match=r"^seed: expected an integer \(any, taken modulo 2\*\*64\)"):
            GenerationSettings(seed=bad).validate()


@pytest.mark.parametrize("settings, pattern", [
    (dict(steps=True), r"^steps: expected an integer"),
    (dict(steps=2.0), r"^steps: expected an integer"),
    (dict(method="heun"), r"^solver: expected 'euler', 'midpoint' or 'rk4'"),
    (dict(e_cfg=float("inf")), r"^e_cfg: expected a guidance scale from 0 to 20"),
    (dict(emotion=3), r"^emotion: expected 'auto' or one of angry"),
    (dict(render_batch="8"), r"^render_batch: expected an integer >= 1"),
])
def test_settings_of_the_wrong_type_are_refused(settings, pattern):
    with pytest.raises(DemoInputError, match=pattern):
        GenerationSettings(**settings).validate()


@pytest.mark.parametrize("keyframes, pattern", [
    ('{"pose.yaw": [[0, 0], [1, ', r'^keyframes: invalid JSON at line 1 column \d+'),
    ('{"pose.yaw": [[0, 0], [-1, 5]]}', r'^keyframes: track "pose\.yaw" key 1: time -1\.0 must be >= 0'),
    ('{"pose.yaw": [[0, 0], [1, 500]]}', r'^keyframes: track "pose\.yaw" key 1: value 500\.0 is outside the allowed '
                                         r'range \[-180\.0, 180\.0\]'),
    ('{"pose.yaw": {"mode": "absolute", "keys": [[0, 1e300]]}}',
     r'^keyframes: track "pose\.yaw" key 0: value 1e\+300 is outside the allowed range \[-90\.0, 90\.0\]'),
    ('{"blink.closure": {"mode": "absolute", "keys": [[0, 1.5]]}}',
     r'^keyframes: track "blink\.closure" key 0: value 1\.5 is outside the allowed range \[0\.0, 1\.0\]'),
    ('{"lip.gain": [[0, 9]]}', r'^keyframes: track "lip\.gain" key 0: value 9\.0 is outside the allowed range'),
    ('{"lip.c99": [[0, 1]]}', r'^keyframes: track "lip\.c99": axis lip\.c99: factor \'lip\' has coordinates c0\.\.c5'),
    ('{"pose.nod": [[0, 1]]}', r'^keyframes: track "pose\.nod": unknown axis "nod" for factor "pose"'),
])
def test_keyframe_json_malformed_or_out_of_range_names_the_key(demo_model, keyframes, pattern):
    encoded = encode_portrait(demo_model, portrait(64, 64), crop="none")
    track = sample_motion_track(demo_model, encoded, encode_audio(demo_model, speech(0.5), 16000),
                                GenerationSettings(steps=1))
    space = model_factor_space(demo_model)
    with pytest.raises(DemoInputError, match=pattern):
        edit_motion_track(track, FactorEdits(keyframes=keyframes), space)
    edited = edit_motion_track(track, FactorEdits(keyframes='{"pose.yaw": [[0, 0], [0.4, 90]]}'), space)
    assert bool(torch.isfinite(edited.latents).all())  # the limit itself is accepted


# ------------------------------------------------------------------------------------------ cancel and files


class _Cancelled(KeyboardInterrupt):
    """What a host's cancel (or Ctrl-C) raises from the progress callback."""


def _cancel_after(limit: int):
    def progress(done: int, total: int) -> None:
        if done > limit:
            raise _Cancelled()

    return progress


def test_cancel_between_chunks_leaves_nothing_and_the_next_run_works(float_tiny_model, tmp_path):
    image, wave = portrait(64, 64)[0], speech(1.0)[0]
    settings = GenerationSettings(steps=1, render_batch=4)
    target = tmp_path / "out" / "talk.mp4"
    windows = -(-25 // float_tiny_model.fmt.cfg.num_frames)
    for cancel_at in (0, windows * settings.steps + 9):  # during sampling, then mid-render (after 3 chunks)
        with pytest.raises(_Cancelled):
            generate_video(float_tiny_model, image, wave, 16000, target, settings, crop="none",
                           progress=_cancel_after(cancel_at))
        assert files_under(tmp_path) == [], "a cancelled run must leave no partial or final file"
    path = generate_video(float_tiny_model, image, wave, 16000, target, settings, crop="none")
    assert path == target and files_under(tmp_path) == [target]
    assert decoded_frames(path).shape[0] == 25


def test_cli_interrupt_leaves_nothing_and_the_next_run_works(tmp_path, monkeypatch, capsys):
    require_shared()
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray((portrait(80, 64)[0].numpy() * 255).astype(np.uint8)).save(inputs / "face.png")
    wavfile.write(inputs / "speech.wav", 22050, (speech(0.6, 22050)[0].numpy() * 32767).astype(np.int16))
    out = tmp_path / "out" / "talk.mp4"
    argv = ["generate", "--checkpoint", str(TINY / "float_tiny.safetensors"), "--image", str(inputs / "face.png"),
            "--audio", str(inputs / "speech.wav"), "--out", str(out), "--steps", "1", "--render-batch", "4",
            "--seed", "-1", "--no-progress"]
    real_iter_frames = pipeline.iter_frames

    def interrupted_iter_frames(*args, **kwargs):
        for k, chunk in enumerate(real_iter_frames(*args, **kwargs)):
            if k == 2:
                raise KeyboardInterrupt  # Ctrl-C between chunks
            yield chunk

    monkeypatch.setattr(pipeline.generation, "iter_frames", interrupted_iter_frames)
    assert cli_main(argv) == 130
    assert "interrupted: nothing was written" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or files_under(tmp_path / "out") == []
    monkeypatch.setattr(pipeline.generation, "iter_frames", real_iter_frames)
    assert cli_main(argv) == 0
    assert files_under(tmp_path / "out") == [out] and decoded_frames(out).shape[0] == math.ceil(0.6 * 25)


def test_output_files_never_overwrite_an_existing_file(float_tiny_model, tmp_path):
    target = tmp_path / "talk.mp4"
    target.write_bytes(b"someone else's video")
    image, wave = portrait(64, 64)[0], speech(0.3)[0]
    first = generate_video(float_tiny_model, image, wave, 16000, target, GenerationSettings(steps=1), crop="none")
    second = generate_video(float_tiny_model, image, wave, 16000, target, GenerationSettings(steps=1), crop="none")
    assert (first.name, second.name) == ("talk_0001.mp4", "talk_0002.mp4")
    assert target.read_bytes() == b"someone else's video"
    assert files_under(tmp_path) == [target, first, second]


def test_same_seed_gives_the_same_result_on_the_same_device(float_tiny_model, tmp_path):
    image, wave = portrait(64, 64)[0], speech(0.5)[0]
    settings = GenerationSettings(steps=2, seed=2**64 - 1)
    a = generate_video(float_tiny_model, image, wave, 16000, tmp_path / "a.mp4", settings, crop="none")
    b = generate_video(float_tiny_model, image, wave, 16000, tmp_path / "b.mp4", settings, crop="none")
    c = generate_video(float_tiny_model, image, wave, 16000, tmp_path / "c.mp4",
                       GenerationSettings(steps=2, seed=1), crop="none")
    assert np.array_equal(decoded_frames(a), decoded_frames(b))
    assert not np.array_equal(decoded_frames(a), decoded_frames(c))
