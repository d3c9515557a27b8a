"""Flow-matching transformer (FMT): the velocity model of FLOAT's motion-latent flow.

The network reads a window of ``N = P + L`` motion latents (``P`` prefix frames carried over from the
previous window, then ``L`` frames being generated), a flow time ``t`` and per-frame conditions (reference
motion ``wr``, audio features ``wa``, emotion ``we``), and returns a velocity for all ``N`` frames.  Its
``state_dict()`` keys and shapes equal those under ``fmt.`` in FLOAT's checkpoint.

Architecture (see ``ARCHITECTURE.md`` §8 of the FLOAT reference notes):

* ``x_embedder.proj`` Linear(W → D) + fixed sinusoidal ``pos_embed``;
* ``t_embedder``: 256 cos/sin frequencies → Linear → SiLU → Linear;
* ``c_embedder``: Linear over ``[wr | wa | we]`` per frame, plus the time embedding;
* ``depth`` adaLN-zero blocks with banded self-attention (``|i - j| <= attention_window``);
* ``decoder``: adaLN-modulated LayerNorm and Linear(D → W).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import DemoInputError

__all__ = [
    "FlowTransformerConfig",
    "FlowTransformer",
    "sinusoidal_position_embedding",
    "band_attention_mask",
    "timestep_frequencies",
]

TIME_FREQUENCY_DIM = 256  # size of the cos/sin time encoding fed to t_embedder.mlp.0 (fixed in FLOAT)


@dataclass
class FlowTransformerConfig:
    """Hyper-parameters of :class:`FlowTransformer` (FLOAT defaults).

    Attributes:
        dim_w: motion latent size ``W`` (input and output width; also the ``wr`` width).
        dim_a: audio feature width; FLOAT requires ``dim_a == dim_w``.
        dim_e: emotion vector size.
        dim_h: hidden width ``D``.
        depth: number of transformer blocks.
        num_heads: attention heads (``D`` must be divisible by it).
        mlp_ratio: MLP hidden width is ``int(D * mlp_ratio)``.
        num_frames: ``L``, frames generated per window (FLOAT: ``int(wav2vec_sec * fps)`` = 50).
        num_prev_frames: ``P``, prefix frames carried over from the previous window.
        attention_window: half-width of the attention band; frame i sees frame j iff ``|i - j| <= window``.
    """

    dim_w: int = 512
    dim_a: int = 512
    dim_e: int = 7
    dim_h: int = 1024
    depth: int = 8
    num_heads: int = 8
    mlp_ratio: float = 4.0
    num_frames: int = 50  # L, frames per window
    num_prev_frames: int = 10  # P
    attention_window: int = 2

    @property
    def num_positions(self) -> int:
        """``N = P + L``, the sequence length seen by the transformer."""
        return self.num_prev_frames + self.num_frames

    def to_dict(self) -> dict:
        """Plain dict of the fields (for checkpoints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FlowTransformerConfig":
        """Build from a dict, ignoring keys that are not fields."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def sinusoidal_position_embedding(num_positions: int, dim: int) -> Tensor:
    """FLOAT's fixed position table ``PE[p, j]`` (sin for even j, cos for odd j).

    The angle ``p / 10000^(2*floor(j/2)/dim)`` is formed in float64 and rounded to float32 before sin/cos.

    Returns:
        ``(1, num_positions, dim)`` float32 tensor on the CPU.
    """
    pos = torch.arange(num_positions, dtype=torch.float64)[:, None]  # (N, 1)
    j = torch.arange(dim, dtype=torch.float64)
    denom = torch.pow(10000.0, 2.0 * torch.div(j, 2, rounding_mode="floor") / dim)  # (D,)
    theta = (pos / denom[None, :]).to(torch.float32)  # (N, D)
    even = (torch.arange(dim) % 2 == 0)[None, :]
    return torch.where(even, torch.sin(theta), torch.cos(theta)).unsqueeze(0)  # (1, N, D)


def band_attention_mask(num_positions: int, window: int) -> Tensor:
    """``(N, N)`` bool mask, True where attention is *blocked* (``|i - j| > window``)."""
    idx = torch.arange(num_positions)
    return (idx[:, None] - idx[None, :]).abs() > window


def timestep_frequencies(t: Tensor, dim: int = TIME_FREQUENCY_DIM) -> Tensor:
    """Cos/sin encoding of flow times.

    Args:
        t: ``(Nt,)`` times (any float dtype; computed in float32).
        dim: encoding size (even).

    Returns:
        ``(Nt, dim)`` float32: ``[cos(t f_0) … cos(t f_{h-1}), sin(t f_0) …]`` with
        ``f_k = exp(-ln(10000) k / h)``, ``h = dim / 2``.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.to(torch.float32)[:, None] * freqs[None, :]  # (Nt, half)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (Nt, dim)


def _modulate(h: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return h * (1 + scale) + shift


class _Linear(nn.Module):
    """Holds one Linear under a FLOAT sub-module name (``x_embedder.proj``)."""

    def __init__(self, d_in: int, d_out: int, **kw):
        super().__init__()
        self.proj = nn.Linear(d_in, d_out, **kw)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class TimestepEmbedder(nn.Module):
    """Flow time ``(Nt,)`` → ``(Nt, D)`` through the cos/sin encoding and a 2-layer SiLU MLP."""

    def __init__(self, dim_h: int, **kw):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(TIME_FREQUENCY_DIM, dim_h, **kw), nn.SiLU(), nn.Linear(dim_h, dim_h, **kw))

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(timestep_frequencies(t).to(self.mlp[0].weight.dtype))


class BandAttention(nn.Module):
    """Multi-head self-attention with a boolean mask (``qkv`` and ``proj`` as in FLOAT)."""

    def __init__(self, dim_h: int, num_heads: int, **kw):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim_h, 3 * dim_h, **kw)
        self.proj = nn.Linear(dim_h, dim_h, **kw)

    def forward(self, h: Tensor, allowed: Tensor) -> Tensor:
        """``h`` (B, N, D), ``allowed`` (N, N) bool (True = may attend) → (B, N, D)."""
        B, N, D = h.shape
        qkv = self.qkv(h).reshape(B, N, 3, self.num_heads, D // self.num_heads)  # (B, N, 3, H, d)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, N, d)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)  # (B, H, N, d)
        out = out.transpose(1, 2).reshape(B, N, D)  # (B, N, D)
        return self.proj(out)


class FeedForward(nn.Module):
    """``fc1`` → GELU (tanh approximation) → ``fc2``."""

    def __init__(self, dim_h: int, hidden: int, **kw):
        super().__init__()
        self.fc1 = nn.Linear(dim_h, hidden, **kw)
        self.fc2 = nn.Linear(hidden, dim_h, **kw)

    def forward(self, h: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(h), approximate="tanh"))


