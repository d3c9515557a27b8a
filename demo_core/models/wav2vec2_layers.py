"""Building blocks of the wav2vec2 network used by FLOAT's audio and emotion encoders.

Module and attribute names follow the Hugging Face ``Wav2Vec2Model`` state-dict layout so that
FLOAT checkpoints load unchanged (see ``demo_core/models/wav2vec2.py`` for the assembled model and
the configuration).  Everything here is inference-only: dropout, layer drop and SpecAugment masking
are training features of the original and are not implemented.

Shape notation: ``B`` batch, ``n`` waveform samples, ``L`` frames (≈50 Hz), ``C`` conv channels,
``H`` hidden size, ``I`` feed-forward size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .wav2vec2 import Wav2Vec2Config

__all__ = [
    "ConvFeatureLayer",
    "FeatureEncoder",
    "FeatureProjection",
    "PositionalConvEmbedding",
    "SelfAttention",
    "FeedForward",
    "EncoderLayer",
    "Encoder",
]

# The conv feature layers use nn.LayerNorm / nn.GroupNorm with their default epsilon (1e-5),
# independently of ``layer_norm_eps`` (which only governs the projection and transformer norms).
_CONV_NORM_EPS = 1e-5


class ConvFeatureLayer(nn.Module):
    """One layer of the convolutional feature encoder: Conv1d → optional norm → GELU.

    Args:
        in_channels: Input channels (1 for the first layer).
        out_channels: Output channels.
        kernel: Kernel size.
        stride: Stride (no padding).
        bias: Whether the convolution has a bias.
        norm: ``None`` (no norm), ``"group"`` (GroupNorm with one group per channel, i.e. each channel
            normalised over time) or ``"layer"`` (LayerNorm over channels at every time step).
        device: Parameter device.
        dtype: Parameter dtype.

    Keys: ``conv.weight`` (out, in, kernel), ``conv.bias`` (out,) when ``bias``, ``layer_norm.{weight,bias}``
    (out,) when ``norm`` is set.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, *, bias: bool,
                 norm: Optional[str], device=None, dtype=None):
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        self.conv = nn.Conv1d(in_channels, out_channels, kernel, stride=stride, bias=bias, **fk)
        self.norm_kind = norm
        if norm == "group":
            self.layer_norm = nn.GroupNorm(out_channels, out_channels, eps=_CONV_NORM_EPS, affine=True, **fk)
        elif norm == "layer":
            self.layer_norm = nn.LayerNorm(out_channels, eps=_CONV_NORM_EPS, elementwise_affine=True, **fk)
        elif norm is not None:
            raise ValueError(f"norm must be None, 'group' or 'layer', got {norm!r}")

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (B, C_in, L_in). Returns: (B, C_out, L_out), L_out = (L_in − kernel) // stride + 1."""
        x = self.conv(x)
        if self.norm_kind == "group":
            x = self.layer_norm(x)
        elif self.norm_kind == "layer":
            x = self.layer_norm(x.transpose(1, 2)).transpose(1, 2)
        return F.gelu(x)


class FeatureEncoder(nn.Module):
    """Convolutional waveform encoder (``feature_extractor``): raw samples → ≈50 Hz frames.

    With ``feat_extract_norm == "group"`` only layer 0 carries a (group) norm; with ``"layer"`` every
    layer carries a LayerNorm over channels.
    """

    def __init__(self, cfg: "Wav2Vec2Config", *, device=None, dtype=None):
        super().__init__()
        if cfg.feat_extract_norm not in ("group", "layer"):
            raise ValueError(f"feat_extract_norm must be 'group' or 'layer', got {cfg.feat_extract_norm!r}")
        layers = []
        in_ch = 1
        for i, (out_ch, k, s) in enumerate(zip(cfg.conv_dim, cfg.conv_kernel, cfg.conv_stride)):
            if cfg.feat_extract_norm == "layer":
                norm = "layer"
            else:
                norm = "group" if i == 0 else None
            layers.append(ConvFeatureLayer(in_ch, out_ch, k, s, bias=cfg.conv_bias, norm=norm,
                                           device=device, dtype=dtype))
            in_ch = out_ch
        self.conv_layers = nn.ModuleList(layers)

    def forward(self, waveform: Tensor) -> Tensor:
        """Args: waveform (B, n). Returns: conv features (B, C, L)."""
        x = waveform[:, None, :]
        for layer in self.conv_layers:
            x = layer(x)
        return x


