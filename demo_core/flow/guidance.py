"""Guidance wrappers: velocity models around velocity models, invisible to the solvers.

* :class:`ClassifierFreeGuidance` — FLOAT's classifier-free vector field (ARCHITECTURE.md §8.4): one batched
  call over ``3B`` rows ``[unconditional; audio + emotion; audio only]`` and
  ``v = u + a·(ao − u) + e·(c − ao)``.
* :class:`PrefixDroppingVelocity` — drops the ``P`` prefix frames from a windowed model's output so that an
  ODE solver integrates only the ``(B, L, W)`` frames being generated.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import DemoInputError

__all__ = ["ClassifierFreeGuidance", "PrefixDroppingVelocity", "combine_guidance"]


def combine_guidance(u: Tensor, c: Tensor, ao: Tensor, a_cfg: float, e_cfg: float) -> Tensor:
    """``u + a_cfg·(ao − u) + e_cfg·(c − ao)`` for unconditional ``u``, full ``c`` and audio-only ``ao``."""
    return u + a_cfg * (ao - u) + e_cfg * (c - ao)


def _repeat_rows(x: Tensor, groups: int) -> Tensor:
    return x.repeat(groups, *([1] * (x.ndim - 1)))  # (G*B, ...)


class ClassifierFreeGuidance(nn.Module):
    """Classifier-free guidance over audio (``wa``) and emotion (``we``) conditions.

    When any scale differs from 1 every call is ONE batched model call over ``3B`` rows formed as
    ``[(wa=0, we=0); (wa, we); (wa, we=0)]`` — ``x``, ``prev_x``, ``wr`` and the prefix audio ``prev_wa`` are the
    same in all groups.  ``r_cfg`` only switches the guided branch on (as in FLOAT); it is not in the formula.
    With all scales 1 it is a single plain call.

    The wrapped model must accept ``forward(x, t, *, prev_x, wr, wa, prev_wa, we)``.  If it also has
    ``embed_condition(*, wr, wa, prev_wa, we)`` and accepts ``cond_embedding=`` (as :class:`FlowTransformer`
    does), the stacked condition embedding can be computed once with :meth:`embed_condition` and passed back
    to every call, which is what the window sampler does.

    Args:
        model: the velocity model.
        a_cfg: audio guidance scale.
        e_cfg: emotion guidance scale.
        r_cfg: reference guidance scale (only triggers guidance).

    Example:
        .. code-block:: python

            guided = ClassifierFreeGuidance(fmt, a_cfg=2.0)
            emb = guided.embed_condition(wr=wr, wa=wa, prev_wa=prev_wa, we=we)   # once per window
            v = guided(x, t, prev_x=prev_x, cond_embedding=emb)                 # (B, P + L, W)
    """

    def __init__(self, model: nn.Module, a_cfg: float = 2.0, e_cfg: float = 1.0, r_cfg: float = 1.0):
        super().__init__()
        self.model = model
        self.a_cfg, self.e_cfg, self.r_cfg = float(a_cfg), float(e_cfg), float(r_cfg)

    @property
    def is_guided(self) -> bool:
        """True when any scale differs from 1 (three condition groups per call)."""
        return self.a_cfg != 1.0 or self.e_cfg != 1.0 or self.r_cfg != 1.0

    @property
    def num_groups(self) -> int:
        """Number of condition groups stacked along the batch axis (3 or 1)."""
        return 3 if self.is_guided else 1

    def guided_conditions(self, *, wr: Tensor, wa: Tensor, prev_wa: Tensor, we: Tensor) -> dict[str, Tensor]:
        """Conditions stacked over the groups: ``(G*B, ...)`` each, audio/emotion zeroed as described."""
        if not self.is_guided:
            return {"wr": wr, "wa": wa, "prev_wa": prev_wa, "we": we}
        zeros_wa, zeros_we = torch.zeros_like(wa), torch.zeros_like(we)
        return {
            "wr": _repeat_rows(wr, 3),  # (3B, W)
            "wa": torch.cat([zeros_wa, wa, wa], dim=0),  # (3B, L, A)
            "prev_wa": _repeat_rows(prev_wa, 3),  # (3B, P, A)
            "we": torch.cat([zeros_we, we, zeros_we], dim=0),  # (3B, 1, E)
        }

    def embed_condition(self, *, wr: Tensor, wa: Tensor, prev_wa: Tensor, we: Tensor) -> Tensor:
        """Stacked condition embedding ``(G*B, P + L, D)`` to pass as ``cond_embedding=`` to :meth:`forward`."""
        if not hasattr(self.model, "embed_condition"):
            raise DemoInputError(
                f"ClassifierFreeGuidance: {type(self.model).__name__} has no embed_condition; pass the conditions instead"
            )
        return self.model.embed_condition(**self.guided_conditions(wr=wr, wa=wa, prev_wa=prev_wa, we=we))

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
    ) -> Tensor:
        """Guided velocity.

        Args:
            x: ``(B, L, W)`` state.
            t: ``(1,)`` or ``(B,)`` flow time.
            prev_x: ``(B, P, W)`` prefix frames.
            wr, wa, prev_wa, we: ``(B, W)``, ``(B, L, A)``, ``(B, P, A)``, ``(B, 1, E)`` conditions
                (unused when ``cond_embedding`` is given).
            cond_embedding: ``(G*B, P + L, D)`` from :meth:`embed_condition`.

        Returns:
            ``(B, P + L, W)`` velocity including the prefix frames.
        """
        B, G = x.shape[0], self.num_groups
        if cond_embedding is not None:
            if cond_embedding.shape[0] != G * B:
                raise DemoInputError(
                    f"ClassifierFreeGuidance: cond_embedding has {cond_embedding.shape[0]} rows; expected "
                    f"{G} groups × batch {B} = {G * B} (use ClassifierFreeGuidance.embed_condition)"
                )
            cond = {"cond_embedding": cond_embedding}
        else:
            if wr is None or wa is None or prev_wa is None or we is None:
                raise DemoInputError("ClassifierFreeGuidance: give wr, wa, prev_wa and we, or cond_embedding")
            cond = self.guided_conditions(wr=wr, wa=wa, prev_wa=prev_wa, we=we)
        if G == 1:
            return self.model(x, t, prev_x=prev_x, **cond)
        t_all = _repeat_rows(t.reshape(-1), G) if t.numel() > 1 else t  # (G*B,) or (1,)
        out = self.model(_repeat_rows(x, G), t_all, prev_x=_repeat_rows(prev_x, G), **cond)  # (3B, N, W)
        u, c, ao = out.chunk(3, dim=0)  # 3 × (B, N, W)
        return combine_guidance(u, c, ao, self.a_cfg, self.e_cfg)


class PrefixDroppingVelocity(nn.Module):
    """Calls a windowed velocity model with its prefix and returns only the frames of ``x``.

    ``forward(x (B, L, W), t, *, prev_x (B, P, W), **cond) -> (B, L, W)``: the model returns
    ``(B, P + L, W)`` and the first ``P`` frames are dropped.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, t: Tensor, *, prev_x: Tensor, **cond) -> Tensor:
        out = self.model(x, t, prev_x=prev_x, **cond)  # (B, P + L, W)
        P = prev_x.shape[1]
        if out.shape[1] != P + x.shape[1]:
            raise DemoInputError(
                f"PrefixDroppingVelocity: model returned {out.shape[1]} frames; expected P + L = {P + x.shape[1]}"
            )
        return out[:, P:]  # (B, L, W)
