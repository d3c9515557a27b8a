"""FLOAT's classifier-free vector field over a :class:`FlowTransformer`, evaluated without repeated work.

:class:`ClassifierFreeGuidance` runs the transformer on ``3B`` rows ``[unconditional; audio + emotion;
audio only]`` and combines them (ARCHITECTURE.md §8.4).  :class:`GuidedFlowTransformer` computes the same
velocity of the ``L`` generated frames (the same maths; results agree to float rounding) with less work:

* the motion embedding ``x_embedder(prev_x | x) + pos_embed`` is the same in all three groups: computed once;
* the adaLN modulations depend only on the per-frame condition ``c`` (not on the hidden state), and many
  condition rows are equal (the unconditional group's ``L`` frames all read ``[wr | 0 | 0]``; its prefix equals
  the audio-only group's prefix): they are computed once per distinct condition row and gathered;
* the attention band lets frame ``i`` see only ``|i − j| <= window``, so the output frames ``P … N−1`` depend on
  block ``b``'s rows ``>= P − window·(depth − 1 − b)`` only: earlier prefix rows are dropped block by block, and
  the final layer runs on the ``L`` output frames only;
* on CPUs, float32 linear layers go through oneDNN (``torch.ops.mkldnn._linear_pointwise``) when available,
  which runs AVX-512 kernels where the default BLAS may not; ``gemm="torch"`` keeps ``F.linear``.

Use :meth:`GuidedFlowTransformer.prepare` once per window, then call the model at every solver step:

.. code-block:: python

    guided = GuidedFlowTransformer(fmt, a_cfg=2.0, e_cfg=1.0)
    cond = guided.prepare(wr=wr, wa=wa_k, prev_wa=prev_wa, we=we)      # once per window
    v = guided(x, t, prev_x=prev_x, condition=cond)                    # (B, L, W) velocity of x
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import DemoInputError
from .guidance import ClassifierFreeGuidance, combine_guidance

__all__ = ["GuidedCondition", "GuidedFlowTransformer", "supports_guided_transformer"]


def supports_guided_transformer(model) -> bool:
    """True when ``model`` has the FlowTransformer structure :class:`GuidedFlowTransformer` relies on."""
    names = ("x_embedder", "t_embedder", "c_embedder", "blocks", "decoder", "pos_embed", "alignment_mask", "cfg")
    return all(hasattr(model, n) for n in names)


def _onednn_linear_available() -> bool:
    try:
        op = torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return False
    try:
        x = torch.ones(2, 3)
        return bool(torch.allclose(op(x, torch.ones(4, 3), torch.zeros(4), "none", [], ""), torch.full((2, 4), 3.0)))
    except RuntimeError:
        return False


_ONEDNN_LINEAR: bool | None = None


def _use_onednn(x: Tensor) -> bool:
    global _ONEDNN_LINEAR
    if x.device.type != "cpu" or x.dtype != torch.float32 or torch.is_grad_enabled():
        return False
    if _ONEDNN_LINEAR is None:
        _ONEDNN_LINEAR = _onednn_linear_available()
    return _ONEDNN_LINEAR


@dataclass
class GuidedCondition:
    """Per-window conditioning prepared by :meth:`GuidedFlowTransformer.prepare`.

    Attributes:
        rows: distinct condition-embedding rows ``(U, D)`` (``c_embedder`` output, without the time term).
        index: ``(G·B, N)`` row of ``rows`` used by frame ``n`` of stacked group-batch row ``g·B + b``.
        groups: number of guidance groups G (3, or 1 without guidance).
    """

    rows: Tensor
    index: Tensor
    groups: int


class GuidedFlowTransformer(nn.Module):
    """Guided velocity of the generated frames of a window, ``forward(x, t, *, prev_x, condition) -> (B, L, W)``.

    Args:
        fmt: a :class:`~demo_core.models.flow_transformer.FlowTransformer`.
        a_cfg, e_cfg, r_cfg: guidance scales as in :class:`~demo_core.flow.guidance.ClassifierFreeGuidance`.
        gemm: ``"auto"`` (oneDNN linear layers on CPU float32 when available) or ``"torch"`` (``F.linear``).
    """

    def __init__(self, fmt: nn.Module, a_cfg: float = 2.0, e_cfg: float = 1.0, r_cfg: float = 1.0, *, gemm="auto"):
        super().__init__()
        if not supports_guided_transformer(fmt):
            raise DemoInputError(f"GuidedFlowTransformer: expected a FlowTransformer; got {type(fmt).__name__}")
        if gemm not in ("auto", "torch"):
            raise DemoInputError(f"GuidedFlowTransformer: gemm must be 'auto' or 'torch'; got {gemm!r}")
        self.fmt = fmt
        self.cfg_guidance = ClassifierFreeGuidance(fmt, a_cfg, e_cfg, r_cfg)
        self.gemm = gemm

    # -- helpers ---------------------------------------------------------------------------------------------

    def _linear(self, layer: nn.Linear, x: Tensor) -> Tensor:
        """``layer(x)`` for x (..., in); oneDNN on CPU float32 without autograd when ``gemm="auto"``."""
        if self.gemm == "auto" and _use_onednn(x):
            rows = x.reshape(-1, x.shape[-1])  # (R, in)
            out = torch.ops.mkldnn._linear_pointwise(rows, layer.weight, layer.bias, "none", [], "")  # (R, out)
            return out.reshape(*x.shape[:-1], out.shape[-1])
        return F.linear(x, layer.weight, layer.bias)

    def _row_ranges(self, num_prev: int, n: int) -> list[tuple[int, int]]:
        """Per block: (first input row, first output row) needed for the output frames ``num_prev … n−1``."""
        window = int(self.fmt.cfg.attention_window)
        depth = len(self.fmt.blocks)
        out_first = [0] * depth
        first = num_prev
        for b in range(depth - 1, -1, -1):
            out_first[b] = first
            first = max(0, first - window)
        in_first = [max(0, o - window) for o in out_first]
        return list(zip(in_first, out_first))

    # -- per window --------------------------------------------------------------------------------------------

    @torch.no_grad()
    def prepare(self, *, wr: Tensor, wa: Tensor, prev_wa: Tensor, we: Tensor) -> GuidedCondition:
        """Distinct condition-embedding rows of the stacked guidance groups.

        Args:
            wr: ``(B, W)``; wa: ``(B, L, A)``; prev_wa: ``(B, P, A)``; we: ``(B, 1, E)`` or ``(B, E)``.

        Returns:
            :class:`GuidedCondition` for every solver step of this window.
        """
        cond = self.cfg_guidance.guided_conditions(wr=wr, wa=wa, prev_wa=prev_wa, we=we)
        audio = torch.cat([cond["prev_wa"], cond["wa"]], dim=1)  # (G·B, N, A)
        gb, n, _ = audio.shape
        emo = cond["we"].reshape(gb, 1, -1)  # (G·B, 1, E)
        inputs = torch.cat([cond["wr"][:, None, :].expand(gb, n, -1), audio, emo.expand(gb, n, -1)], dim=-1)
        distinct, index = torch.unique(inputs.reshape(gb * n, -1), dim=0, return_inverse=True)  # (U, W+A+E)
        rows = self._linear(self.fmt.c_embedder, distinct)  # (U, D)
        return GuidedCondition(rows=rows, index=index.reshape(gb, n), groups=self.cfg_guidance.num_groups)

    # -- per step ----------------------------------------------------------------------------------------------

    def _attention(self, attn: nn.Module, h: Tensor, allowed: Tensor, q_first: int) -> Tensor:
        """Band attention of the query rows ``q_first …`` of ``h`` (R, M, D) over all its rows.

        Returns:
            (R, M − q_first, D).
        """
        r, m, d = h.shape
        heads = attn.num_heads
        qkv = self._linear(attn.qkv, h).reshape(r, m, 3, heads, d // heads)  # (R, M, 3, H, d)
        q = qkv[:, q_first:, 0].transpose(1, 2)  # (R, H, Mq, d)
        k = qkv[:, :, 1].transpose(1, 2)  # (R, H, M, d)
        v = qkv[:, :, 2].transpose(1, 2)  # (R, H, M, d)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)  # (R, H, Mq, d)
        out = out.transpose(1, 2).reshape(r, m - q_first, d)  # (R, Mq, D)
        return self._linear(attn.proj, out)

    def forward(self, x: Tensor, t: Tensor, *, prev_x: Tensor, condition: GuidedCondition) -> Tensor:
        """Guided velocity of ``x``.

        Args:
            x: ``(B, L, W)`` state of the generated frames.
            t: ``(1,)`` flow time (one time for the whole batch).
            prev_x: ``(B, P, W)`` prefix frames.
            condition: from :meth:`prepare` for this window.

        Returns:
            ``(B, L, W)``: ``u + a·(ao − u) + e·(c − ao)`` on the generated frames (the plain velocity without
            guidance).
        """
        fmt = self.fmt
        b, num_gen, _ = x.shape
        num_prev = prev_x.shape[1]
        n = num_prev + num_gen
        g = condition.groups
        if t.numel() != 1:
            raise DemoInputError(f"GuidedFlowTransformer: t must hold one time; got shape {tuple(t.shape)}")
        if condition.index.shape != (g * b, n):
            raise DemoInputError(
                f"GuidedFlowTransformer: condition is for {tuple(condition.index.shape)} rows; expected {(g * b, n)}"
            )
        ranges = self._row_ranges(num_prev, n)
        start = ranges[0][0]
        motion = torch.cat([prev_x[:, start:], x], dim=1)  # (B, N − start, W)
        h = self._linear(fmt.x_embedder.proj, motion) + fmt.pos_embed[:, start:n]  # (B, N − start, D)
        h = h.repeat(g, 1, 1)  # (G·B, N − start, D)
        te = fmt.t_embedder(t.reshape(-1))  # (1, D)
        c_rows = F.silu(condition.rows + te)  # (U, D), SiLU of the conditioning (adaLN input)
        allowed_all = ~fmt.alignment_mask[:n, :n]  # (N, N), True = may attend
        d = h.shape[-1]
        for block, (first_in, first_out) in zip(fmt.blocks, ranges):
            index = condition.index[:, first_in:].reshape(-1)  # (G·B·M,)
            mod = self._linear(block.adaLN_modulation[1], c_rows).index_select(0, index)  # (G·B·M, 6D)
            mod = mod.reshape(g * b, n - first_in, 6 * d)  # (G·B, M, 6D)
            shift1, scale1, gate1, shift2, scale2, gate2 = mod.chunk(6, dim=-1)
            skip = first_out - first_in
            a = self._attention(
                block.attn,
                F.layer_norm(h, (d,), eps=1e-6) * (1 + scale1) + shift1,
                allowed_all[first_out:n, first_in:n],
                skip,
            )  # (G·B, N − first_out, D)
            h = h[:, skip:] + gate1[:, skip:] * a
            z = F.layer_norm(h, (d,), eps=1e-6) * (1 + scale2[:, skip:]) + shift2[:, skip:]
            mlp = block.mlp
            z = self._linear(mlp.fc2, F.gelu(self._linear(mlp.fc1, z), approximate="tanh"))
            h = h + gate2[:, skip:] * z  # (G·B, N − first_out, D)
        index = condition.index[:, num_prev:].reshape(-1)  # (G·B·L,)
        dec = fmt.decoder
        mod = self._linear(dec.adaLN_modulation[1], c_rows).index_select(0, index).reshape(g * b, num_gen, 2 * d)
        shift, scale = mod.chunk(2, dim=-1)
        out = self._linear(dec.linear, F.layer_norm(h, (d,), eps=1e-6) * (1 + scale) + shift)  # (G·B, L, W)
        if g == 1:
            return out
        u, c, ao = out.chunk(3, dim=0)  # 3 × (B, L, W)
        return combine_guidance(u, c, ao, self.cfg_guidance.a_cfg, self.cfg_guidance.e_cfg)
