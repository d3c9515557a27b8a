"""Every node run on the tiny FLOAT model without ComfyUI: outputs match RETURN_TYPES, lengths and sizes agree."""

from __future__ import annotations

import logging
import math

import av
import pytest
import torch

import nodes
from demo_core.face_crop import CropBox
from demo_core.models.demo_model import DemoModel
from demo_core.models.float_model import FloatModel
from demo_core.motion.track import MotionTrack
from demo_core.pipeline import AudioCondition, Portrait, iter_frames
from tests.conftest import SHARED, require_shared
from tests.nodes.conftest import portrait_image, speech


def _image(x):
    assert isinstance(x, torch.Tensor) and x.dim() == 4 and x.shape[-1] == 3 and x.dtype == torch.float32
    assert x.device.type == "cpu" and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert x.shape[1] % 2 == 0 and x.shape[2] % 2 == 0, "h264 needs even sizes"


def _audio(x):
    assert set(x) == {"waveform", "sample_rate"} and isinstance(x["sample_rate"], int)
    assert x["waveform"].dim() == 3 and x["waveform"].is_floating_point()


CHECKS = {
    "IMAGE": _image,
    "MASK": lambda x: x.dim() == 3 and 0.0 <= float(x.min()) <= float(x.max()) <= 1.0 or pytest.fail("MASK"),
    "AUDIO": _audio,
    "FLOAT": lambda x: isinstance(x, float) or pytest.fail("FLOAT"),
    "INT": lambda x: isinstance(x, int) and not isinstance(x, bool) or pytest.fail("INT"),
    "STRING": lambda x: isinstance(x, str) or pytest.fail("STRING"),
    "DEMO_MODEL": lambda x: isinstance(x, (FloatModel, DemoModel)) or pytest.fail("DEMO_MODEL"),
    "DEMO_PORTRAIT": lambda x: isinstance(x, Portrait) or pytest.fail("DEMO_PORTRAIT"),
    "DEMO_AUDIO_COND": lambda x: isinstance(x, AudioCondition) or pytest.fail("DEMO_AUDIO_COND"),
    "DEMO_MOTION": lambda x: isinstance(x, MotionTrack) or pytest.fail("DEMO_MOTION"),
    "DEMO_CROP": lambda x: isinstance(x, tuple) and all(c is None or isinstance(c, CropBox) for c in x)
    or pytest.fail("DEMO_CROP"),
}


def run(node_id: str, **inputs):
    """Call a node as ComfyUI does (keyword inputs) and check its outputs against RETURN_TYPES."""
    cls = nodes.NODE_CLASS_MAPPINGS[node_id]
    out = getattr(cls(), cls.FUNCTION)(**inputs)
    if isinstance(out, dict):
        assert set(out) == {"ui", "result"}
        out = out["result"]
    assert isinstance(out, tuple) and len(out) == len(cls.RETURN_TYPES)
    for kind, value in zip(cls.RETURN_TYPES, out):
        CHECKS[kind](value)
    return out


def run_ui(node_id: str, **inputs) -> dict:
    cls = nodes.NODE_CLASS_MAPPINGS[node_id]
    out = getattr(cls(), cls.FUNCTION)(**inputs)
    run(node_id, **inputs)  # checks the result part on a second run
    return out["ui"]


@pytest.fixture(autouse=True)
def _output_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("DEMO_OUTPUT_DIR", str(tmp_path / "output"))


def _encode(model, image, audio, crop="center", emotion="auto"):
    portrait, crop_out, preview = run("DemoEncodePortrait", model=model, image=image, crop=crop, box_x=0, box_y=0,
                                      box_w=0, box_h=0, scale=1.6)
    cond, = run("DemoEncodeAudio", model=model, audio=audio, emotion=emotion)
    return portrait, crop_out, preview, cond


def _sample(model, portrait, cond, fps=25.0, seed=0, steps=2):
    motion, = run("DemoSampleMotion", model=model, portrait=portrait, audio_cond=cond, steps=steps, solver="euler",
                  a_cfg=2.0, e_cfg=1.0, seed=seed, fps=fps)
    return motion


