"""Fixtures of the training tests: a few tiny clips written once per session, and a tiny training config."""

from __future__ import annotations

import copy
import json

import pytest

from demo_core.train import TrainConfig, default_config_path
from tests.models.demo_tiny import tiny_demo_dict
from tests.train.clips import write_clips, write_synthetic_clips


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    """Every training test runs with one intra-op thread (tests/conftest.py)."""
    yield


@pytest.fixture(scope="session")
def clip_folder(tmp_path_factory):
    """Three 0.8-s clips at 30 fps, 64×48, 22.05 kHz stereo AAC; the last one has no labels."""
    return write_clips(tmp_path_factory.mktemp("clips"), 3)[0].parent


@pytest.fixture(scope="session")
def synthetic_clip_folder(tmp_path_factory):
    """Two 0.72-s clips of the synthetic benchmark at 64×64 (labels with the face, exact frames sidecar)."""
    return write_synthetic_clips(tmp_path_factory.mktemp("synthetic_clips"), 2)[0].parent


@pytest.fixture(scope="session")
def clip_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("clip_cache")


def tiny_train_dict(root, cache=None) -> dict:
    cfg = json.loads(default_config_path().read_text())
    cfg["model"] = tiny_demo_dict()
    cfg["data"].update(root=str(root), cache_dir=None if cache is None else str(cache))
    cfg["stage1"].update(steps=12, batch=4, frames=2, contrast_group=2, lr=2e-3, warmup_steps=0, lr_decay="none",
                         log_every=1, ckpt_every=100)
    cfg["stage1"]["weights"] = {}  # the library defaults, not the bundled recipe's weights
    cfg["stage2"].update(steps=12, batch=8, lr=1e-2, warmup_steps=0, lr_decay="none", log_every=1, ckpt_every=100)
    return cfg


@pytest.fixture
def tiny_train_config(clip_folder, clip_cache):
    def make(**overrides) -> TrainConfig:
        d = copy.deepcopy(tiny_train_dict(clip_folder, clip_cache))
        for key, value in overrides.items():
            section, name = key.split("__")
            d[section][name] = value
        return TrainConfig.from_dict(d)

    return make
