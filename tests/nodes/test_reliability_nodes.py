"""Reliability through the nodes: what a ComfyUI graph feeds them gives a result or one error naming the node.

Each error is checked to start with the node id and to name the input and what it expects.  Outputs go to
``tmp_path`` (``DEMO_OUTPUT_DIR`` or the stubbed ComfyUI folders).  The property test at the end checks frame
counts, even sizes and audio/frame alignment over audio lengths, sample rates, frame rates and image sizes.
"""

from __future__ import annotations

import json
import math
import struct
import sys
from fractions import Fraction

import av
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

import nodes
from demo_core import pipeline
from demo_core.models.demo_model import DemoModel
from tests.conftest import TINY, require_shared
from tests.models.demo_tiny import tiny_demo_config
from tests.nodes.conftest import portrait_image, speech


def call(node_id: str, **inputs) -> tuple:
    """Run a node as ComfyUI does (keyword inputs) and return its result tuple."""
    cls = nodes.NODE_CLASS_MAPPINGS[node_id]
    out = getattr(cls(), cls.FUNCTION)(**inputs)
    return out["result"] if isinstance(out, dict) else out


def encode(model, image, audio, crop="center", emotion="auto"):
    portrait, crops, _ = call("DemoEncodePortrait", model=model, image=image, crop=crop, box_x=0, box_y=0, box_w=0,
                              box_h=0, scale=1.6)
    cond, = call("DemoEncodeAudio", model=model, audio=audio, emotion=emotion)
    return portrait, crops, cond


def sample(model, portrait, cond, fps=25.0, seed=0, steps=1, a_cfg=2.0, e_cfg=1.0):
    motion, = call("DemoSampleMotion", model=model, portrait=portrait, audio_cond=cond, steps=steps, solver="euler",
                   a_cfg=a_cfg, e_cfg=e_cfg, seed=seed, fps=fps)
    return motion


def video_info(path) -> tuple[int, int, int, list[str]]:
    """(frames, width, height, [audio layout]) of an mp4."""
    with av.open(str(path)) as container:
        v = container.streams.video[0]
        frames = sum(1 for _ in container.decode(v))
        return frames, v.codec_context.width, v.codec_context.height, [a.layout.name for a in container.streams.audio]


@pytest.fixture(autouse=True)
def _output_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("DEMO_OUTPUT_DIR", str(tmp_path / "output"))


@pytest.fixture(scope="module")
def demo_format_model():
    torch.manual_seed(0)
    return DemoModel(tiny_demo_config()).eval()


# ---------------------------------------------------------------------------------------------------- images


def test_rgba_grey_and_odd_images_through_the_nodes(demo_model):
    rgba = torch.cat([portrait_image(91, 67), torch.ones(1, 91, 67, 1)], dim=-1)  # opaque RGBA
    grey = portrait_image(91, 67)[..., :1]
    portrait_rgba = encode(demo_model, rgba, speech(0.3))[0]
    portrait_rgb = encode(demo_model, rgba[..., :3], speech(0.3))[0]
    assert torch.equal(portrait_rgba.image, portrait_rgb.image)
    portrait_grey, grey_crops, cond = encode(demo_model, grey, speech(0.3))
    motion = sample(demo_model, portrait_grey, cond)
    frames = call("DemoRenderFrames", model=demo_model, portrait=portrait_grey, motion=motion, batch_size=8)[0]
    pasted, mask = call("DemoPasteBack", rendered=frames, original=rgba, crop=grey_crops, feather=0.1,
                        even_size=True)
    assert pasted.shape == (motion.num_frames, 90, 66, 3) and mask.shape == (1, 90, 66)
    path, = call("DemoRenderToVideo", model=demo_model, portrait=portrait_grey, motion=motion, batch_size=8,
                 filename_prefix="odd", crf=18, original_image=grey, feather=0.1)
    assert video_info(path)[:3] == (motion.num_frames, 66, 90)  # odd 67×91 cut to even for h264


@pytest.mark.parametrize("image, needle", [
    (torch.full((1, 64, 64, 3), float("nan")), "image: contains NaN or infinite values; expected finite values"),
    (torch.rand(1, 12, 64, 3), "image: 64×12 pixels is too small for a portrait; expected at least 16×16"),
    (torch.rand(1, 64, 64, 3) * 255, "image: expected values in 0..1"),
])
def test_bad_images_name_the_node(demo_model, image, needle):
    with pytest.raises(ValueError, match="^DemoEncodePortrait: ") as err:
        encode(demo_model, image, speech(0.3))
    assert needle in str(err.value)


# ----------------------------------------------------------------------------------------------------- audio


