"""Motion auto-encoder: FLOAT state-dict compatibility and numerical equality with the tiny fixtures."""

from __future__ import annotations

import json

import pytest
import torch

from demo_core.models.motion_autoencoder import MotionAutoEncoder, MotionAutoEncoderConfig, base_grid
from demo_core.models.stylegan_ops import blur2d, make_fir_kernel, upfirdn2d_reference, upsample2d
from tests.conftest import FLOAT_REF, assert_close_ref, load_fixture, require_shared

PREFIX = "motion_autoencoder."


# ----------------------------------------------------------------------------------------------------------
# fixtures
# ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tiny_weights, tiny_cfg) -> MotionAutoEncoder:
    opts = tiny_cfg["options"]
    cfg = MotionAutoEncoderConfig(
        size=opts["input_size"], dim_w=opts["dim_w"], dim_m=opts["dim_m"], channels=tiny_cfg["channels"]
    )
    model = MotionAutoEncoder(cfg)
    sd = {k[len(PREFIX) :]: v for k, v in tiny_weights.items() if k.startswith(PREFIX)}
    model.load_state_dict(sd, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def mae() -> dict[str, torch.Tensor]:
    return load_fixture("motion_ae")


@pytest.fixture(scope="module")
def encoded(tiny_model, mae):
    taps: dict = {}
    with torch.inference_mode():
        h, lam, feats = tiny_model.encode(mae["input.image"], taps=taps)
    return h, lam, feats, taps


@pytest.fixture(scope="module")
def frame0(tiny_model, mae, encoded):
    h, _, feats, _ = encoded
    taps: dict = {}
    with torch.inference_mode():
        img, flow = tiny_model.render(h + mae["input.r_d"][:, 0], feats, return_flow=True, taps=taps)
    return img, flow, taps


# ----------------------------------------------------------------------------------------------------------
# fixture comparisons
# ----------------------------------------------------------------------------------------------------------


def test_encoder_outputs(encoded, mae):
    h, lam, feats, _ = encoded
    assert_close_ref(h, mae["enc.h_source"], "enc.h_source")
    assert_close_ref(lam, mae["enc.lambda"], "enc.lambda")
    n_feats = len([k for k in mae if k.startswith("enc.feats.")])
    assert len(feats) == n_feats
    for i, f in enumerate(feats):
        assert_close_ref(f, mae[f"enc.feats.{i}"], f"enc.feats.{i}")


def test_encoder_debug_taps(encoded, mae):
    taps = encoded[3]
    names = [k[len("debug.") :] for k in mae if k.startswith("debug.enc.")]
    assert names and set(names) == set(taps)
    for name in names:
        assert_close_ref(taps[name], mae[f"debug.{name}"], name)


def test_direction_basis_and_motion(tiny_model, encoded, mae):
    _, lam, _, _ = encoded
    with torch.inference_mode():
        q = tiny_model.directions()
        assert_close_ref(q, mae["direction.Q"], "direction.Q")
        assert_close_ref(tiny_model.motion_from_coefficients(lam), mae["direction.of_enc_lambda"], "of_enc_lambda")
        # FLOAT's encode-identity path: direction(fc(h_source))
        lam_ref = tiny_model.enc.fc(mae["enc.h_source"])
        r_s = tiny_model.motion_from_coefficients(lam_ref)
        assert_close_ref(r_s, mae["encode_identity_into_motion"], "encode_identity_into_motion")
        rand = tiny_model.motion_from_coefficients(mae["input.lambda_rand"])
        assert_close_ref(rand, mae["direction.of_lambda_rand"], "direction.of_lambda_rand")


def test_decode_matches_fixture(tiny_model, encoded, mae):
    h, _, feats, _ = encoded
    with torch.inference_mode():
        frames = tiny_model.decode(h, feats, mae["input.r_d"], chunk_size=8)
    assert_close_ref(frames, mae["decode_latent_into_image.d_hat"], "decode_latent_into_image.d_hat")


def test_decode_from_reference_encoding(tiny_model, mae):
    feats = [mae[f"enc.feats.{i}"] for i in range(4)]
    with torch.inference_mode():
        frames = tiny_model.decode(mae["enc.h_source"], feats, mae["input.r_d"], chunk_size=2)
    assert_close_ref(frames, mae["decode_latent_into_image.d_hat"], "d_hat (reference encoding)")


def test_render_frame0(frame0, mae):
    img, flow, _ = frame0
    assert_close_ref(img, mae["dec.frame0.img"], "dec.frame0.img")
    assert_close_ref(flow, mae["dec.frame0.flow"], "dec.frame0.flow")


def test_decoder_debug_taps(frame0, mae):
    taps = frame0[2]
    names = [k[len("debug.") :] for k in mae if k.startswith("debug.dec.")]
    assert names and set(names) == set(taps)
    for name in names:
        assert_close_ref(taps[name], mae[f"debug.{name}"], name)


# ----------------------------------------------------------------------------------------------------------
# structure and API behaviour
# ----------------------------------------------------------------------------------------------------------


def test_full_size_state_dict_matches_manifest():
    manifest = json.loads((require_shared(FLOAT_REF) / "manifest_full.json").read_text())
    expected = [
        (k["key"][len(PREFIX) :], tuple(k["shape"]), k["kind"]) for k in manifest["keys"] if k["key"].startswith(PREFIX)
    ]
    model = MotionAutoEncoder(MotionAutoEncoderConfig(), device="meta")
    buffers = {n for n, _ in model.named_buffers()}
    got = [(k, tuple(v.shape), "buffer" if k in buffers else "parameter") for k, v in model.state_dict().items()]
    assert set(got) == set(expected)
    assert [k for k, _, _ in got] == [k for k, _, _ in expected], "state_dict key order differs from FLOAT's"
    assert all(k.endswith("kernel") for k in buffers)


def test_decode_chunking_is_consistent(tiny_model, encoded, mae):
    h, _, feats, _ = encoded
    g = torch.Generator().manual_seed(0)
    motion = 0.3 * torch.randn(2, 5, tiny_model.cfg.dim_w, generator=g)
    with torch.inference_mode():
        f1 = tiny_model.decode(h, feats, motion, chunk_size=1)
        f3 = tiny_model.decode(h, feats, motion, chunk_size=3)
        chunks = list(tiny_model.iter_decode(h, feats, motion, chunk_size=3))
        # per-row rendering with explicitly repeated features gives the same frames
        single = tiny_model.render(h[1:2] + motion[1:2, 4], [f[1:2] for f in feats])
    s = tiny_model.cfg.size
    assert f1.shape == (2, 5, 3, s, s)
    assert [c.shape[1] for c in chunks] == [3, 2]
    torch.testing.assert_close(f3, f1, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat(chunks, 1), f3, atol=0, rtol=0)
    torch.testing.assert_close(single[0], f1[1, 4], atol=1e-5, rtol=1e-5)


def test_decode_keeps_singleton_axes(tiny_model, encoded):
    h, _, feats, _ = encoded
    motion = torch.zeros(1, 1, tiny_model.cfg.dim_w)
    with torch.inference_mode():
        out = tiny_model.decode(h[:1], [f[:1] for f in feats], motion)
    s = tiny_model.cfg.size
    assert out.shape == (1, 1, 3, s, s)


def test_coefficient_round_trip(tiny_model):
    g = torch.Generator().manual_seed(1)
    lam = torch.randn(3, 4, tiny_model.cfg.dim_m, generator=g)
    with torch.inference_mode():
        motion = tiny_model.motion_from_coefficients(lam)
        back = tiny_model.coefficients_from_motion(motion)
    assert motion.shape == (3, 4, tiny_model.cfg.dim_w)
    torch.testing.assert_close(back, lam, atol=1e-5, rtol=1e-5)


def test_config_round_trip():
    cfg = MotionAutoEncoderConfig(size=64, channels={4: 48, 8: 40, 16: 32, 32: 24, 64: 16})
    d = cfg.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert MotionAutoEncoderConfig.from_dict({**d, "unknown": 1}) == cfg
    str_keys = {"4": 48, "8": 40, "16": 32, "32": 24, "64": 16}
    assert MotionAutoEncoderConfig.from_dict({"channels": str_keys, "size": 64}).channels == cfg.channels
    with pytest.raises(ValueError):
        MotionAutoEncoderConfig(size=64, channels={4: 48})
    assert MotionAutoEncoderConfig().channel(512) == 32
    assert MotionAutoEncoderConfig.from_dict(MotionAutoEncoderConfig().to_dict()) == MotionAutoEncoderConfig()
    with pytest.raises(ValueError):
        MotionAutoEncoderConfig(size=48)


# ----------------------------------------------------------------------------------------------------------
# primitives
# ----------------------------------------------------------------------------------------------------------


def test_fast_fir_resampling_matches_literal_definition():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 5, 9, 9, generator=g)
    k1 = make_fir_kernel()
    k4 = make_fir_kernel(scale=4.0)
    assert float(k1.sum()) == pytest.approx(1.0) and k1.shape == (4, 4)
    up_fast = upsample2d(x, k4)
    up_ref = upfirdn2d_reference(x, k4, up=2, pad=(2, 1))
    assert up_fast.shape == (2, 5, 18, 18)
    torch.testing.assert_close(up_fast, up_ref, atol=1e-6, rtol=0)
    for pad in [(2, 2), (1, 1), (2, 1)]:
        torch.testing.assert_close(blur2d(x, k1, pad), upfirdn2d_reference(x, k1, pad=pad), atol=1e-6, rtol=0)


