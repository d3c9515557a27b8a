"""A tiny data set round-trips through write / load with exact frame counts."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from demo_core.synthetic.dataset import generate_clip, list_clips, load_clip, load_identity, write_clip, write_dataset
from demo_core.synthetic.params import PARAM_NAMES
from demo_core.synthetic.speech import Phone, SpeechClip, espeak_available
from demo_core.synthetic.visemes import num_frames


def _short_speech(seconds=1.0, sr=16000):
    t = np.arange(int(seconds * sr)) / sr
    wav = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    phones = [Phone(0.0, 0.2, "sil"), Phone(0.2, 0.35, "m"), Phone(0.35, 0.6, "aa"), Phone(0.6, 0.75, "p"),
              Phone(0.75, seconds, "sil")]
    return SpeechClip(wav, sr, phones, text="ma pa", voice="test", alphabet="arpabet")


def test_generate_write_load_roundtrip(tmp_path):
    clip = generate_clip(_short_speech(1.01), 42, size=32, generator=torch.Generator().manual_seed(0),
                         augment_audio=False)
    n = math.ceil(1.01 * 25)
    assert clip["frames"].shape == (n, 3, 32, 32) and len(clip["params"]) == n
    write_clip(tmp_path / "clip_00000", clip)
    back = load_clip(tmp_path / "clip_00000.mp4")
    assert back["frames"].shape == (n, 3, 32, 32) and back["fps"] == 25.0
    assert float((back["frames"] - clip["frames"]).abs().max()) <= 3.5 / 255  # 4:4:4 qp0: only YUV rounding
    assert np.abs(back["waveform"].numpy() - clip["waveform"]).max() < 1e-4
    lab = back["labels"]
    for name in PARAM_NAMES:
        assert lab[name].dtype == np.float32 and lab[name].shape == (n,)
        assert np.array_equal(lab[name], clip["params"].to_dict()[name].numpy())
    assert list(lab["phone"]) == ["sil", "m", "aa", "p", "sil"] and int(lab["identity_seed"]) == 42
    assert load_identity(lab) == clip["identity"]
    assert back["params"].as_tensor().shape == (n, 12)


def test_write_dataset_two_clips(tmp_path):
    if not espeak_available():
        pytest.skip("espeak-ng unavailable: write_dataset would fall back to the ARCTIC clip")
    out = tmp_path / "ds"
    write_dataset(out, num_clips=2, size=32, split="train", seed=1, progress=False)
    write_dataset(out, num_clips=1, size=32, split="test", seed=1, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["fps"] == 25.0 and manifest["size"] == 32 and manifest["sample_rate"] == 16000
    assert manifest["factor_names"]["lip"] == ["mouth_open", "mouth_width", "mouth_round"]
    assert len(manifest["splits"]["train"]["clips"]) == 2 and len(manifest["clips"]) == 3
    train_ids = {c["identity_seed"] for c in manifest["splits"]["train"]["clips"]}
    test = manifest["splits"]["test"]["clips"][0]
    assert test["identity_seed"] % 2 == 1 and all(i % 2 == 0 for i in train_ids) and test["sentence"] % 10 == 9
    stems = list_clips(out / "train")
    assert [s.name for s in stems] == ["clip_00000", "clip_00001"]
    for stem in stems:
        c = load_clip(stem)
        seconds = len(c["waveform"]) / c["sample_rate"]
        assert c["frames"].shape[0] == num_frames(seconds, 25) == int(c["labels"]["num_frames"])
        assert c["frames"].shape[1:] == (3, 32, 32)
    assert not list(out.rglob(".*tmp*")), "temporary files left behind"
    before = (out / "train" / "clip_00000.mp4").stat().st_mtime_ns
    write_dataset(out, num_clips=2, size=32, split="train", seed=1, progress=False)  # resumes, no rewrite
    assert (out / "train" / "clip_00000.mp4").stat().st_mtime_ns == before


def test_frames_npy_sidecar_is_exact(tmp_path):
    clip = generate_clip(_short_speech(0.5), 3, size=32, generator=torch.Generator().manual_seed(1))
    write_clip(tmp_path / "c", clip, frames_npy=True, lossless=False)
    back = load_clip(tmp_path / "c")
    exact = (clip["frames"] * 255).round() / 255
    assert torch.equal(back["frames"], exact) and back["fps"] == 25.0
    assert back["frames"].shape[0] == math.ceil(len(clip["waveform"]) / 16000 * 25)


def test_write_clip_can_add_the_region_sidecar(tmp_path):
    clip = generate_clip(_short_speech(0.4), 7, size=32, generator=torch.Generator().manual_seed(1), augment_audio=False)
    write_clip(tmp_path / "clip_00000", clip, regions=True)
    region = np.load(tmp_path / "clip_00000.regions.npy")
    assert region.shape == (len(clip["params"]), 2, 32, 32) and region.dtype == np.uint8  # mouth, eyes
    assert 0.01 < float((region > 0).any(axis=1).mean()) < 0.15
    assert load_clip(tmp_path / "clip_00000.mp4")["frames"].shape[0] == region.shape[0]
