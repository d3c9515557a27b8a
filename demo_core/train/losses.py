"""Training losses of both DEMO stages, as pure functions on tensors.

Stage 1 (motion auto-encoder with factor heads):
    * :func:`reconstruction_loss` — multi-scale L1 + SSIM (kornia) between rendered and driving frames;
    * :func:`info_nce_loss` — bidirectional audio-visual InfoNCE (lip sync; positives = same frame);
    * :func:`masked_l1_loss` — L1 to normalised labels where present (pose, gaze, blink);
    * :func:`gaze_direction` + :func:`info_nce_loss` on cosine similarities — the gaze contrastive loss;
    * :func:`decorrelation_loss` — squared cross-correlation between factor blocks over the batch;
    * :func:`gaussian_kl_loss` — KL of the VAE posterior to N(0, I).

Stage 2 (flow matching on motion latents):
    * :func:`flow_matching_loss` — conditional OT path (:class:`~demo_core.flow.paths.CondOTPath`), FMT called
      with the prefix exactly as at inference, MSE on the window frames only;
    * :func:`condition_keep_mask` — per-sample Bernoulli masks for classifier-free-guidance dropout.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DemoInputError
from ..flow.paths import CondOTPath

__all__ = [
    "reconstruction_loss",
    "info_nce_loss",
    "masked_label_loss",
    "LABEL_LOSSES",
    "gaze_direction",
    "decorrelation_loss",
    "gaussian_kl_loss",
    "flow_matching_loss",
    "condition_keep_mask",
]

#: kinds of :func:`masked_label_loss`
LABEL_LOSSES = ("l1", "mse")


def reconstruction_loss(
    pred: Tensor, target: Tensor, *, scales: Sequence[int] = (1, 2, 4), ssim_window: int = 5,
    l1_weight: float = 1.0, ssim_weight: float = 1.0, region: Tensor | None = None, region_weight: float = 0.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Multi-scale L1 + SSIM reconstruction loss, with optional extra L1 weight on feature regions.

    Args:
        pred: (N, 3, S, S) rendered frames in [-1, 1].
        target: (N, 3, S, S) true frames in [-1, 1].
        scales: average-pooling factors; each scale contributes the mean over scales.
        ssim_window: Gaussian window of kornia's SSIM.
        l1_weight: weight of the L1 term.
        ssim_weight: weight of the DSSIM term ((1 − SSIM) / 2, images mapped to [0, 1]).
        region: (N, 1, S, S) feature-region map in [0, 1] (mouth and eyes), or None.
        region_weight: the L1 error of a pixel counts ``1 + region_weight · region`` times (pooled with the
            images at every scale); small features that an unweighted loss neglects (a 64² mouth is ~3 % of
            the pixels) then weigh as much as the pose of the whole head.

    Returns:
        ``(loss, {"l1": …, "ssim": …, "l1_region": …})`` (scalars; ``l1`` unweighted, ``l1_region`` the
        region-weighted mean error of the region pixels, 0 without a region).
    """
    from kornia.losses import ssim_loss

    if pred.shape != target.shape or pred.ndim != 4:
        raise DemoInputError(f"reconstruction_loss: pred {tuple(pred.shape)} and target {tuple(target.shape)} must be (N, 3, S, S)")
    weighted = region is not None and region_weight > 0
    if weighted and (region.ndim != 4 or region.shape[1] != 1 or region.shape[0] != pred.shape[0]
                     or region.shape[-2:] != pred.shape[-2:]):
        raise DemoInputError(f"reconstruction_loss: region {tuple(region.shape)} must be (N, 1, S, S) for pred "
                             f"{tuple(pred.shape)}")
    l1 = pred.new_zeros(())
    extra = pred.new_zeros(())
    region_err = pred.new_zeros(())
    dssim = pred.new_zeros(())
    for s in scales:
        p = F.avg_pool2d(pred, s) if s > 1 else pred
        t = F.avg_pool2d(target, s) if s > 1 else target
        err = (p - t).abs()
        l1 = l1 + err.mean()
        if weighted:
            r = F.avg_pool2d(region, s) if s > 1 else region
            extra = extra + (err * r).mean()
            region_err = region_err + (err * r).sum() / (r.sum() * err.shape[1]).clamp(min=1e-6)
        window = ssim_window if p.shape[-1] >= 2 * ssim_window else 3
        dssim = dssim + ssim_loss((p + 1) / 2, (t + 1) / 2, window_size=window, max_val=1.0)
    n = len(scales)
    l1, extra, region_err, dssim = l1 / n, extra / n, region_err / n, dssim / n
    loss = l1_weight * (l1 + region_weight * extra) + ssim_weight * dssim
    return loss, {"l1": l1.detach(), "ssim": dssim.detach(), "l1_region": region_err.detach()}


