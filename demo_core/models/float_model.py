"""FLOAT-family talking-portrait model: the four sub-models under FLOAT's state-dict prefixes.

``FloatModel`` owns ``motion_autoencoder``, ``audio_encoder``, ``emotion_encoder`` (optional) and
``fmt`` so that ``state_dict()`` keys equal those of FLOAT's ``float.pth``.  The model itself holds
no inference logic beyond small helpers; generation lives in :mod:`demo_core.pipeline`.

Example:
    >>> cfg = FloatConfig()                       # FLOAT's default (full-size) options
    >>> model = FloatModel(cfg, device="meta")    # shapes only, instant
    >>> len(model.state_dict())
    947
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .audio_encoder import AudioEncoder, AudioEncoderConfig
from .emotion_encoder import EmotionEncoder, EmotionEncoderConfig
from .flow_transformer import FlowTransformer, FlowTransformerConfig
from .motion_autoencoder import MotionAutoEncoder, MotionAutoEncoderConfig
from .wav2vec2 import Wav2Vec2Config

__all__ = ["FloatConfig", "FloatModel"]


@dataclass
class FloatConfig:
    """Configuration of a FLOAT-family model (stored in the pack's checkpoints as JSON).

    Attributes:
        motion_autoencoder: appearance encoder, motion dictionary and warping decoder.
        audio_encoder: wav2vec2 + projection to per-frame audio conditions.
        emotion_encoder: speech-emotion classifier; ``None`` when the checkpoint has none
            (then an explicit emotion label, or neutral, is used).
        flow_transformer: the flow-matching transformer (FMT).
        fps: native video frame rate of the model (FLOAT: 25).
        sampling_rate: audio rate the audio encoder expects (FLOAT: 16 kHz).
    """

    motion_autoencoder: MotionAutoEncoderConfig = field(default_factory=MotionAutoEncoderConfig)
    audio_encoder: AudioEncoderConfig = field(default_factory=AudioEncoderConfig)
    emotion_encoder: EmotionEncoderConfig | None = field(default_factory=EmotionEncoderConfig)
    flow_transformer: FlowTransformerConfig = field(default_factory=FlowTransformerConfig)
    fps: float = 25.0
    sampling_rate: int = 16000

    @property
    def image_size(self) -> int:
        return self.motion_autoencoder.size

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": "float",
            "motion_autoencoder": self.motion_autoencoder.to_dict(),
            "audio_encoder": self.audio_encoder.to_dict(),
            "emotion_encoder": None if self.emotion_encoder is None else self.emotion_encoder.to_dict(),
            "flow_transformer": self.flow_transformer.to_dict(),
            "fps": self.fps,
            "sampling_rate": self.sampling_rate,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FloatConfig":
        emo = d.get("emotion_encoder")
        return cls(
            motion_autoencoder=MotionAutoEncoderConfig.from_dict(d.get("motion_autoencoder", {})),
            audio_encoder=AudioEncoderConfig.from_dict(d.get("audio_encoder", {})),
            emotion_encoder=None if emo is None else EmotionEncoderConfig.from_dict(emo),
            flow_transformer=FlowTransformerConfig.from_dict(d.get("flow_transformer", {})),
            fps=float(d.get("fps", 25.0)),
            sampling_rate=int(d.get("sampling_rate", 16000)),
        )

    @classmethod
    def from_float_options(cls, options: dict[str, Any], channels: dict | None = None) -> "FloatConfig":
        """Build from FLOAT's option namespace (``options/base_options.py`` names).

        Args:
            options: FLOAT options (``input_size``, ``dim_w``, ``dim_m``, ``dim_h``, ``fmt_depth``,
                ``num_heads``, ``mlp_ratio``, ``wav2vec_sec``, ``fps``, ``num_prev_frames``,
                ``attention_window``, ``only_last_features``, ``wav2vec_config``,
                ``audio2emotion_config``, ...); missing ones take FLOAT's defaults.
            channels: optional motion auto-encoder channel table ``{resolution: channels}``.
        """
        o = dict(options)
        fps = float(o.get("fps", 25.0))
        sr = int(o.get("sampling_rate", 16000))
        dim_w = int(o.get("dim_w", 512))
        mae = MotionAutoEncoderConfig(
            size=int(o.get("input_size", 512)),
            dim_w=dim_w,
            dim_m=int(o.get("dim_m", 20)),
            channels=None if channels is None else {int(k): int(v) for k, v in channels.items()},
        )
        w2v = o.get("wav2vec_config")
        audio = AudioEncoderConfig(
            wav2vec2=Wav2Vec2Config.from_dict(w2v) if w2v else AudioEncoderConfig().wav2vec2,
            dim_w=dim_w,
            only_last_features=bool(o.get("only_last_features", False)),
            sampling_rate=sr,
            fps=fps,
        )
        emo_cfg = o.get("audio2emotion_config")
        emotion = EmotionEncoderConfig(wav2vec2=Wav2Vec2Config.from_dict(emo_cfg)) if emo_cfg else EmotionEncoderConfig()
        fmt = FlowTransformerConfig(
            dim_w=dim_w,
            dim_a=int(o.get("dim_a", dim_w)),
            dim_e=int(o.get("dim_e", 7)),
            dim_h=int(o.get("dim_h", 1024)),
            depth=int(o.get("fmt_depth", 8)),
            num_heads=int(o.get("num_heads", 8)),
            mlp_ratio=float(o.get("mlp_ratio", 4.0)),
            num_frames=int(float(o.get("wav2vec_sec", 2.0)) * fps),
            num_prev_frames=int(o.get("num_prev_frames", 10)),
            attention_window=int(o.get("attention_window", 2)),
        )
        return cls(mae, audio, emotion, fmt, fps=fps, sampling_rate=sr)


class FloatModel(nn.Module):
    """The FLOAT-family model: motion auto-encoder, audio and emotion encoders, FMT.

    Args:
        cfg: the model configuration.
        device: where to allocate parameters (``"meta"`` gives shapes only).
        dtype: parameter dtype (float32 unless the caller asks otherwise).
    """

    def __init__(self, cfg: FloatConfig, *, device=None, dtype=None):
        super().__init__()
        self.cfg = cfg
        kw = {"device": device, "dtype": dtype}
        self.motion_autoencoder = MotionAutoEncoder(cfg.motion_autoencoder, **kw)
        self.audio_encoder = AudioEncoder(cfg.audio_encoder, **kw)
        self.emotion_encoder = None if cfg.emotion_encoder is None else EmotionEncoder(cfg.emotion_encoder, **kw)
        self.fmt = FlowTransformer(cfg.flow_transformer, **kw)

    @property
    def device(self) -> torch.device:
        return self.fmt.x_embedder.proj.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.fmt.x_embedder.proj.weight.dtype
