"""Feature painter: identity at initialisation, reads only its factors' coefficients, part of render/decode,
config and checkpoint round trips."""

from __future__ import annotations

import pytest
import torch

from demo_core.errors import DemoInputError
from demo_core.io.checkpoints import save_checkpoint
from demo_core.models.demo_model import DemoConfig, DemoModel
from demo_core.models.loader import load_model
from demo_core.models.painter import FeaturePainter, PainterConfig

from .demo_tiny import tiny_demo_dict


def _model(painter: dict | None = None, seed: int = 0) -> DemoModel:
    d = tiny_demo_dict()
    d["canonical_appearance"] = True
    if painter is not None:
        d["painter"] = painter
    torch.manual_seed(seed)
    return DemoModel(DemoConfig.from_dict(d)).eval()


def _scramble(painter: FeaturePainter) -> None:
    """Give the zero-initialised FiLM output and residual layers random weights (a 'trained' painter)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in (painter.film[2].weight, painter.film[2].bias, painter.out.weight, painter.out.bias):
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def _inputs(model: DemoModel, n: int = 3):
    g = torch.Generator().manual_seed(2)
    image = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
    mae = model.motion_autoencoder
    with torch.no_grad():
        h, lam, feats = mae.encode(image)
    lam_t = lam + torch.randn(n, lam.shape[1], generator=g)
    return h, feats, lam_t


def test_fresh_painter_is_the_identity():
    plain, painted = _model(), _model({"factors": ["lip", "blink"]})
    state = {k: v for k, v in painted.state_dict().items() if not k.startswith("motion_autoencoder.painter.")}
    assert set(state) == set(plain.state_dict())
    plain.load_state_dict(state)
    h, feats, lam = _inputs(plain)
    with torch.no_grad():
        motion = plain.motion_autoencoder.motion_from_coefficients(lam)
        a = plain.motion_autoencoder.decode(h, feats, motion[None])
        b = painted.motion_autoencoder.decode(h, feats, motion[None])
    assert torch.equal(a, b)


def test_painter_reads_only_its_factors():
    model = _model({"factors": ["lip", "gaze", "blink"]})
    mae = model.motion_autoencoder
    _scramble(mae.painter)
    lay = model.cfg.factors.slices()
    h, feats, lam = _inputs(model, 1)
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        base = mae.paint(image, mae.motion_from_coefficients(lam))
        for name, moves in (("pose", False), ("residual", False), ("lip", True), ("gaze", True), ("blink", True)):
            other = lam.clone()
            other[:, lay[name]] += 1.0
            out = mae.paint(image, mae.motion_from_coefficients(other))
            changed = float((out - base).abs().max())
            if moves:
                assert changed > 0.5, name  # (about 5 with this scrambled painter)
            else:  # the painter's coefficients are a projection onto its blocks: float rounding alone (8e-6
                assert changed < 1e-3, name  # here; more on machines whose BLAS orders the sums differently)


def test_render_and_decode_agree_and_render_needs_the_motion():
    model = _model({"factors": ["lip"], "channels": [4, 8, 8], "hidden": 8})
    mae = model.motion_autoencoder
    _scramble(mae.painter)
    h, feats, lam = _inputs(model)
    with torch.no_grad():
        motion = mae.motion_from_coefficients(lam)  # (3, W)
        video = mae.decode(h, feats, motion[None], chunk_size=2)[0]
        single = mae.render(h + motion, [f.expand(3, -1, -1, -1) for f in feats], motion=motion)
        unpainted = mae.dec(h + motion, [f.expand(3, -1, -1, -1) for f in feats])[0]
    torch.testing.assert_close(video, single, atol=5e-4, rtol=1e-4)  # the random painter amplifies decoder rounding
    assert float((single - unpainted).abs().max()) > 1e-3
    with pytest.raises(DemoInputError, match="motion="):
        mae.render(h + motion[:1], feats)
    with pytest.raises(DemoInputError, match="motion: expected shape"):
        mae.render(h + motion[:1], feats, motion=motion)


def test_painter_config_round_trip_and_errors(tmp_path):
    model = _model({"factors": ["lip", "blink"], "channels": [8, 8, 16], "hidden": 16})
    _scramble(model.motion_autoencoder.painter)
    d = model.cfg.to_dict()
    assert d["painter"] == {"factors": ["lip", "blink"], "channels": [8, 8, 16], "hidden": 16}
    path = tmp_path / "painted.safetensors"
    save_checkpoint(path, model, d)
    loaded, _ = load_model(path)
    assert loaded.cfg.painter == model.cfg.painter
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    assert "painter" not in _model().cfg.to_dict()
    bad = tiny_demo_dict()
    bad["painter"] = {"factors": ["hair"]}
    with pytest.raises(DemoInputError, match="painter.factors"):
        DemoConfig.from_dict(bad)
    bad["painter"] = {"factors": ["lip"], "colour": 1}
    with pytest.raises(DemoInputError, match="unknown keys"):
        DemoConfig.from_dict(bad)
    with pytest.raises(DemoInputError, match="3 positive widths"):
        PainterConfig(channels=(8, 8))


def test_painter_coefficients_shape_is_checked():
    painter = FeaturePainter(PainterConfig(channels=(4, 4, 4), hidden=4), 9)
    with pytest.raises(DemoInputError, match=r"expected shape \(2, 9\)"):
        painter(torch.zeros(2, 3, 16, 16), torch.zeros(2, 7))
    with pytest.raises(DemoInputError, match="multiples of 4"):
        painter(torch.zeros(1, 3, 18, 18), torch.zeros(1, 9))


def test_painter_clamps_coefficients_to_the_range_seen_in_training():
    painter = FeaturePainter(PainterConfig(channels=(4, 4, 4), hidden=4), 2)
    _scramble(painter)
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(4)) * 2 - 1
    far = torch.tensor([[10.0, -10.0]])
    painter.eval()
    untrained = painter(image, far)  # nothing seen yet: no clamp
    painter.train()
    painter(image.expand(3, -1, -1, -1), torch.tensor([[0.0, 0.5], [1.0, -0.5], [0.5, 0.0]]))
    assert painter.seen_min.tolist() == [0.0, -0.5] and painter.seen_max.tolist() == [1.0, 0.5]
    assert float(painter.seen_count) == 3
    painter.eval()
    with torch.no_grad():
        clamped = painter(image, far)
        edge = painter(image, torch.tensor([[1.0, -0.5]]))
    assert torch.equal(clamped, edge) and not torch.allclose(clamped, untrained)
    assert painter.seen_min.tolist() == [0.0, -0.5]  # evaluation does not widen the range


def test_the_seen_count_saturates_so_a_float16_copy_stays_finite():
    painter = FeaturePainter(PainterConfig(channels=(4, 4, 4), hidden=4), 2).train()
    with torch.no_grad():
        for _ in range(3):
            painter(torch.zeros(4000, 3, 4, 4), torch.zeros(4000, 2))
    assert float(painter.seen_count) == 10000.0 and torch.isfinite(painter.seen_count.half())