class FeatureProjection(nn.Module):
    """LayerNorm(C) → Linear(C → H) (``feature_projection``); dropout is inference-inactive."""

    def __init__(self, conv_channels: int, hidden_size: int, eps: float, *, device=None, dtype=None):
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        self.layer_norm = nn.LayerNorm(conv_channels, eps=eps, **fk)
        self.projection = nn.Linear(conv_channels, hidden_size, **fk)

    def forward(self, features: Tensor) -> Tensor:
        """Args: features (B, L, C). Returns: (B, L, H)."""
        return self.projection(self.layer_norm(features))


class PositionalConvEmbedding(nn.Module):
    """Grouped, weight-normalised Conv1d H → H with zero padding K//2 and GELU (``pos_conv_embed``).

    The weight is parametrised with ``torch.nn.utils.parametrizations.weight_norm(dim=2)``, so the
    state-dict keys are ``conv.parametrizations.weight.original0`` (g, shape (1, 1, K)),
    ``conv.parametrizations.weight.original1`` (v, shape (H, H/groups, K)) and ``conv.bias``; the
    effective weight is w[:, :, k] = g[k] · v[:, :, k] / ‖v[:, :, k]‖₂.  With an even K the padded
    convolution yields one frame too many and the last output frame is dropped.
    """

    def __init__(self, hidden_size: int, kernel: int, groups: int, *, device=None, dtype=None):
        super().__init__()
        if hidden_size % groups:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_conv_pos_embedding_groups {groups}")
        conv = nn.Conv1d(hidden_size, hidden_size, kernel, padding=kernel // 2, groups=groups,
                         device=device, dtype=dtype)
        self.conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
        self.drop_last = kernel % 2 == 0

    def forward(self, hidden: Tensor) -> Tensor:
        """Args: hidden (B, L, H). Returns: the positional term (B, L, H) (not yet added)."""
        x = self.conv(hidden.transpose(1, 2))
        if self.drop_last:
            x = x[:, :, :-1]
        return F.gelu(x).transpose(1, 2)


class SelfAttention(nn.Module):
    """Standard multi-head self-attention without mask (keys ``{q,k,v,out}_proj``), scale head_dim^−½."""

    def __init__(self, hidden_size: int, num_heads: int, *, device=None, dtype=None):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_attention_heads {num_heads}")
        fk = {"device": device, "dtype": dtype}
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.k_proj = nn.Linear(hidden_size, hidden_size, **fk)
        self.v_proj = nn.Linear(hidden_size, hidden_size, **fk)
        self.q_proj = nn.Linear(hidden_size, hidden_size, **fk)
        self.out_proj = nn.Linear(hidden_size, hidden_size, **fk)

    def _heads(self, x: Tensor) -> Tensor:
        b, l, _ = x.shape
        return x.view(b, l, self.num_heads, self.head_dim).transpose(1, 2)  # (B, heads, L, d)

    def forward(self, hidden: Tensor) -> Tensor:
        """Args: hidden (B, L, H). Returns: (B, L, H)."""
        b, l, h = hidden.shape
        q = self._heads(self.q_proj(hidden))
        k = self._heads(self.k_proj(hidden))
        v = self._heads(self.v_proj(hidden))
        out = F.scaled_dot_product_attention(q, k, v, scale=self.head_dim ** -0.5)
        return self.out_proj(out.transpose(1, 2).reshape(b, l, h))


