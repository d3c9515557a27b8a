"""Both training stages on a CUDA device (skipped where there is none, as in CI)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from demo_core.models.loader import load_model
from demo_core.train import train_stage1, train_stage2

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (CI has none)")


def test_both_stages_train_on_cuda_and_the_checkpoint_loads_on_the_cpu(tiny_train_config, tmp_path):
    cfg = tiny_train_config(stage1__device="cuda", stage2__device="cuda")
    out = tmp_path / "run"
    train_stage1(cfg, out, log=lambda _m: None)
    train_stage2(cfg, out, log=lambda _m: None)
    for stage in ("stage1", "stage2"):
        losses = [json.loads(x)["loss"] for x in (out / stage / "metrics.jsonl").read_text().splitlines()]
        assert all(math.isfinite(v) for v in losses)
        assert sum(losses[-3:]) < sum(losses[:3]), f"{stage} loss did not fall on cuda: {losses}"
    model, _ = load_model(out / "stage2" / "model.safetensors", device="cpu")
    assert {p.device.type for p in model.parameters()} == {"cpu"}