def test_base_grid_convention():
    grid = base_grid(3, 5)
    assert grid.shape == (3, 5, 2) and grid.dtype == torch.float32
    torch.testing.assert_close(grid[0, :, 0], torch.linspace(-1, 1, 5))
    torch.testing.assert_close(grid[:, 0, 1], torch.linspace(-1, 1, 3))


def test_mixed_rgb_reads_the_blended_activation():
    """``rgb_from="mixed"``: same weights as "warped"; the fast no-grad last level equals the literal path;
    with the warp mask fully on the two agree, and where it is off the decoder's own activation shows."""
    ch = {4: 16, 8: 16, 16: 12, 32: 8, 64: 8}
    torch.manual_seed(0)
    warped_ae = MotionAutoEncoder(MotionAutoEncoderConfig(size=64, dim_w=32, dim_m=4, channels=ch)).eval()
    mixed_ae = MotionAutoEncoder(MotionAutoEncoderConfig(size=64, dim_w=32, dim_m=4, channels=ch, rgb_from="mixed")).eval()
    mixed_ae.load_state_dict(warped_ae.state_dict(), strict=True)
    g = torch.Generator().manual_seed(1)
    image = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    with torch.no_grad():
        h, lam, feats = mixed_ae.encode(image)
        latent = h + 0.3 * torch.randn(2, 32, generator=g)
        fast = mixed_ae.render(latent, feats)  # in-place / projected last level
        plain = warped_ae.render(latent, feats)
    literal = mixed_ae.render(latent.requires_grad_(), feats).detach()  # autograd: no shortcuts
    torch.testing.assert_close(fast, literal, atol=1e-4, rtol=1e-4)  # float rounding of the two orders
    assert float((fast - plain).abs().max()) > 1e-3
    for to_flow in (*mixed_ae.dec.to_flows, *warped_ae.dec.to_flows):
        with torch.no_grad():
            to_flow.bias[:, 2] = 60.0  # mask = sigmoid(huge) = 1: nothing of the activation is kept
    with torch.no_grad():
        torch.testing.assert_close(mixed_ae.render(latent, feats), warped_ae.render(latent, feats), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="rgb_from"):
        MotionAutoEncoderConfig(size=64, rgb_from="both")
    assert MotionAutoEncoderConfig.from_dict(mixed_ae.cfg.to_dict()).rgb_from == "mixed"