@pytest.mark.parametrize("fps", [25.0, 30.0, 12.5])
def test_portrait_and_speech_to_frames_and_audio(demo_model, fps):
    seconds, rate = 1.3, 44100
    audio = speech(seconds, rate, channels=2)
    portrait, crop, preview, cond = _encode(demo_model, portrait_image(90, 120), audio)
    assert preview.shape == (1, 64, 64, 3) and crop[0].image_width == 120
    motion = _sample(demo_model, portrait, cond, fps=fps)
    frames_expected = math.ceil(seconds * fps)
    assert (motion.num_frames, motion.fps, motion.relative) == (frames_expected, fps, False)
    images, out_fps, out_audio = run("DemoRenderFrames", model=demo_model, portrait=portrait, motion=motion,
                                     batch_size=7, audio=audio)
    assert images.shape == (frames_expected, 64, 64, 3) and out_fps == fps
    assert out_audio["sample_rate"] == rate
    assert out_audio["waveform"].shape == (1, 2, round(frames_expected / fps * rate))
    n = audio["waveform"].shape[-1]
    assert torch.equal(out_audio["waveform"][..., :n], audio["waveform"][..., :out_audio["waveform"].shape[-1]])
    silent = run("DemoRenderFrames", model=demo_model, portrait=portrait, motion=motion, batch_size=64)[2]
    assert silent["waveform"].abs().max() == 0
    assert silent["waveform"].shape[-1] == round(frames_expected / fps * silent["sample_rate"])


def test_sampling_is_seeded_and_coefficients_match(demo_model):
    portrait, _, _, cond = _encode(demo_model, portrait_image(), speech(0.6))
    a, b, c = (_sample(demo_model, portrait, cond, seed=s) for s in (7, 7, 8))
    assert torch.equal(a.latents, b.latents) and not torch.allclose(a.latents, c.latents)
    q = demo_model.motion_autoencoder.directions()
    assert torch.allclose(a.coefficients, a.latents @ q, atol=1e-5)


def test_render_to_video_writes_playable_mp4(demo_model, tmp_path):
    seconds, fps = 1.1, 30.0
    audio = speech(seconds, 16000)
    image = portrait_image(91, 121)  # odd-sized original: the pasted video is cut to 120 × 90
    portrait, _, _, cond = _encode(demo_model, image, audio)
    motion = _sample(demo_model, portrait, cond, fps=fps)
    ui = run_ui("DemoRenderToVideo", model=demo_model, portrait=portrait, motion=motion, batch_size=8,
                filename_prefix="clips/talk", crf=18, audio=audio, original_image=image, feather=0.1)
    assert ui["animated"] == (True,) and ui["images"][0]["subfolder"] == "clips"
    files = sorted((tmp_path / "output" / "clips").glob("*.mp4"))
    assert [f.name for f in files] == ["talk_00001_.mp4", "talk_00002_.mp4"], "never overwrite"
    with av.open(str(files[0])) as container:
        video = container.streams.video[0]
        assert (video.width, video.height) == (120, 90)
        assert sum(1 for _ in container.decode(video)) == math.ceil(seconds * fps)
        assert container.streams.audio and container.streams.audio[0].rate == 16000
    crops_only = run("DemoRenderToVideo", model=demo_model, portrait=portrait, motion=motion, batch_size=8,
                     filename_prefix="crops", crf=23)[0]
    with av.open(crops_only) as container:
        assert (container.streams.video[0].width, len(container.streams.audio)) == (64, 0)


def test_paste_back_returns_the_original_size(demo_model):
    image = portrait_image(96, 80)
    portrait, crop, _, cond = _encode(demo_model, image, speech(0.4))
    motion = _sample(demo_model, portrait, cond)
    frames = run("DemoRenderFrames", model=demo_model, portrait=portrait, motion=motion, batch_size=8)[0]
    full, mask = run("DemoPasteBack", rendered=frames, original=image, crop=crop, feather=0.1, even_size=True)
    assert full.shape == (frames.shape[0], 96, 80, 3) and mask.shape == (1, 96, 80)
    outside = mask[0] == 0  # centre crop of a tall image: rows above and below the square
    assert outside.any() and torch.allclose(full[:, outside], image[0][outside].expand(frames.shape[0], -1, -1))
    odd = portrait_image(97, 81)
    portrait, crop, _, _ = _encode(demo_model, odd, speech(0.4))
    kept = nodes.NODE_CLASS_MAPPINGS["DemoPasteBack"]().paste(frames, odd, crop, 0.0, False)[0]  # odd on request
    cut = run("DemoPasteBack", rendered=frames, original=odd, crop=crop, feather=0.0, even_size=True)[0]
    assert kept.shape[1:3] == (97, 81) and cut.shape[1:3] == (96, 80)
    portrait, crop, _, _ = _encode(demo_model, image, speech(0.4), crop="none")
    assert crop == (None,)
    stretched, mask = run("DemoPasteBack", rendered=frames, original=image, crop=crop, feather=0.1, even_size=True)
    assert stretched.shape == (frames.shape[0], 96, 80, 3) and bool((mask == 1).all())


