"""Stage-1 objective: which coefficients the coefficient penalty reaches; an encoder-only phase skips the renderer."""

from __future__ import annotations

import torch

from demo_core.models.demo_model import DemoModel
from demo_core.train.config import Stage1Config
from demo_core.train.data import supervised_axes
from demo_core.train.objectives import Stage1Objective
from tests.models.demo_tiny import tiny_demo_config


def test_coefficient_penalty_reaches_only_coefficients_without_a_label():
    model = DemoModel(tiny_demo_config())
    objective = Stage1Objective(model, Stage1Config())
    layout = model.cfg.factors
    labelled = {a[0] for a in supervised_axes(layout)}
    free = objective.free_index.tolist()
    assert set(free) | labelled == set(range(layout.total)) and not set(free) & labelled
    s = layout.slices()
    # lip: open/width/round labelled, its 3 spare coefficients free; the residual block is free; pose/gaze/blink not
    assert free == list(range(s["lip"].start + 3, s["lip"].stop)) + list(range(s["residual"].start, s["residual"].stop))
    assert torch.equal(objective.axis_index, torch.tensor(sorted(labelled)))


def test_an_encoder_only_phase_skips_the_renderer_and_trains_the_same(synthetic_clip_folder, monkeypatch):
    from demo_core.train.config import Stage1Weights
    from demo_core.train.data import ClipStore, build_stage1_batch

    torch.manual_seed(0)
    model = DemoModel(tiny_demo_config())
    layout = model.cfg.factors
    assert Stage1Objective(model, Stage1Config()).renders  # the default recipe reconstructs
    off = {k: 0.0 for k in vars(Stage1Weights())}
    weights = Stage1Weights(**{**off, "lip": 1.0, "pose": 1.0, "gaze": 1.0, "blink": 1.0, "gaze_nce": 0.05,
                               "decorrelation": 0.05, "coefficient_l2": 0.1, "counterfactual": 1.0})
    objective = Stage1Objective(model, Stage1Config(weights=weights, contrast_group=2))
    assert not objective.renders
    assert Stage1Objective(model, Stage1Config(weights=Stage1Weights(**{**off, "cycle": 1.0}))).renders
    store = ClipStore.from_folder(synthetic_clip_folder, size=64, fps=25.0, sampling_rate=16000)
    g = torch.Generator().manual_seed(3)
    batch = build_stage1_batch(store, torch.tensor([[0, 0, 2], [1, 3, 5], [0, 1, 9], [1, 2, 0]]), frames=2,
                               layout=layout, context=2, fps=25.0, sampling_rate=16000, jitter=torch.zeros(4, 5),
                               eps=torch.zeros(4, 2, layout.total), counter=torch.rand(4, 2, 3, generator=g))

    def loss_and_grads():
        model.zero_grad(set_to_none=True)
        loss, metrics = objective(batch)
        loss.backward()
        return loss.detach(), metrics, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    objective.renders = True
    ref_loss, ref_metrics, ref_grads = loss_and_grads()
    objective.renders = False

    def no_render(*_a, **_k):
        raise AssertionError("an encoder-only phase must not render")

    monkeypatch.setattr(objective.mae, "render", no_render)
    loss, metrics, grads = loss_and_grads()
    assert float(ref_metrics["counterfactual"]) > 0 and float(ref_metrics["pose"]) > 0  # the terms are active
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-7)
    assert metrics["l1"] == metrics["ssim"] == 0.0 and float(ref_metrics["l1"]) > 0
    assert ref_grads.keys() >= grads.keys() and grads  # only the encoders get gradients; with rendering, zeros more
    for name, grad in ref_grads.items():
        torch.testing.assert_close(grads.get(name, torch.zeros_like(grad)), grad, rtol=1e-5, atol=1e-7, msg=name)
