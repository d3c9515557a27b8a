"""Checkpoint reading, key normalisation, split parts, the pack's format and error messages."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors.torch import save_file

from demo_core.errors import CheckpointError
from demo_core.io.checkpoints import (
    collect_state_dict,
    normalize_keys,
    read_tensor_file,
    save_checkpoint,
)
from demo_core.models.float_model import FloatConfig
from demo_core.models.loader import infer_float_config, load_model
from tests.conftest import TINY, tiny_config


@pytest.fixture(scope="module")
def tiny_file():
    from tests.conftest import require_shared

    return require_shared(TINY / "float_tiny.safetensors")


def _save(tensors: dict, path, metadata=None):
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


def test_truncated_safetensors_names_file(tmp_path, tiny_file):
    data = tiny_file.read_bytes()
    bad = tmp_path / "half.safetensors"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"half\.safetensors.*truncated"):
        read_tensor_file(bad)


def test_header_only_and_garbage_files(tmp_path):
    tiny = tmp_path / "tiny.safetensors"
    tiny.write_bytes(b"\x01\x02")
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        read_tensor_file(tiny)
    junk = tmp_path / "notes.safetensors"
    junk.write_bytes(struct.pack("<Q", 12) + b"not json!!!!" + b"\0" * 10)
    with pytest.raises(CheckpointError, match="header is corrupted"):
        read_tensor_file(junk)
    text = tmp_path / "readme.pth"
    text.write_text("hello, this is not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="readme.pth"):
        read_tensor_file(text)
    with pytest.raises(CheckpointError, match="not found"):
        read_tensor_file(tmp_path / "absent.safetensors")


class _Evil:
    """Pickling this object would run code on load (it must never run)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_with_code_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned.txt"
    evil = tmp_path / "float.pth"
    torch.save({"weight": torch.zeros(2), "payload": _Evil(marker)}, evil)
    with pytest.raises(CheckpointError, match=r"float\.pth: refused to load"):
        read_tensor_file(evil)
    assert not marker.exists()


def test_plain_pth_and_wrappers_load(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"state_dict": {"module.a.weight": torch.ones(3), "module.b": torch.zeros(1)}}, path)
    tensors, meta = read_tensor_file(path)
    assert meta == {}
    assert set(normalize_keys(tensors)) == {"a.weight", "b"}


def test_truncated_pth(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"a": torch.randn(1000)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match=r"w\.pth.*truncated or corrupted"):
        read_tensor_file(path)


def test_legacy_weight_norm_names():
    sd = {"audio_encoder.wav2vec2.encoder.pos_conv_embed.conv.weight_g": torch.ones(1, 1, 4),
          "audio_encoder.wav2vec2.encoder.pos_conv_embed.conv.weight_v": torch.ones(8, 2, 4)}
    out = normalize_keys(sd)
    assert set(out) == {
        "audio_encoder.wav2vec2.encoder.pos_conv_embed.conv.parametrizations.weight.original0",
        "audio_encoder.wav2vec2.encoder.pos_conv_embed.conv.parametrizations.weight.original1",
    }


def test_infer_config_from_tiny_weights(tiny_weights):
    cfg_json = tiny_config()
    expected = FloatConfig.from_float_options(cfg_json["options"], cfg_json["channels"])
    inferred = infer_float_config(tiny_weights)
    assert inferred.motion_autoencoder.to_dict() == expected.motion_autoencoder.to_dict()
    fe, fi = expected.flow_transformer.to_dict(), inferred.flow_transformer.to_dict()
    fe.pop("num_heads"), fi.pop("num_heads")  # heads are not visible in the shapes
    assert fe == fi
    w_e, w_i = expected.audio_encoder.wav2vec2.to_dict(), inferred.audio_encoder.wav2vec2.to_dict()
    for k in ("num_attention_heads",):
        w_e.pop(k), w_i.pop(k)
    assert w_e == w_i
    assert inferred.emotion_encoder is not None


def _split_like_float_tools(weights: dict, root):
    """Write FLOAT's split-part layout: files with keys relative to their module."""
    parts = {
        "motion_autoencoder/encoder.safetensors": "motion_autoencoder.enc.",
        "motion_autoencoder/decoder.safetensors": "motion_autoencoder.dec.",
        "audio_projections/projection.safetensors": "audio_encoder.audio_projection.",
        "fmt/fmt.safetensors": "fmt.",
    }
    for rel, prefix in parts.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        _save({k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}, root / rel)
    # Hugging Face layouts: the CTC model prefixes wav2vec2. and carries an lm_head.
    cfg = tiny_config()["options"]
    w2v = root / "wav2vec2-base-960h"
    w2v.mkdir()
    sd = {"wav2vec2." + k[len("audio_encoder.wav2vec2."):]: v for k, v in weights.items()
          if k.startswith("audio_encoder.wav2vec2.")}
    sd["lm_head.weight"] = torch.zeros(5, 32)
    _save(sd, w2v / "model.safetensors")
    (w2v / "config.json").write_text(json.dumps(cfg["wav2vec_config"]))
    emo = root / "wav2vec-english-speech-emotion-recognition"
    emo.mkdir()
    prefix = "emotion_encoder.wav2vec2_for_emotion."
    _save({k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}, emo / "model.safetensors")
    (emo / "config.json").write_text(json.dumps(cfg["audio2emotion_config"]))