def test_two_portraits(demo_model, tmp_path):
    images = portrait_image(64, 64, batch=2)
    audio = speech(0.5)
    portrait, crop, preview, cond = _encode(demo_model, images, audio)
    assert preview.shape[0] == 2 and len(crop) == 2
    motion = _sample(demo_model, portrait, cond)
    assert motion.batch == 2
    frames = run("DemoRenderFrames", model=demo_model, portrait=portrait, motion=motion, batch_size=4)[0]
    assert frames.shape[0] == 2 * motion.num_frames
    full, mask = run("DemoPasteBack", rendered=frames, original=images, crop=crop, feather=0.1, even_size=True)
    assert full.shape == (2 * motion.num_frames, 64, 64, 3) and mask.shape == (2, 64, 64)
    paths = run("DemoRenderToVideo", model=demo_model, portrait=portrait, motion=motion, batch_size=4,
                filename_prefix="pair", crf=18, audio=audio)[0].splitlines()
    assert len(paths) == 2 and all(p.endswith(".mp4") for p in paths)


def test_auto_crop_on_a_real_portrait(demo_model):
    require_shared()
    from demo_core.io.media import load_image

    image = load_image(SHARED / "data" / "portraits" / "violet.png")[None]
    _, crop, preview, _ = _encode(demo_model, image, speech(0.2), crop="auto")
    assert crop[0].size < 350 and preview.shape == (1, 64, 64, 3)


def test_audio_inputs(demo_model, caplog):
    two_clips = speech(0.5, 8000, channels=3, batch=2)
    with caplog.at_level(logging.WARNING, logger="comfyui-demo"):
        cond, = run("DemoEncodeAudio", model=demo_model, audio=two_clips, emotion="happy")
    assert "DemoEncodeAudio" in caplog.text and "first" in caplog.text
    assert cond.features.shape[1] == math.ceil(0.5 * 25) and cond.seconds == pytest.approx(0.5)
    features = {"encoded_audio": torch.zeros(1, 25, 768)}
    with pytest.raises(ValueError, match="^DemoEncodeAudio: audio_encoder_output"):
        run("DemoEncodeAudio", model=demo_model, audio=speech(0.5), emotion="auto", audio_encoder_output=features)


def test_motion_from_video(demo_model):
    image = portrait_image(64, 64)
    portrait, _, _, cond = _encode(demo_model, image, speech(0.5))
    motion = _sample(demo_model, portrait, cond, fps=25.0)
    driving = run("DemoRenderFrames", model=demo_model, portrait=portrait, motion=motion, batch_size=8)[0]
    relative, = run("DemoMotionFromVideo", model=demo_model, images=driving, fps=30.0, crop="none", scale=1.6,
                    relative=True, batch_size=5)
    assert (relative.batch, relative.num_frames, relative.fps, relative.relative) == (1, driving.shape[0], 30.0, True)
    assert relative.latents[0, 0].abs().max() == 0
    absolute, = run("DemoMotionFromVideo", model=demo_model, images=driving, fps=30.0, crop="center", scale=1.6,
                    relative=False, batch_size=64)
    assert not absolute.relative and absolute.latents[0, 0].abs().max() > 0
    frames, fps, _ = run("DemoRenderFrames", model=demo_model, portrait=portrait, motion=relative, batch_size=8)
    assert frames.shape[0] == driving.shape[0] and fps == 30.0
    # a zero offset renders the portrait at its own pose: h_source + source_motion
    own = next(iter_frames(demo_model, portrait, portrait.source_motion[:, None], batch=1))[0, 0]
    assert torch.allclose(frames[0], ((own.clamp(-1, 1) + 1) / 2).permute(1, 2, 0), atol=1e-5)


def test_save_load_and_preview_without_comfyui(demo_model, tmp_path):
    track = MotionTrack(torch.randn(2, 12, 512), 25.0, "edited")
    saved, = run("DemoSaveMotion", motion=track, filename_prefix="m/take")
    assert saved.startswith(str(tmp_path / "output" / "m" / "take_00001_"))
    loaded, fps, frames = run("DemoLoadMotion", motion_file="ignored", path=saved)
    assert torch.equal(loaded.latents, track.latents) and (fps, frames) == (25.0, 12)
    with pytest.raises(ValueError, match="^DemoPreviewMotion: motion: it carries no motion dictionary"):
        run("DemoPreviewMotion", motion=track, portrait_index=0, width=256, height=128)
    with pytest.raises(ValueError, match="^DemoPreviewMotion: portrait_index"):
        run("DemoPreviewMotion", motion=track, portrait_index=2, width=256, height=128, model=demo_model)
    plot, = run("DemoPreviewMotion", motion=track, portrait_index=1, width=256, height=128, model=demo_model)
    assert plot.shape == (1, 128, 256, 3)


@pytest.mark.parametrize(
    "node_id, inputs, needle",
    [
        ("DemoLoadModel", {"checkpoint": "absent.safetensors", "device": "cpu", "dtype": "auto"}, "absent"),
        ("DemoLoadMotion", {"motion_file": "(no motion file in the output folder)"}, "no motion file"),
        ("DemoLoadMotion", {"motion_file": "x", "path": "/nonexistent/a.motion.safetensors"}, "does not exist"),
    ],
)
def test_errors_name_the_node(node_id, inputs, needle):
    with pytest.raises((ValueError, FileNotFoundError), match=f"^{node_id}: .*{needle}"):
        run(node_id, **inputs)


