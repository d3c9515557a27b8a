"""Calibrate a FLOAT-family motion dictionary: which directions move the head, the lips, the eyes.

1. :func:`~demo_core.motion.direction_responses.measure_directions` renders ``rest ± ε·q_i`` for every
   direction and measures head motion (a smooth field fitted to the decoder's 64×64 flow over the head outside
   the eyes and the mouth, so that turns out of the image plane count as head motion) and the residual in the
   mouth and eye regions, from flow and optionally from pixels.  The step ε is one number for all
   directions, or per direction from the spread of real motion (:func:`coefficient_steps`: a direction is
   then measured at the size it actually moves).  Several portraits can be measured and their responses
   averaged (:func:`combine_responses`), which is steadier than one face.
2. :func:`score_directions` turns that into per-direction scores over ``(pose, lip, eyes, other)``.
3. :func:`assign_directions` puts each direction in a block (``pose``, ``lip``, ``eyes`` = gaze or blink,
   ``residual``).
4. :func:`block_rotations` rotates coordinates within blocks: pose so that ``c0`` moves the face
   horizontally (yaw-like), ``c1`` vertically (pitch-like), ``c2`` rotates it in the image plane (roll),
   ``c3`` scales it (image-space signs: + = right, down, clockwise on screen, larger); lip and eyes by PCA of
   their residual flow (largest motion first).

The result is a :class:`~demo_core.motion.factor_sidecar.FactorCalibration` (layout + rotation R, factor
coordinates ``c = λ @ R``), saved next to the checkpoint by
:func:`~demo_core.motion.factor_sidecar.save_factor_calibration`.  Calibrated blocks have no semantic axes:
their coordinates are in dictionary units (keyframe tracks ``pose.c0``, not ``pose.yaw``).

The core takes a generic ``render_fn(latents (N, W)) -> (images (N, C, H, W) or None, flow (N, h, w, 2))``;
:func:`calibrate_autoencoder` wraps a :class:`~demo_core.models.motion_autoencoder.MotionAutoEncoder`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict

import torch
from torch import Tensor

from ..errors import DemoInputError
from .direction_responses import (
    DirectionResponses,
    FaceRegions,
    RenderFn,
    face_regions,
    fit_similarity,
    measure_directions,
    region_masks,
)
from .factor_sidecar import SCORE_CATEGORIES, FactorCalibration, calibration_from_directions
from .factor_space import describe_shape

__all__ = ["FaceRegions", "DirectionResponses", "face_regions", "region_masks", "fit_similarity",
           "measure_directions", "coefficient_steps", "combine_responses", "score_directions", "assign_directions",
           "block_rotations", "calibrate_factors", "calibrate_autoencoder"]

_FACTOR_OF = {"pose": "pose", "lip": "lip", "eyes": "eyes", "other": "residual"}
_BLOCK_ORDER = ("lip", "pose", "eyes", "residual")


def coefficient_steps(coefficients: Tensor, *, scale: float = 1.0, floor: float = 0.02,
                      name: str = "coefficients") -> Tensor:
    """Per-direction calibration steps from real motion: ``scale`` × each coefficient's standard deviation.

    Args:
        coefficients: (..., M) dictionary coefficients of motion the model produces (encoded driving frames,
            sampled motion); every leading dimension counts as frames.
        scale: the step in standard deviations (> 0).
        floor: a direction that hardly moves is still measured, with ``floor`` × the largest step (0 < floor <= 1).
        name: the input named in error messages (e.g. ``"motion"``).

    Returns:
        (M,) float64 steps for :func:`calibrate_factors` (``epsilon``).
    """
    if not isinstance(coefficients, Tensor) or coefficients.ndim < 2:
        raise DemoInputError(f"{name}: expected motion coefficients (frames, M), got "
                             f"{describe_shape(coefficients)}")
    lam = coefficients.detach().reshape(-1, coefficients.shape[-1]).double()
    if lam.shape[0] < 2 or lam.shape[1] < 1:
        raise DemoInputError(f"{name}: need at least 2 frames of at least 1 direction, got {tuple(lam.shape)}")
    if not bool(torch.isfinite(lam).all()):
        raise DemoInputError(f"{name}: contains NaN or infinite values")
    def number(v) -> bool:
        return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)

    if not (number(scale) and scale > 0):
        raise DemoInputError(f"scale: expected a number > 0, got {scale!r}")
    if not (number(floor) and 0 < floor <= 1):
        raise DemoInputError(f"floor: expected a number in (0, 1], got {floor!r}")
    std = lam.std(dim=0).cpu()
    if float(std.max()) <= 1e-9 * float(lam.abs().max()):  # constant up to rounding (a repeated frame)
        raise DemoInputError(f"{name}: it does not move (every frame the same); give motion with movement (sampled "
                             "from speech or encoded from a driving video), or one step (epsilon) for all directions")
    return scale * std.clamp_min(floor * float(std.max()))


def score_directions(responses: DirectionResponses, *, image_weight: float = 0.5, min_energy: float = 0.001) -> Tensor:
    """Per-direction scores (M, 4) over (pose, lip, eyes, other): each row sums to 1.

    Flow and image energies are turned into fractions of the direction's total and averaged, weighted by
    ``image_weight`` on images and by how strong the direction is in each, so a direction that changes only
    pixels (no flow) is judged by its pixels.  Strength is the energy of the *measured step* (per-unit energy
    × ε²) over the strongest direction's: with one ε for all directions that is the per-unit energy, with
    per-direction steps (:func:`coefficient_steps`) a direction is judged at the size the motion really moves
    it (a lip direction whose coefficient swings widely but renders little per unit is still a lip
    direction).  A direction below ``min_energy`` × the strongest in both scores ``other`` (0.1 %: a mouth
    or an eye region is a few percent of the head, so their full moves are far weaker than a head move).
    """
    if not 0 <= image_weight <= 1:
        raise DemoInputError(f"image_weight: expected a number in [0, 1], got {image_weight!r}")

    step = responses.epsilon.to(responses.flow_energy) ** 2  # (M,): energy per unit → energy of the step

    def fractions(e: Tensor) -> tuple[Tensor, Tensor]:
        total = e.sum(dim=1)
        stepped = total * step
        return e / total.clamp_min(1e-300)[:, None], stepped / stepped.max().clamp_min(1e-300)

    frac, strength = fractions(responses.flow_energy)
    if responses.image_energy is not None and image_weight > 0:
        frac_i, strength_i = fractions(responses.image_energy)
        w_f, w_i = (1 - image_weight) * strength[:, None], image_weight * strength_i[:, None]
        frac = (w_f * frac + w_i * frac_i) / (w_f + w_i).clamp_min(1e-300)
        strength = torch.maximum(strength, strength_i)
    other = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=frac.dtype, device=frac.device)
    return torch.where((strength < min_energy)[:, None], other, frac)


def assign_directions(scores: Tensor, *, sizes: Mapping[str, int] | None = None) -> dict[str, list[int]]:
    """Directions per block, strongest first: ``{"lip": [...], "pose": [...], "eyes": [...], "residual": [...]}``.

    Without ``sizes`` each direction goes to its best category (``other`` → ``residual``).  With ``sizes``
    (e.g. ``{"pose": 6, "lip": 6, "eyes": 3}``) the best (direction, block) pairs are taken greedily until
    each block is full; the rest is ``residual``.  Empty blocks are left out.
    """
    M = scores.shape[0]
    if sizes is None:
        best = scores.argmax(dim=1)
        chosen = {i: SCORE_CATEGORIES[int(best[i])] for i in range(M)}
    else:
        want = {}
        for key, n in sizes.items():
            if key not in ("pose", "lip", "eyes"):
                raise DemoInputError(f"sizes: unknown block {key!r} (expected 'pose', 'lip', 'eyes')")
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise DemoInputError(f"sizes: {key!r} must be an integer >= 0, got {n!r}")
            want[key] = n
        if sum(want.values()) > M:
            raise DemoInputError(f"sizes: {sum(want.values())} directions asked for, the dictionary has {M}")
        chosen = {}
        pairs = sorted(((float(scores[i, c]), i, cat) for i in range(M) for c, cat in enumerate(SCORE_CATEGORIES)
                        if cat in want), reverse=True)
        for _, i, cat in pairs:
            if i not in chosen and sum(v == cat for v in chosen.values()) < want[cat]:
                chosen[i] = cat
        chosen.update({i: "other" for i in range(M) if i not in chosen})
    out: dict[str, list[int]] = {}
    for block in _BLOCK_ORDER:
        members = [i for i in range(M) if _FACTOR_OF[chosen[i]] == block]
        if block != "residual":
            cat = SCORE_CATEGORIES.index(next(c for c, f in _FACTOR_OF.items() if f == block))
            members.sort(key=lambda i: -float(scores[i, cat]))
        if members:
            out[block] = members
    return out


def _fix_signs(U: Tensor) -> Tensor:
    """Flip columns so that each column's largest-magnitude entry is positive."""
    idx = U.abs().argmax(dim=0)
    signs = torch.sign(U[idx, torch.arange(U.shape[1])])
    return U * torch.where(signs == 0, torch.ones_like(signs), signs)


