"""Fixtures for the node tests: the tiny FLOAT model, synthetic media, and ComfyUI stand-ins.

``host_stubs`` injects minimal ``folder_paths``, ``comfy.utils`` and ``comfy.model_management``
modules that record what the pack asks of them; ``load_pack`` imports the pack's root
``__init__.py`` the way ComfyUI does (``spec_from_file_location`` under a path-like module name,
so only relative imports can work), with ComfyUI's own top-level ``nodes`` module in place.
Everything written goes under ``tmp_path``.

When the checkout folder's name is a valid identifier, pytest imports this file as
``<folder>.tests.nodes.conftest`` while test modules import it as ``tests.nodes.conftest``: two
copies.  Tests therefore take classes such as the interrupt exception from the stub modules.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import sys
import types
from pathlib import Path

import pytest
import torch

from demo_core.models.loader import load_model
from tests.conftest import ROOT, TINY, require_shared


@pytest.fixture(scope="session")
def demo_model():
    """The FLOAT tiny fixture model (random weights, 64×64, CPU, float32)."""
    return load_model(require_shared(TINY / "float_tiny.safetensors"))[0]


def speech(seconds: float, rate: int = 16000, channels: int = 1, batch: int = 1) -> dict:
    """A ComfyUI AUDIO dict holding a voiced, amplitude-modulated tone."""
    t = torch.arange(int(seconds * rate)) / rate
    wave = 0.3 * torch.sin(2 * math.pi * 180 * t) * (0.6 + 0.4 * torch.sin(2 * math.pi * 4 * t))
    return {"waveform": wave.expand(batch, channels, -1).clone(), "sample_rate": rate}


def portrait_image(height: int = 96, width: int = 80, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """A ComfyUI IMAGE (B, H, W, 3) of smooth random colours."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, 6, 6, generator=g)
    image = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    return image.permute(0, 2, 3, 1).contiguous()  # (B, H, W, 3)


class InterruptProcessingException(Exception):
    """Stand-in for comfy.model_management.InterruptProcessingException."""


class HostRecorder:
    """What the stub host modules were asked: progress updates, interrupt checks, cache releases."""

    def __init__(self) -> None:
        self.progress: list[tuple[object, int, int]] = []  # (node_id, value, total)
        self.bars: list[tuple[int, object]] = []  # (total, node_id) per ProgressBar made
        self.interrupt_checks = 0
        self.interrupt_after: int | None = None  # raise on the check after this many
        self.empty_cache = 0


def _stub_modules(tmp_path: Path, recorder: HostRecorder, user_demo_paths: tuple | None) -> dict[str, types.ModuleType]:
    base = tmp_path / "comfy"
    fp = types.ModuleType("folder_paths")
    fp.models_dir = str(base / "models")
    fp.supported_pt_extensions = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
    fp.folder_names_and_paths = {"checkpoints": ([str(base / "models" / "checkpoints")], {".safetensors"})}
    if user_demo_paths is not None:
        fp.folder_names_and_paths["demo"] = user_demo_paths

    def get_filename_list(key):
        dirs, exts = fp.folder_names_and_paths[key]
        names = set()
        for d in dirs:
            for p in Path(d).rglob("*") if Path(d).is_dir() else ():
                if p.is_file() and (not exts or p.suffix in exts):
                    names.add(p.relative_to(d).as_posix())
        return sorted(names)

    def get_full_path(key, name):
        for d in fp.folder_names_and_paths[key][0]:
            if (Path(d) / name).is_file():
                return str(Path(d) / name)
        return None

    def get_save_image_path(prefix, output_dir, width=0, height=0):  # ComfyUI's rules, simplified
        folder = os.path.join(output_dir, os.path.dirname(prefix))
        name = os.path.basename(prefix)
        if os.path.commonpath((os.path.abspath(output_dir), os.path.abspath(folder))) != os.path.abspath(output_dir):
            raise Exception("Saving image outside the output folder is not allowed.")
        os.makedirs(folder, exist_ok=True)
        taken = [int(m.group(1)) for f in os.listdir(folder) if (m := re.match(re.escape(name) + r"_(\d+)_", f))]
        return folder, name, max(taken, default=0) + 1, os.path.dirname(prefix), prefix

    fp.get_filename_list = get_filename_list
    fp.get_full_path = get_full_path
    fp.get_save_image_path = get_save_image_path
    fp.get_output_directory = lambda: str(base / "output")
    fp.get_temp_directory = lambda: str(base / "temp")

    comfy = types.ModuleType("comfy")
    comfy.__path__ = []
    utils = types.ModuleType("comfy.utils")

    class ProgressBar:
        def __init__(self, total, node_id=None):
            self.total, self.node_id = total, node_id
            recorder.bars.append((total, node_id))

        def update_absolute(self, value, total=None, preview=None):
            recorder.progress.append((self.node_id, value, total or self.total))

    utils.ProgressBar = ProgressBar
    mm = types.ModuleType("comfy.model_management")
    mm.InterruptProcessingException = InterruptProcessingException

    def throw_exception_if_processing_interrupted():
        recorder.interrupt_checks += 1
        if recorder.interrupt_after is not None and recorder.interrupt_checks > recorder.interrupt_after:
            raise InterruptProcessingException()

    def soft_empty_cache(force=False):
        recorder.empty_cache += 1

    mm.throw_exception_if_processing_interrupted = throw_exception_if_processing_interrupted
    mm.get_torch_device = lambda: torch.device("cpu")
    mm.intermediate_device = lambda: torch.device("cpu")
    mm.soft_empty_cache = soft_empty_cache
    comfy.utils, comfy.model_management = utils, mm
    core_nodes = types.ModuleType("nodes")  # ComfyUI's own top-level nodes.py: the pack must not pick it up
    core_nodes.NODE_CLASS_MAPPINGS = {"KSampler": object}
    return {"folder_paths": fp, "comfy": comfy, "comfy.utils": utils, "comfy.model_management": mm, "nodes": core_nodes}


def import_pack(module_name: str) -> types.ModuleType:
    """Import the pack root as ComfyUI does; drop any earlier copy under that name first."""
    for name in [n for n in sys.modules if n == module_name or n.startswith(module_name + ".")]:
        del sys.modules[name]
    spec = importlib.util.spec_from_file_location(module_name, ROOT / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def load_pack(tmp_path, monkeypatch):
    """``load_pack(stubs=True, user_demo_paths=None) -> (pack module, HostRecorder | None)``.

    With ``stubs`` the ComfyUI modules are injected first; either way the pack is imported under a
    fresh path-like name (as ComfyUI names it) and removed from ``sys.modules`` afterwards.
    """
    loaded: list[str] = []

    def load(stubs: bool = True, user_demo_paths: tuple | None = None):
        recorder = None
        if stubs:
            recorder = HostRecorder()
            for name, module in _stub_modules(tmp_path, recorder, user_demo_paths).items():
                monkeypatch.setitem(sys.modules, name, module)
        else:
            for name in ("folder_paths", "comfy", "comfy.utils", "comfy.model_management"):
                monkeypatch.delitem(sys.modules, name, raising=False)
        name = str(tmp_path / f"custom_nodes{len(loaded)}" / "comfyui-demo").replace(".", "_x_")
        loaded.append(name)
        return import_pack(name), recorder

    yield load
    for prefix in loaded:
        for name in [n for n in sys.modules if n == prefix or n.startswith(prefix + ".")]:
            del sys.modules[name]
