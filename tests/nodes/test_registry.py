"""Node definitions: registry, naming, INPUT_TYPES validity, signatures; importing the pack like ComfyUI."""

from __future__ import annotations

import inspect
import re
import sys

import pytest

import nodes
from nodes import comfy_host
from nodes.types import DEMO_AUDIO_COND, DEMO_CROP, DEMO_MODEL, DEMO_MOTION, DEMO_PORTRAIT

PACK_TYPES = {DEMO_MODEL, DEMO_PORTRAIT, DEMO_AUDIO_COND, DEMO_MOTION, DEMO_CROP}
HOST_TYPES = {"IMAGE", "MASK", "AUDIO", "AUDIO_ENCODER_OUTPUT", "INT", "FLOAT", "STRING", "BOOLEAN"}
OUTPUT_NODES = {"DemoRenderToVideo", "DemoSaveMotion", "DemoPreviewMotion", "DemoCalibrateFactors"}
NODES = sorted(nodes.NODE_CLASS_MAPPINGS.items())


def test_registry_generates_both_mappings():
    assert set(nodes.NODE_CONFIG) == set(nodes.NODE_CLASS_MAPPINGS) == set(nodes.NODE_DISPLAY_NAME_MAPPINGS)
    assert len(nodes.NODE_CONFIG) == 14
    for node_id, entry in nodes.NODE_CONFIG.items():
        assert entry["class"].__name__ == node_id
        assert re.fullmatch(r"Demo([A-Z][a-z]+)+", node_id), node_id
        assert entry["name"] == " ".join(re.findall(r"[A-Z][a-z]*", node_id))


@pytest.mark.parametrize("node_id, cls", NODES)
def test_class_attributes(node_id, cls):
    assert cls.CATEGORY.startswith("DEMO/") and cls.CATEGORY.count("/") == 1
    assert isinstance(cls.DESCRIPTION, str) and len(cls.DESCRIPTION) > 20
    assert len(cls.RETURN_TYPES) == len(cls.RETURN_NAMES) == len(cls.OUTPUT_TOOLTIPS) >= 1
    assert all(isinstance(t, str) and t for t in cls.OUTPUT_TOOLTIPS)
    assert set(cls.RETURN_TYPES) <= PACK_TYPES | HOST_TYPES
    assert getattr(cls, "OUTPUT_NODE", False) == (node_id in OUTPUT_NODES)
    assert callable(getattr(cls, cls.FUNCTION))


def _check_input(node_id: str, name: str, spec: tuple) -> None:
    where = f"{node_id}.{name}"
    assert isinstance(spec, tuple) and len(spec) == 2, where
    kind, options = spec
    assert isinstance(options.get("tooltip"), str) and len(options["tooltip"]) > 5, f"{where}: tooltip"
    if isinstance(kind, list):
        assert kind and all(isinstance(v, str) for v in kind), f"{where}: empty or non-string combo"
        assert options.get("default", kind[0]) in kind, f"{where}: default not among the choices"
        return
    assert kind in PACK_TYPES | HOST_TYPES, f"{where}: unknown type {kind}"
    if kind in ("INT", "FLOAT"):
        py = int if kind == "INT" else float
        lo, hi, default = options["min"], options["max"], options["default"]
        assert isinstance(default, (int, float)) and not isinstance(default, bool), where
        assert lo <= default <= hi, f"{where}: default {default} outside [{lo}, {hi}]"
        assert options.get("step", 1) > 0 and py(lo) == lo, where
    elif kind == "BOOLEAN":
        assert isinstance(options["default"], bool), where
    elif kind == "STRING":
        assert isinstance(options["default"], str), where


@pytest.mark.parametrize("node_id, cls", NODES)
def test_input_types_are_valid_and_match_the_function(node_id, cls):
    spec = cls.INPUT_TYPES()
    assert set(spec) <= {"required", "optional", "hidden"} and spec["required"]
    for section in ("required", "optional"):
        for name, entry in spec.get(section, {}).items():
            _check_input(node_id, name, entry)
    assert spec.get("hidden", {}) in ({}, {"unique_id": "UNIQUE_ID"})
    params = dict(inspect.signature(getattr(cls, cls.FUNCTION)).parameters)
    params.pop("self")
    required, optional = set(spec["required"]), set(spec.get("optional", {})) | set(spec.get("hidden", {}))
    assert set(params) == required | optional, f"{node_id}: function parameters differ from the inputs"
    for name, param in params.items():
        has_default = param.default is not inspect.Parameter.empty
        assert has_default == (name in optional), f"{node_id}.{name}: default iff optional/hidden"
    for name, (kind, options) in spec.get("optional", {}).items():  # a workflow saved without the widget runs so
        if "default" in options:
            assert params[name].default == options["default"], f"{node_id}.{name}: default differs from the widget's"