class FlowBlock(nn.Module):
    """adaLN-zero transformer block conditioned per frame on ``c`` (B, N, D)."""

    def __init__(self, dim_h: int, num_heads: int, mlp_ratio: float, **kw):
        super().__init__()
        self.attn = BandAttention(dim_h, num_heads, **kw)
        self.mlp = FeedForward(dim_h, int(dim_h * mlp_ratio), **kw)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim_h, 6 * dim_h, **kw))

    def forward(self, h: Tensor, c: Tensor, allowed: Tensor, taps: dict | None = None, name: str = "") -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c).chunk(6, dim=-1)  # 6 × (B, N, D)
        d = h.shape[-1]
        a = self.attn(_modulate(F.layer_norm(h, (d,), eps=1e-6), shift1, scale1), allowed)
        if taps is not None:
            taps[f"{name}.attn"] = a
        h = h + gate1 * a
        h = h + gate2 * self.mlp(_modulate(F.layer_norm(h, (d,), eps=1e-6), shift2, scale2))
        return h


class OutputDecoder(nn.Module):
    """Final adaLN-modulated LayerNorm and Linear(D → W)."""

    def __init__(self, dim_h: int, dim_w: int, **kw):
        super().__init__()
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim_h, 2 * dim_h, **kw))
        self.linear = nn.Linear(dim_h, dim_w, **kw)

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)  # 2 × (B, N, D)
        return self.linear(_modulate(F.layer_norm(h, (h.shape[-1],), eps=1e-6), shift, scale))