@pytest.mark.parametrize("audio, needle", [
    ({"waveform": torch.zeros(1, 2, 0), "sample_rate": 44100}, "audio: the waveform is empty"),
    ({"waveform": torch.zeros(1, 1, 500), "sample_rate": 16000},
     "audio: the clip lasts 31.2 ms, shorter than one video frame (40 ms at 25 fps)"),
    ({"waveform": torch.full((1, 1, 16000), float("nan")), "sample_rate": 16000},
     "audio: the waveform contains NaN or infinite values; expected finite samples"),
    ({"waveform": torch.zeros(1, 1, 16000), "sample_rate": 0}, "audio sample_rate: expected a positive integer"),
    ({"samples": torch.zeros(1, 1, 16000)}, "audio: expected a ComfyUI AUDIO {'waveform': tensor (B, C, n)"),
])
def test_bad_audio_names_the_node(demo_model, audio, needle):
    with pytest.raises(ValueError, match="^DemoEncodeAudio: ") as err:
        call("DemoEncodeAudio", model=demo_model, audio=audio, emotion="auto")
    assert needle in str(err.value)


@pytest.mark.parametrize("rate, channels", [(8000, 1), (22050, 2), (44100, 6), (48000, 2)])
def test_rates_and_channel_layouts_through_render_to_video(demo_model, rate, channels):
    audio = speech(0.6, rate, channels)
    portrait, _, cond = encode(demo_model, portrait_image(64, 64), audio)
    motion = sample(demo_model, portrait, cond, fps=30.0)
    assert motion.num_frames == math.ceil(0.6 * 30)
    path, = call("DemoRenderToVideo", model=demo_model, portrait=portrait, motion=motion, batch_size=8,
                 filename_prefix="rates", crf=18, audio=audio)
    frames, _, _, layouts = video_info(path)
    assert frames == 18 and layouts == ["stereo" if channels == 2 else "mono"]  # 5.1 is mixed down


def test_silent_and_clipped_audio_through_the_nodes(demo_model):
    portrait = encode(demo_model, portrait_image(64, 64), speech(0.3))[0]
    silent = {"waveform": torch.zeros(1, 2, 22050), "sample_rate": 22050}
    clipped = speech(0.5, 16000)
    clipped["waveform"] = (clipped["waveform"] * 20).clamp(-1, 1)
    for audio, seconds in ((silent, 1.0), (clipped, 0.5)):
        cond, = call("DemoEncodeAudio", model=demo_model, audio=audio, emotion="auto")
        motion = sample(demo_model, portrait, cond)
        images, fps, out_audio = call("DemoRenderFrames", model=demo_model, portrait=portrait, motion=motion,
                                      batch_size=16, audio=audio)
        assert images.shape[0] == math.ceil(seconds * 25) and bool(torch.isfinite(images).all())
        n = audio["waveform"].shape[-1]
        assert out_audio["waveform"].shape[-1] == round(images.shape[0] / fps * audio["sample_rate"])
        assert torch.equal(out_audio["waveform"][..., :n], audio["waveform"])  # passed through, padded to the video


def test_render_frames_checks_the_soundtrack_before_rendering(demo_model, monkeypatch):
    portrait, _, cond = encode(demo_model, portrait_image(64, 64), speech(0.4))
    motion = sample(demo_model, portrait, cond)
    rendered = []
    monkeypatch.setattr(pipeline.tracks, "iter_frames", lambda *a, **k: rendered.append(1) or iter(()))
    bad = {"waveform": torch.full((1, 1, 6400), float("inf")), "sample_rate": 16000}
    with pytest.raises(ValueError, match=r"^DemoRenderFrames: audio: the waveform contains NaN or infinite values"):
        call("DemoRenderFrames", model=demo_model, portrait=portrait, motion=motion, batch_size=8, audio=bad)
    assert rendered == []


def test_driving_video_shorter_or_longer_than_the_audio(demo_model):
    portrait, _, _ = encode(demo_model, portrait_image(64, 64), speech(0.3))
    driving = portrait_image(64, 64, batch=20, seed=3)  # 20 frames at 25 fps: 0.8 s
    video_motion, = call("DemoMotionFromVideo", model=demo_model, images=driving, fps=25.0, crop="none", scale=1.6,
                         relative=True, batch_size=8)
    for seconds in (0.3, 2.0):  # soundtrack shorter, then longer than the driving video
        audio = speech(seconds, 44100, 2)
        images, fps, out_audio = call("DemoRenderFrames", model=demo_model, portrait=portrait, motion=video_motion,
                                      batch_size=8, audio=audio)
        assert images.shape[0] == 20 and fps == 25.0
        assert out_audio["waveform"].shape == (1, 2, round(20 / 25 * 44100))
        kept = min(audio["waveform"].shape[-1], out_audio["waveform"].shape[-1])
        assert torch.equal(out_audio["waveform"][..., :kept], audio["waveform"][..., :kept])
        assert out_audio["waveform"][..., kept:].abs().sum() == 0  # padded with silence


