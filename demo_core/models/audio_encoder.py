"""FLOAT's audio encoder: wav2vec2-base features interpolated to the video frame rate, then projected.

Pipeline for a normalised 16-kHz waveform ``a`` (B, n) and a frame count T:

1. replicate right padding to n_T = int(T · sampling_rate / fps) samples (:meth:`AudioEncoder.pad_waveform`);
2. conv features (B, C, L50) at ≈50 Hz;
3. linear interpolation (align_corners=True) along time to exactly T frames;
4. feature projection + transformer encoder;
5. concatenation of every transformer layer's output (layer-major) → (B, T, N·H), or the last layer
   only (``only_last_features``);
6. ``audio_projection`` = Linear(N·H → dim_w) → LayerNorm → SiLU → wa (B, T, dim_w).

State-dict keys: ``wav2vec2.*`` (see :mod:`demo_core.models.wav2vec2`), ``audio_projection.0.{weight,bias}``
and ``audio_projection.1.{weight,bias}``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import DemoInputError
from .wav2vec2 import Wav2Vec2Config, Wav2Vec2Model, wav2vec2_base_config

__all__ = ["AudioEncoderConfig", "AudioEncoder", "normalize_waveform", "normalization_stats", "apply_normalization"]


def normalize_waveform(a: Tensor) -> Tensor:
    """wav2vec2 feature-extractor normalisation, per row: (x − mean) / √(var + 1e−7).

    The population variance is used; statistics are computed in float64 and the result is float32.

    Args:
        a: Waveform (n,) or (B, n).

    Returns:
        Normalised float32 waveform of the same shape.
    """
    if a.dim() not in (1, 2) or a.shape[-1] == 0:
        raise DemoInputError(f"audio: expected a waveform of shape (n,) or (B, n) with n > 0, got {tuple(a.shape)}")
    x = a.to(torch.float64)
    mean = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, unbiased=False, keepdim=True)
    return ((x - mean) / torch.sqrt(var + 1e-7)).to(torch.float32)


def normalization_stats(a: Tensor, chunk: int = 1 << 18) -> tuple[Tensor, Tensor]:
    """The statistics of :func:`normalize_waveform` without a float64 copy of the waveform.

    Mean and population variance in float64, accumulated ``chunk`` samples at a time (two passes), so the
    working memory is a few MiB whatever the length; they match the whole-array figures to float64 rounding.

    Args:
        a: Waveform (n,) or (B, n), any float dtype.
        chunk: Samples per step.

    Returns:
        ``(mean, scale)``, float64 of shape (1,) or (B, 1), with ``scale = √(var + 1e−7)``:
        ``apply_normalization(a, mean, scale)`` ≈ ``normalize_waveform(a)`` (to float32 rounding).
    """
    if a.dim() not in (1, 2) or a.shape[-1] == 0:
        raise DemoInputError(f"audio: expected a waveform of shape (n,) or (B, n) with n > 0, got {tuple(a.shape)}")
    n = int(a.shape[-1])
    total = torch.zeros(a.shape[:-1] + (1,), dtype=torch.float64, device=a.device)
    for s in range(0, n, chunk):
        total += a[..., s:s + chunk].to(torch.float64).sum(dim=-1, keepdim=True)
    mean = total / n
    sq = torch.zeros_like(mean)
    for s in range(0, n, chunk):
        sq += (a[..., s:s + chunk].to(torch.float64) - mean).square().sum(dim=-1, keepdim=True)
    return mean, torch.sqrt(sq / n + 1e-7)


def apply_normalization(a: Tensor, mean: Tensor, scale: Tensor) -> Tensor:
    """``(a − mean) / scale`` in float64 → float32, with :func:`normalization_stats` of the whole waveform;
    sample-wise, so it may be applied to any slice of it (rows: (B, m) with the (B, 1) statistics)."""
    return ((a.to(torch.float64) - mean) / scale).to(torch.float32)


@dataclass
class AudioEncoderConfig:
    """Configuration of :class:`AudioEncoder` (FLOAT option names)."""

    wav2vec2: Wav2Vec2Config = field(default_factory=wav2vec2_base_config)
    dim_w: int = 512
    only_last_features: bool = False
    sampling_rate: int = 16000
    fps: float = 25.0

    def to_dict(self) -> dict:
        """JSON-safe dict with the wav2vec2 config nested under ``"wav2vec2"``."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "wav2vec2"}
        d["wav2vec2"] = self.wav2vec2.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AudioEncoderConfig":
        """Inverse of :meth:`to_dict`; unknown keys are ignored, a missing ``wav2vec2`` means wav2vec2-base."""
        names = {f.name for f in dataclasses.fields(cls)} - {"wav2vec2"}
        kw = {k: v for k, v in d.items() if k in names}
        w = d.get("wav2vec2")
        if w is not None:
            kw["wav2vec2"] = w if isinstance(w, Wav2Vec2Config) else Wav2Vec2Config.from_dict(w)
        return cls(**kw)

    @classmethod
    def from_float_options(cls, options: Mapping[str, Any]) -> "AudioEncoderConfig":
        """Build from a FLOAT option namespace dict (``wav2vec_config``, ``dim_w``, ``only_last_features``, …)."""
        w = options.get("wav2vec_config")
        return cls(
            wav2vec2=Wav2Vec2Config.from_dict(w) if w is not None else wav2vec2_base_config(),
            dim_w=int(options.get("dim_w", 512)),
            only_last_features=bool(options.get("only_last_features", False)),
            sampling_rate=int(options.get("sampling_rate", 16000)),
            fps=float(options.get("fps", 25.0)),
        )

    @property
    def feature_dim(self) -> int:
        """Width of the wav2vec2 features fed to ``audio_projection``."""
        h = self.wav2vec2.hidden_size
        return h if self.only_last_features else self.wav2vec2.num_hidden_layers * h


