"""Stage-1 objective: which coefficients the coefficient penalty reaches."""

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