# ----------------------------------------------------------------------------------------------- checkpoints


def _broken_checkpoints(folder) -> dict[str, str]:
    """File name → what the error must say, for each kind of broken checkpoint."""
    require_shared()
    data = (TINY / "float_tiny.safetensors").read_bytes()
    weights = load_file(str(TINY / "float_tiny.safetensors"))
    (folder / "half.safetensors").write_bytes(data[:len(data) // 2])
    (folder / "notes.pth").write_text("not weights\n" * 20)
    torch.save({"weight": torch.zeros(2), "payload": _Payload(folder / "executed.txt")}, folder / "evil.pth")
    save_file({k: v for k, v in weights.items() if "wav2vec2" not in k}, str(folder / "lean.safetensors"))
    (n,) = struct.unpack("<Q", data[:8])
    start, _ = json.loads(data[8:8 + n])["fmt.decoder.linear.weight"]["data_offsets"]
    nan = bytearray(data)
    nan[8 + n + start:8 + n + start + 64] = b"\xff" * 64  # 16 weights become float32 NaN
    (folder / "nan.safetensors").write_bytes(bytes(nan))
    shapes = dict(weights)
    shapes["fmt.decoder.linear.bias"] = torch.zeros(3)
    save_file(shapes, str(folder / "shapes.safetensors"))
    return {
        "half.safetensors": "the file is truncated",
        "notes.pth": "not a checkpoint: expected a .safetensors file or a PyTorch .pth/.pt/.ckpt file",
        "evil.pth": "refused to load",
        "lean.safetensors": "the wav2vec2 audio-encoder weights (audio_encoder.wav2vec2.*) are missing",
        "nan.safetensors": "hold NaN or infinite values",
        "shapes.safetensors": "fmt.decoder.linear.bias has shape (3,), the model needs (512,)",
    }


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_broken_checkpoints_name_the_node_and_the_file(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    folder.mkdir()
    expected = _broken_checkpoints(folder)
    monkeypatch.setenv("DEMO_MODELS_DIR", str(folder))
    for name, needle in expected.items():
        with pytest.raises(ValueError, match=rf"^DemoLoadModel: .*{name}: ") as err:
            call("DemoLoadModel", checkpoint=name, device="cpu", dtype="auto")
        assert needle in str(err.value), (name, str(err.value))
    assert not (folder / "executed.txt").exists()


# ------------------------------------------------------------------------------------ parameters at limits


def test_sampling_at_the_parameter_limits(demo_model):
    portrait, _, cond = encode(demo_model, portrait_image(64, 64), speech(0.5))
    top = 0xFFFFFFFFFFFFFFFF  # the largest seed ComfyUI's widget gives
    a, b = sample(demo_model, portrait, cond, seed=top), sample(demo_model, portrait, cond, seed=top)
    assert torch.equal(a.latents, b.latents)
    assert not torch.equal(a.latents, sample(demo_model, portrait, cond, seed=0).latents)
    for fps in (10.0, 60.0):
        assert sample(demo_model, portrait, cond, fps=fps, a_cfg=0.0, e_cfg=0.0).num_frames == math.ceil(0.5 * fps)
    with pytest.raises(ValueError, match=r"^DemoSampleMotion: fps: expected a frame rate from 10 to 60, got 5\.0"):
        sample(demo_model, portrait, cond, fps=5.0)


@pytest.mark.parametrize("keyframes, needle", [
    ('{"pose.yaw": [[0, 0], [1, 5]', "keyframes: invalid JSON at line 1 column"),
    ('{"pose.yaw": [[0, 0], [1, 500]]}', 'keyframes: track "pose.yaw" key 1: value 500.0 is outside the allowed '
                                         'range [-180.0, 180.0]'),
    ('{"gaze.x": [[2, 0], [1, 0.5]]}', 'keyframes: track "gaze.x" key 1: time 1.0 is earlier than key 0'),
])
def test_bad_keyframes_name_the_node_and_the_key(demo_format_model, keyframes, needle):
    node = nodes.NODE_CLASS_MAPPINGS["DemoEditFactors"]
    assert node.VALIDATE_INPUTS(keyframes=keyframes).startswith(f"DemoEditFactors: {needle}")  # before the run
    portrait, _, cond = encode(demo_format_model, portrait_image(64, 64), speech(0.5))
    motion = sample(demo_format_model, portrait, cond)
    inputs = {name: spec[1].get("default") for name, spec in node.INPUT_TYPES()["required"].items()
              if name != "motion"}
    inputs["blinks"] = "keep"
    with pytest.raises(ValueError, match="^DemoEditFactors: ") as err:
        call("DemoEditFactors", motion=motion, **{**inputs, "keyframes": keyframes})
    assert needle in str(err.value)


# ------------------------------------------------------------------------------------------ cancel and files


def test_cancel_render_to_video_leaves_nothing_and_the_next_run_works(load_pack, demo_model, tmp_path):
    pack, recorder = load_pack()
    M = pack.NODE_CLASS_MAPPINGS
    audio = speech(1.0, 48000, 2)
    portrait, _, _ = M["DemoEncodePortrait"]().encode(demo_model, portrait_image(64, 64), "center", 0, 0, 0, 0, 1.6)
    cond, = M["DemoEncodeAudio"]().encode(demo_model, audio, "neutral")
    track, = M["DemoSampleMotion"]().sample(demo_model, portrait, cond, 1, "euler", 2.0, 1.0, 0, 25.0)["result"]
    output = tmp_path / "comfy" / "output"
    recorder.interrupt_checks, recorder.interrupt_after = 0, 3  # cancel pressed while the 4th chunk renders
    with pytest.raises(sys.modules["comfy.model_management"].InterruptProcessingException):
        M["DemoRenderToVideo"]().render(demo_model, portrait, track, 4, "demo/take", 18, audio)
    assert not [p for p in output.rglob("*") if p.is_file()], "a cancelled render must leave no file behind"
    recorder.interrupt_after = None
    done = M["DemoRenderToVideo"]().render(demo_model, portrait, track, 4, "demo/take", 18, audio)
    assert done["ui"]["images"][0]["filename"] == "take_00001_.mp4"
    assert [p.name for p in output.rglob("*") if p.is_file()] == ["take_00001_.mp4"]
    assert video_info(output / "demo" / "take_00001_.mp4")[0] == 25


def test_render_to_video_never_overwrites_a_file_that_appears(demo_model, tmp_path, monkeypatch):
    from nodes import comfy_host

    portrait, _, cond = encode(demo_model, portrait_image(64, 64), speech(0.3))
    motion = sample(demo_model, portrait, cond)
    taken = tmp_path / "output" / "clash_00001_.mp4"
    taken.parent.mkdir(parents=True)
    taken.write_bytes(b"another job's video")
    monkeypatch.setattr(comfy_host, "save_targets", lambda *a, **k: [(taken, "")])  # the name was free a moment ago
    path, = call("DemoRenderToVideo", model=demo_model, portrait=portrait, motion=motion, batch_size=8,
                 filename_prefix="clash", crf=18)
    assert path.endswith("clash_00001__0001.mp4") and taken.read_bytes() == b"another job's video"


# ---------------------------------------------------------------------------------------------- property


@settings(max_examples=15, deadline=None, derandomize=True, database=None)
@given(
    seconds=st.floats(0.05, 6.0),
    rate=st.sampled_from([8000, 16000, 22050, 44100, 48000]),
    fps=st.one_of(st.sampled_from([10.0, 29.97, 60.0]), st.floats(10.0, 60.0).map(lambda x: round(x, 2))),
    height=st.integers(17, 300),
    width=st.integers(17, 300),
    channels=st.sampled_from([1, 2]),
)
# Clips ending just before a frame boundary, where counting the length after resampling to 16 kHz (rounded up
# by a fraction of a sample) used to add a frame: 2207 samples at 22.05 kHz are 2.9998 frames at 29.97 fps.
@example(seconds=0.100113379, rate=22050, fps=29.97, height=17, width=300, channels=2)
@example(seconds=0.116666667, rate=22050, fps=60.0, height=300, width=17, channels=1)
def test_frames_sizes_and_audio_alignment_property(demo_model, seconds, rate, fps, height, width, channels):
    """ceil(seconds × fps) frames exactly, even sizes, and RenderFrames' audio lasting exactly the frames."""
    audio = speech(seconds, rate, channels)
    n = audio["waveform"].shape[-1]
    image = portrait_image(height, width)
    portrait, crops, cond = encode(demo_model, image, audio, crop="auto")
    motion = sample(demo_model, portrait, cond, fps=fps)
    frames = math.ceil(Fraction(n) * Fraction(str(fps)) / rate)
    assert motion.num_frames == frames
    images, out_fps, out_audio = call("DemoRenderFrames", model=demo_model, portrait=portrait, motion=motion,
                                      batch_size=64, audio=audio)
    assert images.shape[0] == frames and images.shape[1] % 2 == 0 and images.shape[2] % 2 == 0
    exact = Fraction(frames) / Fraction(str(out_fps)) * out_audio["sample_rate"]
    assert out_audio["sample_rate"] == rate and abs(out_audio["waveform"].shape[-1] - exact) <= 1
    pasted, _ = call("DemoPasteBack", rendered=images[:2], original=image, crop=crops, feather=0.1, even_size=True)
    assert pasted.shape[1:3] == (height - height % 2, width - width % 2)
