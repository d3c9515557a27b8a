"""Measure what each dictionary direction does to a rendered face: rigid head motion vs mouth and eye motion.

For one encoded portrait, every direction ``q_i`` is rendered at ``rest ± ε·q_i`` (batched) and the change is
measured inside regions derived from the face framing (the crop is a square ~1.6× the face box around the
face, :func:`face_regions`):

1. **Flow.**  The decoder's sampling grid ``g`` (h, w, 2) (64×64 level) maps output pixels to source
   positions.  The head's own motion is a smooth field fitted by least squares to ``g₊ − g₋`` as a function
   of ``g₋``: with ``head_model="quadratic"`` (default) a quadratic polynomial fitted over the head *outside*
   the eye band and the mouth (forehead, cheeks, nose, jaw line move with the head; the eyes and the mouth
   also move on their own), which holds turns out of the image plane (yaw, pitch: the face's features
   shift by their depth, not by one similarity); with ``"similarity"`` a similarity transform (scale,
   rotation, translation) over the whole head.  The field's energy over the head is the pose energy and
   the residual ``|g₊ − g₋ − field|²`` is split into mouth, eye band and the rest of the head.  A similarity
   ``S`` over the head is fitted in both cases for the image-space motion (dx, dy, rotation, scale).
2. **Images** (optional).  ``img₊ − img₋`` warped along the head field (kornia geometry, Gaussian-filtered
   with kornia) gives the same four energies from pixels, which also catches changes the warp does not show
   (eyelids, teeth).

All energies are per unit coefficient (divided by ``(2ε)²``).  :mod:`demo_core.motion.calibration` turns them
into factor blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DemoInputError
from .factor_space import describe_shape

__all__ = ["RenderFn", "FaceRegions", "DirectionResponses", "HEAD_MODELS", "face_regions", "region_masks",
           "fit_similarity", "fit_head_field", "measure_directions"]

RenderFn = Callable[[Tensor], "tuple[Tensor | None, Tensor]"]
HEAD_MODELS = ("quadratic", "similarity")  # head-motion fields of measure_directions


def _kornia():
    try:
        import kornia.filters
        import kornia.geometry
    except ImportError as err:  # pragma: no cover - kornia is a declared dependency
        raise ImportError("factor calibration needs kornia: pip install 'kornia>=0.7'") from err
    return kornia


@dataclass(frozen=True)
class FaceRegions:
    """Boxes ``(x0, y0, x1, y1)`` in crop coordinates [-1, 1] (x right, y down) of the head, eye band, mouth."""

    head: tuple[float, float, float, float]
    eyes: tuple[float, float, float, float]
    mouth: tuple[float, float, float, float]


def face_regions(face_scale: float = 1.6) -> FaceRegions:
    """Regions of a crop that is a square ``face_scale`` × the face box, centred on it (FLOAT: 1.6).

    In face-box units (u, v ∈ [-1, 1], brows to chin): head u ±1.15, v −1.35…1.15; eye band (eyes and
    brows) u ±0.85, v −0.65…−0.05; mouth (lips, chin and jaw line) u ±0.6, v 0.25…1.1.
    """
    if not isinstance(face_scale, (int, float)) or not 1.0 <= face_scale <= 4.0:
        raise DemoInputError(f"face_scale: expected a number in [1, 4], got {face_scale!r}")
    h = 1.0 / face_scale

    def box(u0, v0, u1, v1):
        return tuple(max(-1.0, min(1.0, c * h)) for c in (u0, v0, u1, v1))

    return FaceRegions(head=box(-1.15, -1.35, 1.15, 1.15), eyes=box(-0.85, -0.65, 0.85, -0.05),
                       mouth=box(-0.6, 0.25, 0.6, 1.1))


def region_masks(regions: FaceRegions, height: int, width: int, *, device=None) -> Tensor:
    """Boolean masks (4, H, W): head, eyes, mouth, and the rest of the head (pixel centres, align-corners grid)."""
    grid = _kornia().geometry.create_meshgrid(height, width, normalized_coordinates=True, device=device)[0]
    x, y = grid[..., 0], grid[..., 1]  # (H, W) each

    def inside(b):
        return (x >= b[0]) & (x <= b[2]) & (y >= b[1]) & (y <= b[3])

    head = inside(regions.head)
    eyes, mouth = inside(regions.eyes) & head, inside(regions.mouth) & head
    return torch.stack([head, eyes, mouth, head & ~eyes & ~mouth])  # (4, H, W)


def fit_similarity(p: Tensor, q: Tensor) -> Tensor:
    """Least-squares similarity ``q ≈ s·R·p + t`` for point sets (n, N, 2) → (n, 3, 3) homogeneous matrices."""
    p_mean, q_mean = p.mean(dim=1, keepdim=True), q.mean(dim=1, keepdim=True)  # (n, 1, 2)
    pc, qc = p - p_mean, q - q_mean
    denom = (pc**2).sum(dim=(1, 2))
    safe = denom > 1e-30
    denom = torch.where(safe, denom, torch.ones_like(denom))
    a = torch.where(safe, (pc * qc).sum(dim=(1, 2)) / denom, torch.ones_like(denom))  # s·cos
    b = torch.where(safe, (pc[..., 0] * qc[..., 1] - pc[..., 1] * qc[..., 0]).sum(dim=1) / denom,
                    torch.zeros_like(denom))  # s·sin
    A = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], -2)  # (n, 2, 2)
    t = q_mean[:, 0] - (A @ p_mean[:, 0, :, None])[..., 0]  # (n, 2)
    S = torch.zeros(p.shape[0], 3, 3, dtype=p.dtype, device=p.device)
    S[:, :2, :2], S[:, :2, 2], S[:, 2, 2] = A, t, 1.0
    return S


def _quadratic_terms(p: Tensor) -> Tensor:
    """(..., 2) points → (..., 6) monomials 1, x, y, x², xy, y²."""
    x, y = p[..., 0], p[..., 1]
    return torch.stack([torch.ones_like(x), x, y, x * x, x * y, y * y], dim=-1)


def fit_head_field(p: Tensor, d: Tensor, fit_mask: Tensor) -> Tensor:
    """Least-squares quadratic displacement field: ``d ≈ Φ(p)·β`` over the ``fit_mask`` points, evaluated at all.

    Args:
        p: (n, h, w, 2) positions (the grid before the move); d: (n, h, w, 2) displacements;
        fit_mask: (h, w) bool, where the field is fitted (at least 6 points).

    Returns:
        (n, h, w, 2) the fitted field everywhere.
    """
    if int(fit_mask.sum()) < 6:
        raise DemoInputError(f"fit_mask: a quadratic field needs at least 6 points, got {int(fit_mask.sum())}")
    phi = _quadratic_terms(p)  # (n, h, w, 6)
    A, b = phi[:, fit_mask], d[:, fit_mask]  # (n, N, 6), (n, N, 2)
    scale = A.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)  # column scaling: a well-conditioned solve
    beta = torch.linalg.lstsq(A / scale, b).solution / scale.transpose(1, 2)  # (n, 6, 2)
    return phi @ beta[:, None]  # (n, h, w, 2)


@dataclass(frozen=True, eq=False)
class DirectionResponses:
    """What ±ε along each direction does, per unit coefficient (float64, on the CPU).

    Attributes:
        epsilon: (M,) step used per direction.
        flow_energy: (M, 4) rigid head energy, residual energy in mouth, eyes, rest of head (flow units²).
        image_energy: (M, 4) the same from pixels, or None without images.
        motion: (M, 4) image-space similarity motion: dx, dy (crop half-widths), rotation (rad), log scale.
        head_flow: (M, 2·N_head) flow change over the head; mouth_flow / eye_flow: residual flow there.
    """

    epsilon: Tensor
    flow_energy: Tensor
    image_energy: Tensor | None
    motion: Tensor
    head_flow: Tensor
    mouth_flow: Tensor
    eye_flow: Tensor


def _render(render_fn: RenderFn, latents: Tensor) -> tuple[Tensor | None, Tensor]:
    with torch.no_grad():
        out = render_fn(latents)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise DemoInputError("render_fn: expected it to return (images or None, flow)")
    images, flow = out
    n = latents.shape[0]
    if not isinstance(flow, Tensor) or flow.ndim != 4 or flow.shape[0] != n or flow.shape[-1] != 2:
        raise DemoInputError(f"render_fn: expected flow ({n}, h, w, 2), got {describe_shape(flow)}")
    if images is not None and (not isinstance(images, Tensor) or images.ndim != 4 or images.shape[0] != n):
        raise DemoInputError(f"render_fn: expected images ({n}, C, H, W) or None, got {describe_shape(images)}")
    return (None if images is None else images.detach().double()), flow.detach().double()


def _image_energy(img_p: Tensor, img_m: Tensor, field: Tensor, regions: FaceRegions, flow_h: int,
                  blur: float) -> Tensor:
    """Energies (n, 4) of ``img₊ − img₋`` after moving ``img₋`` along the head field (n, h, w, 2) (the grid's
    change: ``img₊(x) ≈ img₋(x + field(x))`` for a small move of a near-identity grid)."""
    K = _kornia()
    n, _, H, W = img_p.shape
    grid = K.geometry.create_meshgrid(H, W, normalized_coordinates=True, device=img_p.device, dtype=img_p.dtype)
    moved = F.interpolate(field.permute(0, 3, 1, 2), size=(H, W), mode="bilinear", align_corners=True)
    compensated = F.grid_sample(img_m, grid + moved.permute(0, 2, 3, 1), mode="bilinear", padding_mode="border",
                                align_corners=True)  # (n, C, H, W): img₋ moved with the head like img₊
    sigma = max(blur * H / flow_h, 1e-3)
    size = 2 * math.ceil(2 * sigma) + 1
    diffs = torch.cat([img_p - img_m, img_p - compensated])  # (2n, C, H, W)
    diffs = K.filters.gaussian_blur2d(diffs.float(), (size, size), (sigma, sigma), border_type="replicate")
    energy = (diffs.double() ** 2).sum(dim=1)  # (2n, H, W)
    total, resid = energy[:n], energy[n:]
    masks = region_masks(regions, H, W, device=img_p.device)
    e = [(resid * m).sum(dim=(1, 2)) for m in masks]  # head, eyes, mouth, rest
    rigid = ((total * masks[0]).sum(dim=(1, 2)) - e[0]).clamp(min=0)
    return torch.stack([rigid, e[2], e[1], e[3]], dim=1)  # (n, 4) pose, lip, eyes, other


def measure_directions(
    render_fn: RenderFn,
    rest_latent: Tensor,
    Q: Tensor,
    *,
    epsilon: float | Tensor = 0.5,
    regions: FaceRegions | None = None,
    batch_size: int = 8,
    blur: float = 1.0,
    head_model: str = "quadratic",
) -> DirectionResponses:
    """Render ``rest ± ε·q_i`` for every direction and measure where the face moves.

    Args:
        render_fn: ``latents (N, W) -> (images (N, C, H, W) or None, flow (N, h, w, 2))`` (align-corners
            sampling grid in [-1, 1]).
        rest_latent: (W,) latent of the portrait at rest (FLOAT: ``h_source + source_motion``).
        Q: (W, M) dictionary.
        epsilon: coefficient step, a number or (M,) (e.g. the coefficients' spread in real motion).
        regions: face regions (default :func:`face_regions` ()).
        batch_size: directions per render call (2·batch_size images).
        blur: Gaussian σ of the image-difference filter, in flow-grid cells.
        head_model: the head's own motion, ``"quadratic"`` or ``"similarity"`` (module docstring).

    Returns:
        :class:`DirectionResponses`.
    """
    if not isinstance(Q, Tensor) or Q.ndim != 2:
        raise DemoInputError(f"Q: expected a tensor (W, M), got {describe_shape(Q)}")
    W, M = Q.shape
    rest = rest_latent.reshape(-1) if isinstance(rest_latent, Tensor) else rest_latent
    if not isinstance(rest, Tensor) or rest.shape != (W,):
        raise DemoInputError(f"rest_latent: expected ({W},), got {describe_shape(rest_latent)}")
    eps = torch.as_tensor(epsilon, dtype=torch.float64).reshape(-1)
    if eps.numel() not in (1, M) or not (torch.isfinite(eps).all() and (eps > 0).all()):
        raise DemoInputError(f"epsilon: expected a positive finite step or {M} of them, got {epsilon!r}")
    eps = eps.expand(M).clone()  # (M,)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DemoInputError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
    if head_model not in HEAD_MODELS:
        raise DemoInputError(f"head_model: expected one of {HEAD_MODELS}, got {head_model!r}")
    regions = regions or face_regions()
    parts: dict[str, list[Tensor]] = {k: [] for k in ("flow", "image", "motion", "head", "mouth", "eyes")}
    for i0 in range(0, M, batch_size):
        idx = torch.arange(i0, min(M, i0 + batch_size))
        n = idx.numel()
        step = (Q[:, idx].T * eps[idx, None].to(Q)).to(rest)  # (n, W)
        images, flow = _render(render_fn, torch.cat([rest + step, rest - step]))  # (2n, ...)
        g_p, g_m = flow[:n], flow[n:]  # (n, h, w, 2)
        h, w = g_p.shape[1:3]
        masks = region_masks(regions, h, w, device=flow.device)  # (4, h, w)
        S = fit_similarity(g_m[:, masks[0]], g_p[:, masks[0]])  # (n, 3, 3)
        if head_model == "similarity":
            pred = _kornia().geometry.linalg.transform_points(S, g_m.reshape(n, h * w, 2)).reshape(n, h, w, 2)
        else:  # fitted where only the head moves the face: the head outside the eye band and the mouth
            pred = g_m + fit_head_field(g_m, g_p - g_m, masks[3])
        scale = (2 * eps[idx]).to(flow)[:, None]  # (n, 1): per unit coefficient
        rigid, resid = (pred - g_m).norm(dim=-1) ** 2, (g_p - pred).norm(dim=-1) ** 2  # (n, h, w)
        parts["flow"].append(torch.stack([(rigid * masks[0]).sum((1, 2)), (resid * masks[2]).sum((1, 2)),
                                          (resid * masks[1]).sum((1, 2)), (resid * masks[3]).sum((1, 2))], 1)
                             / scale**2)
        if images is not None:
            parts["image"].append(_image_energy(images[:n], images[n:], pred - g_m, regions, h, blur) / scale**2)
        a, b = S[:, 0, 0], S[:, 1, 0]
        # the grid maps output → source, so content moves opposite to the fitted source motion
        parts["motion"].append(-torch.stack([S[:, 0, 2], S[:, 1, 2], torch.atan2(b, a),
                                             torch.log(torch.hypot(a, b).clamp_min(1e-12))], 1) / scale)
        parts["head"].append((g_p - g_m)[:, masks[0]].reshape(n, -1) / scale)
        parts["mouth"].append((g_p - pred)[:, masks[2]].reshape(n, -1) / scale)
        parts["eyes"].append((g_p - pred)[:, masks[1]].reshape(n, -1) / scale)
    cat = {k: torch.cat(v).cpu() if v else None for k, v in parts.items()}  # small: kept on the CPU
    return DirectionResponses(eps, cat["flow"], cat["image"], cat["motion"], cat["head"], cat["mouth"], cat["eyes"])