def info_nce_loss(a: Tensor, b: Tensor, temperature: float, *, normalize: bool = True) -> Tensor:
    r"""Bidirectional InfoNCE: row i of ``a`` and row i of ``b`` are the positive pair.

    :math:`\mathcal L = \tfrac12\,[\mathrm{CE}(a b^\top / \tau, I) + \mathrm{CE}(b a^\top / \tau, I)]`.

    Args:
        a: (N, D) embeddings (e.g. audio features of N frames).
        b: (N, D) embeddings (e.g. lip features of the same N frames).
        temperature: τ > 0.
        normalize: L2-normalise rows first (cosine similarities).

    Returns:
        Scalar loss; its minimum ``0`` is approached when every positive similarity dominates its row and column.
    """
    if a.ndim != 2 or a.shape != b.shape:
        raise DemoInputError(f"info_nce_loss: expected two (N, D) tensors of one shape, got {tuple(a.shape)}, {tuple(b.shape)}")
    if temperature <= 0:
        raise DemoInputError(f"info_nce_loss: temperature must be > 0, got {temperature}")
    if normalize:
        a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = a @ b.T / temperature  # (N, N)
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def masked_label_loss(pred: Tensor, target: Tensor, mask: Tensor, kind: str = "l1") -> Tensor:
    """Mean ``|pred − target|`` (``kind="l1"``) or ``(pred − target)²`` (``"mse"``) over entries where ``mask``
    is true (0 when none are).

    The squared error matters for rare events: blink labels are 0 on ~97 % of the synthetic frames, and with
    L1 (whose gradient is only the sign) a probe encoder still predicted "open" everywhere after 600 steps
    (blink r 0.02), while with the squared error it read blinks at r 0.76 (0.95 after 1 800 steps)."""
    if pred.shape != target.shape or mask.shape != pred.shape:
        raise DemoInputError(f"masked_label_loss: shapes differ: {tuple(pred.shape)}, {tuple(target.shape)}, {tuple(mask.shape)}")
    if kind not in LABEL_LOSSES:
        raise DemoInputError(f"masked_label_loss: kind must be one of {LABEL_LOSSES}, got {kind!r}")
    m = mask.to(pred.dtype)
    err = (pred - target).abs() if kind == "l1" else (pred - target).pow(2)
    return (err * m).sum() / m.sum().clamp(min=1.0)


def gaze_direction(gaze: Tensor) -> Tensor:
    """Unit 3-D gaze direction ``normalize([x, y, 1])`` from (…, 2) gaze values (0 = looking at the camera)."""
    return F.normalize(torch.cat([gaze, torch.ones_like(gaze[..., :1])], dim=-1), dim=-1)  # (..., 3)


