"""Windowed motion sampler against tiny/sampler.safetensors, plus determinism and edge cases."""

from __future__ import annotations

import pytest
import torch

from demo_core.errors import DemoInputError
from demo_core.flow.window_sampler import SamplerSettings, iter_motion_windows, sample_motion
from demo_core.models.flow_transformer import FlowTransformer
from tests.conftest import assert_close_ref, load_fixture
from tests.models.test_flow_transformer import fmt_config_from_options, fmt_state_dict


@pytest.fixture(scope="module")
def tiny_fmt(tiny_weights, tiny_cfg) -> FlowTransformer:
    model = FlowTransformer(fmt_config_from_options(tiny_cfg["options"])).eval()
    model.load_state_dict(fmt_state_dict(tiny_weights), strict=True)
    return model


@pytest.fixture(scope="module")
def sampler_ref() -> dict:
    return load_fixture("sampler")


@pytest.fixture(scope="module")
def conds(sampler_ref) -> dict:
    return {"wr": sampler_ref["r_s"], "wa": sampler_ref["wa"], "we": sampler_ref["we"]}


@pytest.mark.parametrize("evaluator", ["auto", "shared", "batched"])
def test_whole_sampler_fixture(tiny_fmt, sampler_ref, conds, tiny_cfg, evaluator):
    """FLOAT's sampler fixture, whichever way the guided velocity is evaluated (CPU auto = shared)."""
    s = tiny_cfg["sampler"]
    settings = SamplerSettings(
        steps=s["nfe"] - 1, method=s["ode_method"], a_cfg=s["a_cfg_scale"], e_cfg=s["e_cfg_scale"], r_cfg=s["r_cfg_scale"],
        evaluator=evaluator,
    )
    noise = [sampler_ref[f"chunk{k}.x0"] for k in range(s["num_chunks"])]
    record: dict = {}
    progress = []
    out = sample_motion(tiny_fmt, **conds, settings=settings, noise=noise, record=record,
                        callback=lambda d, n: progress.append((d, n)))
    assert out.shape == sampler_ref["sample"].shape == (2, int(sampler_ref["T"]), 512)
    names = [k for k in sampler_ref if k.startswith("chunk")] + ["sample", "time_grid"]
    assert len(names) == 8 * s["num_chunks"] + 2
    for name in names:
        assert_close_ref(record[name], sampler_ref[name], name)
    assert_close_ref(out, sampler_ref["sample"], "sample")
    total = s["num_chunks"] * settings.steps
    assert progress == [(i, total) for i in range(1, total + 1)]


def test_streaming_equals_concatenation(tiny_fmt, sampler_ref, conds):
    noise = lambda k: sampler_ref[f"chunk{k}.x0"]  # noqa: E731
    settings = SamplerSettings(steps=2)
    windows = list(iter_motion_windows(tiny_fmt, **conds, settings=settings, noise=noise))
    assert [w.shape[1] for w in windows] == [50, 25]
    assert torch.equal(torch.cat(windows, dim=1), sample_motion(tiny_fmt, **conds, settings=settings, noise=noise))


def test_seeded_generator_is_deterministic_and_steps_honoured(tiny_fmt, conds):
    wa = conds["wa"][:, :30]
    run = lambda steps, seed: sample_motion(  # noqa: E731
        tiny_fmt, wr=conds["wr"], wa=wa, we=conds["we"], settings=SamplerSettings(steps=steps),
        generator=torch.Generator().manual_seed(seed),
    )
    a, b = run(2, 7), run(2, 7)
    assert a.shape == (2, 30, 512) and torch.equal(a, b)
    assert not torch.allclose(a, run(2, 8))
    one, three = run(1, 7), run(3, 7)
    assert torch.isfinite(one).all()
    assert not torch.allclose(one, a) and not torch.allclose(three, a)


def test_length_not_multiple_of_window(tiny_fmt, sampler_ref, conds):
    T = 62
    noise = [sampler_ref["chunk0.x0"], sampler_ref["chunk1.x0"]]
    record: dict = {}
    wa = conds["wa"][:, :T]
    out = sample_motion(tiny_fmt, wr=conds["wr"], wa=wa, we=conds["we"],
                        settings=SamplerSettings(steps=9), noise=noise, record=record)
    assert out.shape == (2, T, 512)
    assert_close_ref(out[:, :50], sampler_ref["chunk0.sample"], "first window")  # unaffected by the clip end
    wa_t = record["chunk1.wa_t"]
    assert torch.equal(wa_t[:, : T - 50], wa[:, 50:])
    assert torch.equal(wa_t[:, T - 50 :], wa[:, -1:].expand(2, 100 - T, 512))  # replicate padding
    assert torch.equal(record["chunk1.prev_x"], record["chunk0.sample"][:, -10:])

    short = sample_motion(tiny_fmt, wr=conds["wr"], wa=conds["wa"][:, :7], we=conds["we"][:, 0],
                          settings=SamplerSettings(steps=1), generator=torch.Generator().manual_seed(0))
    assert short.shape == (2, 7, 512)


def test_step_hook_receives_window_index(tiny_fmt, conds):
    seen = []

    def hook(x, t_next, k):
        seen.append((k, round(t_next.item(), 4)))
        return torch.zeros_like(x)

    out = sample_motion(tiny_fmt, **conds, settings=SamplerSettings(steps=2), step_hook=hook,
                        generator=torch.Generator().manual_seed(0))
    assert torch.count_nonzero(out) == 0
    assert seen == [(0, 0.5), (0, 1.0), (1, 0.5), (1, 1.0)]


@pytest.mark.parametrize(
    "change,match",
    [
        ({"settings": SamplerSettings(steps=0)}, "settings.steps"),
        ({"settings": SamplerSettings(method="heun")}, "settings.method"),
        ({"settings": SamplerSettings(a_cfg=float("nan"))}, "settings.a_cfg"),
        ({"settings": SamplerSettings(evaluator="fast")}, "settings.evaluator"),
        ({"wa": torch.zeros(2, 75)}, "wa must"),
        ({"wr": torch.zeros(3, 512)}, "wr must"),
        ({"we": torch.zeros(2, 1, 5)}, "we must"),
        ({"noise": [torch.zeros(2, 50, 512)]}, "noise"),
        ({"noise": 3}, "noise"),
    ],
)
def test_invalid_inputs_name_the_argument(tiny_fmt, conds, change, match):
    kwargs = {**conds, "settings": SamplerSettings(steps=1), **change}
    with pytest.raises(DemoInputError, match=match):
        sample_motion(tiny_fmt, **kwargs)


def test_iterator_validates_before_iteration(tiny_fmt, conds):
    with pytest.raises(DemoInputError, match="settings.steps"):
        iter_motion_windows(tiny_fmt, **conds, settings=SamplerSettings(steps=-1))
