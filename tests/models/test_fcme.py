"""Factor motion encoder: one head per block, posterior, reparameterisation, and its place in the auto-encoder."""

from __future__ import annotations

import pytest
import torch

from demo_core.errors import DemoInputError
from demo_core.models.demo_model import FactorMotionAutoEncoder
from demo_core.models.fcme import LOGVAR_INIT, FactorMotionEncoder, FactorMotionEncoderConfig, reparameterize
from demo_core.models.motion_autoencoder import MotionAutoEncoderConfig
from demo_core.motion.factors import default_factor_layout, split_coefficients


def _fcme(vae: bool = False) -> FactorMotionEncoder:
    torch.manual_seed(0)
    return FactorMotionEncoder(FactorMotionEncoderConfig(dim_w=32, hidden=16, depth=2, vae=vae))


def test_heads_write_only_their_own_block():
    fcme = _fcme()
    h = torch.randn(4, 32)
    before = fcme(h)
    assert before.shape == (4, 20)
    with torch.no_grad():
        fcme.heads["pose"].out.bias.add_(1.0)
    after = fcme(h)
    changed = split_coefficients(after - before, default_factor_layout())
    assert torch.allclose(changed["pose"], torch.ones(4, 6))
    for name in ("lip", "gaze", "blink", "residual"):
        assert torch.equal(changed[name], torch.zeros_like(changed[name]))


def test_vae_posterior_and_deterministic_forward():
    fcme = _fcme(vae=True)
    h = torch.randn(3, 32)
    mean, logvar = fcme.posterior(h)
    assert mean.shape == logvar.shape == (3, 20)
    assert torch.allclose(logvar, torch.full_like(logvar, LOGVAR_INIT), atol=1.0)  # starts near-deterministic
    assert torch.equal(fcme(h), mean)
    fcme.train()
    assert torch.equal(fcme(h), mean)  # no hidden sampling in forward, even in training mode
    assert _fcme(vae=False).posterior(h)[1] is None


def test_reparameterize_uses_the_generator_and_has_the_right_moments():
    mean = torch.tensor([[1.0, -2.0]]).expand(20000, 2)
    logvar = torch.log(torch.tensor([[0.25, 4.0]])).expand(20000, 2)
    a = reparameterize(mean, logvar, torch.Generator().manual_seed(5))
    b = reparameterize(mean, logvar, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert torch.allclose(a.mean(0), torch.tensor([1.0, -2.0]), atol=0.05)
    assert torch.allclose(a.std(0), torch.tensor([0.5, 2.0]), atol=0.05)


def test_wrong_input_raises():
    with pytest.raises(DemoInputError, match="expected h"):
        _fcme()(torch.randn(2, 31))


def test_factor_auto_encoder_swaps_only_the_motion_mlp():
    mae_cfg = MotionAutoEncoderConfig(size=64, dim_w=32, dim_m=20, channels={r: 8 for r in (4, 8, 16, 32, 64)})
    mae = FactorMotionAutoEncoder(mae_cfg, FactorMotionEncoderConfig(dim_w=32, hidden=16, vae=True))
    keys = set(mae.state_dict())
    assert "enc.fc.heads.lip.out.weight" in keys and "enc.fc.heads.residual.out.weight" in keys
    assert not any(k.startswith("enc.fc.0.") for k in keys)  # FLOAT's MLP is gone ...
    assert "dec.direction.weight" in keys and "enc.net_app.convs.0.0.weight" in keys  # ... the rest is FLOAT's
    image = torch.rand(2, 3, 64, 64) * 2 - 1
    h, lam, feats = mae.encode(image)
    h2, mean, logvar, feats2 = mae.encode_posterior(image)
    assert torch.equal(h, h2) and torch.equal(lam, mean) and logvar.shape == (2, 20)
    assert [f.shape[-1] for f in feats] == [8, 16, 32, 64] and all(torch.equal(a, b) for a, b in zip(feats, feats2))
    Q = mae.directions()
    assert torch.allclose(Q.T @ Q, torch.eye(20), atol=1e-5)  # one jointly orthonormal dictionary
    basis = mae.factor_basis()
    assert torch.equal(basis["gaze"], Q[:, 12:14])
    with pytest.raises(DemoInputError, match="must match"):
        FactorMotionAutoEncoder(MotionAutoEncoderConfig(size=64, dim_w=32, dim_m=19, channels=mae_cfg.channels),
                                FactorMotionEncoderConfig(dim_w=32))


def _image_fcme(vae: bool = False) -> FactorMotionEncoder:
    torch.manual_seed(0)
    cfg = FactorMotionEncoderConfig(dim_w=32, hidden=16, depth=1, vae=vae, source="image", image_size=32,
                                    channels=(8, 8, 16))
    return FactorMotionEncoder(cfg)


def test_image_source_has_one_conv_encoder_per_factor_and_keeps_blocks_apart():
    fcme = _image_fcme(vae=True)
    assert fcme.reads_image and set(fcme.encoders) == {"lip", "pose", "gaze", "blink", "residual"}
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    mean, logvar = fcme.posterior(x)
    assert mean.shape == logvar.shape == (3, 20)
    before = fcme(x)
    with torch.no_grad():  # perturbing the gaze encoder moves only the gaze block
        for p in fcme.encoders["gaze"].parameters():
            p.add_(0.5)
    changed = split_coefficients(fcme(x) - before, default_factor_layout())
    assert changed["gaze"].abs().max() > 0
    for name in ("lip", "pose", "blink", "residual"):
        assert torch.equal(changed[name], torch.zeros_like(changed[name]))
    with pytest.raises(DemoInputError, match=r"frames of shape \(B, 3, 32, 32\)"):
        fcme(torch.randn(2, 32))


def test_image_source_config_round_trip_and_validation():
    cfg = _image_fcme().cfg
    again = FactorMotionEncoderConfig.from_dict(cfg.to_dict())
    assert (again.source, again.image_size, again.channels) == ("image", 32, (8, 8, 16))
    assert "channels" not in FactorMotionEncoderConfig(dim_w=8).to_dict()  # appearance configs stay as before
    with pytest.raises(DemoInputError, match="source must be"):
        FactorMotionEncoderConfig(source="audio")
    with pytest.raises(DemoInputError, match="image_size >= 2"):
        FactorMotionEncoderConfig(source="image", image_size=4, channels=(8, 8, 8))


def test_image_sourced_auto_encoder_reads_frames_not_the_appearance_code():
    mae_cfg = MotionAutoEncoderConfig(size=64, dim_w=32, dim_m=20, channels={r: 8 for r in (4, 8, 16, 32, 64)})
    torch.manual_seed(0)
    mae = FactorMotionAutoEncoder(mae_cfg, FactorMotionEncoderConfig(dim_w=32, hidden=16, source="image",
                                                                     image_size=64, channels=(8, 16)))
    assert "enc.fc.encoders.lip.net.0.weight" in mae.state_dict()
    image = torch.rand(2, 3, 64, 64) * 2 - 1
    h, lam, feats = mae.encode(image)
    h2, mean, _, _ = mae.encode_posterior(image)
    mean3, _ = mae.coefficients_posterior(image)
    assert torch.equal(h, h2) and torch.equal(lam, mean) and torch.equal(lam, mean3)
    assert torch.allclose(lam, mae.enc.fc(image))
    with torch.no_grad():  # the appearance network does not feed the coefficients any more
        for p in mae.enc.net_app.parameters():
            p.mul_(0.5)
    assert torch.equal(mae.encode(image)[1], lam)