def decorrelation_loss(lam: Tensor, sizes: Sequence[int], floor: float = 0.05) -> Tensor:
    """Mean squared cross-correlation between coefficients of different factor blocks over the batch.

    Each coefficient is standardised over the N rows; the loss averages ``C_ij²`` over all pairs (i, j)
    in different blocks, where ``C = Zᵀ Z / N``.  It is exactly 0 when the blocks are uncorrelated in the
    sample and 1 when every coefficient is a copy of one signal (of spread above ``floor``).

    The standard deviation used for standardising is floored at ``floor``.  With a vanishing floor the loss
    has a trivial minimiser, a block whose coefficients do not vary at all, and its gradient (∝ 1/std)
    drove the lip, gaze and blink encoders to constant outputs within 250 steps on the synthetic data
    (their labels could not pull them back); below the floor the term acts like a covariance penalty.

    Args:
        lam: (N, M) coefficients, N >= 2.
        sizes: block sizes in order (sum = M).
        floor: smallest standard deviation a coefficient is divided by (coefficient units).
    """
    if lam.ndim != 2 or sum(sizes) != lam.shape[1]:
        raise DemoInputError(f"decorrelation_loss: lam must be (N, {sum(sizes)}), got {tuple(lam.shape)}")
    if lam.shape[0] < 2 or len(sizes) < 2:
        return lam.new_zeros(())
    z = lam - lam.mean(dim=0, keepdim=True)
    z = z / torch.sqrt(z.pow(2).mean(dim=0, keepdim=True)).clamp(min=floor)  # (N, M)
    corr = z.T @ z / lam.shape[0]  # (M, M)
    block = torch.repeat_interleave(torch.arange(len(sizes), device=lam.device),
                                    torch.as_tensor(list(sizes), device=lam.device))  # (M,)
    cross = block[:, None] != block[None, :]  # (M, M)
    return corr.pow(2)[cross].mean()


def gaussian_kl_loss(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) ‖ N(0, I)) summed over the last axis, averaged over rows."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1).mean()


def condition_keep_mask(batch: int, p_drop: float, generator: torch.Generator | None, device=None) -> Tensor:
    """(B,) float mask: 0 with probability ``p_drop`` (condition dropped for CFG), else 1."""
    u = torch.rand(batch, generator=generator)
    return (u >= float(p_drop)).to(device=device, dtype=torch.float32)


def flow_matching_loss(
    velocity_model,
    x_0: Tensor,
    x_1: Tensor,
    t: Tensor,
    *,
    prev_x: Tensor,
    basis: Tensor | None = None,
    scale: Tensor | None = None,
    **cond: Tensor,
) -> Tensor:
    """Conditional OT flow-matching loss on one window, with the prefix frames as at inference.

    The model is called as ``velocity_model(x_t, t, prev_x=prev_x, **cond)`` and returns ``(B, P + L, W)``;
    only the last L frames are compared with the path velocity ``x_1 − x_0``.

    Args:
        velocity_model: e.g. :class:`~demo_core.models.flow_transformer.FlowTransformer`.
        x_0: (B, L, W) noise.
        x_1: (B, L, W) data window.
        t: (B,) flow times (0 = noise, 1 = data).
        prev_x: (B, P, W) prefix frames (zeros for a first window).
        basis: optional (W, M) orthonormal basis of the sub-space the data and noise live in; the error is
            then measured on the M coordinates only (what lies outside is projected away when sampling).
        scale: optional (M,) per-coordinate spread (with ``basis``): the error is measured in units of it.
        **cond: the model's conditions (``wr``, ``wa``, ``prev_wa``, ``we`` for the FMT).

    Returns:
        Scalar mean squared error (per coordinate).
    """
    sample = CondOTPath().sample(x_0, x_1, t)
    v = velocity_model(sample.x_t, sample.t, prev_x=prev_x, **cond)  # (B, P + L, W)
    P = prev_x.shape[1]
    if basis is not None:
        err = (v[:, P:] - sample.dx_t) @ basis  # (B, L, M)
        return (err if scale is None else err / scale).pow(2).mean()
    return F.mse_loss(v[:, P:], sample.dx_t)
