"""Example workflows: valid against the node definitions (widget order, link types), and they run.

The runner maps ``widgets_values`` onto the widget inputs in declaration order, exactly as the
ComfyUI front-end does when it turns a saved workflow into a prompt, so a widget-order change that
would break saved workflows fails here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import av
import pytest
import torch

import nodes
from tests.conftest import ROOT, TINY, require_shared
from tests.nodes.conftest import portrait_image, speech

WORKFLOWS = sorted((ROOT / "workflows").glob("*.json"))
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}
SEED_CONTROLS = {"fixed", "increment", "decrement", "randomize"}
# Core nodes the workflows may use: their outputs, and a stand-in run for the test.
CORE = {
    "LoadImage": (("IMAGE", "MASK"), lambda: (portrait_image(96, 80), torch.zeros(1, 96, 80))),
    "LoadAudio": (("AUDIO",), lambda: (speech(1.0, 22050, channels=2),)),
    "Note": ((), lambda: ()),
}


def widget_inputs(cls) -> list[tuple[str, object, dict]]:
    """(name, type, options) of the inputs shown as widgets, in the order their values are saved."""
    spec = cls.INPUT_TYPES()
    inputs = list(spec["required"].items()) + list(spec.get("optional", {}).items())
    return [(name, kind, opts) for name, (kind, opts) in inputs if isinstance(kind, list) or kind in WIDGET_TYPES]


def widget_kwargs(cls, values: list) -> dict:
    """Saved widget values → keyword inputs (a seed's control value follows it and is dropped)."""
    kwargs, values = {}, list(values)
    for name, _kind, opts in widget_inputs(cls):
        kwargs[name] = values.pop(0)
        if opts.get("control_after_generate"):
            assert values.pop(0) in SEED_CONTROLS
    assert not values, f"{cls.__name__}: {len(values)} widget values left over"
    return kwargs


def check_widget_value(node_id: str, name: str, kind, opts: dict, value) -> None:
    where = f"{node_id}.{name} = {value!r}"
    if isinstance(kind, list):
        assert isinstance(value, str) and (name == "checkpoint" or value in kind), where  # checkpoints vary
    elif kind in ("INT", "FLOAT"):
        assert isinstance(value, (int, float)) and opts["min"] <= value <= opts["max"], where
    elif kind == "BOOLEAN":
        assert isinstance(value, bool), where
    else:
        assert isinstance(value, str), where


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_matches_node_definitions(path: Path):
    workflow = json.loads(path.read_text())
    assert workflow["version"] == 0.4
    by_id = {n["id"]: n for n in workflow["nodes"]}
    assert len(by_id) == len(workflow["nodes"]) and workflow["last_node_id"] >= max(by_id)
    for n in workflow["nodes"]:
        if n["type"] in CORE:
            assert [o["type"] for o in n["outputs"]] == list(CORE[n["type"]][0])
            continue
        cls = nodes.NODE_CLASS_MAPPINGS[n["type"]]
        assert [(o["name"], o["type"]) for o in n["outputs"]] == list(zip(cls.RETURN_NAMES, cls.RETURN_TYPES))
        spec = cls.INPUT_TYPES()
        declared = {**spec["required"], **spec.get("optional", {})}
        sockets = {name: kind for name, (kind, _) in declared.items() if not isinstance(kind, list)
                   and kind not in WIDGET_TYPES}
        assert {i["name"]: i["type"] for i in n["inputs"]}.items() <= sockets.items(), n["type"]
        linked = {i["name"] for i in n["inputs"] if i["link"] is not None}
        assert {name for name in spec["required"] if name in sockets} <= linked, f"{n['type']}: unlinked input"
        for (name, kind, opts), value in zip(widget_inputs(cls), widget_kwargs(cls, n["widgets_values"]).values()):
            check_widget_value(n["type"], name, kind, opts, value)
    for link_id, src, src_slot, dst, dst_slot, kind in workflow["links"]:
        source, target = by_id[src]["outputs"][src_slot], by_id[dst]["inputs"][dst_slot]
        assert source["type"] == kind and link_id in source["links"]
        assert target["type"] == kind and target["link"] == link_id


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
            if n["type"] in CORE:
                results[n["id"]] = CORE[n["type"]][1]()
                continue
            cls = nodes.NODE_CLASS_MAPPINGS[n["type"]]
            kwargs = widget_kwargs(cls, n["widgets_values"]) | overrides.get(n["type"], {})
            for i in n["inputs"]:
                if i["link"] is not None:
                    _, src, slot, *_ = links[i["link"]]
                    kwargs[i["name"]] = results[src][slot]
            out = getattr(cls(), cls.FUNCTION)(**kwargs)
            results[n["id"]] = out["result"] if isinstance(out, dict) else out
    return results


def test_talking_portrait_workflow_runs(tmp_path, monkeypatch):
    require_shared()
    models = tmp_path / "models"
    models.mkdir()
    (models / "tiny.safetensors").write_bytes((TINY / "float_tiny.safetensors").read_bytes())
    monkeypatch.setenv("DEMO_MODELS_DIR", str(models))
    monkeypatch.setenv("DEMO_OUTPUT_DIR", str(tmp_path / "output"))
    workflow = json.loads((ROOT / "workflows" / "talking_portrait.json").read_text())
    results = run_workflow(workflow, {"DemoLoadModel": {"checkpoint": "tiny.safetensors"},
                                      "DemoSampleMotion": {"steps": 2}})
    (video,) = next(results[n["id"]] for n in workflow["nodes"] if n["type"] == "DemoRenderToVideo")
    assert Path(video).parent == tmp_path / "output" / "demo"
    with av.open(video) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (80, 96)  # pasted back into the full portrait
        assert sum(1 for _ in container.decode(stream)) == math.ceil(1.0 * 25)
