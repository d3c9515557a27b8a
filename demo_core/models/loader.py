"""Build a model from checkpoint files: config from metadata or inferred from the weights.

FLOAT's own loaders assume default options; here every size that the weights determine (image
size, channel table, number of directions, FMT width/depth/window length, wav2vec2 geometry, whether
an emotion encoder exists) is read from the tensor shapes, and what shapes cannot tell (attention
heads, prefix length) falls back to FLOAT's defaults or to a Hugging Face ``config.json`` found
beside the wav2vec2 weights.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

import torch

from ..errors import CheckpointError, DemoInputError
from ..io.checkpoints import FORMAT_NAME, LoadReport, check_state_dict, collect_state_dict
from .audio_encoder import AudioEncoderConfig
from .demo_model import DemoConfig, DemoModel
from .emotion_encoder import EmotionEncoderConfig
from .float_model import FloatConfig, FloatModel
from .flow_transformer import FlowTransformerConfig
from .motion_autoencoder import MotionAutoEncoderConfig
from .wav2vec2 import Wav2Vec2Config, wav2vec2_base_config, wav2vec2_xlsr_emotion_config

__all__ = ["infer_float_config", "load_model", "FLOAT_WAV2VEC2_FOLDERS"]

# Folder names FLOAT's release uses for its Hugging Face sub-models; looked for beside a checkpoint.
FLOAT_WAV2VEC2_FOLDERS = ("wav2vec2-base-960h", "wav2vec-english-speech-emotion-recognition")
_OPTIONAL = ("dec.to_rgb1.", ".noise.weight", "masked_spec_embed")
_RECOMPUTED = (".kernel", "alignment_mask")
_FLOAT_CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}


def _infer_motion_autoencoder(sd: dict[str, torch.Tensor]) -> MotionAutoEncoderConfig:
    p = "motion_autoencoder.enc.net_app.convs."
    idx = sorted({int(k[len(p):].split(".")[0]) for k in sd if k.startswith(p)})
    if not idx:
        raise CheckpointError("no motion auto-encoder weights (motion_autoencoder.enc.*) found")
    last = idx[-1]
    size = 2 ** (last + 1)
    channels = {size: int(sd[p + "0.0.weight"].shape[0])}
    for i in range(1, last):
        r = size // 2 ** (i - 1)
        channels[r // 2] = int(sd[f"{p}{i}.conv2.1.weight"].shape[0])
    final = sd[f"{p}{last}.weight"]
    dim_w = int(final.shape[0])
    dim_m = int(sd["motion_autoencoder.dec.direction.weight"].shape[1])
    default = all(_FLOAT_CHANNELS.get(r) == c for r, c in channels.items())
    return MotionAutoEncoderConfig(size=size, dim_w=dim_w, dim_m=dim_m, channels=None if default else channels)


def _infer_wav2vec2(sd: dict[str, torch.Tensor], prefix: str, hf: dict | None, fallback: Wav2Vec2Config) -> Wav2Vec2Config:
    if hf:
        return Wav2Vec2Config.from_dict(hf)
    conv = f"{prefix}feature_extractor.conv_layers."
    n_conv = len({k[len(conv):].split(".")[0] for k in sd if k.startswith(conv)})
    if n_conv == 0:
        return fallback
    dims = tuple(int(sd[f"{conv}{i}.conv.weight"].shape[0]) for i in range(n_conv))
    kernels = tuple(int(sd[f"{conv}{i}.conv.weight"].shape[-1]) for i in range(n_conv))
    layer_norm = f"{conv}1.layer_norm.weight" in sd
    hidden = int(sd[f"{prefix}feature_projection.projection.weight"].shape[0])
    lay = f"{prefix}encoder.layers."
    n_layers = len({k[len(lay):].split(".")[0] for k in sd if k.startswith(lay)})
    pos_v = sd[f"{prefix}encoder.pos_conv_embed.conv.parametrizations.weight.original1"]
    strides = fallback.conv_stride if len(fallback.conv_stride) == n_conv else (5,) + (2,) * (n_conv - 1)
    return Wav2Vec2Config(
        hidden_size=hidden,
        num_hidden_layers=n_layers,
        num_attention_heads=max(1, hidden // 64),
        intermediate_size=int(sd[f"{lay}0.feed_forward.intermediate_dense.weight"].shape[0]),
        conv_dim=dims,
        conv_kernel=kernels,
        conv_stride=tuple(strides),
        conv_bias=f"{conv}0.conv.bias" in sd,
        feat_extract_norm="layer" if layer_norm else "group",
        do_stable_layer_norm=layer_norm,
        num_conv_pos_embeddings=int(pos_v.shape[-1]),
        num_conv_pos_embedding_groups=hidden // int(pos_v.shape[1]),
        layer_norm_eps=fallback.layer_norm_eps,
        num_labels=int(sd.get(f"{prefix[:-len('wav2vec2.')]}classifier.out_proj.weight", torch.empty(7, 1)).shape[0]),
    )


def _infer_flow_transformer(sd: dict[str, torch.Tensor]) -> FlowTransformerConfig:
    x_emb = sd["fmt.x_embedder.proj.weight"]  # (D, W)
    dim_h, dim_w = int(x_emb.shape[0]), int(x_emb.shape[1])
    depth = len({k.split(".")[2] for k in sd if k.startswith("fmt.blocks.")})
    n_total = int(sd["fmt.pos_embed"].shape[1])
    mlp_hidden = int(sd["fmt.blocks.0.mlp.fc1.weight"].shape[0])
    cond_in = int(sd["fmt.c_embedder.weight"].shape[1])
    window = 2
    mask = sd.get("fmt.alignment_mask")
    if mask is not None and mask.dim() == 2 and mask.shape[0] > 0:
        mid = mask.shape[0] // 2
        window = (int((~mask[mid].bool()).sum()) - 1) // 2
    heads = 8 if dim_h % 8 == 0 else 1
    prefix = 10 if n_total > 10 else 0
    return FlowTransformerConfig(
        dim_w=dim_w,
        dim_a=dim_w,
        dim_e=cond_in - 2 * dim_w,
        dim_h=dim_h,
        depth=depth,
        num_heads=heads,
        mlp_ratio=mlp_hidden / dim_h,
        num_frames=n_total - prefix,
        num_prev_frames=prefix,
        attention_window=window,
    )


def infer_float_config(sd: dict[str, torch.Tensor], hf_configs: dict[str, dict] | None = None) -> FloatConfig:
    """Derive a :class:`FloatConfig` from FLOAT-keyed weights.

    Args:
        sd: state dict with FLOAT key names.
        hf_configs: Hugging Face ``config.json`` dicts keyed by sub-model prefix, when available.
    """
    hf_configs = hf_configs or {}
    for needed in ("motion_autoencoder.dec.direction.weight", "fmt.x_embedder.proj.weight", "fmt.pos_embed"):
        if needed not in sd:
            raise CheckpointError(f"the weights have no {needed}: not a FLOAT-family checkpoint")
    mae = _infer_motion_autoencoder(sd)
    fmt = _infer_flow_transformer(sd)
    audio_w2v = _infer_wav2vec2(sd, "audio_encoder.wav2vec2.", hf_configs.get("audio_encoder.wav2vec2."),
                                wav2vec2_base_config())
    proj = sd.get("audio_encoder.audio_projection.0.weight")
    only_last = proj is not None and int(proj.shape[1]) == audio_w2v.hidden_size and audio_w2v.num_hidden_layers > 1
    audio = AudioEncoderConfig(wav2vec2=audio_w2v, dim_w=mae.dim_w, only_last_features=only_last)
    emotion = None
    if any(k.startswith("emotion_encoder.") for k in sd):
        emo_prefix = "emotion_encoder.wav2vec2_for_emotion.wav2vec2."
        emotion = EmotionEncoderConfig(
            wav2vec2=_infer_wav2vec2(sd, emo_prefix, hf_configs.get("emotion_encoder.wav2vec2_for_emotion."),
                                     wav2vec2_xlsr_emotion_config())
        )
    return FloatConfig(motion_autoencoder=mae, audio_encoder=audio, emotion_encoder=emotion, flow_transformer=fmt)


def _sibling_wav2vec2_folders(paths: list[Path]) -> list[Path]:
    extra = []
    for p in paths:
        base = p.parent if p.is_file() else p
        for name in FLOAT_WAV2VEC2_FOLDERS:
            for cand in (base / name, base / "checkpoints" / name):
                if cand.is_dir() and cand not in paths and cand not in extra:
                    extra.append(cand)
    return extra


def _sibling_float_options(paths: list[Path]) -> dict | None:
    for p in paths:
        cand = (p.parent if p.is_file() else p) / "config.json"
        if cand.is_file():
            try:
                data = json.loads(cand.read_text())
            except (json.JSONDecodeError, OSError):
                continue
            if isinstance(data, dict) and isinstance(data.get("options"), dict):
                return data
    return None


def _metadata_family(metadata: dict[str, str], source: str) -> str:
    try:
        cfg_dict = json.loads(metadata["config"])
    except (KeyError, json.JSONDecodeError):
        raise CheckpointError(f"{source}: the pack-format metadata has no readable 'config' JSON.") from None
    return str(cfg_dict.get("family", "float")) if isinstance(cfg_dict, dict) else "float"


def _fill_model(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str, optional=_OPTIONAL,
                recomputed=_RECOMPUTED) -> tuple[list[str], list[str]]:
    """Copy ``state`` into ``model`` after checking keys and shapes; returns (missing_optional, unexpected)."""
    to_load, missing_optional, unexpected = check_state_dict(
        model, state, source=source, optional=optional, recomputed=recomputed
    )
    with torch.no_grad():
        own = model.state_dict()
        for k, v in to_load.items():
            own[k].copy_(v.to(dtype=own[k].dtype) if v.is_floating_point() else v)
    return missing_optional, unexpected


def _load_demo_model(state, metadata, sources, *, device, dtype) -> tuple[DemoModel, LoadReport]:
    """Build a :class:`DemoModel` from a pack-format file whose config has ``family: "demo"``."""
    source = ", ".join(sources)
    try:
        cfg = DemoConfig.from_dict(json.loads(metadata["config"]))
    except (DemoInputError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: the stored DEMO model config is not valid ({exc}).") from None
    with torch.device("meta"):
        probe = DemoModel(cfg)
    check_state_dict(probe, state, source=source, recomputed=_RECOMPUTED)
    model = DemoModel(cfg, device=device, dtype=dtype)
    report = LoadReport(sources=sources, metadata=metadata, config_source="metadata")
    report.missing, report.unexpected = _fill_model(model, state, source, optional=(), recomputed=_RECOMPUTED)
    model.eval().requires_grad_(False)
    return model, report


def load_model(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    search_siblings: bool = True,
    float_options: dict | None = None,
) -> tuple[FloatModel | DemoModel, LoadReport]:
    """Load a FLOAT-family model from the pack's format, ``float.pth``, ``FLOAT.safetensors`` or split parts.

    A pack-format file whose stored config has ``family: "demo"`` gives a
    :class:`~demo_core.models.demo_model.DemoModel` (same attributes as :class:`FloatModel` for the pipeline).

    Args:
        paths: checkpoint file(s) and/or folder(s).
        device: where the model lives.
        dtype: floating dtype of the parameters (float32, bfloat16 or float16).
        search_siblings: also read FLOAT's wav2vec2 folders (``wav2vec2-base-960h``,
            ``wav2vec-english-speech-emotion-recognition``) found beside the checkpoint when the
            checkpoint lacks those weights (as ``float.pth`` does).
        float_options: FLOAT's option namespace (``{"options": {...}, "channels": {...}}`` or the
            options alone) for a FLOAT checkpoint whose options differ from FLOAT's defaults in ways
            the shapes cannot show (attention heads, prefix length). A ``config.json`` with an
            ``"options"`` entry beside the checkpoint file is read the same way.

    Returns:
        ``(model in eval mode, report)``.

    Raises:
        CheckpointError: unreadable files, missing or wrong-shaped tensors (message names the file).
        DemoInputError: an unsupported dtype, or float16 on the CPU.
    """
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise DemoInputError(f"dtype: expected torch.float32, torch.bfloat16 or torch.float16, got {dtype}")
    if dtype == torch.float16 and torch.device(device).type == "cpu":
        raise DemoInputError("dtype: float16 needs a GPU (the CPU has no float16 convolutions); on the CPU use "
                             "bfloat16 or float32")
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    state, metadata, sources, hf_configs = collect_state_dict(paths)
    source = ", ".join(sources)
    if metadata.get("format") == FORMAT_NAME and _metadata_family(metadata, source) == "demo":
        return _load_demo_model(state, metadata, sources, device=device, dtype=dtype)
    if search_siblings and not any(k.startswith("audio_encoder.wav2vec2.") for k in state):
        extra = _sibling_wav2vec2_folders(paths)
        if extra:
            more, _, more_sources, more_hf = collect_state_dict(extra)
            for k, v in more.items():
                state.setdefault(k, v)
            sources += more_sources
            hf_configs.update(more_hf)
    report = LoadReport(sources=sources, metadata=metadata)
    if metadata.get("format") == FORMAT_NAME:
        try:
            cfg_dict = json.loads(metadata["config"])
        except (KeyError, json.JSONDecodeError):
            raise CheckpointError(f"{source}: the pack-format metadata has no readable 'config' JSON.") from None
        if cfg_dict.get("family", "float") != "float":
            raise CheckpointError(f"{source}: model family {cfg_dict.get('family')!r} is not supported by this loader.")
        cfg = FloatConfig.from_dict(cfg_dict)
        report.config_source = "metadata"
    elif float_options is not None or _sibling_float_options(paths) is not None:
        opts = float_options if float_options is not None else _sibling_float_options(paths)
        cfg = FloatConfig.from_float_options(opts.get("options", opts), opts.get("channels"))
        if not any(k.startswith("emotion_encoder.") for k in state):
            cfg.emotion_encoder = None
        report.config_source = "options"
    else:
        try:
            cfg = infer_float_config(state, hf_configs)
        except (KeyError, IndexError) as exc:
            raise CheckpointError(f"{source}: incomplete FLOAT checkpoint, cannot infer its configuration ({exc}).") from None
        except CheckpointError as exc:
            raise CheckpointError(f"{source}: {exc}.") from None
    if not any(k.startswith("audio_encoder.wav2vec2.") for k in state):
        raise CheckpointError(
            f"{source}: the wav2vec2 audio-encoder weights (audio_encoder.wav2vec2.*) are missing. FLOAT's float.pth "
            f"leaves them to the Hugging Face folder '{FLOAT_WAV2VEC2_FOLDERS[0]}': put that folder (and "
            f"'{FLOAT_WAV2VEC2_FOLDERS[1]}' for automatic emotion) next to the checkpoint, or use the unified "
            f"FLOAT.safetensors."
        )
    with torch.device("meta"):
        probe = FloatModel(cfg)
    check_state_dict(probe, state, source=source, optional=_OPTIONAL, recomputed=_RECOMPUTED)
    model = FloatModel(cfg, device=device, dtype=dtype)
    to_load, missing_optional, unexpected = check_state_dict(
        model, state, source=source, optional=_OPTIONAL, recomputed=_RECOMPUTED
    )
    with torch.no_grad():
        own = model.state_dict()
        for k, v in to_load.items():
            own[k].copy_(v.to(dtype=own[k].dtype) if v.is_floating_point() else v)
    report.missing, report.unexpected = missing_optional, unexpected
    model.eval().requires_grad_(False)
    return model, report
