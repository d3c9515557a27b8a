"""wav2vec2 in pure PyTorch, state-dict compatible with Hugging Face's ``Wav2Vec2Model``.

FLOAT uses two of these: wav2vec2-base (post-LN encoder, group-norm conv features, no conv bias) as
the audio encoder and an XLSR-53-large fine-tune (pre-LN "stable layer norm" encoder, layer-norm conv
features with bias) as the emotion classifier backbone.  Only inference is implemented (no dropout,
no SpecAugment masking; ``masked_spec_embed`` exists only so checkpoints load strictly).

State-dict keys (relative to the model)::

    masked_spec_embed                                             (H,)
    feature_extractor.conv_layers.{i}.conv.{weight,bias?}         (C_i, C_{i-1}, K_i)
    feature_extractor.conv_layers.{i}.layer_norm.{weight,bias}    (C_i,)  group: i = 0 only; layer: all i
    feature_projection.layer_norm.{weight,bias}                   (C,)
    feature_projection.projection.{weight,bias}                   (H, C), (H,)
    encoder.pos_conv_embed.conv.parametrizations.weight.original0 (1, 1, K)
    encoder.pos_conv_embed.conv.parametrizations.weight.original1 (H, H/groups, K)
    encoder.pos_conv_embed.conv.bias                              (H,)
    encoder.layer_norm.{weight,bias}                              (H,)
    encoder.layers.{j}.attention.{q,k,v,out}_proj.{weight,bias}   (H, H), (H,)
    encoder.layers.{j}.layer_norm.{weight,bias}                   (H,)
    encoder.layers.{j}.feed_forward.intermediate_dense.*          (I, H), (I,)
    encoder.layers.{j}.feed_forward.output_dense.*                (H, I), (H,)
    encoder.layers.{j}.final_layer_norm.{weight,bias}             (H,)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch
from torch import Tensor, nn

from .wav2vec2_layers import Encoder, FeatureEncoder, FeatureProjection

__all__ = ["Wav2Vec2Config", "wav2vec2_base_config", "wav2vec2_xlsr_emotion_config", "Wav2Vec2Model"]

_TUPLE_FIELDS = ("conv_dim", "conv_kernel", "conv_stride")


@dataclass
class Wav2Vec2Config:
    """The subset of Hugging Face's ``Wav2Vec2Config`` that the architecture needs (same field names).

    Defaults are wav2vec2-base.  Activations are always exact (erf) GELU, as in both FLOAT models;
    :meth:`from_dict` rejects configs asking for another activation.
    """

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    conv_dim: tuple[int, ...] = (512,) * 7
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    conv_bias: bool = False
    feat_extract_norm: str = "group"
    do_stable_layer_norm: bool = False
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    layer_norm_eps: float = 1e-5
    num_labels: int = 7

    def __post_init__(self) -> None:
        for name in _TUPLE_FIELDS:
            setattr(self, name, tuple(int(v) for v in getattr(self, name)))
        n = len(self.conv_dim)
        if n == 0 or len(self.conv_kernel) != n or len(self.conv_stride) != n:
            raise ValueError(
                f"conv_dim, conv_kernel and conv_stride must have the same non-zero length, got "
                f"{len(self.conv_dim)}, {len(self.conv_kernel)}, {len(self.conv_stride)}"
            )
        if self.feat_extract_norm not in ("group", "layer"):
            raise ValueError(f"feat_extract_norm must be 'group' or 'layer', got {self.feat_extract_norm!r}")

    def to_dict(self) -> dict:
        """Return a JSON-safe dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        for name in _TUPLE_FIELDS:
            d[name] = list(d[name])
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Wav2Vec2Config":
        """Build from a (possibly complete Hugging Face) config dict; unknown keys are ignored.

        Raises:
            ValueError: if the dict asks for a non-GELU activation, or its ``num_feat_extract_layers``
                disagrees with ``conv_dim``.
        """
        for act_key in ("hidden_act", "feat_extract_activation"):
            act = d.get(act_key, "gelu")
            if act != "gelu":
                raise ValueError(f"{act_key}={act!r} is not supported (only 'gelu')")
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names}
        cfg = cls(**kw)
        n_layers = d.get("num_feat_extract_layers")
        if n_layers is not None and int(n_layers) != len(cfg.conv_dim):
            raise ValueError(f"num_feat_extract_layers={n_layers} but conv_dim has {len(cfg.conv_dim)} entries")
        return cfg


