"""Example workflows: valid against the node definitions (widget order, link types, input files), and they run.

The checker reads the UI format the ComfyUI front-end saves and opens.  ``widgets_values`` are mapped onto the
widget inputs in declaration order (required, then optional), exactly as the front-end does when it turns a
saved workflow into a prompt, so a widget-order change that would break saved workflows fails here.  Front-end
rules encoded below: an INT named ``seed``/``noise_seed`` (or with ``control_after_generate``) carries one
extra control value after it; missing trailing values of optional widgets take their defaults (workflows saved
before an optional input was added); a widget converted to an input and linked is listed in ``inputs`` with a
``widget`` entry and keeps its saved value.

Core ComfyUI nodes (0.3.64) are described by :data:`CORE`: their inputs in declaration order, outputs, and a
stand-in run for the test.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import av
import pytest
import torch

import nodes
from demo_core.models.loader import FLOAT_WAV2VEC2_FOLDERS
from nodes import comfy_host
from tests.conftest import ROOT, SHARED, TINY, require_shared
from tests.nodes.conftest import portrait_image, speech

WORKFLOWS = sorted((ROOT / "workflows").glob("*.json"))
EXAMPLES = ROOT / "example_workflows"
README = ROOT / "workflows" / "README.md"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "FILE", "UPLOAD"}
SEED_CONTROLS = {"fixed", "increment", "decrement", "randomize"}
# Files a LoadImage / LoadAudio node may name: the README tells users to copy them into ComfyUI/input.
INPUT_FILES = {
    "portrait_synthetic.png": ROOT / "assets" / "portrait_synthetic.png",
    "speech_arctic_a0009.wav": ROOT / "assets" / "speech_arctic_a0009.wav",
    "violet_talking.webp": SHARED / "data" / "driving" / "violet_talking.webp",
}
# A FLOAT checkpoint is not on a fresh install: a workflow may name one only with a Note saying where it goes.
FLOAT_CHECKPOINTS = ("float.pth", "FLOAT.safetensors")
EMBEDDED_DEFAULT = comfy_host.EMBEDDED_PREFIX + comfy_host.EMBEDDED_DEFAULT.stem
DRIVING_FRAMES = 9


def _driving_frames() -> torch.Tensor:
    """A short 'video': the stand-in portrait sliding sideways, (N, 96, 96, 3)."""
    base = portrait_image(96, 128, seed=3)
    return torch.stack([base[0, :, 2 * k:2 * k + 96] for k in range(DRIVING_FRAMES)])


def _load_image(image, upload="image"):
    if image == "violet_talking.webp":  # core LoadImage returns every frame of an animated image as a batch
        frames = _driving_frames()
        return frames, torch.zeros(frames.shape[:3])
    return portrait_image(96, 80), torch.zeros(1, 96, 80)


def _scale_by(image, upscale_method, scale_by):
    h, w = round(image.shape[1] * scale_by), round(image.shape[2] * scale_by)
    return (torch.nn.functional.interpolate(image.movedim(-1, 1), size=(h, w), mode="bilinear").movedim(1, -1),)


def _save_video(video, filename_prefix, format="auto", codec="auto"):
    _, height, width, _ = video.images.shape
    assert height % 2 == 0 and width % 2 == 0, "h264 needs even sizes"
    return ()


@dataclass
class CoreNode:
    """A core node as the workflows see it: inputs in declaration order (name → (kind, options, optional))."""

    inputs: dict
    outputs: tuple  # ((name, type), ...)
    run: Callable


_FLOAT_FPS = {"default": 30.0, "min": 1.0, "max": 120.0, "step": 1.0}
_UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
CORE = {
    "LoadImage": CoreNode({"image": ("FILE", {}, False), "upload": ("UPLOAD", {}, False)},
                          (("IMAGE", "IMAGE"), ("MASK", "MASK")), _load_image),
    "LoadAudio": CoreNode({"audio": ("FILE", {}, False)}, (("AUDIO", "AUDIO"),),
                          lambda audio: (speech(1.0, 22050, channels=2),)),
    "Note": CoreNode({"text": ("STRING", {}, False)}, (), lambda text: ()),
    "ImageScaleBy": CoreNode({"image": ("IMAGE", {}, False),
                              "upscale_method": (_UPSCALE_METHODS, {}, False),
                              "scale_by": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 8.0, "step": 0.01}, False)},
                             (("IMAGE", "IMAGE"),), _scale_by),
    "CreateVideo": CoreNode({"images": ("IMAGE", {}, False), "fps": ("FLOAT", _FLOAT_FPS, False),
                             "audio": ("AUDIO", {}, True)},
                            (("VIDEO", "VIDEO"),),
                            lambda images, fps, audio=None: (SimpleNamespace(images=images, fps=fps, audio=audio),)),
    "SaveVideo": CoreNode({"video": ("VIDEO", {}, False), "filename_prefix": ("STRING", {}, False),
                           "format": (["auto", "mp4"], {}, False), "codec": (["auto", "h264"], {}, False)},
                          (), _save_video),
}


def node_inputs(node_type: str) -> dict:
    """name → (kind, options, optional) in declaration order, for pack and core nodes."""
    if node_type in CORE:
        return CORE[node_type].inputs
    spec = nodes.NODE_CLASS_MAPPINGS[node_type].INPUT_TYPES()
    return {**{n: (k, o, False) for n, (k, o) in spec["required"].items()},
            **{n: (k, o, True) for n, (k, o) in spec.get("optional", {}).items()}}


def node_outputs(node_type: str) -> list[tuple[str, str]]:
    if node_type in CORE:
        return list(CORE[node_type].outputs)
    cls = nodes.NODE_CLASS_MAPPINGS[node_type]
    return list(zip(cls.RETURN_NAMES, cls.RETURN_TYPES))


def is_widget(kind) -> bool:
    return isinstance(kind, list) or kind in WIDGET_TYPES


def widget_kwargs(node_type: str, values: list) -> dict:
    """Saved widget values → keyword inputs (a seed's control value follows it and is dropped)."""
    kwargs, values = {}, list(values)
    for name, (kind, opts, optional) in node_inputs(node_type).items():
        if not is_widget(kind):
            continue
        if not values:
            assert optional, f"{node_type}: no saved value for the required widget {name}"
            continue  # the front-end keeps the default of an optional widget added after the workflow was saved
        kwargs[name] = values.pop(0)
        if kind == "INT" and opts.get("control_after_generate", name in ("seed", "noise_seed")):
            assert values.pop(0) in SEED_CONTROLS, f"{node_type}.{name}: no control_after_generate value"
    assert not values, f"{node_type}: {len(values)} widget values left over"
    return kwargs


def note_text(workflow: dict) -> str:
    return "\n".join(n["widgets_values"][0] for n in workflow["nodes"] if n["type"] == "Note")


def check_checkpoint(value: str, workflow: dict) -> None:
    if value in comfy_host.list_checkpoints() or value == EMBEDDED_DEFAULT:
        return
    assert value in FLOAT_CHECKPOINTS, f"checkpoint {value!r} is neither installed, the embedded model nor FLOAT's"
    notes = note_text(workflow)
    assert value in notes and "models/demo" in notes, f"no Note tells where {value} goes"
    assert all(folder in notes for folder in FLOAT_WAV2VEC2_FOLDERS), "the Note must name the wav2vec2 folders"


def check_widget_value(node_type: str, name: str, kind, opts: dict, value, workflow: dict) -> None:
    where = f"{node_type}.{name} = {value!r}"
    if node_type == "DemoLoadModel" and name == "checkpoint":
        check_checkpoint(value, workflow)
    elif isinstance(kind, list):
        assert value in kind, where
    elif kind in ("INT", "FLOAT"):
        assert isinstance(value, (int, float)) and not isinstance(value, bool), where
        assert opts.get("min", -math.inf) <= value <= opts.get("max", math.inf), where
        assert kind == "FLOAT" or isinstance(value, int), where
    elif kind == "BOOLEAN":
        assert isinstance(value, bool), where
    elif kind == "FILE":
        assert value in INPUT_FILES, f"{where}: not a file the README tells users to copy"
        assert value in README.read_text(), f"{where}: workflows/README.md does not mention it"
    elif kind == "UPLOAD":
        assert value == "image", where
    else:
        assert isinstance(value, str), where


def check_workflow(workflow: dict) -> None:
    """Raise AssertionError unless the UI-format workflow matches the node definitions."""
    assert workflow["version"] == 0.4
    by_id = {n["id"]: n for n in workflow["nodes"]}
    links = {link[0]: link for link in workflow["links"]}
    assert len(by_id) == len(workflow["nodes"]) and workflow["last_node_id"] >= max(by_id)
    assert len(links) == len(workflow["links"]) and workflow["last_link_id"] >= max(links, default=0)
    for n in workflow["nodes"]:
        assert n["type"] in CORE or n["type"] in nodes.NODE_CLASS_MAPPINGS, f"unknown node type {n['type']}"
        assert [(o["name"], o["type"]) for o in n["outputs"]] == node_outputs(n["type"]), n["type"]
        declared = node_inputs(n["type"])
        for slot, i in enumerate(n["inputs"]):
            kind = declared[i["name"]][0]
            if is_widget(kind):  # a widget converted to an input
                assert i.get("widget", {}).get("name") == i["name"], f"{n['type']}.{i['name']}: no widget entry"
                kind = "COMBO" if isinstance(kind, list) else kind
            assert i["type"] == kind, f"{n['type']}.{i['name']}: type {i['type']}, expected {kind}"
            if i["link"] is not None:
                assert links[i["link"]][3:5] == [n["id"], slot], f"{n['type']}.{i['name']}: link does not point here"
        linked = {i["name"] for i in n["inputs"] if i["link"] is not None}
        required = {name for name, (kind, _, optional) in declared.items() if not optional and not is_widget(kind)}
        assert required <= linked, f"{n['type']}: unlinked input {required - linked}"
        for slot, o in enumerate(n["outputs"]):
            assert all(links[k][1:3] == [n["id"], slot] for k in o["links"] or []), f"{n['type']}.{o['name']}"
        for name, value in widget_kwargs(n["type"], n["widgets_values"]).items():
            kind, opts, _ = declared[name]
            check_widget_value(n["type"], name, kind, opts, value, workflow)
    for link_id, src, src_slot, dst, dst_slot, kind in workflow["links"]:
        source, target = by_id[src]["outputs"][src_slot], by_id[dst]["inputs"][dst_slot]
        assert source["type"] == kind and link_id in source["links"]
        assert target["type"] == kind and target["link"] == link_id


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_matches_node_definitions(path: Path):
    check_workflow(json.loads(path.read_text()))


def _node(workflow: dict, node_type: str) -> dict:
    return next(n for n in workflow["nodes"] if n["type"] == node_type)


def _swap_widgets(w):
    values = _node(w, "DemoSampleMotion")["widgets_values"]
    values[1], values[2] = values[2], values[1]  # solver and a_cfg swapped


def _drop_seed_control(w):
    _node(w, "DemoSampleMotion")["widgets_values"].remove("fixed")


def _unknown_checkpoint(w):
    _node(w, "DemoLoadModel")["widgets_values"][0] = "float.pth"  # FLOAT's file, but no Note about it


def _undocumented_input(w):
    _node(w, "LoadImage")["widgets_values"][0] = "my_face.png"


def _wrong_link_type(w):
    w["links"][0][5] = "IMAGE"


def _unlinked_required_input(w):
    motion = next(i for i in _node(w, "DemoRenderToVideo")["inputs"] if i["name"] == "motion")
    link_id, motion["link"] = motion["link"], None
    w["links"] = [link for link in w["links"] if link[0] != link_id]
    for n in w["nodes"]:
        for o in n["outputs"]:
            o["links"] = [k for k in o["links"] or [] if k != link_id]


@pytest.mark.parametrize("mistake", [_swap_widgets, _drop_seed_control, _unknown_checkpoint, _undocumented_input,
                                     _wrong_link_type, _unlinked_required_input], ids=lambda f: f.__name__[1:])
def test_checker_catches_mistakes(mistake):
    workflow = json.loads((ROOT / "workflows" / "talking_portrait.json").read_text())
    mistake(workflow)
    with pytest.raises(AssertionError):
        check_workflow(workflow)


def test_example_workflows_are_the_same_files():
    """ComfyUI's Browse Templates reads example_workflows/; workflows/ is the source of truth."""
    assert sorted(p.name for p in EXAMPLES.glob("*.json")) == [p.name for p in WORKFLOWS]
    for path in WORKFLOWS:
        assert (EXAMPLES / path.name).read_bytes() == path.read_bytes(), f"example_workflows/{path.name} differs"


def test_readme_describes_every_workflow_and_input_file():
    text = README.read_text()
    for path in WORKFLOWS:
        assert path.name in text, f"workflows/README.md does not describe {path.name}"
    for name, source in INPUT_FILES.items():
        assert name in text
        if source.is_relative_to(ROOT):
            assert source.is_file(), f"{source} is shipped with the pack"


def run_workflow(workflow: dict, overrides: dict[str, dict]) -> dict[int, tuple]:
    """Execute a UI-format workflow node by node (links resolved, widgets mapped by declaration order)."""
    links = {link[0]: link for link in workflow["links"]}
    pending, results = list(workflow["nodes"]), {}
    while pending:
        sources = lambda n: [links[i["link"]][1] for i in n["inputs"] if i["link"] is not None]  # noqa: E731
        ready = [n for n in pending if all(src in results for src in sources(n))]
        assert ready, "the workflow has a cycle"
        for n in ready:
            pending.remove(n)
            kwargs = widget_kwargs(n["type"], n["widgets_values"]) | overrides.get(n["type"], {})
            for i in n["inputs"]:
                if i["link"] is not None:
                    _, src, slot, *_ = links[i["link"]]
                    kwargs[i["name"]] = results[src][slot]
            if n["type"] in CORE:
                results[n["id"]] = CORE[n["type"]].run(**kwargs)
                continue
            cls = nodes.NODE_CLASS_MAPPINGS[n["type"]]
            out = getattr(cls(), cls.FUNCTION)(**kwargs)
            results[n["id"]] = out["result"] if isinstance(out, dict) else out
    return results


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    """models/demo with the tiny FLOAT model (as tiny.safetensors and as float.pth) and a tiny DEMO model."""
    from demo_core.io.checkpoints import save_checkpoint
    from demo_core.models.demo_model import DemoModel
    from tests.models.demo_tiny import tiny_demo_config

    require_shared()
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(TINY / "float_tiny.safetensors", models / "tiny.safetensors")
    shutil.copy(TINY / "float_tiny.safetensors", models / "float.pth")  # the loader reads the format, not the name
    cfg = tiny_demo_config()
    torch.manual_seed(0)
    save_checkpoint(models / "demo_tiny.safetensors", DemoModel(cfg), cfg.to_dict())
    monkeypatch.setenv("DEMO_MODELS_DIR", str(models))
    monkeypatch.setenv("DEMO_OUTPUT_DIR", str(tmp_path / "output"))
    return models


def _video_frames(path: str) -> tuple[int, int, int]:
    with av.open(path) as container:
        stream = container.streams.video[0]
        return stream.width, stream.height, sum(1 for _ in container.decode(stream))


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_runs(path: Path, models_dir: Path, tmp_path: Path):
    workflow = json.loads(path.read_text())
    overrides = {"DemoSampleMotion": {"steps": 2},
                 # a fixed map: measuring the random tiny model finds no lip block (measuring is tested elsewhere)
                 "DemoCalibrateFactors": {"manual_map": '{"lip": [0, 1, 2], "pose": [3, 4, 5, 6], "eyes": [7, 8]}'}}
    checkpoint = next(n["widgets_values"][0] for n in workflow["nodes"] if n["type"] == "DemoLoadModel")
    if checkpoint == EMBEDDED_DEFAULT:  # the pack's small DEMO model: stand in the tiny DEMO model
        overrides["DemoLoadModel"] = {"checkpoint": "demo_tiny.safetensors"}
    with torch.inference_mode():  # as ComfyUI runs every node
        results = run_workflow(workflow, overrides)
    by_type = {n["type"]: results[n["id"]] for n in workflow["nodes"]}
    expected = math.ceil(1.0 * 25)  # the stand-in speech lasts 1 s; every workflow renders at 25 fps
    if "DemoRenderToVideo" in by_type:
        (video,) = by_type["DemoRenderToVideo"]
        assert Path(video).parent.parent == tmp_path / "output"
        assert _video_frames(video) == (80, 96, expected)  # pasted back into the full portrait
    if "CreateVideo" in by_type:
        (video,) = by_type["CreateVideo"]
        assert video.images.shape == (expected, 192, 160, 3) and video.fps == 25.0  # 80 × 96 pasted, scaled by 2
    if "DemoCalibrateFactors" in by_type:
        assert (models_dir / f"{Path(checkpoint).stem}.factors.json").is_file()
        report, _ = by_type["DemoCalibrateFactors"]
        assert "lip.c0" in report
