"""The two training objectives as modules (``forward(batch) -> (loss, metrics)``), so that one
``DistributedDataParallel`` wrapper covers every trained parameter of a stage.

Batch-statistics losses (InfoNCE, gaze contrastive, decorrelation) are computed over fixed groups of
``contrast_group`` samples and averaged; per-sample losses (label L1 terms included: a sample without
labels contributes 0) are averaged over the samples.  A process's
loss is therefore a mean over equally sized units, and the DDP gradient average over processes equals
the gradient of one process on the whole global batch.  The one-factor edit terms (re-encoding, locality,
counterfactual) scale their edits by the spread of the process's own batch and average over the frames that
have maps or a synthetic face, so under DDP they equal the one-process gradient only when every process sees
as many such frames (all-synthetic data) and up to that spread estimate.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from ..errors import DemoInputError
from ..models.demo_model import DemoModel
from ..models.emotion_encoder import emotion_condition
from ..motion.factors import split_coefficients
from .config import Stage1Config, Stage2Config
from .data import Stage1Batch, Stage2Batch, supervised_axes
from .losses import (
    decorrelation_loss,
    flow_matching_loss,
    gaussian_kl_loss,
    gaze_direction,
    info_nce_loss,
    masked_label_loss,
    reconstruction_loss,
)

__all__ = ["Stage1Objective", "Stage2Objective"]

AdversarialHook = Callable[[Tensor, Tensor], Tensor]


CYCLE_SIGMA_FLOOR = 0.2  # coefficient spread floor of the re-encoding edits (a collapsed coefficient is not edited
# by a vanishing step whose read-back error would be divided by it)


LOCALITY_PARTS = {"lip": 0, "gaze": 1, "blink": 1}  # factor block → its map in a two-part region sidecar (mouth, eyes)


def block_rows(layout, names=None) -> Tensor:
    """(B_e, M) one 0/1 row per edited factor block: ``names`` in layout order (default: every block but the
    residual, the re-encoding term's edits)."""
    edited = [sl for name, sl in layout.slices().items()
              if (name != "residual" if names is None else name in names)]
    rows = torch.zeros(max(len(edited), 1), layout.total)
    for i, sl in enumerate(edited):
        rows[i, sl] = 1.0
    return rows


def _edit_one_block(mae, step: float, lam: Tensor, h: Tensor, feats: list[Tensor], noise: Tensor,
                    blocks: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Render coefficients ``lam`` (n, M) again with one factor block per row edited: row r moves block
    ``r mod B`` of ``blocks`` (B, M) 0/1 rows by ``step · σ · noise`` (σ: the batch spread of each coefficient,
    floored at ``CYCLE_SIGMA_FLOOR``), on appearances ``h`` (n, W).

    Returns:
        ``(edited frames (n, 3, S, S), delta (n, M), block index per row (n,), σ (M,))``.
    """
    n = lam.shape[0]
    lam = lam.detach()
    sigma = lam.std(dim=0).clamp_min(CYCLE_SIGMA_FLOOR)  # (M,)
    pick = torch.arange(n, device=lam.device) % blocks.shape[0]  # (n,)
    delta = step * sigma * noise.to(lam) * blocks.to(lam.dtype)[pick]  # (n, M)
    motion = mae.motion_from_coefficients(lam + delta)
    return mae.render(h + motion, feats, motion=motion), delta, pick, sigma


def _standardize(x: Tensor, floor: float = 0.1) -> Tensor:
    """Rows of one group centred and scaled to unit RMS: the InfoNCE heads see the frame-to-frame variation
    at O(1) scale whatever the size of the coefficients.

    The RMS is floored at ``floor`` (about the spread of the labelled axes in coefficient units): without
    it the division by the tiny RMS of freshly initialised coefficients made the InfoNCE gradient on the
    lip encoder ~5× that of the lip labels, and after global clipping the labels were barely learnt."""
    x = x - x.mean(dim=0, keepdim=True)
    return x / torch.sqrt(x.pow(2).mean()).clamp(min=floor)


def _groups(n: int, size: int) -> list[slice]:
    size = max(1, min(size, n))
    return [slice(i, i + size) for i in range(0, n - size + 1, size)]


class Stage1Objective(nn.Module):
    """Stage 1: reconstruction + factor losses on the motion auto-encoder and the audio features.

    Args:
        model: the DEMO model (its ``motion_autoencoder`` and ``audio_encoder.features`` are trained).
        cfg: stage-1 settings (weights, temperatures, groups).
        adversarial: optional hook ``(fake, real) -> generator loss`` (its discriminator is trained by the
            caller); used when ``cfg.weights.adversarial > 0``.
    """

    def __init__(self, model: DemoModel, cfg: Stage1Config, adversarial: AdversarialHook | None = None):
        super().__init__()
        self.mae = model.motion_autoencoder
        self.audio = model.audio_encoder
        self.layout = model.cfg.factors
        self.vae = model.cfg.vae
        self.cfg = cfg
        self.adversarial = adversarial
        d, n_lip = cfg.nce_dim, self.layout.block("lip").size if "lip" in self.layout.names else 0
        self.heads = nn.ModuleDict({
            "lip_audio": nn.Linear(model.audio_encoder.config.feature_dim, d),
            "lip_visual": nn.Sequential(nn.Linear(max(n_lip, 1), d), nn.SiLU(), nn.Linear(d, d)),
        })
        self.axes = supervised_axes(self.layout)
        self.register_buffer("axis_index", torch.tensor([a[0] for a in self.axes], dtype=torch.long), persistent=False)
        free = sorted(set(range(self.layout.total)) - {a[0] for a in self.axes})
        self.register_buffer("free_index", torch.tensor(free, dtype=torch.long), persistent=False)
        for key in ("detach_render", "cycle_factors"):
            unknown = [f for f in getattr(cfg, key) if f not in self.layout.names]
            if unknown:
                raise DemoInputError(f"stage1.{key}: {unknown} are not factor blocks ({list(self.layout.names)})")
        detached = torch.zeros(self.layout.total, dtype=torch.bool)
        for name, sl in self.layout.slices().items():
            detached[sl] = name in cfg.detach_render
        self.register_buffer("render_detached", detached, persistent=False)
        self.register_buffer("cycle_blocks", block_rows(self.layout, cfg.cycle_factors or None), persistent=False)
        local = [name for name in self.layout.names if name in LOCALITY_PARTS]
        self.register_buffer("locality_blocks", block_rows(self.layout, local), persistent=False)
        self.register_buffer("all_blocks", block_rows(self.layout, self.layout.names), persistent=False)
        self.register_buffer("locality_parts", torch.tensor([LOCALITY_PARTS[n] for n in local] or [0]),
                             persistent=False)
        # Only the reconstruction, re-encoding, locality and adversarial terms read rendered frames; an
        # encoder-only phase (labels, contrastive and counterfactual terms) skips the source encoding and decoder.
        w = cfg.weights
        self.renders = (w.recon_l1 > 0 or w.recon_ssim > 0 or w.cycle > 0 or w.locality > 0
                        or (adversarial is not None and w.adversarial > 0))

    def _audio_features(self, batch: Stage1Batch, frames: int) -> Tensor:
        rows = []
        for a, n, off in zip(batch.audio, batch.audio_frames, batch.audio_offset):
            f = self.audio.features(a[None], n)[0]  # (n, D_f)
            rows.append(f[off:off + frames])
        return torch.stack(rows)  # (b, F, D_f)

    def _gaze_keys(self, batch: Stage1Batch, gaze_targets: Tensor | None) -> Tensor | None:
        """(b, F, 2) gaze keys: labels where present, else the gaze code of the jittered view."""
        b, F = batch.driving.shape[:2]
        keys = gaze_targets
        use_view = batch.gaze_view_mask
        if keys is None:
            use_view = torch.ones_like(use_view)
            keys = batch.driving.new_zeros(b, F, 2)
        if bool(use_view.any()):
            view = batch.gaze_view[use_view].flatten(0, 1)  # (b_v·F, 3, S, S)
            mean_v, _ = self.mae.coefficients_posterior(view)
            g_v = split_coefficients(mean_v, self.layout)["gaze"].reshape(-1, F, 2)
            keys = keys.clone()
            keys[use_view] = g_v
        return keys

    def _cycle(self, recon: Tensor, lam: Tensor, h: Tensor, feats: list[Tensor], noise: Tensor) -> Tensor:
        """Re-encoding consistency (see ``Stage1Config.cycle_step``): frames ``recon`` (n, 3, S, S) rendered from
        coefficients ``lam`` (n, M) on appearances ``h`` (n, W); row r edits block ``r mod B`` of the edited
        blocks (lip, pose, gaze, blink, or ``cycle_factors``) by ``cycle_step · σ · noise``; the edited block's
        errors weigh ``cycle_own``, the others' 1."""
        n = lam.shape[0]
        edited, delta, pick, sigma = _edit_one_block(self.mae, self.cfg.cycle_step, lam, h, feats, noise,
                                                     self.cycle_blocks)
        mask = self.cycle_blocks.to(delta.dtype)[pick]  # (n, M)
        read, _ = self.mae.coefficients_posterior(torch.cat([recon, edited]).clamp(-1.0, 1.0))  # (2n, M)
        err = ((read[n:] - read[:n] - delta) / sigma) ** 2  # (n, M)
        return (err * (1.0 + (self.cfg.cycle_own - 1.0) * mask)).mean()

    def _locality(self, recon: Tensor, lam: Tensor, h: Tensor, feats: list[Tensor], noise: Tensor, parts: Tensor,
                  rows: Tensor) -> Tensor:
        """Edit locality (see ``Stage1Config``): frames ``recon`` (n, 3, S, S) rendered from ``lam`` (n, M) on
        appearances ``h`` (n, W); row r edits block ``r mod B`` of lip, gaze, blink by ``cycle_step · σ · noise``;
        ``parts`` (n, 2, S, S) are the mouth and eye maps, ``rows`` (n,) bool the rows that have them.  Mean
        squared image change outside the edited factor's map, over the rows that have maps."""
        n = lam.shape[0]
        edited, _, pick, _ = _edit_one_block(self.mae, self.cfg.cycle_step, lam, h, feats, noise,
                                             self.locality_blocks)
        allowed = parts[torch.arange(n, device=lam.device), self.locality_parts[pick]]  # (n, S, S)
        change = (edited - recon).pow(2).sum(dim=1)  # (n, S, S)
        per_row = (change * (1.0 - allowed)).flatten(1).mean(dim=1)  # (n,)
        w = rows.to(per_row.dtype)
        return (per_row * w).sum() / w.sum().clamp_min(1.0)

    def _counterfactual(self, batch: Stage1Batch, mean: Tensor) -> tuple[Tensor, Tensor]:
        """Counterfactual terms (see ``Stage1Config``) for driving-frame coefficients ``mean`` (b·F, M):
        ``(squared change of the other blocks' coefficients in units of σ, mean over each block's coefficients,
        then over the other blocks and the frames (a one-coefficient blink block counts as much as the residual);
        label error of the swapped frames)``; zeros when no frame has a counterfactual."""
        block = batch.counter_block.flatten()  # (b·F,)
        rows = block >= 0
        if not bool(rows.any()):
            return mean.new_zeros(()), mean.new_zeros(())
        read, _ = self.mae.coefficients_posterior(batch.counter.flatten(0, 1)[rows])  # (n, M)
        sigma = mean.detach().std(dim=0).clamp_min(CYCLE_SIGMA_FLOOR)  # (M,)
        blocks = self.all_blocks.to(read.dtype)  # (B, M)
        per_block = (((read - mean[rows]) / sigma) ** 2) @ (blocks / blocks.sum(dim=1, keepdim=True)).T  # (n, B)
        others = 1.0 - torch.eye(blocks.shape[0], dtype=read.dtype, device=read.device)[block[rows]]  # (n, B)
        keep_err = (per_block * others).sum() / others.sum().clamp_min(1.0)
        target = batch.counter_targets.flatten(0, 1)[rows]  # (n, K)
        labels = masked_label_loss(read[:, self.axis_index], target, torch.ones_like(target, dtype=torch.bool),
                                   self.cfg.label_loss)
        return keep_err, labels

    def forward(self, batch: Stage1Batch) -> tuple[Tensor, dict[str, Tensor]]:
        cfg, w = self.cfg, self.cfg.weights
        b, F = batch.driving.shape[:2]
        target = batch.driving.flatten(0, 1)  # (b·F, 3, S, S)
        mean_d, logvar_d = self.mae.coefficients_posterior(target)  # (b·F, M)
        zero = mean_d.new_zeros(())
        if self.renders:
            lam_d = mean_d
            if self.vae and logvar_d is not None:
                lam_d = mean_d + torch.exp(0.5 * logvar_d) * batch.eps.reshape(b * F, -1)
            lam_r = torch.where(self.render_detached, lam_d.detach(), lam_d) if cfg.detach_render else lam_d
            h_s, _, _, feats = self.mae.encode_posterior(batch.source)
            h_d = h_s.repeat_interleave(F, dim=0)  # (b·F, W): each driving frame's source appearance
            motion_d = self.mae.motion_from_coefficients(lam_r)  # (b·F, W)
            recon = self.mae.render(h_d + motion_d, feats, motion=motion_d)  # (b·F, 3, S, S), row n uses feats[n // F]
            loss, parts = reconstruction_loss(recon, target, scales=cfg.scales, l1_weight=w.recon_l1,
                                              ssim_weight=w.recon_ssim, region=batch.region.flatten(0, 1),
                                              region_weight=w.recon_region)
        else:  # encoder-only phase: no term reads a rendered frame; the zero keeps the encoders in the graph, so a
            # batch on which no term is active (e.g. no counterfactual frame) still back-propagates
            loss, parts = 0.0 * mean_d.sum(), {"l1": zero, "ssim": zero, "l1_region": zero}
        metrics = dict(parts)
        blocks = split_coefficients(mean_d, self.layout)
        groups = _groups(b, cfg.contrast_group)

        lip_nce = zero
        if w.lip_nce > 0 and "lip" in blocks:
            fa = self._audio_features(batch, F)  # (b, F, D_f)
            lip = blocks["lip"].reshape(b, F, -1)  # (b, F, k)
            lip_nce = torch.stack([
                info_nce_loss(self.heads["lip_audio"](_standardize(fa[g].flatten(0, 1))),
                              self.heads["lip_visual"](_standardize(lip[g].flatten(0, 1))), cfg.nce_temperature)
                for g in groups]).mean()
            loss = loss + w.lip_nce * lip_nce
        metrics["lip_nce"] = lip_nce.detach()

        picked = mean_d[:, self.axis_index].reshape(b, F, -1)  # (b, F, K)
        gaze_targets = None
        for name in ("lip", "pose", "gaze", "blink"):
            cols = [j for j, a in enumerate(self.axes) if a[1] == name]
            term = zero
            if cols:
                term = torch.stack([masked_label_loss(picked[i][..., cols], batch.targets[i][..., cols],
                                                      batch.target_mask[i][..., cols], cfg.label_loss)
                                    for i in range(b)]).mean()
                loss = loss + getattr(w, name) * term
                if name == "gaze" and len(cols) == 2:
                    gaze_targets = batch.targets[..., cols]
            metrics[name] = term.detach()

        gaze_nce = zero
        if w.gaze_nce > 0 and "gaze" in blocks and blocks["gaze"].shape[-1] == 2:
            keys = self._gaze_keys(batch, gaze_targets)  # (b, F, 2)
            u = gaze_direction(blocks["gaze"].reshape(b, F, 2))
            k = gaze_direction(keys)
            gaze_nce = torch.stack([info_nce_loss(u[g].flatten(0, 1), k[g].flatten(0, 1), cfg.gaze_temperature,
                                                  normalize=False) for g in groups]).mean()
            loss = loss + w.gaze_nce * gaze_nce
        metrics["gaze_nce"] = gaze_nce.detach()

        decor = zero
        if w.decorrelation > 0:
            sizes = [blk.size for blk in self.layout.blocks]
            per_sample = mean_d.reshape(b, F, -1)
            decor = torch.stack([decorrelation_loss(per_sample[g].flatten(0, 1), sizes) for g in groups]).mean()
            loss = loss + w.decorrelation * decor
        metrics["decorrelation"] = decor.detach()

        coef = zero
        if w.coefficient_l2 > 0:
            # Without it the unsupervised residual block drifted to a constant of norm ~50 within 500 steps: the
            # latent was then dominated by it, the 64² warp switched itself off (mask ≈ 0.02) and edits of the
            # supervised axes (|λ| ≲ 0.5) no longer moved the render.  Only coefficients without a label are
            # penalised: the labelled axes have their own targets.
            coef = mean_d[:, self.free_index].pow(2).mean() if self.free_index.numel() else zero
            loss = loss + w.coefficient_l2 * coef
        metrics["coefficient_l2"] = coef.detach()

        kl = zero
        if self.vae and logvar_d is not None and w.kl > 0:
            kl = gaussian_kl_loss(mean_d, logvar_d)
            loss = loss + w.kl * kl
        metrics["kl"] = kl.detach()
        cycle = zero
        if w.cycle > 0 and batch.edit is not None:
            cycle = self._cycle(recon, lam_r, h_d, feats, batch.edit.flatten(0, 1))
            loss = loss + w.cycle * cycle
        metrics["cycle"] = cycle.detach()
        local = zero
        if w.locality > 0 and batch.edit is not None and batch.parts is not None:
            local = self._locality(recon, lam_r, h_d, feats, batch.edit.flatten(0, 1),
                                   batch.parts.flatten(0, 1), batch.parts_mask.repeat_interleave(F))
            loss = loss + w.locality * local
        metrics["locality"] = local.detach()
        keep = counter_labels = zero
        if w.counterfactual > 0 and batch.counter is not None:
            keep, counter_labels = self._counterfactual(batch, mean_d)
            loss = loss + w.counterfactual * (keep + counter_labels)
        metrics["counterfactual"], metrics["counterfactual_labels"] = keep.detach(), counter_labels.detach()
        if self.adversarial is not None and w.adversarial > 0:
            adv = self.adversarial(recon, target)
            loss = loss + w.adversarial * adv
            metrics["adversarial"] = adv.detach()
        metrics["loss"] = loss.detach()
        return loss, metrics


class Stage2Objective(nn.Module):
    """Stage 2: conditional OT flow matching of the FMT on motion-latent windows.

    Args:
        model: the DEMO model (``fmt`` and, if enabled, ``audio_encoder.audio_projection`` are trained).
        cfg: stage-2 settings.
    """

    def __init__(self, model: DemoModel, cfg: Stage2Config):
        super().__init__()
        self.fmt = model.fmt
        self.audio_projection = model.audio_encoder.audio_projection
        self.cfg = cfg
        we = emotion_condition("neutral", batch=1)  # (1, 1, 7)
        self.register_buffer("neutral", we.reshape(1, 1, -1), persistent=False)

    def forward(self, batch: Stage2Batch) -> tuple[Tensor, dict[str, Tensor]]:
        B = batch.x_1.shape[0]
        wa = self.audio_projection(batch.feat) * batch.keep_audio[:, None, None]  # (B, L, A)
        prev_wa = self.audio_projection(batch.prev_feat) * (~batch.first)[:, None, None].to(batch.feat.dtype)
        we = self.neutral.to(batch.x_1.dtype).expand(B, 1, -1) * batch.keep_emotion[:, None, None]  # (B, 1, E)
        wr = batch.wr * batch.keep_reference[:, None]  # (B, W)
        basis_fn = self.fmt.latent_basis  # set for flow_subspace models (the dictionary is frozen in stage 2)
        basis = None if basis_fn is None else basis_fn().detach()  # (W, M)
        scale = None if basis is None else self.fmt.latent_scale  # (M,) or None
        loss = flow_matching_loss(self.fmt, batch.x_0, batch.x_1, batch.t, prev_x=batch.prev_x, basis=basis,
                                  scale=scale, wr=wr, wa=wa,
                                  prev_wa=prev_wa, we=we)
        return loss, {"loss": loss.detach(), "fm": loss.detach()}
