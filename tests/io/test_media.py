"""Audio, image and video I/O (the demo_core/io/media package).

Every file is synthesised inside pytest's ``tmp_path``; the shared data is only read.
"""

from __future__ import annotations

import math
from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import Colorspace
import pytest
import torch
from PIL import Image
from scipy.io import wavfile

from demo_core.errors import DemoInputError
from demo_core.io.media import (
    VideoWriter,
    even_size,
    frames_to_uint8,
    frames_to_unit,
    load_audio,
    load_audio_mono,
    load_image,
    prepare_waveform,
    read_video,
    to_model_image,
    unique_path,
    write_video,
)
from tests.conftest import SHARED, require_shared


def sine(freq: float, rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def peak_frequency(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


def encode_audio(path, samples: np.ndarray, rate: int, codec: str) -> None:
    """Encode float ``(C, n)`` samples with PyAV (mp3 / aac)."""
    layout = {1: "mono", 2: "stereo"}[samples.shape[0]]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = layout
        stream.format = "fltp"  # both encoders take planar float
        for start in range(0, samples.shape[1], 1152):
            block = np.ascontiguousarray(samples[:, start:start + 1152], dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=layout)
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


# ---------------------------------------------------------------------------------------- audio


@pytest.mark.parametrize("rate, dtype, channels", [
    (8000, np.int16, 1),
    (22050, np.uint8, 2),
    (44100, np.float32, 2),
    (48000, np.int32, 6),
])
def test_wav_round_trip(tmp_path, rate, dtype, channels):
    base = np.stack([sine(300 + 100 * c, rate, 0.5) for c in range(channels)])  # (C, n)
    if dtype == np.int16:
        data = np.round(base * 32767).astype(np.int16)
        expected, tol = data / 32768.0, 1e-6
    elif dtype == np.uint8:
        data = np.round(base * 127 + 128).astype(np.uint8)
        expected, tol = (data.astype(np.float64) - 128) / 128, 1e-6
    elif dtype == np.int32:
        data = np.round(base * (2**31 - 1)).astype(np.int32)
        expected, tol = data / 2.0**31, 1e-6
    else:
        data, expected, tol = base.astype(np.float32), base, 1e-6
    path = tmp_path / "clip.wav"
    wavfile.write(path, rate, np.ascontiguousarray(data.T))  # packed (interleaved) formats
    waveform, sample_rate = load_audio(path)
    assert sample_rate == rate
    assert waveform.dtype == torch.float32 and waveform.shape == (channels, base.shape[1])
    assert np.abs(waveform.numpy() - expected).max() < tol


@pytest.mark.parametrize("expected", [0, 1, 1000, 2500, 2600, 10_000])
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_sample_buffer_gives_the_concatenated_frames(expected, channels):
    """load_audio's buffer (sized from the header: exact, understated, overstated or unknown) = concatenation."""
    from demo_core.io.media import _SampleBuffer

    g = np.random.default_rng(expected + channels)
    frames = [g.standard_normal((channels, k)).astype(np.float32) for k in (1024, 1024, 300, 152)]
    buf = _SampleBuffer()
    buf.expect(expected)
    for f in frames:
        buf.append(f)
    out = buf.result()
    assert buf.size == 2500 and out.flags.c_contiguous
    assert np.array_equal(out, np.concatenate(frames, axis=1))


@pytest.mark.parametrize("suffix, rate, channels, block", [
    (".wav", 44100, 2, 1000),
    (".wav", 44100, 2, 1 << 18),
    (".wav", 16000, 1, 777),
    (".wav", 22050, 6, 5000),
    (".mp3", 44100, 2, 3000),
    (".m4a", 48000, 1, 4096),
])
def test_load_audio_mono_equals_load_then_prepare(monkeypatch, tmp_path, suffix, rate, channels, block):
    """Decoding, clipping, mixing and resampling frame by frame gives the samples of load_audio followed by
    prepare_waveform, bit for bit, and the file's own length and rate."""
    import demo_core.io.media as media

    monkeypatch.setattr(media.audio, "_BLOCK", block)
    base = np.stack([sine(200 + 50 * c, rate, 2.3, 0.6) for c in range(channels)])  # (C, n)
    base[0, 100:200] = 1.2  # clipped on load
    path = tmp_path / f"clip{suffix}"
    if suffix == ".wav":
        wavfile.write(path, rate, np.ascontiguousarray(base.T.astype(np.float32)))
    else:
        encode_audio(path, base.astype(np.float32), rate, "libmp3lame" if suffix == ".mp3" else "aac")
    waveform, file_rate = load_audio(path)
    mono, n, got_rate = load_audio_mono(path, 16000)
    assert (n, got_rate) == (waveform.shape[1], file_rate)
    assert mono.dtype == torch.float32 and np.array_equal(mono.numpy(), prepare_waveform(waveform, file_rate).numpy())


def test_load_audio_mono_errors(tmp_path):
    bad = np.zeros((1000, 2), np.float32)
    bad[10, 1] = np.nan
    wavfile.write(tmp_path / "nan.wav", 16000, bad)
    with pytest.raises(DemoInputError, match="NaN"):
        load_audio_mono(tmp_path / "nan.wav")
    with pytest.raises(DemoInputError, match="does not exist"):
        load_audio_mono(tmp_path / "missing.wav")


def test_long_stereo_wav_is_decoded_whole(tmp_path):
    rate = 44100
    data = np.round(np.stack([sine(300, rate, 7.3), sine(500, rate, 7.3)]) * 32767).astype(np.int16)
    wavfile.write(tmp_path / "long.wav", rate, np.ascontiguousarray(data.T))
    waveform, sample_rate = load_audio(tmp_path / "long.wav")
    assert sample_rate == rate and waveform.is_contiguous()
    assert np.array_equal(waveform.numpy(), (data / 32768.0).astype(np.float32))


@pytest.mark.parametrize("suffix, codec, rate", [
    (".mp3", "libmp3lame", 44100),
    (".mp3", "libmp3lame", 22050),
    (".m4a", "aac", 48000),
    (".m4a", "aac", 8000),
])
def test_lossy_round_trip_keeps_rate_length_and_pitch(tmp_path, suffix, codec, rate):
    samples = np.stack([sine(440, rate, 1.0), sine(440, rate, 1.0)])  # (2, n) planar source
    path = tmp_path / f"clip{suffix}"
    encode_audio(path, samples, rate, codec)
    waveform, sample_rate = load_audio(path)  # decoded as planar float (aac) / s16p or fltp (mp3)
    assert sample_rate == rate and waveform.shape[0] == 2
    assert samples.shape[1] <= waveform.shape[1] <= samples.shape[1] + 3 * 1152
    assert waveform.abs().max() <= 1.0
    assert abs(peak_frequency(waveform[0].numpy(), rate) - 440) <= 2


def test_audio_track_of_a_video_file(tmp_path):
    audio = sine(440, 16000, 1.0).astype(np.float32)
    path = write_video(tmp_path / "v.mp4", np.zeros((25, 16, 16, 3), np.uint8), 25, audio=audio, audio_rate=16000)
    waveform, rate = load_audio(path)
    assert rate == 16000 and waveform.shape[0] == 1
    assert abs(peak_frequency(waveform[0].numpy(), rate) - 440) <= 2


def test_load_audio_errors(tmp_path):
    with pytest.raises(DemoInputError, match="does not exist"):
        load_audio(tmp_path / "missing.wav")
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(DemoInputError, match="could not be decoded"):
        load_audio(garbage)
    silent_video = write_video(tmp_path / "silent.mp4", np.zeros((2, 16, 16, 3), np.uint8), 25)
    with pytest.raises(DemoInputError, match="no audio stream"):
        load_audio(silent_video)
    header_only = tmp_path / "header.wav"
    wavfile.write(header_only, 16000, np.zeros(100, np.int16))
    header_only.write_bytes(header_only.read_bytes()[:44])  # truncated right after the header
    with pytest.raises(DemoInputError, match="no audio samples"):
        load_audio(header_only)
    truncated = tmp_path / "cut.m4a"
    encode_audio(truncated, np.zeros((1, 16000)), 16000, "aac")
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(DemoInputError, match="cut.m4a.*(corrupt or truncated|could not be decoded)"):
        load_audio(truncated)
    half = tmp_path / "half.mp3"
    encode_audio(half, np.stack([sine(440, 16000, 3.0)]), 16000, "libmp3lame")
    half.write_bytes(half.read_bytes()[: half.stat().st_size // 2])  # the LAME header still says 3 s
    with pytest.raises(DemoInputError, match="half.mp3.*truncated"):
        load_audio(half)


def test_downmix_stereo_and_5_1():
    rate = 16000
    stereo = torch.tensor(np.stack([sine(200, rate, 0.25), sine(300, rate, 0.25)]), dtype=torch.float32)
    assert torch.allclose(prepare_waveform(stereo, rate), stereo.mean(0), atol=1e-7)
    surround = torch.randn(1, 6, 4000) * 0.1  # (B=1, C=6, n): ComfyUI AUDIO layout
    assert torch.allclose(prepare_waveform(surround, rate), surround[0].mean(0), atol=1e-6)
    mono = torch.randn(4000) * 0.1
    assert torch.equal(prepare_waveform(mono, rate), mono)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000, 96000, 192000])
def test_resample_length_and_frequency(rate):
    x = torch.tensor(sine(440, rate, 1.3), dtype=torch.float32)[None]  # (1, n)
    out = prepare_waveform(x, rate, target_rate=16000)
    assert out.dtype == torch.float32 and out.dim() == 1
    assert out.shape[0] == math.ceil(x.shape[1] * 16000 / rate)
    assert abs(peak_frequency(out.numpy(), 16000) - 440) <= 1.5
    middle = out[2000:-2000].numpy()
    reference = sine(440, 16000, 1.3)[2000:-2000]
    assert np.abs(middle - reference).max() < 0.01  # the sine itself, not just its pitch


def test_resample_removes_content_above_new_nyquist():
    out = prepare_waveform(torch.tensor(sine(11000, 44100, 1.0), dtype=torch.float32), 44100)
    assert out[1000:-1000].abs().max() < 0.01  # 11 kHz cannot exist at 16 kHz: filtered, not aliased


def _whole_clip_prepare(waveform: torch.Tensor, rate: int, target: int) -> np.ndarray:
    """The whole-signal computation prepare_waveform used to do (float64 mean of channels, one resample_poly)."""
    from scipy.signal import resample_poly

    mono = waveform.to(torch.float64).mean(dim=0).numpy()
    if rate != target:
        g = math.gcd(rate, target)
        mono = resample_poly(mono, target // g, rate // g)
    return mono.astype(np.float32)


@pytest.mark.parametrize("rate, target", [(44100, 16000), (48000, 16000), (22050, 16000), (8000, 16000),
                                          (96000, 16000), (11025, 16000), (16001, 16000), (16000, 48000),
                                          (16000, 16000)])
@pytest.mark.parametrize("block", [1000, 4096, 1 << 18])
def test_blockwise_mix_and_resample_equal_the_whole_signal(monkeypatch, rate, target, block):
    """Long audio is mixed and resampled a block at a time (no float64 copy of the clip): the same samples,
    bit for bit, at block boundaries of any alignment, including blocks shorter than the filter."""
    import demo_core.io.media as media

    monkeypatch.setattr(media.audio, "_BLOCK", block)
    g = np.random.default_rng(rate + block)
    for n in (1, 999, 100_003):
        w = torch.from_numpy((0.3 * g.standard_normal((2, n))).astype(np.float32))
        out = prepare_waveform(w, rate, target_rate=target)
        assert out.dtype == torch.float32 and out.shape == (math.ceil(n * target / rate),)
        assert np.array_equal(out.numpy(), _whole_clip_prepare(w, rate, target)), (n, rate, target, block)


def test_mono_at_the_model_rate_is_not_copied():
    mono = torch.randn(1, 50_000) * 0.1
    out = prepare_waveform(mono, 16000)
    assert torch.equal(out, mono[0]) and out.data_ptr() == mono.data_ptr()
    as_f64 = prepare_waveform(mono.double(), 16000)
    assert as_f64.dtype == torch.float32 and torch.equal(as_f64, mono[0])


def test_audio_track_is_not_copied_when_it_can_be_muxed_as_is():
    from demo_core.io.media import _check_audio_track

    wave = torch.rand(2, 30_000) * 2 - 1
    track, rate = _check_audio_track(wave, 44100)
    assert rate == 44100 and np.shares_memory(track, wave.numpy())
    loud = wave * 1.5
    track, _ = _check_audio_track(loud, 44100)
    assert not np.shares_memory(track, loud.numpy()) and np.array_equal(track, np.clip(loud.numpy(), -1, 1))
    track, rate = _check_audio_track(loud[0], 44000)  # not an AAC rate: resampled to 48 kHz and clipped
    assert rate == 48000 and track.shape == (1, math.ceil(30_000 * 48000 / 44000)) and float(np.abs(track).max()) <= 1
    with pytest.raises(DemoInputError, match="NaN"):
        _check_audio_track(torch.tensor([0.0, float("nan")]), 16000)


@pytest.mark.parametrize("waveform, rate, pattern", [
    (torch.zeros(0), 16000, "speech: .*empty"),
    (torch.zeros(2, 0), 16000, "speech: .*empty"),
    (torch.tensor([0.0, float("nan"), 0.1]), 16000, "speech: .*NaN"),
    (torch.tensor([0.0, float("inf")]), 16000, "speech: .*NaN or infinite"),
    (torch.zeros(2, 1, 10), 16000, "speech: .*batch"),
    (torch.zeros(1, 1, 1, 10), 16000, "speech: .*shape"),
    (torch.zeros(10), 0, "speech sample_rate"),
    (torch.zeros(10), -8000, "speech sample_rate"),
    (torch.zeros(10, dtype=torch.int16), 16000, "speech: .*float"),
])
def test_prepare_waveform_errors_name_the_input(waveform, rate, pattern):
    with pytest.raises(DemoInputError, match=pattern):
        prepare_waveform(waveform, rate, name="speech")


# --------------------------------------------------------------------------------------- images


def test_load_image_rgba_is_composited_over_black(tmp_path):
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[..., 3] = np.array([0, 51, 102, 153, 204, 255], np.uint8)[None, :]
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    image = load_image(tmp_path / "a.png")
    assert image.shape == (4, 6, 3) and image.dtype == torch.float32
    expected = torch.tensor([200, 100, 50]) / 255 * torch.tensor([0, 51, 102, 153, 204, 255])[:, None] / 255
    assert torch.allclose(image[0], expected, atol=1e-6)


def test_load_image_grey_la_palette_16bit(tmp_path):
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    Image.fromarray(grey, "L").save(tmp_path / "g.png")
    image = load_image(tmp_path / "g.png")
    assert image.shape == (6, 8, 3)
    assert torch.allclose(image, torch.tensor(grey / 255.0, dtype=torch.float32)[..., None].expand(6, 8, 3))

    la = np.stack([grey, np.full_like(grey, 255)], -1)
    la[0, 0, 1] = 0
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    image = load_image(tmp_path / "la.png")
    assert image[0, 0].tolist() == [0.0, 0.0, 0.0] and abs(float(image[1, 1, 0]) - grey[1, 1] / 255) < 1e-6

    palette = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), "P")
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png")[0, 0].tolist() == [1.0, 0.0, 0.0]

    deep = (np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000 + 7)
    Image.fromarray(deep).save(tmp_path / "deep.png")  # 16-bit grey PNG
    image = load_image(tmp_path / "deep.png")
    assert torch.allclose(image[..., 1].double(), torch.tensor(deep / 65535.0), atol=1e-6)


def test_load_image_applies_exif_orientation(tmp_path):
    pixels = np.zeros((2, 4, 3), np.uint8)
    pixels[0, 0] = 255  # white at top-left of the stored (2 x 4) image
    stored = Image.fromarray(pixels)
    exif = stored.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    stored.save(tmp_path / "rot.jpg", exif=exif, quality=100)
    image = load_image(tmp_path / "rot.jpg")
    assert image.shape == (4, 2, 3)  # displayed upright: portrait
    assert float(image[0, 1].mean()) > 0.8  # the white corner moved to the top-right


def test_load_image_errors(tmp_path):
    with pytest.raises(DemoInputError, match="image: .*does not exist"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DemoInputError, match="image: .*not a readable image"):
        load_image(tmp_path / "bad.png")


def test_to_model_image_layout_range_and_filters():
    checker = torch.zeros(8, 8, 3)
    checker[::2, ::2] = 1
    checker[1::2, 1::2] = 1
    down = to_model_image(checker, 4)  # area: each 2x2 block averages to 0.5 → 0 in [-1, 1]
    assert down.shape == (1, 3, 4, 4)
    assert torch.allclose(down, torch.zeros_like(down), atol=1e-6)
    ramp = torch.linspace(0, 1, 16).view(1, 1, 16, 1).expand(2, 16, 16, 3)
    up = to_model_image(ramp, 48)
    assert up.shape == (2, 3, 48, 48) and up.min() >= -1 and up.max() <= 1
    assert bool((up[0, 0, 1:, 0] >= up[0, 0, :-1, 0] - 1e-6).all())  # still a monotone ramp
    same = to_model_image(torch.full((5, 5, 3), 0.25), 5)
    assert torch.allclose(same, torch.full_like(same, -0.5))
    with pytest.raises(DemoInputError, match="image"):
        to_model_image(torch.zeros(8, 8, 4), 4)


def test_frames_to_uint8_truncates_and_unit_layout():
    frames = torch.tensor([-2.0, -1.0, 0.0, 0.999, 1.0, 3.0]).view(1, 1, 1, 6).expand(2, 3, 1, 6)
    out = frames_to_uint8(frames)
    assert out.dtype == torch.uint8 and out.shape == (2, 1, 6, 3)
    assert out[0, 0, :, 0].tolist() == [0, 0, 127, 254, 255, 255]  # 127.5 → 127: truncation
    unit = frames_to_unit(frames)
    assert unit.shape == (2, 1, 6, 3)
    assert torch.allclose(unit[0, 0, :, 1], torch.tensor([0.0, 0.0, 0.5, 0.9995, 1.0, 1.0]))
    with pytest.raises(DemoInputError, match="frames"):
        frames_to_uint8(torch.zeros(2, 4, 4, 3))


# ---------------------------------------------------------------------------------------- video


def test_unique_path_and_even_size(tmp_path):
    target = tmp_path / "clip.mp4"
    assert unique_path(target) == target
    target.write_bytes(b"x")
    assert unique_path(target) == tmp_path / "clip_0001.mp4"
    (tmp_path / "clip_0001.mp4").write_bytes(b"x")
    assert unique_path(target) == tmp_path / "clip_0002.mp4"
    assert even_size(351, 350) == (350, 350) and even_size(7, 9) == (6, 8)


def moving_frames(n: int, height: int = 48, width: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    frames = [((np.sin((x + 3 * k) / 9.0) + np.cos(y / 8.0)) * 50 + 128) for k in range(n)]
    rgb = np.stack([np.stack([f, f * 0.8, 255 - f], -1) for f in frames])
    return np.clip(rgb, 0, 255).astype(np.uint8)  # (n, H, W, 3)


def probe(path):
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        info = dict(rate=video.average_rate, width=video.codec_context.width, height=video.codec_context.height,
                    codec=video.codec_context.name, pix_fmt=video.codec_context.pix_fmt)
        info["video_s"] = float(video.duration * video.time_base)
        if container.streams.audio:
            audio = container.streams.audio[0]
            info.update(audio_s=float(audio.duration * audio.time_base), audio_rate=audio.rate,
                        audio_codec=audio.codec_context.name)
    with av.open(str(path)) as container:
        info["frames"] = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
        info["colorspace"] = video.codec_context.colorspace
    return info


@pytest.mark.parametrize("fps, audio_rate, channels", [
    (25, 16000, 1), (29.97, 44100, 2), (Fraction(30000, 1001), 48000, 2),
])
def test_video_writer_streams_frames_and_audio(tmp_path, fps, audio_rate, channels):
    frames = moving_frames(37)
    audio = np.stack([sine(440, audio_rate, 2.0)] * channels).astype(np.float32)  # longer than the video: cut
    with VideoWriter(tmp_path / "out.mp4", fps, audio=torch.from_numpy(audio), audio_rate=audio_rate) as writer:
        for start in range(0, 37, 10):  # several batches, encoded as they come
            writer.write(torch.from_numpy(frames[start:start + 10]))
        assert writer.frame_count == 37
    assert writer.path == tmp_path / "out.mp4"
    info = probe(writer.path)
    rate = Fraction(fps) if not isinstance(fps, float) else Fraction(str(fps))
    assert info["rate"] == rate
    assert (info["width"], info["height"], info["codec"], info["pix_fmt"]) == (64, 48, "h264", "yuv420p")
    assert info["colorspace"] == Colorspace.ITU709  # tagged, so players use the matrix we encoded with
    assert info["frames"].shape == (37, 48, 64, 3)
    assert np.abs(info["frames"].astype(float) - frames).mean() < 3  # crf 18 on smooth content
    video_s = float(37 / rate)
    assert info["video_s"] == pytest.approx(video_s, abs=1e-3)
    assert info["audio_codec"] == "aac" and info["audio_rate"] == audio_rate
    assert abs(info["audio_s"] - video_s) <= 1024 / audio_rate
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]  # no partial file left


def test_short_audio_is_padded_and_odd_rates_resampled(tmp_path):
    audio = sine(440, 12345, 0.2).astype(np.float32)  # AAC has no 12345 Hz: resampled to 48 kHz
    path = write_video(tmp_path / "pad.mp4", moving_frames(25), 25, audio=audio, audio_rate=12345)
    info = probe(path)
    assert info["audio_rate"] == 48000
    assert abs(info["audio_s"] - 1.0) <= 1024 / 48000  # 0.2 s of sound, then silence up to 1 s
    waveform, _ = load_audio(path)
    assert waveform[:, 24000:].abs().max() < 1e-3


def test_video_writer_never_overwrites(tmp_path):
    target = tmp_path / "result.mp4"
    target.write_bytes(b"user's file")
    path = write_video(target, moving_frames(3), 25)
    assert path == tmp_path / "result_0001.mp4"
    assert target.read_bytes() == b"user's file"
    assert write_video(target, moving_frames(3), 25) == tmp_path / "result_0002.mp4"
    assert write_video(target, moving_frames(3), 25, overwrite=True) == target
    assert probe(target)["frames"].shape[0] == 3


def test_exception_inside_with_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(tmp_path / "fail.mp4", 25, audio=np.zeros(16000, np.float32), audio_rate=16000) as writer:
            writer.write(moving_frames(5))
            assert any(p.name.endswith(".partial.mp4") and p.name.startswith(".") for p in tmp_path.iterdir())
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    writer = VideoWriter(tmp_path / "aborted.mp4", 25)
    writer.write(moving_frames(2))
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_video_writer_input_errors(tmp_path):
    with pytest.raises(DemoInputError, match="even"):
        with VideoWriter(tmp_path / "odd.mp4", 25) as writer:
            writer.write(np.zeros((2, 47, 64, 3), np.uint8))
    with pytest.raises(DemoInputError, match="uint8"):
        with VideoWriter(tmp_path / "float.mp4", 25) as writer:
            writer.write(np.zeros((2, 48, 64, 3), np.float32))
    with pytest.raises(DemoInputError, match="differs"):
        with VideoWriter(tmp_path / "size.mp4", 25) as writer:
            writer.write(np.zeros((1, 48, 64, 3), np.uint8))
            writer.write(np.zeros((1, 50, 64, 3), np.uint8))
    with pytest.raises(DemoInputError, match="no frames"):
        with VideoWriter(tmp_path / "empty.mp4", 25):
            pass
    with pytest.raises(DemoInputError, match="fps"):
        VideoWriter(tmp_path / "x.mp4", 0)
    with pytest.raises(DemoInputError, match="audio_rate"):
        VideoWriter(tmp_path / "x.mp4", 25, audio=np.zeros(10, np.float32))
    with pytest.raises(DemoInputError, match="audio"):
        VideoWriter(tmp_path / "x.mp4", 25, audio=np.zeros((6, 10), np.float32), audio_rate=16000)
    with pytest.raises(DemoInputError, match="path"):
        VideoWriter(tmp_path / "x.avi", 25)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------ read_video


def test_read_video_shared_animated_webp():
    path = require_shared(SHARED / "data" / "driving" / "violet_talking.webp")
    frames, fps = read_video(path)
    assert frames.shape == (45, 350, 350, 3) and frames.dtype == torch.float32
    assert 0 <= float(frames.min()) and float(frames.max()) <= 1
    assert fps == pytest.approx(15.0)
    assert float((frames[1:] - frames[:-1]).abs().mean()) > 0  # it moves
    first, _ = read_video(path, max_frames=5)
    assert torch.equal(first, frames[:5])


def test_read_video_mp4_round_trip(tmp_path):
    frames = moving_frames(12)
    path = write_video(tmp_path / "drive.mp4", frames, 29.97)
    decoded, fps = read_video(path)
    assert decoded.shape == (12, 48, 64, 3)
    assert fps == pytest.approx(29.97)
    assert float((decoded * 255 - torch.from_numpy(frames).float()).abs().mean()) < 3
    assert read_video(path, max_frames=4)[0].shape[0] == 4


def test_flat_colours_survive_without_bias(tmp_path):
    levels = [16, 37, 128, 200, 235]
    frames = np.stack([np.full((16, 16, 3), v, np.uint8) for v in levels])
    decoded, _ = read_video(write_video(tmp_path / "flat.mp4", frames, 25))
    assert (decoded.mean(dim=(1, 2, 3)) * 255 - torch.tensor(levels)).abs().max() <= 1.0


def test_read_video_gif_durations(tmp_path):
    images = [Image.fromarray(np.full((10, 12, 3), 40 * k, np.uint8)) for k in range(4)]
    images[0].save(tmp_path / "a.gif", save_all=True, append_images=images[1:], duration=50, loop=0)
    frames, fps = read_video(tmp_path / "a.gif")
    assert frames.shape == (4, 10, 12, 3)
    assert fps == pytest.approx(20.0)


def test_read_video_errors(tmp_path):
    with pytest.raises(DemoInputError, match="video: .*does not exist"):
        read_video(tmp_path / "missing.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(DemoInputError, match="video: .*could not be decoded"):
        read_video(tmp_path / "junk.mp4")