class AudioEncoder(nn.Module):
    """Waveform → per-video-frame audio condition ``wa`` (B, T, dim_w).

    Args:
        cfg: Configuration (default: FLOAT's full-size audio encoder).
        device: Parameter device.
        dtype: Parameter dtype.
    """

    def __init__(self, cfg: Optional[AudioEncoderConfig] = None, *, device=None, dtype=None):
        super().__init__()
        cfg = cfg if cfg is not None else AudioEncoderConfig()
        self.config = cfg
        fk = {"device": device, "dtype": dtype}
        self.wav2vec2 = Wav2Vec2Model(cfg.wav2vec2, **fk)
        self.audio_projection = nn.Sequential(
            nn.Linear(cfg.feature_dim, cfg.dim_w, **fk),
            nn.LayerNorm(cfg.dim_w, eps=1e-5, **fk),
            nn.SiLU(),
        )

    def num_samples(self, num_frames: int) -> int:
        """n_T = int(T · sampling_rate / fps), the waveform length that T frames cover."""
        return int(num_frames * self.config.sampling_rate / self.config.fps)

    def pad_waveform(self, a: Tensor, num_frames: int) -> Tensor:
        """Right-pad ``a`` to n_T = int(T · sr / fps) samples by repeating its last sample.

        As in FLOAT, nothing changes when n is a multiple of n_T; when n > n_T and not a multiple,
        the waveform is cut to n_T samples (FLOAT's negative replicate padding).

        Args:
            a: Waveform (B, n).
            num_frames: T.

        Returns:
            (B, n_T) waveform (or ``a`` itself when n is a multiple of n_T).
        """
        self._check_inputs(a, num_frames)
        n_t = self.num_samples(num_frames)
        if n_t < 1:
            raise DemoInputError(f"num_frames: {num_frames} frames cover less than one audio sample")
        n = a.shape[1]
        if n % n_t == 0:
            return a
        if n > n_t:
            return a[:, :n_t]
        return F.pad(a[:, None, :], (0, n_t - n), mode="replicate")[:, 0, :]

    @staticmethod
    def _check_inputs(a: Tensor, num_frames: int) -> None:
        if not isinstance(a, Tensor) or a.dim() != 2 or a.shape[1] == 0:
            shape = tuple(a.shape) if isinstance(a, Tensor) else type(a).__name__
            raise DemoInputError(f"audio: expected a normalised waveform tensor of shape (B, n), got {shape}")
        if isinstance(num_frames, bool) or int(num_frames) != num_frames or int(num_frames) < 1:
            raise DemoInputError(f"num_frames: expected a positive integer, got {num_frames!r}")

    def features(self, a: Tensor, num_frames: int, *, taps: Optional[dict] = None) -> Tensor:
        """wav2vec2 features at the video frame rate.

        Args:
            a: Normalised waveform (B, n).
            num_frames: Number of video frames T.
            taps: Optional dict filled with intermediate tensors: ``"a_padded"`` (B, n_T),
                ``"conv_features"`` (B, C_conv, L50), ``"interp_features"`` (B, T, C_conv),
                ``"projected_features"`` (B, T, H) and ``"hidden_states.{i}"`` (B, T, H),
                i = 0 … num_hidden_layers (0 = post-LN embedding).

        Returns:
            (B, T, num_hidden_layers · H) — every layer's output concatenated on the feature axis in
            layer order — or (B, T, H), the last layer only, when ``only_last_features``.
        """
        num_frames = int(num_frames) if not isinstance(num_frames, bool) else num_frames
        a_pad = self.pad_waveform(a, num_frames)
        conv = self.wav2vec2.extract_features(a_pad)
        interp = F.interpolate(conv, size=num_frames, mode="linear", align_corners=True).transpose(1, 2)
        states = self.wav2vec2.encode(interp, output_hidden_states=True, taps=taps)
        if taps is not None:
            taps["a_padded"] = a_pad
            taps["conv_features"] = conv
            taps["interp_features"] = interp
            for i, s in enumerate(states):
                taps[f"hidden_states.{i}"] = s
        if self.config.only_last_features:
            return states[-1]
        return torch.cat(states[1:], dim=-1)

    def forward(self, a: Tensor, num_frames: int) -> Tensor:
        """Args: a normalised waveform (B, n), num_frames T. Returns: wa (B, T, dim_w)."""
        return self.audio_projection(self.features(a, num_frames))