def test_engine_errors_name_the_node(demo_model):
    image = portrait_image(64, 64, batch=2)
    with pytest.raises(ValueError, match="^DemoEncodePortrait: box"):
        run("DemoEncodePortrait", model=demo_model, image=image, crop="box", box_x=0, box_y=0, box_w=0, box_h=0,
            scale=1.6)
    portrait, _, _, cond = _encode(demo_model, image, speech(0.3))
    three = MotionTrack(torch.zeros(3, 4, 512), 25.0)
    with pytest.raises(ValueError, match="^DemoRenderFrames: motion: holds 3 tracks but there are 2 portraits"):
        run("DemoRenderFrames", model=demo_model, portrait=portrait, motion=three, batch_size=8)
    narrow = MotionTrack(torch.zeros(1, 4, 16), 25.0)
    with pytest.raises(ValueError, match="^DemoRenderToVideo: motion: latent width 16"):
        run("DemoRenderToVideo", model=demo_model, portrait=portrait, motion=narrow, batch_size=8,
            filename_prefix="x", crf=18)


def test_demo_format_checkpoint_through_every_stage(tmp_path, monkeypatch):
    from demo_core.io.checkpoints import save_checkpoint
    from tests.models.demo_tiny import tiny_demo_config

    cfg = tiny_demo_config()
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "models" / "demo_tiny.safetensors", DemoModel(cfg), cfg.to_dict())
    monkeypatch.setenv("DEMO_MODELS_DIR", str(tmp_path / "models"))
    checkpoint = "demo_tiny.safetensors"
    assert checkpoint in nodes.NODE_CLASS_MAPPINGS["DemoLoadModel"].INPUT_TYPES()["required"]["checkpoint"][0]
    model, = run("DemoLoadModel", checkpoint=checkpoint, device="cpu", dtype="auto")
    audio = speech(0.7)
    portrait, _, _, cond = _encode(model, portrait_image(64, 64), audio)
    motion = _sample(model, portrait, cond, fps=30.0)
    assert motion.num_frames == math.ceil(0.7 * 30) and motion.factors is not None
    assert "pose.yaw" in motion.coefficient_names()
    frames = run("DemoRenderFrames", model=model, portrait=portrait, motion=motion, batch_size=8, audio=audio)[0]
    assert frames.shape == (motion.num_frames, 64, 64, 3)
    ui = run_ui("DemoPreviewMotion", motion=motion, portrait_index=0, width=256, height=128)
    assert "pose.yaw" in [curve["name"] for curve in ui["demo_curves"]]


def test_model_loaded_under_inference_mode_renders(tmp_path, monkeypatch):
    """ComfyUI executes every node inside torch.inference_mode(): the loaded model must still work."""
    require_shared()
    from tests.conftest import TINY

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny.safetensors").write_bytes((TINY / "float_tiny.safetensors").read_bytes())
    monkeypatch.setenv("DEMO_MODELS_DIR", str(tmp_path / "models"))
    with torch.inference_mode():
        model, = run("DemoLoadModel", checkpoint="tiny.safetensors", device="cpu", dtype="float32")
        assert not any(p.is_inference() for p in model.parameters())
        audio = speech(0.3)
        portrait, _, _, cond = _encode(model, portrait_image(64, 64), audio)
        motion = _sample(model, portrait, cond)
        path, = run("DemoRenderToVideo", model=model, portrait=portrait, motion=motion, batch_size=4,
                    filename_prefix="im", crf=18, audio=audio)
    assert path.endswith(".mp4")


def test_embedded_model_end_to_end():
    """The embedded default model through the nodes: portrait + speech → frames + audio of matching length."""
    from nodes.comfy_host import EMBEDDED_PREFIX, list_checkpoints

    name = EMBEDDED_PREFIX + "demo_synthetic_64"
    assert name in list_checkpoints()
    model, = run("DemoLoadModel", checkpoint=name, device="cpu", dtype="float32")
    assert isinstance(model, DemoModel)
    seconds, rate = 1.1, 48000
    audio = speech(seconds, rate, channels=2)
    portrait, _, _, cond = _encode(model, portrait_image(96, 96), audio)
    motion = _sample(model, portrait, cond, fps=30.0)
    images, fps, out_audio = run("DemoRenderFrames", model=model, portrait=portrait, motion=motion, batch_size=16,
                                 audio=audio)
    assert images.shape[0] == math.ceil(seconds * 30) and fps == 30.0
    assert images.shape[1] % 2 == 0 and images.shape[2] % 2 == 0
    assert out_audio["waveform"].shape[-1] == round(images.shape[0] / fps * rate)
