"""The synthetic benchmark: a DEMO model against ground-truth factors on held-out identities and sentences.

:func:`run_benchmark` reads ``num_clips`` clips of a test split (:mod:`.dataset` format) and measures:

* **reconstruction** — PSNR of driving frames decoded from the first frame's appearance + their own motion;
* **probe** — a ridge probe (:mod:`.metrics`) from motion coefficients to the 12 ground-truth parameters,
  cross-fitted on two halves of the clips (or fitted on ``probe_dir``); its R² per parameter and the
  encoder's semantic axes read against the labels (``axis_mae``, e.g. is pose yaw calibrated in degrees);
  ``identity_share`` — share of each block's coefficient variance that lies between clips (identity,
  sentence) rather than within them (motion); compare with the labels' share in the details;
* **disentanglement** — each factor's block is moved by a probe-calibrated step (``edit_std`` standard
  deviations of its strongest parameter, towards the data mean), rendered and re-encoded; ``leakage.f->g``
  is g's RMS change as a fraction of f's own (both in standard deviations); plus DCI purity per block;
  ``encoder_leakage.f->g`` (for information) is the same ratio for the encoders alone: the synthetic renderer
  draws each frame again with f's strongest parameter (``STRONGEST``) moved by ``edit_std`` label standard
  deviations towards the data mean, and both ground-truth frames are encoded and read by the probe — the part of
  the leakage no renderer can remove (the encoders read one factor's pixels as another factor);
  ``pose_freeze_motion`` (for information) — the pose block held at each clip's first frame, the clip's own
  other coefficients rendered and re-encoded: the RMS motion of the probe's pose parameters that is left, as a
  fraction of that with the pose free (0 = a pose freeze holds the head still);
* **lip sync** — motion sampled from each clip's audio through :mod:`demo_core.pipeline` (source = first
  frame, fixed seed), mouth opening read by the probe, Pearson r and cross-correlation lag vs the labels;
* **pose control** — pose.yaw set through the axis to each of ``YAW_TARGETS`` on encoded test frames
  (``yaw_error_*``; the same on generated frames in the details) and by the keyframe JSON ``KEYFRAME_JSON``
  (15° yaw at 3 s) on generated motion, rendered, re-encoded, read by the axis and by the probe (degrees); the
  edits use the render knots measured on the clip's first frame, as the pipeline does for a portrait
  (:func:`~demo_core.pipeline.portrait_factor_space`);
  pose driven by the next clip's encoded pose (absolute), by conditioned sampling and by ``replace_factor``,
  read by the probe against that clip's labels, with the lip correlation of the conditioned motion;
  ``lip_sync_r_rendered`` / ``lip_sync_r_axis`` read the mouth from re-encoded frames / the lip.open axis;
* **smoothness** — mean squared second difference of generated vs ground-truth trajectories per factor;
* **factor calibration** — the FLOAT-family calibration (:func:`~demo_core.motion.calibration.calibrate_autoencoder`,
  free assignment as in the calibration node) applied to this model as if its layout were unknown, on frame 0
  of the first ``CALIBRATION_PORTRAITS`` test clips (effects averaged, as the node does for a batch of
  portraits; clip 0 alone in the details), each direction stepped by ε = ``CALIBRATION_EPSILON_STD`` × its
  coefficient's standard deviation over the test clips (:func:`~demo_core.motion.calibration.coefficient_steps`:
  a move the model makes, judged at its own size); ``calibration_overlap.{pose,lip,eyes}`` is the subspace
  overlap (:func:`~demo_core.motion.calibration_check.subspace_overlap`, 1 = same) of each calibrated block
  with the true one (eyes = gaze + blink) over the *active* directions only — those whose
  encoded coefficients vary on the test clips (std > ``CALIBRATION_ACTIVE_FRACTION`` × the largest): a
  direction the encoder never uses (collapsed free lip or residual coordinates) cannot be identified by
  rendering.  ``calibration_overlap_all.*`` counts every direction (for information).

Errors in degrees are mean absolute errors; "standard deviations" are those of the probe's fitting labels.
Every figure has a target (``METRIC_TARGETS``, None = for information; targets not set by issue 7 — PSNR,
probe R², edit gain, DCI purity, smoothness — are provisional).  Deterministic given ``seed`` (to float64
rounding of the probe's linear algebra).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DemoInputError
from ..flow.window_sampler import SamplerSettings
from ..motion.calibration import calibrate_autoencoder, coefficient_steps
from ..motion.calibration_check import (CALIBRATED_BLOCKS, active_directions, calibration_overlaps,
                                        direction_report)
from ..motion.conditioning import sample_motion_conditioned
from ..motion.edits import replace_factor, set_axis
from ..motion.factor_sidecar import SCORE_CATEGORIES
from ..motion.factor_space import FactorSpace
from ..motion.keyframe_edits import apply_keyframes
from ..motion.render_axes import portrait_render_layout
from ..motion.keyframes import evaluate_keyframes, parse_keyframes
from ..motion.length_matching import match_length
from ..pipeline import GenerationSettings, encode_audio, encode_portrait, make_generator, sample_motion
from .dataset import list_clips, load_clip, load_identity
from .head import HeadRenderer
from .identity import Identity
from .metrics import (LinearProbe, angle_error, block_purity, cross_correlation_lag, dci_scores, fit_linear_probe,
                      leakage_ratio, motion_smoothness, pearson_correlation, psnr, r2_score)
from .params import FACTOR_NAMES, PARAM_NAMES, FrameParams

__all__ = ["Target", "METRIC_TARGETS", "YAW_TARGETS", "STRONGEST", "KEYFRAME_JSON", "CALIBRATION_EPSILON_STD",
           "CALIBRATION_ACTIVE_FRACTION", "CALIBRATION_PORTRAITS", "run_benchmark"]

FACTORS = tuple(FACTOR_NAMES)  # lip, pose, gaze, blink
COLS = {f: [PARAM_NAMES.index(p) for p in names] for f, names in FACTOR_NAMES.items()}
ANGLES = [PARAM_NAMES.index(p) for p in ("yaw", "pitch", "roll")]
YAW, MOUTH = PARAM_NAMES.index("yaw"), PARAM_NAMES.index("mouth_open")
YAW_TARGETS = (-20.0, -10.0, 10.0, 20.0)
STRONGEST = {"lip": "mouth_open", "pose": "yaw", "gaze": "gaze_x", "blink": "blink"}  # encoder-leakage edits
KEYFRAME_TIME, KEYFRAME_YAW = 3.0, 15.0
PROBE_RIDGE = 1e-3
KEYFRAME_JSON = '{"pose.yaw": {"mode": "absolute", "interp": "smooth", "keys": [[0.0, 0.0], [3.0, 15.0]]}}'
CALIBRATION_EPSILON_STD = 2.0  # calibration step ε per direction, in units of its coefficient std over the test clips
CALIBRATION_ACTIVE_FRACTION = 0.02  # active direction: coefficient std > this × the largest
CALIBRATION_PORTRAITS = 4  # calibration measures frame 0 of this many test clips and averages the effects


@dataclass(frozen=True)
class Target:
    """A pass condition: ``op`` is ``">="``, ``"<"``, ``"<="`` or ``"|x|<="`` against ``value``."""

    op: str
    value: float
    unit: str = ""

    def check(self, x: float) -> bool:
        if not math.isfinite(x):
            return False
        v = abs(x) if self.op == "|x|<=" else x
        return {">=": v >= self.value, "<": v < self.value}.get(self.op, v <= self.value)

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}{' ' + self.unit if self.unit else ''}"


def _targets() -> dict[str, Target | None]:
    t: dict[str, Target | None] = {"recon_psnr": Target(">=", 25.0, "dB")}
    t.update({f"probe_r2.{p}": Target(">=", 0.9) for p in PARAM_NAMES})
    t.update({f"axis_mae.{p}": Target("<", 2.0, "deg") if p in ("yaw", "pitch", "roll") else None
              for p in PARAM_NAMES})
    t.update({f"leakage.{f}->{g}": Target("<", 0.05) for f in FACTORS for g in FACTORS if g != f})
    t.update({f"encoder_leakage.{f}->{g}": None for f in FACTORS for g in FACTORS if g != f})
    t["pose_freeze_motion"] = None
    t.update({f"edit_gain.{f}": Target(">=", 0.5) for f in FACTORS})
    t.update({f"dci_purity.{f}": Target(">=", 0.9) for f in FACTORS})
    t.update({f"identity_share.{f}": None for f in FACTORS})
    t.update({"dci_disentanglement": None, "dci_completeness": None, "lip_sync_r": Target(">=", 0.8),
              "lip_sync_lag": Target("|x|<=", 1.0, "frames"), "lip_sync_r_rendered": None,
              "lip_sync_r_axis": None})
    t.update({k: Target("<", 2.0, "deg") for k in ("yaw_error_axis", "yaw_error_probe", "keyframe_yaw_error_axis",
                                                  "keyframe_yaw_error_probe", "driven_pose_error_conditioned",
                                                  "driven_pose_error_replace")})
    t["driven_lip_r"] = Target(">=", 0.8)
    t.update({f"smoothness_ratio.{f}": Target("<=", 1.5) for f in FACTORS})
    t.update({f"calibration_overlap.{k}": Target(">=", 0.9) for k in CALIBRATED_BLOCKS})  # issue 3
    t.update({f"calibration_overlap_all.{k}": None for k in CALIBRATED_BLOCKS})
    return t


METRIC_TARGETS: dict[str, Target | None] = _targets()


@dataclass
class _Clip:
    name: str
    frames: Tensor  # (T, 3, S, S) in [-1, 1]
    params: Tensor  # (T, 12) ground truth, PARAM_NAMES order
    waveform: Tensor  # (n,)
    sample_rate: int
    identity: Identity | None  # the synthetic face (None when the labels do not store it)
    lam: Tensor  # (T, M) encoded coefficients
    h: Tensor  # (1, W) appearance of frame 0
    feats: list  # encoder features of frame 0


class _Bench:
    """Shared state of one run: the model's pieces, the clips and the probes."""

    def __init__(self, model, device, batch: int):
        self.model, self.mae, self.device, self.batch = model, model.motion_autoencoder, device, batch
        self.layout = model.cfg.factors
        self.Q = self.mae.directions()  # (W, M)
        self.space = FactorSpace(self.Q, self.layout)
        self.slices = self.layout.slices()
        self.probes: list[LinearProbe] = []
        self._portrait_spaces: dict[str, FactorSpace] = {}
        self.axis_columns = _axis_columns(self.layout)

    def encode(self, images: Tensor) -> tuple[Tensor, Tensor, list]:
        """(N, 3, S, S) → h (N, W), lam (N, M), feats of the first chunk."""
        out = [self.mae.encode(images[i:i + self.batch]) for i in range(0, images.shape[0], self.batch)]
        return torch.cat([o[0] for o in out]), torch.cat([o[1] for o in out]), out[0][2]

    def render(self, clip: _Clip, motion: Tensor) -> Tensor:
        """Motion latents (K, W) on the clip's first-frame appearance → frames (K, 3, S, S) in [-1, 1]."""
        feats = [f[:1] for f in clip.feats]
        return self.mae.decode(clip.h, feats, motion[None], chunk_size=self.batch)[0].clamp(-1.0, 1.0)

    def reencode(self, clip: _Clip, motion: Tensor) -> Tensor:
        """Render then encode: coefficients (K, M) of what the decoder actually drew."""
        return self.encode(self.render(clip, motion))[1]

    def read(self, i: int, lam: Tensor) -> Tensor:
        """Ground-truth parameters (K, 12) read by the probe not fitted on clip ``i``."""
        return self.probes[i % len(self.probes)].predict(lam)

    def portrait_space(self, clip: _Clip) -> FactorSpace:
        """The factor space with render knots measured on the clip's first frame (as sampling motion for a
        portrait does, :func:`~demo_core.pipeline.portrait_factor_space`)."""
        space = self._portrait_spaces.get(clip.name)
        if space is None:
            layout = portrait_render_layout(self.model, clip.h, clip.feats, self.mae.motion_from_coefficients(clip.lam[:1]))
            space = self._portrait_spaces[clip.name] = FactorSpace(self.Q, layout)
        return space

    def yaw_axis(self, lam: Tensor) -> Tensor:
        """Yaw in degrees through the encoder's semantic axis."""
        block = self.layout.block("pose")
        return block.axis_value("yaw", lam[:, self.slices["pose"].start + block.axis_index("yaw")])