def _pca_rotation(G: Tensor) -> Tensor:
    """(n, n) orthogonal: left singular vectors of the responses G (n, P), largest first."""
    U = torch.linalg.svd(G, full_matrices=True)[0]
    return _fix_signs(U[:, : G.shape[0]])


def _ordered_rotation(features: Tensor, G: Tensor) -> Tensor:
    """Coordinate j maximises response ``features[:, j]`` in what earlier coordinates left; then PCA of G."""
    n = features.shape[0]
    cols: list[Tensor] = []
    tol = 1e-3 * float(features.norm()) + 1e-300
    for c in range(features.shape[1]):
        v = features[:, c].clone()
        for u in cols:
            v = v - (u @ v) * u
        if float(v.norm()) > tol and len(cols) < n:
            cols.append(v / v.norm())
    U1 = torch.stack(cols, 1) if cols else features.new_zeros(n, 0)  # (n, r)
    if U1.shape[1] == n:
        return U1
    complement = torch.linalg.svd(torch.eye(n, dtype=G.dtype) - U1 @ U1.T)[0][:, : n - U1.shape[1]]  # (n, n−r)
    return torch.cat([U1, complement @ _pca_rotation(complement.T @ G)], dim=1)


def block_rotations(directions: Mapping[str, list[int]], responses: DirectionResponses) -> dict[str, Tensor]:
    """Within-block rotations: pose ordered (dx, dy, rotation, scale), lip and eyes by PCA; residual kept."""
    out = {}
    for block, idx in directions.items():
        i = torch.tensor(idx)
        if block == "pose":
            out[block] = _ordered_rotation(responses.motion[i], responses.head_flow[i])
        elif block == "lip":
            out[block] = _pca_rotation(responses.mouth_flow[i])
        elif block == "eyes":
            out[block] = _pca_rotation(responses.eye_flow[i])
    return out


