"""FLOAT's speech-emotion encoder (wav2vec2 XLSR classifier) and the emotion condition ``we``.

predict(a) = softmax(classifier(mean over time of wav2vec2(a).last_hidden_state)), computed on the
unpadded normalised waveform of the whole clip (no interpolation).  The classifier head is
Linear(H → H) → tanh → Linear(H → 7) (dropouts inactive).

State-dict keys: ``wav2vec2_for_emotion.wav2vec2.*`` (see :mod:`demo_core.models.wav2vec2`),
``wav2vec2_for_emotion.classifier.dense.{weight,bias}`` and ``….classifier.out_proj.{weight,bias}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import torch
from torch import Tensor, nn

from ..errors import DemoInputError
from .wav2vec2 import Wav2Vec2Config, Wav2Vec2Model, wav2vec2_xlsr_emotion_config

__all__ = ["EMOTION_LABELS", "EmotionEncoderConfig", "EmotionEncoder", "emotion_condition"]

EMOTION_LABELS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
_PREDICT_LABELS = ("s2e", "auto")


@dataclass
class EmotionEncoderConfig:
    """Configuration of :class:`EmotionEncoder`."""

    wav2vec2: Wav2Vec2Config = field(default_factory=wav2vec2_xlsr_emotion_config)

    def to_dict(self) -> dict:
        """JSON-safe dict with the wav2vec2 config nested under ``"wav2vec2"``."""
        return {"wav2vec2": self.wav2vec2.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EmotionEncoderConfig":
        """Inverse of :meth:`to_dict`; a missing ``wav2vec2`` means the XLSR emotion config."""
        w = d.get("wav2vec2")
        if w is None:
            return cls()
        return cls(wav2vec2=w if isinstance(w, Wav2Vec2Config) else Wav2Vec2Config.from_dict(w))

    @classmethod
    def from_float_options(cls, options: Mapping[str, Any]) -> "EmotionEncoderConfig":
        """Build from a FLOAT option namespace dict (uses ``audio2emotion_config`` when present)."""
        w = options.get("audio2emotion_config")
        return cls() if w is None else cls(wav2vec2=Wav2Vec2Config.from_dict(w))


class ClassificationHead(nn.Module):
    """Linear(H → H) → tanh → Linear(H → num_labels) (keys ``dense``, ``out_proj``)."""

    def __init__(self, hidden_size: int, num_labels: int, *, device=None, dtype=None):
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        self.dense = nn.Linear(hidden_size, hidden_size, **fk)
        self.out_proj = nn.Linear(hidden_size, num_labels, **fk)

    def forward(self, pooled: Tensor) -> Tensor:
        """Args: pooled (B, H). Returns: logits (B, num_labels)."""
        return self.out_proj(torch.tanh(self.dense(pooled)))


class Wav2Vec2ForEmotion(nn.Module):
    """Container matching the ``wav2vec2_for_emotion`` key layout: ``wav2vec2`` + ``classifier``."""

    def __init__(self, cfg: Wav2Vec2Config, *, device=None, dtype=None):
        super().__init__()
        self.wav2vec2 = Wav2Vec2Model(cfg, device=device, dtype=dtype)
        self.classifier = ClassificationHead(cfg.hidden_size, cfg.num_labels, device=device, dtype=dtype)


class EmotionEncoder(nn.Module):
    """Speech-emotion classifier over the 7 :data:`EMOTION_LABELS`.

    Args:
        cfg: Configuration (default: FLOAT's full-size XLSR emotion model).
        device: Parameter device.
        dtype: Parameter dtype.
    """

    def __init__(self, cfg: Optional[EmotionEncoderConfig] = None, *, device=None, dtype=None):
        super().__init__()
        cfg = cfg if cfg is not None else EmotionEncoderConfig()
        if cfg.wav2vec2.num_labels != len(EMOTION_LABELS):
            raise ValueError(f"num_labels must be {len(EMOTION_LABELS)}, got {cfg.wav2vec2.num_labels}")
        self.config = cfg
        self.wav2vec2_for_emotion = Wav2Vec2ForEmotion(cfg.wav2vec2, device=device, dtype=dtype)

    def logits(self, a: Tensor, *, taps: Optional[dict] = None) -> Tensor:
        """Classifier logits.

        Args:
            a: Normalised, unpadded waveform (B, n).
            taps: Optional dict; receives ``"conv_features"`` (B, C_conv, L), ``"projected_features"``
                (B, L, H), ``"last_hidden_state"`` (B, L, H) and ``"pooled"`` (B, H).

        Returns:
            Logits (B, 7) in :data:`EMOTION_LABELS` order.
        """
        if not isinstance(a, Tensor) or a.dim() != 2 or a.shape[1] == 0:
            shape = tuple(a.shape) if isinstance(a, Tensor) else type(a).__name__
            raise DemoInputError(f"audio: expected a normalised waveform tensor of shape (B, n), got {shape}")
        model = self.wav2vec2_for_emotion
        conv = model.wav2vec2.extract_features(a)
        last = model.wav2vec2.encode(conv.transpose(1, 2), output_hidden_states=False, taps=taps)[-1]
        pooled = last.mean(dim=1)
        if taps is not None:
            taps["conv_features"] = conv
            taps["last_hidden_state"] = last
            taps["pooled"] = pooled
        return model.classifier(pooled)

    def predict(self, a: Tensor) -> Tensor:
        """Args: a normalised waveform (B, n). Returns: emotion probabilities (B, 7) (softmax of logits)."""
        return torch.softmax(self.logits(a), dim=-1)

    def forward(self, a: Tensor) -> Tensor:
        """Same as :meth:`predict`."""
        return self.predict(a)


def emotion_condition(label: Optional[str], *, batch: int, probs_fn: Optional[Callable[[], Tensor]] = None,
                      device=None, dtype=None) -> Tensor:
    """The emotion condition ``we`` (B, 1, 7) fed to the flow-matching transformer.

    Args:
        label: ``None``, ``"s2e"`` or ``"auto"`` (any case) → predicted probabilities from ``probs_fn``;
            one of :data:`EMOTION_LABELS` (case-insensitive, surrounding spaces ignored) → a one-hot
            vector of that label for every batch row.
        batch: Batch size B.
        probs_fn: Zero-argument callable returning probabilities (B, 7) (or (1, 7), broadcast to B),
            e.g. ``lambda: encoder.predict(a)``; only called when a prediction is needed.
        device: Output device (default: that of the probabilities, or CPU for one-hot).
        dtype: Output dtype (default float32 for one-hot, the probabilities' dtype otherwise).

    Returns:
        (B, 1, 7) tensor.

    Raises:
        DemoInputError: unknown label, or predicted probabilities of the wrong shape.
        ValueError: a prediction is needed but ``probs_fn`` is None, or ``batch`` < 1.
    """
    if isinstance(batch, bool) or int(batch) != batch or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    key = label.strip().lower() if isinstance(label, str) else label
    if key is None or key in _PREDICT_LABELS:
        if probs_fn is None:
            raise ValueError("emotion_condition: a predicted emotion was requested but no probs_fn was given")
        probs = probs_fn()
        if probs.dim() != 2 or probs.shape[1] != len(EMOTION_LABELS) or probs.shape[0] not in (1, batch):
            raise DemoInputError(
                f"emotion: predicted probabilities must have shape ({batch}, {len(EMOTION_LABELS)}), "
                f"got {tuple(probs.shape)}"
            )
        probs = probs.expand(batch, -1).contiguous()
        return probs.to(device=device or probs.device, dtype=dtype or probs.dtype)[:, None, :]
    if key in EMOTION_LABELS:
        we = torch.zeros(batch, 1, len(EMOTION_LABELS), device=device, dtype=dtype or torch.float32)
        we[:, :, EMOTION_LABELS.index(key)] = 1
        return we
    valid = ", ".join(EMOTION_LABELS + _PREDICT_LABELS)
    raise DemoInputError(f"emotion: unknown emotion {label!r}; expected one of: {valid} (or None for auto)")
