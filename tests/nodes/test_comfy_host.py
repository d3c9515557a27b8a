"""The pack inside a (stubbed) ComfyUI: folder registration, checkpoints, progress, interrupt, outputs."""

from __future__ import annotations

import sys

import pytest
import torch

from demo_core import pipeline

from tests.conftest import TINY, require_shared
from tests.nodes.conftest import portrait_image, speech


def _host(pack):
    """The pack's comfy_host module (the nodes load, and register the folder, on first mapping access)."""
    assert pack.NODE_CLASS_MAPPINGS
    return sys.modules[f"{pack.__name__}.nodes.comfy_host"]


def _interrupt_exception():
    # the stub's class: tests.nodes.conftest may be imported twice under two names (see tests/nodes/conftest.py)
    return sys.modules["comfy.model_management"].InterruptProcessingException


def test_registers_models_folder(load_pack, tmp_path):
    pack, _ = load_pack()
    assert _host(pack).folder_paths is sys.modules["folder_paths"]
    fp = sys.modules["folder_paths"]
    dirs, extensions = fp.folder_names_and_paths["demo"]
    assert dirs == [str(tmp_path / "comfy" / "models" / "demo")]
    assert extensions >= fp.supported_pt_extensions | {".safetensors"}
    assert "DemoLoadModel" in pack.NODE_CLASS_MAPPINGS


def test_keeps_user_configured_folders(load_pack, tmp_path):
    user = str(tmp_path / "elsewhere" / "demo")
    pack, _ = load_pack(user_demo_paths=([user], set()))  # as add_model_folder_path leaves it: no extensions
    _host(pack)
    dirs, extensions = sys.modules["folder_paths"].folder_names_and_paths["demo"]
    assert dirs == [user, str(tmp_path / "comfy" / "models" / "demo")]
    assert ".safetensors" in extensions and ".pth" in extensions


def test_checkpoint_list_and_resolution(load_pack, tmp_path, monkeypatch):
    pack, _ = load_pack()
    host = _host(pack)
    monkeypatch.setattr(host, "EMBEDDED_MODELS", tmp_path / "no_embedded")
    demo_dir = tmp_path / "comfy" / "models" / "demo"
    (demo_dir / "float" / "wav2vec2-base-960h").mkdir(parents=True)
    (demo_dir / "float" / "float.pth").write_bytes(b"x")
    (demo_dir / "float" / "wav2vec2-base-960h" / "pytorch_model.bin").write_bytes(b"x")
    (demo_dir / "readme.txt").write_text("not a checkpoint")
    assert host.list_checkpoints() == ["float/float.pth"]
    assert host.resolve_checkpoint("float/float.pth") == demo_dir / "float" / "float.pth"
    node = pack.NODE_CLASS_MAPPINGS["DemoLoadModel"]
    assert node.INPUT_TYPES()["required"]["checkpoint"][0] == ["float/float.pth"]
    with pytest.raises(FileNotFoundError, match="^DemoLoadModel: .*missing.pth"):
        node().load("missing.pth", "cpu", "auto")