def combine_responses(responses: Sequence[DirectionResponses]) -> DirectionResponses:
    """Responses measured on several portraits as one: energies and image-space motion averaged, the flow
    changes of every portrait side by side (their principal directions are those of all portraits).

    Every portrait must have been measured with the same steps on the same dictionary.
    """
    rs = list(responses)
    if not rs or not all(isinstance(r, DirectionResponses) for r in rs):
        raise DemoInputError("responses: expected one or more DirectionResponses")
    first = rs[0]
    for r in rs[1:]:
        if not torch.equal(r.epsilon, first.epsilon):  # False for different shapes too
            raise DemoInputError("responses: measured with different steps or dictionaries; measure every "
                                 "portrait with the same epsilon and Q")
        if (r.image_energy is None) != (first.image_energy is None):
            raise DemoInputError("responses: some were measured with images and some without")
    if len(rs) == 1:
        return first

    def mean(name: str) -> Tensor:
        return torch.stack([getattr(r, name) for r in rs]).mean(dim=0)

    def side_by_side(name: str) -> Tensor:
        return torch.cat([getattr(r, name) for r in rs], dim=1)

    return DirectionResponses(first.epsilon, mean("flow_energy"),
                              None if first.image_energy is None else mean("image_energy"), mean("motion"),
                              side_by_side("head_flow"), side_by_side("mouth_flow"), side_by_side("eye_flow"))