def wav2vec2_base_config() -> Wav2Vec2Config:
    """FLOAT's audio model (wav2vec2-base-960h): H 768, 12 layers, post-LN, group-norm conv, no conv bias."""
    return Wav2Vec2Config()


def wav2vec2_xlsr_emotion_config() -> Wav2Vec2Config:
    """FLOAT's emotion model (XLSR-53-large fine-tune): H 1024, 24 layers, 16 heads, pre-LN, layer-norm conv."""
    return Wav2Vec2Config(
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        conv_bias=True,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        num_labels=7,
    )


class Wav2Vec2Model(nn.Module):
    """wav2vec2 backbone (conv feature encoder, feature projection, transformer encoder).

    Args:
        cfg: Architecture configuration.
        device: Parameter device.
        dtype: Parameter dtype.
    """

    def __init__(self, cfg: Wav2Vec2Config, *, device=None, dtype=None):
        super().__init__()
        self.config = cfg
        fk = {"device": device, "dtype": dtype}
        self.masked_spec_embed = nn.Parameter(torch.empty(cfg.hidden_size, **fk))
        if self.masked_spec_embed.device.type != "meta":
            with torch.no_grad():
                self.masked_spec_embed.uniform_()
        self.feature_extractor = FeatureEncoder(cfg, **fk)
        self.feature_projection = FeatureProjection(cfg.conv_dim[-1], cfg.hidden_size, cfg.layer_norm_eps, **fk)
        self.encoder = Encoder(cfg, **fk)

    def conv_output_length(self, num_samples: int) -> int:
        """Number of conv feature frames L for a waveform of ``num_samples`` samples."""
        n = int(num_samples)
        for k, s in zip(self.config.conv_kernel, self.config.conv_stride):
            n = (n - k) // s + 1
        return n

    def _as_param(self, x: Tensor) -> Tensor:
        p = self.masked_spec_embed
        return x.to(device=p.device, dtype=p.dtype)

    def extract_features(self, waveform: Tensor) -> Tensor:
        """Convolutional feature encoder.

        Args:
            waveform: Normalised waveform (B, n) (cast to the parameters' device and dtype).

        Returns:
            Conv features (B, C_conv, L) with L = :meth:`conv_output_length` (n) (≈50 Hz).
        """
        if waveform.dim() != 2:
            raise ValueError(f"waveform must have shape (B, n), got {tuple(waveform.shape)}")
        if self.conv_output_length(waveform.shape[1]) < 1:
            raise ValueError(f"waveform of {waveform.shape[1]} samples is too short for the conv feature encoder")
        return self.feature_extractor(self._as_param(waveform))

    def encode(self, features: Tensor, *, output_hidden_states: bool = True,
               taps: Optional[dict] = None) -> list[Tensor]:
        """Feature projection followed by the transformer encoder.

        Args:
            features: Conv features, time-major (B, L, C_conv).
            output_hidden_states: Return every hidden state (True) or only the last one (False).
            taps: Optional dict; receives ``"projected_features"`` (B, L, H), the projection output.

        Returns:
            With ``output_hidden_states``, N + 1 tensors (B, L, H) (N = ``num_hidden_layers``), matching
            Hugging Face's ``hidden_states``:

            * post-LN (``do_stable_layer_norm=False``): ``[LN(x + pos(x)), layer_1, …, layer_N]``;
            * pre-LN (``do_stable_layer_norm=True``): ``[x + pos(x), layer_1, …, layer_{N−1},
              LN(layer_N)]`` — the last element is after the final encoder LayerNorm (the
              ``last_hidden_state``) and the raw output of layer N is not included.

            Otherwise ``[last_hidden_state]``. In both variants ``result[-1]`` is the last hidden state.
        """
        if features.dim() != 3 or features.shape[-1] != self.config.conv_dim[-1]:
            raise ValueError(
                f"features must have shape (B, L, {self.config.conv_dim[-1]}), got {tuple(features.shape)}"
            )
        hidden = self.feature_projection(self._as_param(features))
        if taps is not None:
            taps["projected_features"] = hidden
        return self.encoder(hidden, output_hidden_states=output_hidden_states)

    def forward(self, waveform: Tensor) -> Tensor:
        """Waveform (B, n) → last hidden state (B, L, H) (no interpolation)."""
        feats = self.extract_features(waveform).transpose(1, 2)
        return self.encode(feats, output_hidden_states=False)[-1]