def test_loader_caches_until_the_file_changes(load_pack, tmp_path):
    require_shared()
    pack, recorder = load_pack()
    demo_dir = tmp_path / "comfy" / "models" / "demo"
    demo_dir.mkdir(parents=True)
    (demo_dir / "tiny.safetensors").write_bytes((TINY / "float_tiny.safetensors").read_bytes())
    node = pack.NODE_CLASS_MAPPINGS["DemoLoadModel"]
    first, = node().load("tiny.safetensors", "auto", "auto")
    again, = node().load("tiny.safetensors", "cpu", "float32")
    assert again is first and first.dtype == torch.float32 and first.device.type == "cpu"
    stamp = node.IS_CHANGED("tiny.safetensors", "auto", "auto")
    assert stamp and node.IS_CHANGED("nothing.safetensors", "auto", "auto") == ""
    import os
    st = os.stat(demo_dir / "tiny.safetensors")
    os.utime(demo_dir / "tiny.safetensors", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert node.IS_CHANGED("tiny.safetensors", "auto", "auto") != stamp
    reloaded, = node().load("tiny.safetensors", "auto", "auto")
    assert reloaded is not first
    half, = node().load("tiny.safetensors", "cpu", "bfloat16")
    assert half.dtype == torch.bfloat16
    assert recorder.empty_cache >= 1  # the oldest cached model was released


@pytest.fixture
def stubbed_run(load_pack, demo_model):
    """The pack under stubs plus an encoded portrait and speech for the tiny model."""
    pack, recorder = load_pack()
    M = pack.NODE_CLASS_MAPPINGS
    image = portrait_image(90, 120)
    portrait, crop, _ = M["DemoEncodePortrait"]().encode(demo_model, image, "center", 0, 0, 0, 0, 1.6)
    audio = speech(1.0, 22050, 2)
    cond, = M["DemoEncodeAudio"]().encode(demo_model, audio, "neutral")
    return pack, recorder, M, portrait, cond, audio, image


def test_progress_over_steps_and_frames(stubbed_run, demo_model):
    pack, recorder, M, portrait, cond, audio, _ = stubbed_run
    out = M["DemoSampleMotion"]().sample(demo_model, portrait, cond, 3, "euler", 2.0, 1.0, 1, 25.0, unique_id="12")
    (track,) = out["result"]
    curves = out["ui"]["demo_curves"]  # drawn on the node by web/js/motion_preview.js
    assert [c["name"] for c in curves] == [f"c{i}" for i in range(20)]
    assert all(c["fps"] == 25.0 and len(c["values"]) == 25 for c in curves)
    windows = -(-25 // demo_model.fmt.cfg.num_frames)
    assert recorder.bars == [(windows * 3, "12")]
    assert [v for _, v, _ in recorder.progress] == list(range(1, windows * 3 + 1))
    assert recorder.interrupt_checks == windows * 3
    recorder.progress.clear()
    M["DemoRenderFrames"]().render(demo_model, portrait, track, 10, audio, unique_id="13")
    assert recorder.progress == [("13", 10, 25), ("13", 20, 25), ("13", 25, 25)]


def test_interrupt_stops_rendering_between_chunks(stubbed_run, demo_model, monkeypatch):
    pack, recorder, M, portrait, cond, audio, image = stubbed_run
    (track,) = M["DemoSampleMotion"]().sample(demo_model, portrait, cond, 1, "euler", 2.0, 1.0, 0, 25.0)["result"]
    rendered = []  # frames per chunk handed on by the decoder loop
    original_iter_frames = pipeline.iter_frames

    def counting_iter_frames(*args, **kwargs):
        for chunk in original_iter_frames(*args, **kwargs):
            rendered.append(chunk.shape[1])
            yield chunk

    monkeypatch.setattr(pipeline.tracks, "iter_frames", counting_iter_frames)
    recorder.interrupt_checks, recorder.interrupt_after = 0, 2  # cancel on the third chunk
    with pytest.raises(_interrupt_exception()):
        M["DemoRenderToVideo"]().render(demo_model, portrait, track, 4, "demo/cancelled", 18, audio, image, 0.1)
    # 25 frames = 7 chunks; cancel is seen right after the third chunk is decoded, before it is handed on
    assert rendered == [4, 4], "rendering must stop at the chunk where cancel was seen"
    out = _host(pack).output_directory()
    assert not any(p.is_file() for p in out.rglob("*")), "a cancelled video must leave no file behind"
    rendered.clear()
    recorder.interrupt_checks = 0
    with pytest.raises(_interrupt_exception()):
        M["DemoRenderFrames"]().render(demo_model, portrait, track, 4, audio)
    assert rendered == [4, 4]


def test_outputs_go_to_comfyui_folders(stubbed_run, demo_model, tmp_path):
    pack, recorder, M, portrait, cond, audio, _ = stubbed_run
    (track,) = M["DemoSampleMotion"]().sample(demo_model, portrait, cond, 1, "euler", 2.0, 1.0, 0, 25.0)["result"]
    video = M["DemoRenderToVideo"]().render(demo_model, portrait, track, 8, "demo/talk", 18, audio)
    output = tmp_path / "comfy" / "output"
    assert video["ui"] == {"images": [{"filename": "talk_00001_.mp4", "subfolder": "demo", "type": "output"}],
                           "animated": (True,)}
    assert video["result"] == (str(output / "demo" / "talk_00001_.mp4"),)
    second = M["DemoRenderToVideo"]().render(demo_model, portrait, track, 8, "demo/talk", 18, audio)
    assert second["ui"]["images"][0]["filename"] == "talk_00002_.mp4"
    saved = M["DemoSaveMotion"]().save(track, "motions/take")
    assert saved["result"] == (str(output / "motions" / "take_00001_.motion.safetensors"),)
    choices = M["DemoLoadMotion"].INPUT_TYPES()["required"]["motion_file"][0]
    assert choices == ["motions/take_00001_.motion.safetensors"]
    loaded, fps, frames = M["DemoLoadMotion"]().load(choices[0])
    assert torch.equal(loaded.latents, track.latents) and (fps, frames) == (25.0, 25)
    preview = M["DemoPreviewMotion"]().preview(track, 0, 320, 200)
    (entry,) = preview["ui"]["images"]
    assert entry["type"] == "temp" and (tmp_path / "comfy" / "temp" / entry["filename"]).is_file()
