"""Log-mel audio encoder: filterbank, frame alignment, exact T, locality (segments = full clip)."""

from __future__ import annotations

import math

import pytest
import torch

from demo_core.errors import DemoInputError
from demo_core.models.logmel_audio_encoder import (
    LogMelAudioEncoder,
    LogMelAudioEncoderConfig,
    hz_to_mel,
    mel_filterbank,
    mel_to_hz,
)


def _encoder() -> LogMelAudioEncoder:
    torch.manual_seed(0)
    cfg = LogMelAudioEncoderConfig(n_mels=24, channels=16, dilations=(1, 2, 4), dim_feature=12, dim_a=10)
    return LogMelAudioEncoder(cfg).eval()


def test_mel_scale_round_trip_and_filterbank_shape():
    f = torch.tensor([0.0, 100.0, 1000.0, 7600.0], dtype=torch.float64)
    assert torch.allclose(mel_to_hz(hz_to_mel(f)), f)
    assert float(hz_to_mel(torch.tensor(1000.0))) == pytest.approx(1000.0, abs=0.5)  # HTK: 1 kHz ≈ 1000 mel
    fb = mel_filterbank(512, 40, 16000, 20.0, 7600.0)
    assert fb.shape == (257, 40) and float(fb.min()) >= 0.0 and float(fb.max()) <= 1.0
    assert bool((fb.sum(0) > 0).all())  # every band sees some bins


def test_a_tone_lights_up_its_mel_band():
    enc = _encoder()
    t = torch.arange(16000) / 16000
    lm = enc.log_mel(torch.sin(2 * math.pi * 1000.0 * t)[None])  # (1, 24, 101)
    c = enc.config
    edges = mel_to_hz(torch.linspace(float(hz_to_mel(torch.tensor(c.f_min))), float(hz_to_mel(torch.tensor(c.f_max))), c.n_mels + 2))
    centre = (edges[1:-1] - 1000.0).abs().argmin()
    assert int(lm[0, :, 50].argmax()) == int(centre)


def test_log_mel_frame_j_is_centred_on_sample_j_hop():
    enc = _encoder()
    a = torch.zeros(1, 16000)
    a[0, 37 * 160] = 1.0  # a click at t = 0.37 s
    energy = enc.log_mel(a).exp().sum(1)[0]  # (101,)
    assert int(energy.argmax()) == 37


@pytest.mark.parametrize("n", [15000, 16000, 23456])
def test_exactly_t_frames_for_any_length(n):
    enc = _encoder()
    a = torch.randn(2, n)
    assert enc.features(a, 25).shape == (2, 25, 12)
    assert enc(a, 31).shape == (2, 31, 10)


def test_segment_with_context_gives_the_full_clip_features():
    enc = _encoder()
    T, spf = 60, 640  # 25 fps at 16 kHz: 640 samples per frame
    a = torch.randn(1, T * spf)
    full = enc.features(a, T)
    C = enc.context_frames
    for k0, F in ((0, 4), (20, 5), (T - 3, 3)):
        s0, s1 = max(0, k0 - C), min(T, k0 + F + C)
        seg = enc.features(a[:, s0 * spf: s1 * spf], s1 - s0)[:, k0 - s0: k0 - s0 + F]
        assert torch.allclose(seg, full[:, k0:k0 + F], atol=1e-5), (k0, float((seg - full[:, k0:k0 + F]).abs().max()))


def test_config_round_trip_and_bad_inputs():
    cfg = _encoder().config
    assert LogMelAudioEncoderConfig.from_dict(cfg.to_dict()) == cfg
    enc = _encoder()
    with pytest.raises(DemoInputError, match="waveform"):
        enc(torch.randn(16000), 10)
    with pytest.raises(DemoInputError, match="num_frames"):
        enc(torch.randn(1, 16000), 0)
    with pytest.raises(DemoInputError):
        LogMelAudioEncoderConfig(f_max=9000.0)


# -- segmented encoding of long clips (issue #6: bounded memory) --------------------------------------------


@pytest.mark.parametrize("n, T", [(16000 * 3 + 123, 76), (16000 * 3, 75), (48000, 90), (7000, 40), (641, 3)])
def test_segmented_features_equal_the_whole_clip(n, T):
    """Segments at awkward places (1 frame, primes, one short of T), clips not a multiple of the segment,
    cropped (n > n_T) and zero-padded (n < n_T, some segments wholly past the audio) clips, batch of 2."""
    enc = _encoder()
    a = torch.randn(2, n, generator=torch.Generator().manual_seed(n))
    with torch.no_grad():
        full_f, full_wa = enc.features(a, T), enc(a, T)
        for seg in (1, 2, 7, 13, 29, T - 1, T, T + 5):
            if seg < 1:
                continue
            f = enc.features(a, T, segment_frames=seg)
            wa = enc(a, T, segment_frames=seg)
            assert f.shape == full_f.shape and wa.shape == full_wa.shape
            assert torch.allclose(f, full_f, atol=1e-5, rtol=0), (seg, float((f - full_f).abs().max()))
            assert torch.allclose(wa, full_wa, atol=1e-5, rtol=0), (seg, float((wa - full_wa).abs().max()))


def test_segmented_features_with_wide_context_and_default_config():
    """A receptive field wider than the segment (dilation 16, segments of 3 frames) and the shipped config."""
    torch.manual_seed(1)
    enc = LogMelAudioEncoder(LogMelAudioEncoderConfig(n_mels=16, channels=8, dim_feature=8, dim_a=8)).eval()
    a = torch.randn(1, 16000 * 2 + 999)
    with torch.no_grad():
        full = enc(a, 52)
        for seg in (3, 10, 51):
            assert torch.allclose(enc(a, 52, segment_frames=seg), full, atol=1e-5, rtol=0), seg


def test_transform_is_applied_per_slice_like_on_the_whole_waveform():
    """``transform`` (e.g. normalisation with whole-clip statistics) on each slice = on the whole waveform."""
    enc = _encoder()
    raw = 0.2 * torch.randn(1, 30000, generator=torch.Generator().manual_seed(3)) + 0.05
    mean, std = raw.double().mean(), raw.double().std()

    def norm(x):
        return ((x.double() - mean) / std).float()

    with torch.no_grad():
        full = enc(norm(raw), 50)
        assert torch.equal(enc(raw, 50, transform=norm), full)
        assert torch.allclose(enc(raw, 50, segment_frames=9, transform=norm), full, atol=1e-5, rtol=0)


def test_segment_frames_must_be_a_positive_integer():
    enc = _encoder()
    a = torch.randn(1, 16000)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(DemoInputError, match="segment_frames"):
            enc(a, 25, segment_frames=bad)