def _axis_columns(layout) -> dict[str, tuple[int, Callable[[Tensor], Tensor]]]:
    """Ground-truth parameter → (coefficient index, coefficient → value in the parameter's unit) for every
    semantic axis that names one: ``{block}_{axis}``, ``mouth_{axis}`` for lip axes, ``axis``, or the block
    of a one-axis block (pose yaw → yaw, gaze x → gaze_x, lip open → mouth_open, blink closure → blink)."""
    out = {}
    for block, s in zip(layout.blocks, layout.slices().values()):
        for k, axis in enumerate(block.axes):
            names = (f"{block.name}_{axis}", f"mouth_{axis}" if block.name == "lip" else "", axis,
                     block.name if len(block.axes) == 1 else "")
            label = next((c for c in names if c in PARAM_NAMES), None)
            if label is not None and label not in out:
                out[label] = (s.start + k, lambda c, _b=block, _a=axis: _b.axis_value(_a, c))
    return out


def _load(stem: Path, size: int, device) -> dict:
    clip = load_clip(stem)
    if clip["params"] is None:
        raise DemoInputError(f"test_dir: clip {stem} has no .labels.npz sidecar (ground truth is needed)")
    frames = clip["frames"]
    if frames.shape[-1] != size or frames.shape[-2] != size:
        frames = F.interpolate(frames, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    identity = load_identity(clip["labels"]) if "identity_json" in clip["labels"] else None
    return {"name": stem.name, "frames": (frames * 2.0 - 1.0).to(device), "waveform": clip["waveform"],
            "params": clip["params"].as_tensor().to(device), "sample_rate": int(clip["sample_rate"]),
            "identity": identity}


def _frame_subset(T: int, k: int, device) -> Tensor:
    return torch.linspace(0, T - 1, min(k, T), device=device).round().long().unique()


def _nanmean(xs) -> float:
    xs = [float(x) for x in xs if math.isfinite(float(x))]
    return sum(xs) / len(xs) if xs else math.nan


def _edit_step(probe: LinearProbe, block: slice, cols: list[int]) -> tuple[Tensor, Tensor]:
    """Unit direction u (k,) in the block's coefficients that moves the factor's parameters most, and the
    predicted change g (p,) of those parameters (in standard deviations) per unit step along u."""
    A = probe.weight_std[block][:, cols] / probe.x_std[block][:, None]  # (k, p)
    u = torch.linalg.svd(A, full_matrices=False)[0][:, 0]  # (k,)
    return u, u @ A


def _add_squares(sq: dict, f: str, delta: Tensor) -> None:
    """Accumulate into ``sq[f][h]`` the squared read-out change ``delta`` (K, 12) (standard deviations) of every
    factor h, mean over h's parameters, summed over the K frames."""
    for h in FACTORS:
        sq[f][h] += float((delta[:, COLS[h]].double() ** 2).mean(1).sum())


def _leakage(sq: dict, count: dict, prefix: str) -> tuple[dict, dict]:
    """RMS effects ``f → h`` from the accumulated squares over ``count[f]`` frames, and the ratios
    ``{prefix}.f->h`` = h's effect / f's own."""
    effect = {f: {h: math.sqrt(sq[f][h] / max(count[f], 1)) for h in FACTORS} for f in FACTORS}
    return effect, {f"{prefix}.{f}->{h}": float(leakage_ratio(effect[f][h], effect[f][f])) for f in FACTORS
                    for h in FACTORS if h != f}


def _edit_section(b: _Bench, clips: list[_Clip], calib: LinearProbe, frames: int, edit_std: float) -> dict:
    sq = {f: {g: 0.0 for g in FACTORS} for f in FACTORS}
    count = {f: 0 for f in FACTORS}
    intended = {f: 0.0 for f in FACTORS}
    base = []
    for i, clip in enumerate(clips):
        idx = _frame_subset(clip.lam.shape[0], frames, b.device)
        lam = clip.lam[idx]  # (K, M)
        z_base = calib.standardize(b.read(i, b.reencode(clip, b.mae.motion_from_coefficients(lam))))  # (K, 12)
        base.append(z_base)
        for f in FACTORS:
            u, g = _edit_step(calib, b.slices[f], COLS[f])
            step = min(edit_std / max(float(g.abs().max()), 1e-8), 4.0 * float(calib.x_std[b.slices[f]].norm()))
            z_now = calib.standardize(calib.predict(lam))[:, COLS[f]]  # (K, p)
            sign = torch.where(z_now @ g.to(z_now) > 0, -1.0, 1.0).to(lam)  # towards the data mean
            edited = lam.clone()
            edited[:, b.slices[f]] += sign[:, None] * (step * u).to(lam)
            delta = calib.standardize(b.read(i, b.reencode(clip, b.mae.motion_from_coefficients(edited)))) - z_base
            _add_squares(sq, f, delta)
            count[f] += int(idx.numel())
            intended[f] += float(((step * g) ** 2).mean()) * int(idx.numel())
    effect, out = _leakage(sq, count, "leakage")
    for f in FACTORS:
        want = math.sqrt(intended[f] / max(count[f], 1))
        out[f"edit_gain.{f}"] = effect[f][f] / want if want > 0 else math.nan
    return {"metrics": out, "effect_std": effect, "base": base}


def _encoder_leakage_section(b: _Bench, clips: list[_Clip], calib: LinearProbe, frames: int, edit_std: float) -> dict:
    """Leakage of the encoders alone, on frames drawn by the synthetic renderer (see the module doc; clips whose
    labels do not store the face are skipped):
    ``{"metrics": {"encoder_leakage.f->g"}, "effect_std": f → g → RMS read-out change in standard deviations}``."""
    sq = {f: {g: 0.0 for g in FACTORS} for f in FACTORS}
    count = 0
    for i, clip in enumerate(clips):
        if clip.identity is None:
            continue
        renderer = HeadRenderer(clip.identity, clip.frames.shape[-1], b.device)
        idx = _frame_subset(clip.params.shape[0], frames, b.device)
        params = clip.params[idx]  # (K, 12)

        def read(p: Tensor) -> Tensor:
            frame = renderer.render(FrameParams.from_dict({n: p[:, k] for k, n in enumerate(PARAM_NAMES)}))
            return calib.standardize(b.read(i, b.encode(frame.to(b.device) * 2.0 - 1.0)[1]))  # (K, 12)

        z_base = read(params)
        for f in FACTORS:
            j = PARAM_NAMES.index(STRONGEST[f])
            sign = torch.where(calib.standardize(params)[:, j] > 0, -1.0, 1.0).to(params)  # towards the mean
            moved = params.clone()
            moved[:, j] += sign * edit_std * float(calib.y_std[j])
            _add_squares(sq, f, read(moved) - z_base)
        count += int(idx.numel())
    effect, out = _leakage(sq, {f: count for f in FACTORS}, "encoder_leakage")
    return {"metrics": out, "effect_std": effect}


def _pose_freeze_section(b: _Bench, clips: list[_Clip], calib: LinearProbe, frames: int,
                         base: list[Tensor]) -> tuple[float, list]:
    """Head motion left when the pose block is held at the first frame (see the module doc): the ratio over all
    clips, and per clip ``{"clip", "ratio"}``.  ``base``: per clip, the standardised read-out (K, 12) of its
    own motion on the same frames, rendered and re-encoded (from :func:`_edit_section`)."""
    block, cols = b.slices["pose"], COLS["pose"]

    def spread(z: Tensor) -> float:  # squared deviation of the pose read-out from its clip mean
        z = z[:, cols]
        return float(((z - z.mean(dim=0)) ** 2).sum())

    left = free = 0.0
    per_clip = []
    for i, clip in enumerate(clips):
        lam = clip.lam[_frame_subset(clip.lam.shape[0], frames, b.device)]  # (K, M), frame 0 first
        held = lam.clone()
        held[:, block] = lam[:1, block]
        sq_free = spread(base[i])
        sq_left = spread(calib.standardize(b.read(i, b.reencode(clip, b.mae.motion_from_coefficients(held)))))
        free, left = free + sq_free, left + sq_left
        per_clip.append({"clip": clip.name, "ratio": math.sqrt(sq_left / sq_free) if sq_free > 0 else math.nan})
    return (math.sqrt(left / free) if free > 0 else math.nan), per_clip


def _yaw_section(b: _Bench, clips: list[_Clip], motions: list[Tensor], frames: int) -> tuple[dict, dict]:
    """Set pose.yaw to each of ``YAW_TARGETS`` on a few frames of every clip's motion (T, W), render,
    re-encode and read the yaw back through the encoder's axis and through the probe (errors in degrees)."""
    errs_axis, errs_probe, readback = [], [], {}
    for theta in YAW_TARGETS:
        reads_a, reads_p = [], []
        for i, (clip, motion) in enumerate(zip(clips, motions)):
            idx = _frame_subset(motion.shape[0], frames, b.device)
            lam = b.reencode(clip, set_axis(motion[None, idx], b.portrait_space(clip), "pose", "yaw", theta)[0])
            reads_a.append(b.yaw_axis(lam))
            reads_p.append(b.read(i, lam)[:, YAW])
        ra, rp = torch.cat(reads_a), torch.cat(reads_p)
        errs_axis.append(angle_error(ra, theta))
        errs_probe.append(angle_error(rp, theta))
        readback[str(theta)] = {"axis": float(ra.mean()), "probe": float(rp.mean()),
                                "error_axis": float(errs_axis[-1].mean()), "error_probe": float(errs_probe[-1].mean())}
    m = {"yaw_error_axis": float(torch.cat(errs_axis).mean()), "yaw_error_probe": float(torch.cat(errs_probe).mean())}
    return m, readback


def _generate(b: _Bench, clip: _Clip, waveform: Tensor, settings: GenerationSettings) -> tuple:
    portrait = encode_portrait(b.model, (clip.frames[0].permute(1, 2, 0) + 1.0) / 2.0, crop="none")
    audio = encode_audio(b.model, waveform, clip.sample_rate, emotion="neutral")
    motion = sample_motion(b.model, portrait, audio, settings, generator=make_generator(settings.seed, b.device))
    return portrait, audio, motion  # motion (1, T, W)


def _lip_r(gt: Tensor, pred: Tensor) -> float:
    n = min(gt.shape[0], pred.shape[0])
    return float(pearson_correlation(gt[:n], pred[:n]))


def run_benchmark(model, test_dir: str | Path, *, num_clips: int = 12, seed: int = 0, device=None,
                  probe_dir: str | Path | None = None, num_probe_clips: int = 32, steps: int = 10,
                  frames_per_clip: int = 8,
                  edit_std: float = 1.0, max_lag: int = 5, batch: int = 64,
                  log: Callable[[str], None] | None = None) -> dict:
    """Run the benchmark (see the module doc) on the first ``num_clips`` clips of ``test_dir``.

    Args:
        model: a DEMO-native model (:class:`~demo_core.models.demo_model.DemoModel`) with a trained stage 1
            (stage-2 figures are meaningless until its FMT is trained).
        test_dir: a split folder with ``.mp4``/``.wav``/``.labels.npz`` clips (``.frames.npy`` used if present).
        num_clips: clips used (sorted by name); at least 2 unless ``probe_dir`` is given.
        seed: sampling seed (the same for every clip); the run is deterministic given it.
        device: where to compute; the model must already be there (default: the model's device).
        probe_dir: fit the probe on the first ``num_probe_clips`` clips of this folder (e.g. the train
            split) instead of cross-fitting two halves of the test clips.
        num_probe_clips: clips of ``probe_dir`` used.
        steps: ODE steps per window for generated motion.
        frames_per_clip: frames per clip for the edit and yaw-axis measurements (evenly spaced).
        edit_std: factor edit size, in standard deviations of the factor's strongest parameter.
        max_lag: largest lip-sync lag searched, in frames.
        batch: frames per encoder/decoder call.
        log: optional ``log(message)`` for progress.

    Returns:
        ``{"metrics": {name: {"value", "target", "ok", "unit"}}, "details": {...}, "settings": {...},
        "clips": [names], "seconds": {section: s}}`` with every name of ``METRIC_TARGETS``.
    """
    layout = getattr(getattr(model, "cfg", None), "factors", None)
    if layout is None or not set(FACTORS) <= set(layout.names) or "yaw" not in layout.block("pose").axes:
        raise DemoInputError("model: run_benchmark needs a DEMO-native model whose factor layout has lip, pose "
                             "(with a yaw axis), gaze and blink blocks")
    device = torch.device(device) if device is not None else model.device
    if torch.device(device) != model.device:
        raise DemoInputError(f"device: the model is on {model.device}, not on {device}; move it first")
    stems = list_clips(test_dir)[:num_clips]
    if len(stems) < (1 if probe_dir else 2):
        raise DemoInputError(f"test_dir: found {len(stems)} clips in {test_dir}; need at least 2 (or a probe_dir)")
    say = log or (lambda _m: None)
    settings = GenerationSettings(steps=steps, seed=seed, emotion="neutral")
    fps = float(model.cfg.fps)
    seconds, t0 = {}, time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t0
        seconds[name] = round(time.perf_counter() - t0, 2)
        say(f"{name}: {seconds[name]:.1f} s")
        t0 = time.perf_counter()

    with torch.inference_mode():
        b = _Bench(model, device, batch)
        clips = []
        for stem in stems:
            c = _load(stem, model.cfg.image_size, device)
            h, lam, feats = b.encode(c["frames"])
            clips.append(_Clip(**c, lam=lam, h=h[:1], feats=[f[:1] for f in feats]))
        probe_clips = clips if probe_dir is None else [
            _Clip(**c, lam=b.encode(c["frames"])[1], h=None, feats=[])
            for c in (_load(s, model.cfg.image_size, device) for s in list_clips(probe_dir)[:num_probe_clips])]
        lap("encode")
        m, d = _probe_section(b, clips, probe_clips, probe_dir is not None)
        lap("probe")
        recon = []
        for clip in clips:
            rendered = b.render(clip, b.mae.motion_from_coefficients(clip.lam))
            recon.append(psnr((rendered + 1) / 2, (clip.frames + 1) / 2, batch_dims=1).mean())
        m["recon_psnr"] = float(torch.stack(recon).mean())
        lap("reconstruction")
        m2, d["factor_calibration"] = _calibration_section(b, clips)
        m.update(m2)
        lap("calibration")
        calib = d.pop("calibration")
        edits = _edit_section(b, clips, calib, frames_per_clip, edit_std)
        m.update(edits["metrics"])
        d["edit_effect_std"] = edits["effect_std"]
        enc = _encoder_leakage_section(b, clips, calib, frames_per_clip, edit_std)
        m.update(enc["metrics"])
        d["encoder_edit_effect_std"] = enc["effect_std"]
        m["pose_freeze_motion"], d["pose_freeze"] = _pose_freeze_section(b, clips, calib, frames_per_clip,
                                                                         edits["base"])
        m2, d["yaw_readback"] = _yaw_section(b, clips, [b.mae.motion_from_coefficients(c.lam) for c in clips],
                                             frames_per_clip)
        m.update(m2)
        lap("edits")
        m2, d2 = _generation_section(b, clips, settings, fps, frames_per_clip, max_lag)
        m.update(m2)
        d.update(d2)
        lap("generation")
    metrics = {}
    for name, target in METRIC_TARGETS.items():
        v = float(m.get(name, math.nan))
        metrics[name] = {"value": v, "target": None if target is None else str(target),
                         "ok": None if target is None else target.check(v),
                         "unit": "" if target is None else target.unit}
    return {"metrics": metrics, "details": d, "clips": [c.name for c in clips], "seconds": seconds,
            "settings": {"num_clips": len(clips), "seed": seed, "steps": steps, "frames_per_clip": frames_per_clip,
                         "edit_std": edit_std, "max_lag": max_lag, "device": str(device),
                         "probe": f"{probe_dir} ({len(probe_clips)} clips)" if probe_dir else
                         "cross-fitted on two halves of the test clips",
                         "keyframes": KEYFRAME_JSON, "yaw_targets": list(YAW_TARGETS)}}


def _calibration_section(b: _Bench, clips: list[_Clip]) -> tuple[dict, dict]:
    """Calibrate the model's dictionary on frame 0 of the first ``CALIBRATION_PORTRAITS`` clips ignoring its
    layout; overlaps with the true blocks (and, in the details, those of clip 0 alone).

    Free assignment (no ``sizes``): the calibration must find the block sizes itself, as it does for a
    FLOAT-family checkpoint.  Metrics: ``calibration_overlap.<block>`` over active directions,
    ``calibration_overlap_all.<block>`` over all; details say where each direction went.
    """
    used = clips[:CALIBRATION_PORTRAITS]
    lam = torch.cat([c.lam for c in clips])  # (N, M)
    std = lam.double().std(dim=0)
    active = active_directions(lam, CALIBRATION_ACTIVE_FRACTION)
    if float(std.max()) > 0:  # each direction measured at the size the test clips move it
        epsilon = coefficient_steps(lam, scale=CALIBRATION_EPSILON_STD, floor=CALIBRATION_ACTIVE_FRACTION)
    else:
        epsilon = 0.5  # the calibration's own default when the clips do not move at all
    Q = b.Q.detach()

    def calibrate(cs: list[_Clip]):  # frame 0 of each clip
        rest = b.mae.motion_from_coefficients(torch.cat([c.lam[:1] for c in cs]))
        feats = [torch.cat(level) for level in zip(*(c.feats for c in cs))]
        return calibrate_autoencoder(b.mae, torch.cat([c.h for c in cs]), feats, rest, epsilon=epsilon)

    cal = calibrate(used)
    m = {f"calibration_overlap.{k}": v for k, v in calibration_overlaps(cal, b.layout, Q, active=active).items()}
    m.update({f"calibration_overlap_all.{k}": v for k, v in calibration_overlaps(cal, b.layout, Q).items()})
    rows = direction_report(cal, b.layout)
    steps = torch.as_tensor(epsilon, dtype=torch.float64).reshape(-1).expand(len(rows)).tolist()
    for row in rows:
        i = row["direction"]
        row.update({"active": bool(active[i]), "relative_std": float(std[i] / std.max().clamp_min(1e-300)),
                    "epsilon": steps[i], "scores": dict(zip(SCORE_CATEGORIES, cal.scores[i].tolist()))})
    single = calibrate(used[:1])  # one portrait, as with a single image in the node (for information)
    d = {"clips": [c.name for c in used], "frame": 0,
         "epsilon_std": CALIBRATION_EPSILON_STD if isinstance(epsilon, Tensor) else None, "assignment": "free",
         "active_fraction": CALIBRATION_ACTIVE_FRACTION, "num_active": int(active.sum()),
         "calibrated": {k: list(v) for k, v in cal.directions.items()}, "directions": rows,
         "single_portrait": {"clip": used[0].name, "calibrated": {k: list(v) for k, v in single.directions.items()},
                             **calibration_overlaps(single, b.layout, Q, active=active)}}
    return m, d


def _between_clip_share(parts: list[Tensor]) -> float:
    """Share of the total variance (summed over columns) that lies between clips rather than within them:
    near 1 when the values mostly say *which clip* (identity, sentence), near 0 when they follow per-frame motion."""
    x = torch.cat(parts).double()  # (N, k)
    total = float(((x - x.mean(0)) ** 2).sum())
    within = sum(float(((p.double() - p.double().mean(0)) ** 2).sum()) for p in parts)
    return 1.0 - within / total if total > 0 else math.nan


def _fit(clips: list[_Clip]) -> LinearProbe:
    """The probe: ridge on centred raw coefficients (noise-level coefficients stay unweighted)."""
    x, y = torch.cat([c.lam for c in clips]), torch.cat([c.params for c in clips])
    return fit_linear_probe(x, y, ridge=PROBE_RIDGE, standardize_inputs=False)


def _probe_section(b: _Bench, clips: list[_Clip], probe_clips: list[_Clip], external: bool) -> tuple[dict, dict]:
    cat = lambda cs, k: torch.cat([getattr(c, k) for c in cs])  # noqa: E731
    if external:
        b.probes = [_fit(probe_clips)]
    else:
        b.probes = [_fit(clips[k::2]) for k in (1, 0)]
    read = torch.cat([b.read(i, c.lam) for i, c in enumerate(clips)])  # (N, 12), out of fold
    gt, lam = cat(clips, "params"), cat(clips, "lam")
    r2 = r2_score(read, gt)
    m = {f"probe_r2.{p}": float(r2[j]) for j, p in enumerate(PARAM_NAMES)}
    calib = _fit(probe_clips)
    blocks = {f: b.slices[f] for f in b.layout.names}
    purity = block_purity(calib.importance, blocks, COLS)
    m.update({f"dci_purity.{f}": purity[f] for f in FACTORS})
    dci = dci_scores(calib.importance, COLS)
    m.update({"dci_disentanglement": dci["disentanglement"], "dci_completeness": dci["completeness"]})
    axes = {}
    for label, (column, value_of) in b.axis_columns.items():
        j, value = PARAM_NAMES.index(label), value_of(lam[:, column])
        slope = float(torch.linalg.lstsq(torch.stack([gt[:, j], torch.ones_like(value)], 1).double(),
                                         value.double()[:, None]).solution[0])
        axes[label] = {"mae": float((value - gt[:, j]).abs().mean()), "slope": slope,
                       "r": float(pearson_correlation(value, gt[:, j]))}
        m[f"axis_mae.{label}"] = axes[label]["mae"]
    d_split = {}
    for f in FACTORS:
        shares = [_between_clip_share([c.lam[:, b.slices[f]] for c in clips]),
                  _between_clip_share([calib.standardize(c.params)[:, COLS[f]] for c in clips])]
        m[f"identity_share.{f}"] = shares[0]
        d_split[f] = {"coefficients": shares[0], "ground_truth": shares[1]}
    residual = {f: float(calib.importance[blocks["residual"]][:, COLS[f]].sum()) for f in FACTORS} \
        if "residual" in blocks else {}
    d = {"probe_r2": {p: m[f"probe_r2.{p}"] for p in PARAM_NAMES}, "axis_readout": axes, "dci": dci,
         "residual_importance": residual, "calibration": calib, "between_clip_variance_share": d_split,
         "gt_std": {p: float(calib.y_std[j]) for j, p in enumerate(PARAM_NAMES)}}
    return m, d


def _generation_section(b: _Bench, clips: list[_Clip], settings, fps: float, frames: int, max_lag: int):
    m, d = {}, {"lip_sync": [], "driven": [], "smoothness": {}}
    gen, lag_list, r_list, rr_list, ra_list = [], [], [], [], []
    jerk = {k: {f: [] for f in FACTORS} for k in ("generated", "ground_truth", "encoded")}
    for i, clip in enumerate(clips):
        portrait, audio, motion = _generate(b, clip, clip.waveform, settings)
        gen.append((portrait, audio, motion))
        lam = b.mae.coefficients_from_motion(motion[0])  # (T, M)
        read, gt = b.read(i, lam), clip.params
        n = min(read.shape[0], gt.shape[0])
        r = _lip_r(gt[:, MOUTH], read[:, MOUTH])
        lag = cross_correlation_lag(gt[:n, MOUTH], read[:n, MOUTH], max_lag)[0] if n > max_lag + 2 else math.nan
        rr = _lip_r(gt[:, MOUTH], b.read(i, b.reencode(clip, motion[0]))[:, MOUTH])
        r_list.append(r)
        lag_list.append(lag)
        rr_list.append(rr)
        column = b.axis_columns.get("mouth_open")
        ra = math.nan if column is None else _lip_r(gt[:, MOUTH], column[1](lam[:, column[0]]))
        ra_list.append(ra)
        d["lip_sync"].append({"clip": clip.name, "r": r, "lag": lag, "r_rendered": rr, "r_axis": ra})
        cal = b.probes[0]
        for key, traj in (("generated", read[:n]), ("ground_truth", gt[:n]), ("encoded", b.read(i, clip.lam)[:n])):
            if n >= 3:
                jerk_p = motion_smoothness(cal.standardize(traj))  # (12,)
                for f in FACTORS:
                    jerk[key][f].append(float(jerk_p[COLS[f]].mean()))
    lags = sorted(x for x in lag_list if math.isfinite(x))
    m.update({"lip_sync_r": _nanmean(r_list), "lip_sync_r_rendered": _nanmean(rr_list),
              "lip_sync_r_axis": _nanmean(ra_list), "lip_sync_lag": float(lags[len(lags) // 2]) if lags else math.nan})
    for f in FACTORS:
        g, t, e = (_nanmean(jerk[k][f]) for k in ("generated", "ground_truth", "encoded"))
        m[f"smoothness_ratio.{f}"] = g / t if t > 0 else math.nan
        d["smoothness"][f] = {"generated": g, "ground_truth": t, "encoded": e}
    d["yaw_readback_generated"] = _yaw_section(b, clips, [g[2][0] for g in gen], frames)[1]
    # keyframe JSON: 15° yaw at 3 s on motion generated for audio long enough (test clips joined)
    need = int(math.ceil((KEYFRAME_TIME + 0.4) * clips[0].sample_rate))
    waves, k = [clips[0].waveform], 1
    while sum(w.shape[0] for w in waves) < need:
        waves.append(clips[k % len(clips)].waveform)
        k += 1
    motion = _generate(b, clips[0], torch.cat(waves), settings)[2]
    T, k3 = motion.shape[1], int(round(KEYFRAME_TIME * fps))
    edited = apply_keyframes(motion, b.portrait_space(clips[0]), KEYFRAME_JSON, fps)
    curve = evaluate_keyframes(parse_keyframes(KEYFRAME_JSON), T, fps, device=b.device)["pose.yaw"]
    lam = b.reencode(clips[0], edited[0])
    ya, yp = b.yaw_axis(lam), b.read(0, lam)[:, YAW]
    m["keyframe_yaw_error_axis"] = float(angle_error(ya[k3], KEYFRAME_YAW))
    m["keyframe_yaw_error_probe"] = float(angle_error(yp[k3], KEYFRAME_YAW))
    d["keyframe"] = {"frame": k3, "num_frames": T, "yaw_axis": float(ya[k3]), "yaw_probe": float(yp[k3]),
                     "curve_mae_axis": float(angle_error(ya, curve).mean()),
                     "curve_mae_probe": float(angle_error(yp, curve).mean())}
    # pose from the next clip (absolute), by conditioned sampling and by replace_factor
    cond_err, repl_err, lip_r = [], [], []
    sampler = SamplerSettings(steps=settings.steps, method=settings.method, a_cfg=settings.a_cfg, e_cfg=settings.e_cfg)
    for i, (clip, (portrait, audio, motion)) in enumerate(zip(clips, gen)):
        drv = clips[(i + 1) % len(clips)]
        T = motion.shape[1]
        pose = match_length(drv.lam[None, :, b.slices["pose"]], T)  # (1, T, 6)
        gt_pose = match_length(drv.params[None][..., ANGLES], T)[0]  # (T, 3)
        cond = sample_motion_conditioned(b.model.fmt, wr=portrait.source_motion, wa=audio.features,
                                         we=audio.emotion, fixed={"pose": pose}, Q=b.Q, layout=b.layout,
                                         settings=sampler, generator=make_generator(settings.seed, b.device))
        repl = replace_factor(motion, b.space, "pose", pose, relative=False)
        errs = [float(angle_error(b.read(i, b.reencode(clip, x[0]))[:, ANGLES], gt_pose).mean()) for x in (cond, repl)]
        lr = _lip_r(clip.params[:, MOUTH], b.read(i, b.mae.coefficients_from_motion(cond[0]))[:, MOUTH])
        cond_err.append(errs[0])
        repl_err.append(errs[1])
        lip_r.append(lr)
        d["driven"].append({"clip": clip.name, "driver": drv.name, "conditioned_deg": errs[0],
                            "replace_deg": errs[1], "lip_r": lr})
    m.update({"driven_pose_error_conditioned": _nanmean(cond_err), "driven_pose_error_replace": _nanmean(repl_err),
              "driven_lip_r": _nanmean(lip_r)})
    return m, d