def test_split_parts_folder_equals_unified(tmp_path, tiny_weights, tiny_file):
    _split_like_float_tools(tiny_weights, tmp_path)
    state, _, sources, hf = collect_state_dict(tmp_path)
    assert len(sources) == 6
    expected = {k for k in tiny_weights if not k.endswith((".kernel", "alignment_mask"))}
    assert expected <= set(state)
    model_split, _ = load_model(tmp_path)
    model_full, _ = load_model(tiny_file)
    a, b = model_split.state_dict(), model_full.state_dict()
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # heads come from the Hugging Face config.json beside the weights
    assert model_split.cfg.audio_encoder.wav2vec2.num_attention_heads == 2


def test_float_pth_without_wav2vec2_explains(tmp_path, tiny_weights):
    path = tmp_path / "float.pth"
    torch.save({k: v for k, v in tiny_weights.items() if "wav2vec2" not in k}, path)
    with pytest.raises(CheckpointError, match=r"float\.pth.*wav2vec2-base-960h"):
        load_model(path)


def test_float_pth_with_sibling_wav2vec2_folders(tmp_path, tiny_weights):
    _split_like_float_tools(tiny_weights, tmp_path)
    path = tmp_path / "float.pth"
    torch.save({k: v for k, v in tiny_weights.items() if "wav2vec2" not in k}, path)
    model, report = load_model(path)
    assert any("wav2vec2-base-960h" in s for s in report.sources)
    ref = tiny_weights["audio_encoder.audio_projection.0.weight"]
    assert torch.equal(model.state_dict()["audio_encoder.audio_projection.0.weight"], ref)


def test_missing_and_wrong_shape_named(tmp_path, tiny_weights):
    missing = dict(tiny_weights)
    missing.pop("fmt.blocks.1.attn.qkv.weight")
    missing.pop("motion_autoencoder.enc.fc.2.bias")
    p = _save(missing, tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError, match=r"missing\.safetensors.*2 tensors are missing.*fmt\.blocks"):
        load_model(p)
    wrong = dict(tiny_weights)
    wrong["fmt.decoder.linear.bias"] = torch.zeros(7)
    p = _save(wrong, tmp_path / "wrong.safetensors")
    with pytest.raises(CheckpointError, match=r"wrong\.safetensors.*fmt\.decoder\.linear\.bias has shape \(7,\)"):
        load_model(p)
    ints = dict(tiny_weights)
    ints["fmt.decoder.linear.bias"] = torch.zeros(512, dtype=torch.int64)
    p = _save(ints, tmp_path / "ints.safetensors")
    with pytest.raises(CheckpointError, match="floating-point"):
        load_model(p)


def test_optional_keys_may_be_absent(tmp_path, tiny_weights):
    lean = {k: v for k, v in tiny_weights.items()
            if not (".noise.weight" in k or "to_rgb1" in k or "masked_spec_embed" in k)}
    _, report = load_model(_save(lean, tmp_path / "lean.safetensors"))
    assert report.missing and all(("noise" in k or "to_rgb1" in k or "masked_spec" in k) for k in report.missing)


def test_pack_format_round_trip_and_no_overwrite(tmp_path, tiny_file):
    model, _ = load_model(tiny_file)
    out = save_checkpoint(tmp_path / "mine.safetensors", model, model.cfg.to_dict())
    tensors, meta = read_tensor_file(out)
    assert meta["format"] == "comfyui-demo" and meta["format_version"] == "1"
    assert json.loads(meta["config"])["flow_transformer"]["num_heads"] == 2
    again, report = load_model(out)
    assert report.config_source == "metadata"
    assert load_model(tiny_file)[1].config_source == "options"  # the fixture's config.json beside it
    assert again.cfg.to_dict() == model.cfg.to_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
    with pytest.raises(CheckpointError, match="already exists"):
        save_checkpoint(out, model, model.cfg.to_dict())
    assert not list(tmp_path.glob(".*partial"))


def test_bf16_load(tmp_path, tiny_file):
    model, _ = load_model(tiny_file, dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
