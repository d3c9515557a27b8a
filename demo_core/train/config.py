"""Training configuration: one JSON file with four sections.

.. code-block:: json

    {
      "model":  { ... DemoConfig.to_dict() ... },
      "data":   {"root": "data/synthetic/train", "cache_dir": null, "crop": "center", "max_clips": null},
      "stage1": {"steps": 3000, "batch": 8, "frames": 4, "lr": 0.0002, ...},
      "stage2": {"steps": 4000, "batch": 16, "lr": 0.0002, ...}
    }

Every key is optional; missing keys take the defaults documented on the dataclasses below.  ``model`` is a
:class:`~demo_core.models.demo_model.DemoConfig` dict (``family: "demo"``); ``stage1.weights`` and
``stage2`` keys are listed on :class:`Stage1Config` / :class:`Stage2Config`.  Unknown keys raise, so a typo
is never silently ignored.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from ..errors import DemoInputError
from ..models.demo_model import DemoConfig
from .losses import LABEL_LOSSES

__all__ = ["DataConfig", "Stage1Weights", "Stage1Config", "Stage2Config", "TrainConfig", "load_train_config"]


def _from_dict(cls, d: Mapping[str, Any], where: str):
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise DemoInputError(f"training config [{where}]: unknown keys {unknown}; allowed: {sorted(names)}")
    return cls(**d)


def _names(value, key: str, what: str) -> tuple[str, ...]:
    """A list of names as a tuple of str (a bare string is an error, not a list of characters)."""
    if isinstance(value, str):
        raise DemoInputError(f"{key}: expected a list of {what}, got {value!r}")
    return tuple(str(v) for v in value)


@dataclass
class DataConfig:
    """Where the clips are and how they are prepared.

    Attributes:
        root: folder searched recursively for videos (``.mp4 .mov .mkv .avi .webm``); a ``<stem>.labels.npz``
            beside a video adds per-frame labels, ``<stem>.wav`` / ``<stem>.frames.npy`` replace the decoded
            audio / frames when present (the synthetic benchmark writes them).
        cache_dir: decoded clips are cached here as ``.npz`` (default: ``<out>/cache``).
        crop: ``"center"`` (largest centred square), ``"auto"`` (face box of the first frame, fixed for the
            clip) or ``"none"`` (whole frame resized).
        max_clips: use at most this many clips (sorted by path); None = all.
        min_frames: clips with fewer frames at the model fps are skipped.
    """

    root: str = ""
    cache_dir: str | None = None
    crop: str = "center"
    max_clips: int | None = None
    min_frames: int = 8

    def __post_init__(self) -> None:
        if self.crop not in ("center", "auto", "none"):
            raise DemoInputError(f"data.crop must be 'center', 'auto' or 'none', got {self.crop!r}")


@dataclass
class Stage1Weights:
    """Loss weights of stage 1 (0 switches a term off)."""

    recon_l1: float = 1.0  # multi-scale L1
    recon_ssim: float = 1.0  # multi-scale DSSIM
    recon_region: float = 0.0  # extra L1 weight on feature regions (mouth, eyes) from ``<stem>.regions.npy``
    lip_nce: float = 0.1  # audio-visual InfoNCE on the lip block
    lip: float = 1.0  # L1 to lip-shape labels (mouth open/width/round) where the data has them
    pose: float = 1.0  # L1 to pose labels (coefficient units)
    gaze_nce: float = 0.05  # cosine contrastive on gaze directions
    gaze: float = 1.0  # L1 to gaze labels
    blink: float = 1.0  # L1 to blink labels
    decorrelation: float = 0.05  # cross-block correlation penalty
    kl: float = 1e-4  # VAE KL (only with model.vae)
    coefficient_l2: float = 0.0  # mean squared coefficient without a label (keeps unsupervised blocks near 0)
    adversarial: float = 0.0  # generator adversarial loss (needs an adversarial hook; off by default)
    cycle: float = 0.0  # re-encoding consistency of one-factor edits (see Stage1Config.cycle_step)
    locality: float = 0.0  # lip edits stay in the mouth, gaze/blink edits in the eyes (see Stage1Config.cycle_step)
    counterfactual: float = 0.0  # encoders on frames redrawn with one factor swapped (synthetic clips; Stage1Config)


@dataclass
class _Common:
    """Fields shared by both stages."""

    steps: int = 1000  # optimiser steps
    batch: int = 8  # GLOBAL batch (split over processes under torchrun)
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    warmup_steps: int = 100  # linear warm-up from 0
    lr_decay: str = "cosine"  # "cosine" (to 10% at the last step) or "none"
    grad_clip: float = 1.0  # global grad-norm clip (0 = off)
    log_every: int = 10
    ckpt_every: int = 500
    keep_checkpoints: int = 2
    seed: int = 0
    device: str = "cpu"  # "cpu", "cuda" (under torchrun: cuda:LOCAL_RANK)

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)
        if self.steps < 1 or self.batch < 1 or self.lr <= 0:
            raise DemoInputError(f"steps, batch and lr must be positive, got {self.steps}, {self.batch}, {self.lr}")
        if self.lr_decay not in ("cosine", "none"):
            raise DemoInputError(f"lr_decay must be 'cosine' or 'none', got {self.lr_decay!r}")


@dataclass
class Stage1Config(_Common):
    """Stage 1: motion auto-encoder + factor heads + log-mel audio features.

    Attributes:
        frames: consecutive driving frames per sample (all rendered from one source frame of the clip).
        contrast_group: samples per group for the batch-statistics losses (InfoNCE, gaze contrastive,
            decorrelation); the per-process batch must be a multiple of it, which makes the result
            independent of the number of processes.
        nce_temperature: τ of the lip InfoNCE.
        gaze_temperature: τ of the gaze contrastive loss.
        nce_dim: width of the training-only InfoNCE projection heads.
        scales: average-pooling factors of the multi-scale reconstruction loss.
        label_loss: error of the label terms, ``"l1"`` or ``"mse"`` (squared; learns rare events such as blinks).
        weights: loss weights.
        trainable: parameter-name prefixes of the model that are trained (e.g. ``["motion_autoencoder.painter"]``
            trains only the feature painter of an ``--init`` model, everything else frozen); empty: all of
            stage 1's parameters (auto-encoder, factor heads, audio features, InfoNCE heads).
        detach_render: factors whose coefficients reach the renderer detached: the reconstruction loss trains the
            decoder (and painter) to render them but neither moves their encoders, which learn from their own
            label / contrastive terms only, nor back-propagates through the decoder for them (the embedded
            model's gaze phase trains the gaze encoder alone this way, without paying for a decoder backward).
        cycle_step: size of the edits of the re-encoding consistency term (``weights.cycle``), in batch standard
            deviations of each coefficient: every rendered frame is rendered again with one factor block (lip,
            pose, gaze, blink, in turn) moved by ``cycle_step · σ · N(0, 1)``, both renders are encoded, and the
            change read back must equal the edit: the edited block moves by it, every other block stays (in
            units of σ, squared).  It trains the renderer to draw an edit of one factor so that the factor
            encoders read it in that factor only (what the benchmark's leakage and edit-gain figures measure).
        cycle_own: weight of the edited block's read-back error against the other blocks' (1: equal): more keeps
            the edits' render gains, less favours leaving the other factors alone.
        cycle_factors: the blocks the re-encoding term edits (empty: every block but the residual), e.g.
            ``["gaze"]`` to train the renderer to draw gaze edits without pressing on how lip and blink edits read.

    The locality term (``weights.locality``) uses edits of the same size: every rendered frame is rendered
    again with its lip, gaze or blink block (in turn) moved by ``cycle_step · σ · N(0, 1)``, and the squared
    image change outside that factor's map (mouth for lip, eyes for gaze and blink; two-part
    ``<stem>.regions.npy`` sidecars) is penalised (mean over pixels, images in [-1, 1]).  Unlike the
    re-encoding term it does not involve the encoders, so the eyelids may still move the gaze read-out.

    The counterfactual term (``weights.counterfactual``) trains the encoders on pairs that differ in one factor
    only, which the synthetic renderer draws exactly: every driving frame of a synthetic clip (its sidecar stores
    the face) is drawn again with the parameters of one factor (lip, pose, gaze or blink, at random) taken from a
    random frame of a random clip; the coefficients of every other block read from it must equal the driving
    frame's (squared change in units of the batch spread σ of each coefficient, floored like the cycle edits;
    mean over each block, then over the other blocks) and its labelled axes must read the new labels
    (``label_loss``).  It removes what the encoders alone leak: a yaw change read as gaze or blink, a mouth change
    read as gaze (the benchmark's ``encoder_leakage``).
    """

    frames: int = 4
    contrast_group: int = 8
    nce_temperature: float = 0.1
    gaze_temperature: float = 0.05
    nce_dim: int = 64
    scales: tuple[int, ...] = (1, 2, 4)
    label_loss: str = "l1"
    weights: Stage1Weights = field(default_factory=Stage1Weights)
    trainable: tuple[str, ...] = ()
    detach_render: tuple[str, ...] = ()
    cycle_step: float = 1.0
    cycle_own: float = 1.0
    cycle_factors: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.cycle_step > 0 or not self.cycle_own >= 0:
            raise DemoInputError(f"stage1.cycle_step must be > 0 and stage1.cycle_own >= 0, got {self.cycle_step}, "
                                 f"{self.cycle_own}")
        self.trainable = _names(self.trainable, "stage1.trainable", "parameter-name prefixes")
        self.detach_render = _names(self.detach_render, "stage1.detach_render", "factor names")
        self.cycle_factors = _names(self.cycle_factors, "stage1.cycle_factors", "factor names")
        if isinstance(self.weights, Mapping):
            self.weights = _from_dict(Stage1Weights, self.weights, "stage1.weights")
        self.scales = tuple(int(s) for s in self.scales)
        if self.frames < 1 or self.contrast_group < 1:
            raise DemoInputError("stage1.frames and stage1.contrast_group must be >= 1")
        if self.label_loss not in LABEL_LOSSES:
            raise DemoInputError(f"stage1.label_loss: expected one of {list(LABEL_LOSSES)}, got {self.label_loss!r}")


@dataclass
class Stage2Config(_Common):
    """Stage 2: flow matching on the frozen stage-1 motion latents.

    Attributes:
        p_drop_audio: probability of zeroing ``wa`` (classifier-free guidance on audio).
        p_drop_emotion: probability of zeroing ``we``.
        p_drop_reference: probability of zeroing ``wr`` (inference never drops it; regulariser only).
        p_first_window: probability of a first window (prefix and prefix audio zero, window at the clip start).
        ot_coupling: pair noise and data by minibatch OT.
        train_audio_projection: also train the audio encoder's ``audio_projection`` (its features stay frozen).
        smooth: factor → Gaussian σ in frames applied over time to that block's encoded coefficients before
            windows are cut (the stage-1 encoder's per-frame read-out noise, which the flow model would
            otherwise learn to reproduce as jitter; head motion is smooth, lips are not: smooth ``pose`` only).
    """

    batch: int = 16
    p_drop_audio: float = 0.1
    p_drop_emotion: float = 0.1
    p_drop_reference: float = 0.0
    p_first_window: float = 0.2
    ot_coupling: bool = True
    train_audio_projection: bool = True
    smooth: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.smooth = {str(k): float(v) for k, v in dict(self.smooth).items()}
        bad = {k: v for k, v in self.smooth.items() if not (math.isfinite(v) and v >= 0.0)}
        if bad:
            raise DemoInputError(f"stage2.smooth: σ must be a number of frames >= 0, got {bad}")


@dataclass
class TrainConfig:
    """The whole training configuration (see the module doc for the JSON layout)."""

    model: DemoConfig = field(default_factory=DemoConfig)
    data: DataConfig = field(default_factory=DataConfig)
    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)

    def to_dict(self) -> dict[str, Any]:
        s1 = asdict(self.stage1)
        return {"model": self.model.to_dict(), "data": asdict(self.data), "stage1": s1, "stage2": asdict(self.stage2)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        unknown = sorted(set(d) - {"model", "data", "stage1", "stage2", "comment"})
        if unknown:
            raise DemoInputError(f"training config: unknown sections {unknown}")
        return cls(
            model=DemoConfig.from_dict(d.get("model", {})),
            data=_from_dict(DataConfig, d.get("data", {}), "data"),
            stage1=_from_dict(Stage1Config, d.get("stage1", {}), "stage1"),
            stage2=_from_dict(Stage2Config, d.get("stage2", {}), "stage2"),
        )


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``: nested dicts merge key by key, anything else (lists too) replaces."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def _read_config_dict(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The JSON dict of ``path`` with its ``extends`` chain resolved (paths relative to the including file)."""
    if path.resolve() in seen:
        raise DemoInputError(f"training config {path}: 'extends' loops back to itself ({[str(p) for p in seen]})")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DemoInputError(f"training config {path}: cannot be read as JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DemoInputError(f"training config {path}: expected a JSON object, got {type(data).__name__}")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise DemoInputError(f"training config {path}: 'extends' must be a file name, got {parent!r}")
    base = _read_config_dict(path.parent / parent, seen + (path.resolve(),))
    base.pop("comment", None)
    return _merge(base, data)


def load_train_config(path: str | Path) -> TrainConfig:
    """Read a JSON training config (keys documented in this module).

    A config may start from another: ``"extends": "other.json"`` (relative to this file) takes that file's
    settings and overrides them with this one's, merging sections key by key (lists are replaced whole).
    """
    return TrainConfig.from_dict(_read_config_dict(Path(path)))