class FlowTransformer(nn.Module):
    """FLOAT's flow-matching transformer, a velocity model ``forward(x, t, **cond)``.

    Args:
        cfg: hyper-parameters.
        device: where to allocate parameters (``"meta"`` gives shapes only).
        dtype: parameter dtype (float32 by default).

    Example:
        .. code-block:: python

            fmt = FlowTransformer(FlowTransformerConfig(dim_h=64, depth=2, num_heads=2))
            B, P, L, W = 2, 10, 50, 512
            v = fmt(torch.randn(B, L, W), torch.tensor([0.5]), prev_x=torch.zeros(B, P, W),
                    wr=torch.randn(B, W), wa=torch.randn(B, L, W), prev_wa=torch.zeros(B, P, W),
                    we=torch.zeros(B, 1, 7))  # (B, P + L, W)
    """

    def __init__(self, cfg: FlowTransformerConfig, *, device=None, dtype=None):
        super().__init__()
        if cfg.dim_h % cfg.num_heads != 0:
            raise DemoInputError(f"FlowTransformerConfig: dim_h ({cfg.dim_h}) must be divisible by num_heads ({cfg.num_heads})")
        self.cfg = cfg
        # Optional ``() -> (W, M)`` orthonormal basis of the sub-space the motion lives in (set by DemoModel
        # with ``flow_subspace``); samplers then draw noise in it and keep their state in it.
        self.latent_basis = None
        # Optional (M,) per-coordinate noise spread inside that sub-space (a non-persistent buffer: it comes
        # from the model config, not from the weights).
        self.register_buffer("latent_scale", None, persistent=False)
        kw = {"device": device, "dtype": dtype}
        n, d = cfg.num_positions, cfg.dim_h
        pe = sinusoidal_position_embedding(n, d).to(device=device, dtype=dtype or torch.get_default_dtype())
        self.pos_embed = nn.Parameter(pe, requires_grad=False)  # (1, N, D)
        self.register_buffer("alignment_mask", band_attention_mask(n, cfg.attention_window).to(device))  # (N, N)
        self.x_embedder = _Linear(cfg.dim_w, d, **kw)
        self.t_embedder = TimestepEmbedder(d, **kw)
        self.c_embedder = nn.Linear(cfg.dim_w + cfg.dim_a + cfg.dim_e, d, **kw)
        self.blocks = nn.ModuleList(FlowBlock(d, cfg.num_heads, cfg.mlp_ratio, **kw) for _ in range(cfg.depth))
        self.decoder = OutputDecoder(d, cfg.dim_w, **kw)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Training initialisation: Xavier linears, N(0, 0.02) time MLP, zero adaLN and output layer."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for lin in (self.t_embedder.mlp[0], self.t_embedder.mlp[2]):
            nn.init.normal_(lin.weight, std=0.02)
        zero = [b.adaLN_modulation[1] for b in self.blocks] + [self.decoder.adaLN_modulation[1], self.decoder.linear]
        for lin in zero:
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def embed_condition(self, *, wr: Tensor, wa: Tensor, prev_wa: Tensor, we: Tensor) -> Tensor:
        """Per-frame condition embedding without the time term (``c_embedder`` output).

        Args:
            wr: ``(B, W)`` reference motion.
            wa: ``(B, L, A)`` audio features of the window.
            prev_wa: ``(B, P, A)`` audio features of the prefix frames.
            we: ``(B, 1, E)`` (or ``(B, E)``) emotion vector.

        Returns:
            ``(B, P + L, D)``.
        """
        if wa.ndim != 3 or prev_wa.ndim != 3 or wr.ndim != 2:
            raise DemoInputError(
                f"FlowTransformer.embed_condition: expected wr (B, W), wa (B, L, A), prev_wa (B, P, A); got "
                f"{tuple(wr.shape)}, {tuple(wa.shape)}, {tuple(prev_wa.shape)}"
            )
        audio = torch.cat([prev_wa, wa], dim=1)  # (B, N, A)
        B, N, _ = audio.shape
        we = we.reshape(we.shape[0], 1, we.shape[-1])  # (B, 1, E)
        cond = torch.cat([wr[:, None, :].expand(B, N, -1), audio, we.expand(B, N, -1)], dim=-1)  # (B, N, W+A+E)
        return self.c_embedder(cond)

    def embed_time(self, t: Tensor) -> Tensor:
        """``(Nt,)`` flow times → ``(Nt, D)`` time embedding."""
        return self.t_embedder(t)

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        *,
        prev_x: Tensor,
        wr: Tensor | None = None,
        wa: Tensor | None = None,
        prev_wa: Tensor | None = None,
        we: Tensor | None = None,
        cond_embedding: Tensor | None = None,
        taps: dict | None = None,
    ) -> Tensor:
        """Velocity of the whole window.

        Args:
            x: ``(B, L', W)`` current state of the generated frames, ``P + L' <= N``.
            t: ``(B,)`` or ``(1,)`` flow time (0 = noise, 1 = data); a 0-d tensor is treated as ``(1,)``.
            prev_x: ``(B, P', W)`` prefix frames (zeros for the first window).
            wr, wa, prev_wa, we: conditions, see :meth:`embed_condition`; unused when ``cond_embedding`` is given.
            cond_embedding: ``(B, P' + L', D)`` precomputed :meth:`embed_condition` output.
            taps: optional dict filled with intermediate tensors (``t_emb``, ``x_embedded_without_pos``,
                ``c_embedder_out``, ``blocks.{i}.attn``, ``blocks.{i}``, ``decoder``).

        Returns:
            ``(B, P' + L', W)`` velocity, prefix frames first.
        """
        if x.ndim != 3 or prev_x.ndim != 3 or prev_x.shape[0] != x.shape[0] or prev_x.shape[2] != x.shape[2]:
            raise DemoInputError(
                f"FlowTransformer: expected x (B, L, W) and prev_x (B, P, W); got {tuple(x.shape)}, {tuple(prev_x.shape)}"
            )
        n = prev_x.shape[1] + x.shape[1]
        if n > self.cfg.num_positions:
            raise DemoInputError(
                f"FlowTransformer: prev_x + x have {n} frames, more than the {self.cfg.num_positions} positions"
            )
        t = t.reshape(-1)  # (Nt,)
        h = self.x_embedder(torch.cat([prev_x, x], dim=1))  # (B, n, D)
        if taps is not None:
            taps["x_embedded_without_pos"] = h
        h = h + self.pos_embed[:, :n]
        te = self.t_embedder(t)  # (Nt, D)
        if cond_embedding is None:
            if wr is None or wa is None or prev_wa is None or we is None:
                raise DemoInputError("FlowTransformer: give wr, wa, prev_wa and we, or cond_embedding")
            cond_embedding = self.embed_condition(wr=wr, wa=wa, prev_wa=prev_wa, we=we)
        if taps is not None:
            taps["t_emb"] = te
            taps["c_embedder_out"] = cond_embedding
        c = cond_embedding + te[:, None, :]  # (B, n, D)
        allowed = ~self.alignment_mask[:n, :n]  # (n, n), True = may attend
        for i, block in enumerate(self.blocks):
            h = block(h, c, allowed, taps, f"blocks.{i}")
            if taps is not None:
                taps[f"blocks.{i}"] = h
        out = self.decoder(h, c)  # (B, n, W)
        if taps is not None:
            taps["decoder"] = out
        return out