def calibrate_factors(
    render_fn: RenderFn | Sequence[RenderFn],
    rest_latent: Tensor,
    Q: Tensor,
    *,
    epsilon: float | Tensor = 0.5,
    regions: FaceRegions | None = None,
    sizes: Mapping[str, int] | None = None,
    rotate: bool = True,
    image_weight: float = 0.5,
    min_energy: float = 0.001,
    batch_size: int = 8,
    head_model: str = "quadratic",
) -> FactorCalibration:
    """Measure, score, assign and rotate: the whole calibration (see the module docstring).

    Args:
        render_fn: one renderer, or one per portrait (measured on each, :func:`combine_responses`).
        rest_latent: (W,) the rest latent of one portrait, or (B, W) one per renderer.
        Q, epsilon, regions, batch_size, head_model: as in :func:`measure_directions`.
        sizes: as in :func:`assign_directions`; image_weight, min_energy: as in :func:`score_directions`.
        rotate: rotate coordinates within blocks (:func:`block_rotations`).

    Returns:
        A :class:`FactorCalibration` with source ``"measured"``, its scores and settings.
    """
    fns = list(render_fn) if isinstance(render_fn, (list, tuple)) else [render_fn]
    rests = rest_latent[None] if isinstance(rest_latent, Tensor) and rest_latent.ndim == 1 else rest_latent
    if not isinstance(rests, Tensor) or rests.ndim != 2 or rests.shape[0] != len(fns):
        raise DemoInputError(f"rest_latent: expected one latent per renderer ({len(fns)}, W), got "
                             f"{describe_shape(rest_latent)}")
    regions = regions or face_regions()
    responses = combine_responses([measure_directions(fn, rest, Q, epsilon=epsilon, regions=regions,
                                                      batch_size=batch_size, head_model=head_model)
                                   for fn, rest in zip(fns, rests)])
    scores = score_directions(responses, image_weight=image_weight, min_energy=min_energy)
    directions = assign_directions(scores, sizes=sizes)
    rotations = block_rotations(directions, responses) if rotate else None
    settings = {"epsilon": responses.epsilon.tolist(), "regions": asdict(regions), "sizes": dict(sizes or {}),
                "rotate": bool(rotate), "image_weight": image_weight, "min_energy": min_energy,
                "head_model": head_model, "portraits": len(fns)}
    return calibration_from_directions(directions, Q.shape[1], block_rotations=rotations, source="measured",
                                       scores=scores, settings=settings, name="assignment")


def calibrate_autoencoder(autoencoder, h_source: Tensor, feats: list[Tensor], source_motion: Tensor,
                          **kwargs) -> FactorCalibration:
    """:func:`calibrate_factors` for a ``MotionAutoEncoder`` and B encoded portraits (B ≥ 1).

    Several portraits give a steadier calibration than one: a direction whose effect depends on the face
    (a lip shape that barely shows on a closed mouth) is judged by its mean effect.

    Args:
        autoencoder: the motion auto-encoder (its ``render(..., return_flow=True)`` gives the 64×64 grid).
        h_source: (B, W) appearance codes; feats: their encoder features (B, C, r, r) low → high;
        source_motion: (B, W) the portraits' own motion latents (rest = ``h_source + source_motion``).
        **kwargs: options of :func:`calibrate_factors`.
    """
    h = h_source.reshape(-1, h_source.shape[-1])
    motion = source_motion.reshape(-1, source_motion.shape[-1])
    if motion.shape[0] != h.shape[0] or any(f.shape[0] != h.shape[0] for f in feats):
        raise DemoInputError(f"source_motion, feats: expected {h.shape[0]} portraits like h_source, got "
                             f"{motion.shape[0]} and {[f.shape[0] for f in feats]}")

    def renderer(b: int) -> RenderFn:
        feats_b, h_b = [f[b:b + 1] for f in feats], h[b]

        def render_fn(latents: Tensor):  # motion = latent − h (a feature painter reads its coefficients)
            return autoencoder.render(latents, feats_b, return_flow=True, motion=latents - h_b)

        return render_fn

    return calibrate_factors([renderer(b) for b in range(h.shape[0])], h + motion,
                             autoencoder.directions().detach(), **kwargs)