class FeedForward(nn.Module):
    """Linear(H → I) → GELU → Linear(I → H) (keys ``intermediate_dense``, ``output_dense``)."""

    def __init__(self, hidden_size: int, intermediate_size: int, *, device=None, dtype=None):
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        self.intermediate_dense = nn.Linear(hidden_size, intermediate_size, **fk)
        self.output_dense = nn.Linear(intermediate_size, hidden_size, **fk)

    def forward(self, hidden: Tensor) -> Tensor:
        """Args: hidden (B, L, H). Returns: (B, L, H)."""
        return self.output_dense(F.gelu(self.intermediate_dense(hidden)))


class EncoderLayer(nn.Module):
    """One transformer layer, post-LN (wav2vec2-base) or pre-LN (``stable``, XLSR).

    post-LN: h = LN(h + Attn(h)); h = LN'(h + FF(h)).
    pre-LN:  h = h + Attn(LN(h)); h = h + FF(LN'(h)).
    ``LN`` is ``layer_norm``, ``LN'`` is ``final_layer_norm``.
    """

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int, eps: float, *,
                 stable: bool, device=None, dtype=None):
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        self.stable = stable
        self.attention = SelfAttention(hidden_size, num_heads, **fk)
        self.layer_norm = nn.LayerNorm(hidden_size, eps=eps, **fk)
        self.feed_forward = FeedForward(hidden_size, intermediate_size, **fk)
        self.final_layer_norm = nn.LayerNorm(hidden_size, eps=eps, **fk)

    def forward(self, hidden: Tensor) -> Tensor:
        """Args: hidden (B, L, H). Returns: (B, L, H)."""
        if self.stable:
            hidden = hidden + self.attention(self.layer_norm(hidden))
            return hidden + self.feed_forward(self.final_layer_norm(hidden))
        hidden = self.layer_norm(hidden + self.attention(hidden))
        return self.final_layer_norm(hidden + self.feed_forward(hidden))


class Encoder(nn.Module):
    """Transformer encoder (``encoder``): positional conv, ``layer_norm`` and ``layers``.

    Hidden-state lists follow Hugging Face's ``output_hidden_states`` convention exactly:

    * post-LN (``do_stable_layer_norm=False``): ``[LN(x + pos(x)), out_1, …, out_N]``; the last
      element is the last hidden state.
    * pre-LN (``do_stable_layer_norm=True``): ``[x + pos(x), out_1, …, out_{N−1}, LN(out_N)]``; the
      encoder LayerNorm is applied at the end, and the raw output of layer N is not in the list.
    """

    def __init__(self, cfg: "Wav2Vec2Config", *, device=None, dtype=None):
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        self.stable = bool(cfg.do_stable_layer_norm)
        self.pos_conv_embed = PositionalConvEmbedding(cfg.hidden_size, cfg.num_conv_pos_embeddings,
                                                      cfg.num_conv_pos_embedding_groups, **fk)
        self.layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, **fk)
        self.layers = nn.ModuleList(
            EncoderLayer(cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size, cfg.layer_norm_eps,
                         stable=self.stable, **fk)
            for _ in range(cfg.num_hidden_layers)
        )

    def forward(self, hidden: Tensor, *, output_hidden_states: bool = True) -> list[Tensor]:
        """Run the encoder.

        Args:
            hidden: Projected features (B, L, H).
            output_hidden_states: If False, only the last hidden state is returned (a 1-element list).

        Returns:
            List of (B, L, H) tensors as described in the class docstring (N + 1 entries), or
            ``[last_hidden_state]``.
        """
        hidden = hidden + self.pos_conv_embed(hidden)
        if not self.stable:
            hidden = self.layer_norm(hidden)
        states: list[Tensor] = []
        for layer in self.layers:
            if output_hidden_states:
                states.append(hidden)
            hidden = layer(hidden)
        if self.stable:
            hidden = self.layer_norm(hidden)
        states.append(hidden)
        return states