def test_seed_controls_after_generate_and_fps_range():
    req = nodes.NODE_CLASS_MAPPINGS["DemoSampleMotion"].INPUT_TYPES()["required"]
    assert req["seed"][1]["control_after_generate"] is True
    assert (req["fps"][1]["min"], req["fps"][1]["default"], req["fps"][1]["max"]) == (10.0, 25.0, 60.0)
    assert req["steps"][1]["default"] == 10
    assert nodes.NODE_CLASS_MAPPINGS["DemoEncodePortrait"].INPUT_TYPES()["required"]["scale"][1]["default"] == 1.6


def test_render_frames_tooltip_points_to_render_to_video():
    assert "Demo Render To Video" in nodes.NODE_CLASS_MAPPINGS["DemoRenderFrames"].DESCRIPTION


def test_checkpoint_combo_without_comfyui(tmp_path, monkeypatch):
    monkeypatch.setenv("DEMO_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setattr(comfy_host, "EMBEDDED_MODELS", tmp_path / "none")
    assert comfy_host.list_checkpoints() == [comfy_host.NO_CHECKPOINT]
    with pytest.raises(FileNotFoundError, match="models/demo"):
        comfy_host.resolve_checkpoint(comfy_host.NO_CHECKPOINT)
    (tmp_path / "models" / "float" / "wav2vec2-base-960h").mkdir(parents=True)
    (tmp_path / "models" / "float" / "float.pth").write_bytes(b"x")
    (tmp_path / "models" / "float" / "wav2vec2-base-960h" / "model.safetensors").write_bytes(b"x")
    (tmp_path / "models" / "notes.txt").write_text("x")
    embedded = tmp_path / "embedded"
    embedded.mkdir()
    (embedded / "demo_synthetic_64.safetensors").write_bytes(b"x")
    monkeypatch.setattr(comfy_host, "EMBEDDED_MODELS", embedded)
    monkeypatch.setattr(comfy_host, "EMBEDDED_DEFAULT", embedded / "demo_synthetic_64.safetensors")
    names = comfy_host.list_checkpoints()
    assert names == ["float/float.pth", "(embedded) demo_synthetic_64"]
    assert comfy_host.default_checkpoint() == "(embedded) demo_synthetic_64"
    assert comfy_host.resolve_checkpoint(names[0]) == tmp_path / "models" / "float" / "float.pth"
    assert comfy_host.resolve_checkpoint(names[1]) == embedded / "demo_synthetic_64.safetensors"
    with pytest.raises(FileNotFoundError, match="gone.safetensors"):
        comfy_host.resolve_checkpoint("gone.safetensors")


def test_fallbacks_without_comfyui(tmp_path, monkeypatch):
    assert comfy_host.folder_paths is None and comfy_host.comfy_utils is None
    comfy_host.register_models_folder()  # no-op
    comfy_host.check_interrupt()  # no-op
    bar = comfy_host.progress_bar(10, "7")
    bar.update_absolute(3, 10)
    bar.update(2)
    assert bar.current == 5
    assert comfy_host.intermediate_device().type == "cpu"
    assert comfy_host.resolve_device("cpu").type == "cpu"
    if not __import__("torch").cuda.is_available():
        with pytest.raises(ValueError, match="not available"):
            comfy_host.resolve_device("cuda")
    monkeypatch.setenv("DEMO_OUTPUT_DIR", str(tmp_path / "out"))
    assert comfy_host.output_directory() == tmp_path / "out"
    first = comfy_host.save_targets("clips/talk", "mp4", count=2)
    assert [(p.name, sub) for p, sub in first] == [("talk_00001_.mp4", "clips"), ("talk_00002_.mp4", "clips")]
    first[1][0].write_bytes(b"x")
    assert comfy_host.save_targets("clips/talk", "mp4")[0][0].name == "talk_00003_.mp4"
    assert comfy_host.save_targets("talk", "mp4")[0][1] == ""
    with pytest.raises(ValueError, match="outside the output folder"):
        comfy_host.save_targets("../escape", "mp4")


def test_pack_imports_like_comfyui_without_host(load_pack):
    pack, _ = load_pack(stubs=False)
    assert pack.WEB_DIRECTORY == "./web"
    assert "NODE_CLASS_MAPPINGS" not in vars(pack), "mappings should load on first access"
    assert f"{pack.__name__}.nodes" not in sys.modules
    mappings = pack.NODE_CLASS_MAPPINGS
    assert sorted(mappings) == sorted(nodes.NODE_CLASS_MAPPINGS)
    assert pack.NODE_DISPLAY_NAME_MAPPINGS == nodes.NODE_DISPLAY_NAME_MAPPINGS
    assert sys.modules[f"{pack.__name__}.nodes.comfy_host"].folder_paths is None
    assert mappings["DemoLoadModel"] is not nodes.NODE_CLASS_MAPPINGS["DemoLoadModel"]  # its own copy
    assert not hasattr(pack, "comfy_entrypoint")  # V1 only: ComfyUI must not find a V3 entry point
