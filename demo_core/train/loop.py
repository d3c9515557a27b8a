"""Training loops of both stages: deterministic, resumable, single- or multi-process.

Output folder ``OUT``::

    OUT/cache/                         decoded clips (.npz), shared by both stages
    OUT/stage1/train_config.json       the resolved configuration
    OUT/stage1/metrics.jsonl           one JSON line per logged step (step, lr, loss and its terms, seconds)
    OUT/stage1/checkpoints/step_*/     resumable checkpoints (see :mod:`.checkpointing`)
    OUT/stage1/model.safetensors       the stage-1 model (pack format; its FMT is still untrained)
    OUT/stage2/cache.npz               frozen stage-1 latents and audio features of every clip
    OUT/stage2/...                     as stage 1; OUT/stage2/model.safetensors is the finished model

Every random draw of step ``k`` comes from a CPU generator seeded with ``(seed, k)``; the whole GLOBAL
batch is drawn on every process and each process keeps its shard, so a run resumed from a checkpoint, or
split over processes, computes the same losses as one uninterrupted process (up to float rounding).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import DemoInputError
from ..flow.ot_coupling import MinibatchOTCoupling
from ..io.checkpoints import save_checkpoint
from ..models.demo_model import DemoModel
from .checkpointing import latest_checkpoint, load_training_state, prune_checkpoints, save_training_state
from .config import TrainConfig
from .data import (ClipStore, Stage2Batch, Stage2Cache, build_stage1_batch, encode_stage2_cache, flow_scale_from_cache,
                   sample_stage1_picks, sample_stage2_batch, slice_batch, smooth_cache)
from .distributed import DistContext, cleanup_distributed, setup_distributed
from .objectives import Stage1Objective, Stage2Objective

__all__ = ["train_stage1", "train_stage2", "lr_at", "step_generator"]

Log = Callable[[str], None]


def _print(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def step_generator(seed: int, step: int) -> torch.Generator:
    """The CPU generator of one training step (depends only on ``seed`` and ``step``)."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(step)) % (2**63))


def lr_at(step: int, lr: float, steps: int, warmup: int, decay: str) -> float:
    """Linear warm-up over ``warmup`` steps, then constant or cosine down to 10 % at ``steps``."""
    if warmup > 0 and step <= warmup:
        return lr * step / warmup
    if decay == "cosine":
        p = (step - warmup) / max(steps - warmup, 1)
        return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(max(p, 0.0), 1.0))))
    return lr


def _seeded(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    """Build modules with their default initialisers drawing from a seeded, then restored, torch RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _load_store(cfg: TrainConfig, out: Path, ctx: DistContext, log: Log, *, regions: bool = False) -> ClipStore:
    """The clips; ``regions``: also hold their region maps (only stage 1 with a region weight reads them)."""
    d, m = cfg.data, cfg.model
    cache = Path(d.cache_dir) if d.cache_dir else out / "cache"
    kw = dict(size=m.image_size, fps=m.fps, sampling_rate=m.sampling_rate, crop=d.crop, cache_dir=cache,
              max_clips=d.max_clips, min_frames=d.min_frames, regions=regions, log=log)
    store = None
    if ctx.is_main:  # rank 0 fills the cache first; the others then read it
        store = ClipStore.from_folder(d.root, **kw)
    ctx.barrier()
    if store is None:
        store = ClipStore.from_folder(d.root, **kw)
    frames = sum(c.num_frames for c in store.clips)
    log(f"data: {len(store)} clips, {frames} frames ({frames / m.fps:.1f} s) from {d.root}")
    return store


class _Runner:
    """The parts of a training loop both stages share: optimiser, schedule, DDP, logging, checkpoints."""

    def __init__(self, stage: str, cfg: TrainConfig, out: Path, ctx: DistContext, model: DemoModel,
                 objective: nn.Module, heads: nn.Module | None, log: Log):
        self.s = cfg.stage1 if stage == "stage1" else cfg.stage2
        self.dir, self.ctx, self.model, self.heads, self.log = out / stage, ctx, model, heads, log
        self.params = [p for p in objective.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=self.s.lr, betas=self.s.betas, weight_decay=self.s.weight_decay)
        self.objective = objective
        if ctx.enabled:
            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            self.objective = nn.parallel.DistributedDataParallel(objective, device_ids=ids, find_unused_parameters=True)
        if ctx.is_main:
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=1))

    def resume(self) -> int:
        ckpt = latest_checkpoint(self.dir / "checkpoints")
        if ckpt is None:
            return 0
        step = load_training_state(ckpt, self.model, self.opt, heads=self.heads)
        self.log(f"resumed from {ckpt} (step {step})")
        if self.ctx.is_main:  # drop log lines written after the checkpoint
            path = self.dir / "metrics.jsonl"
            if path.is_file():
                lines = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
                path.write_text("".join(ln + "\n" for ln in lines))
        return step

    def step(self, step: int, batch) -> dict[str, float]:
        s = self.s
        lr = lr_at(step, s.lr, s.steps, s.warmup_steps, s.lr_decay)
        for group in self.opt.param_groups:
            group["lr"] = lr
        loss, metrics = self.objective(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {step}: {float(loss)}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if s.grad_clip > 0:
            metrics["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.params, s.grad_clip).detach()
        self.opt.step()
        return {"lr": lr, **{k: float(v) for k, v in metrics.items()}}

    def record(self, step: int, metrics: dict[str, float], seconds: float) -> None:
        metrics = self.ctx.mean(metrics)
        if self.ctx.is_main and (step % self.s.log_every == 0 or step == 1 or step == self.s.steps):
            row = {"step": step, **{k: round(v, 7) for k, v in metrics.items()}, "seconds": round(seconds, 4)}
            with open(self.dir / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")
            self.log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))

    def checkpoint(self, step: int) -> None:
        if self.ctx.is_main:
            save_training_state(self.dir / "checkpoints", step, self.model, self.model.cfg.to_dict(), self.opt,
                                heads=self.heads, seed=self.s.seed)
            prune_checkpoints(self.dir / "checkpoints", self.s.keep_checkpoints)
        self.ctx.barrier()

    def run(self, start: int, make_batch: Callable[[int], object], stop_after: int | None) -> bool:
        """Steps ``start + 1 …``; returns True when the last step was reached."""
        s = self.s
        for step in range(start + 1, s.steps + 1):
            t0 = time.perf_counter()
            metrics = self.step(step, make_batch(step))
            self.record(step, metrics, time.perf_counter() - t0)
            stopping = stop_after is not None and step - start >= stop_after
            if step % s.ckpt_every == 0 or step == s.steps or stopping:
                self.checkpoint(step)
            if stopping and step < s.steps:
                return False
        return True

    def finish(self) -> Path:
        path = self.dir / "model.safetensors"
        if self.ctx.is_main:
            save_checkpoint(path, self.model, self.model.cfg.to_dict(), overwrite=True,
                            extra_metadata={"trained_steps": str(self.s.steps)})
            self.log(f"wrote {path}")
        self.ctx.barrier()
        return path


def train_stage1(cfg: TrainConfig, out: str | Path, *, init: str | Path | None = None, reinit: Sequence[str] = (),
                 resume: bool = False, stop_after: int | None = None, log: Log | None = None) -> Path:
    """Train the motion auto-encoder, factor heads and audio features; returns ``OUT/stage1/model.safetensors``.

    Args:
        cfg: training configuration (``model``, ``data``, ``stage1``).
        out: output folder.
        init: start from this DEMO model's weights (same architecture as ``cfg.model``; settings that are not
            weights, such as ``motion_autoencoder.rgb_from``, come from ``cfg.model``); the optimiser, schedule
            and step count start fresh.  Ignored when ``resume`` finds a checkpoint.
        reinit: factors whose encoder and head restart from a fresh initialisation after ``init`` is loaded.
        resume: continue from the newest checkpoint in ``OUT/stage1/checkpoints``.
        stop_after: stop (with a checkpoint) after this many steps of this invocation.
        log: message sink (rank 0 only; default stderr).
    """
    out, s = Path(out), cfg.stage1
    ctx = setup_distributed(s.device)
    log = (log or _print) if ctx.is_main else (lambda _m: None)
    try:
        lo, hi = ctx.shard(s.batch)
        if (hi - lo) % min(s.contrast_group, hi - lo):
            raise DemoInputError(f"stage1.contrast_group ({s.contrast_group}) must divide the per-process batch ({hi - lo})")
        store = _load_store(cfg, out, ctx, log, regions=s.weights.recon_region > 0 or s.weights.locality > 0)
        if s.weights.locality > 0 and not any(c.regions is not None and c.regions.ndim == 4 for c in store.clips):
            raise DemoInputError("stage1.weights.locality: needs mouth and eye maps (two-part <stem>.regions.npy "
                                 "sidecars) and no clip has them; for synthetic clips: python -m "
                                 "demo_core.synthetic.regions DATA --overwrite")
        if s.weights.counterfactual > 0 and not any(store.can_redraw(i) for i in range(len(store))):
            raise DemoInputError("stage1.weights.counterfactual: needs synthetic clips whose labels store the face "
                                 "(identity_json and every frame parameter, square frames used whole; written by "
                                 "python -m demo_core.synthetic.dataset) and no clip has them")
        model = _seeded(s.seed, lambda: DemoModel(cfg.model)).train()
        model.motion_autoencoder.reset_flow_to_identity()
        model.fmt.requires_grad_(False)
        model.audio_encoder.audio_projection.requires_grad_(False)
        objective = _seeded(s.seed + 1, lambda: Stage1Objective(model, s)).to(ctx.device)
        if s.trainable:
            _restrict_trainable(model, objective, s.trainable, log)
        runner = _Runner("stage1", cfg, out, ctx, model, objective, objective.heads, log)
        start = runner.resume() if resume else 0
        if start == 0 and (init is not None or reinit):
            _initialise_stage1(model, init, reinit, s.seed, log)
        m, M = cfg.model, cfg.model.factors.total
        context = model.audio_encoder.context_frames

        def make_batch(step: int):
            g = step_generator(s.seed, step)
            picks = sample_stage1_picks(store, s.batch, s.frames, g)
            jitter, eps = torch.rand(s.batch, 5, generator=g), torch.randn(s.batch, s.frames, M, generator=g)
            edit = (torch.randn(s.batch, s.frames, M, generator=g)[lo:hi]
                    if s.weights.cycle > 0 or s.weights.locality > 0 else None)
            counter = (torch.rand(s.batch, s.frames, 3, generator=g)[lo:hi]
                       if s.weights.counterfactual > 0 else None)
            batch = build_stage1_batch(store, picks[lo:hi], frames=s.frames, layout=m.factors, context=context,
                                       fps=m.fps, sampling_rate=m.sampling_rate, jitter=jitter[lo:hi], eps=eps[lo:hi],
                                       edit=edit, counter=counter)
            return batch.to(ctx.device)

        done = runner.run(start, make_batch, stop_after)
        return runner.finish() if done else runner.dir / "checkpoints"
    finally:
        cleanup_distributed(ctx)


def _restrict_trainable(model: DemoModel, objective: nn.Module, prefixes: Sequence[str], log: Log) -> None:
    """Freeze every parameter of ``model`` (and the objective's InfoNCE heads) not under one of ``prefixes``."""
    def under(name: str, prefix: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")

    names = [n for n, _ in model.named_parameters()]
    for prefix in prefixes:
        if not any(under(n, prefix) for n in names):
            raise DemoInputError(f"stage1.trainable: {prefix!r} names no parameter of the model "
                                 f"(e.g. {sorted({n.rsplit('.', 2)[0] for n in names})[:6]})")
    count = 0
    for n, p in model.named_parameters():
        keep = p.requires_grad and any(under(n, q) for q in prefixes)
        p.requires_grad_(keep)
        count += p.numel() if keep else 0
    objective.heads.requires_grad_(False)
    log(f"training only {list(prefixes)} ({count} parameters); the rest of the model is frozen")


def _initialise_stage1(model: DemoModel, init: str | Path | None, reinit: Sequence[str], seed: int, log: Log) -> None:
    """Copy ``init``'s weights into ``model`` in place (the optimiser already holds its parameters), then
    re-initialise the ``reinit`` factors (seeded).

    A model without a feature painter may initialise one whose config adds it (the painter keeps its fresh,
    identity initialisation); the flow scale of a trained stage 2 is copied with the FMT weights, so the
    result is a complete model when ``init`` was one."""
    from ..models.loader import load_model

    if init is not None:
        source, _ = load_model(init, device="cpu")
        if not isinstance(source, DemoModel):
            raise DemoInputError(f"--init {init}: a DEMO-native model is needed, got a {type(source).__name__}")
        signs = (source.cfg.motion_autoencoder.basis_signs, model.cfg.motion_autoencoder.basis_signs)
        if signs[0] != signs[1]:
            raise DemoInputError(f"--init {init}: its motion basis uses the {signs[0]!r} sign convention, the config "
                                 f"{signs[1]!r}; the same weights would give a different basis (convert the model "
                                 f"with python -m demo_core.tools.basis_signs, or set motion_autoencoder.basis_signs)")
        state = source.state_dict()
        own = model.state_dict()
        fresh = sorted(k for k in own if k not in state and k.startswith("motion_autoencoder.painter."))
        bad = sorted(k for k in own if k not in fresh and (k not in state or state[k].shape != own[k].shape))
        if bad or set(state) - set(own):
            raise DemoInputError(f"--init {init}: its architecture differs from the config's model "
                                 f"(first mismatched keys: {(bad or sorted(set(state) - set(own)))[:4]})")
        model.load_state_dict({**state, **{k: own[k] for k in fresh}}, strict=True)
        if source.cfg.flow_scale is not None and model.cfg.flow_subspace:
            model.set_flow_scale(source.cfg.flow_scale)
        log(f"initialised from {init}" + (" (the feature painter starts fresh)" if fresh else ""))
    fcme = model.motion_autoencoder.enc.fc
    for i, name in enumerate(reinit):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 1000 + i)
            fcme.reset_block(name)
        log(f"re-initialised the {name} encoder")


def _stage2_cache(model: DemoModel, store: ClipStore, init: Path, path: Path, ctx: DistContext, log: Log) -> Stage2Cache:
    key = f"{init.resolve()}|{init.stat().st_size}|{init.stat().st_mtime_ns}|{len(store)}"
    if ctx.is_main:
        fresh = False
        if path.is_file():
            with np.load(path, allow_pickle=False) as z:
                fresh = str(z["key"]) == key
        if not fresh:
            t0 = time.perf_counter()
            cache = encode_stage2_cache(model, store, device=ctx.device)
            arrays = {f"lam_{i}": x.numpy() for i, x in enumerate(cache.lam)}
            arrays.update({f"feat_{i}": x.numpy() for i, x in enumerate(cache.feats)})
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".partial.npz")
            np.savez(tmp, key=np.array(key), **arrays)
            tmp.replace(path)
            log(f"encoded {len(store)} clips with the stage-1 model in {time.perf_counter() - t0:.1f} s")
    ctx.barrier()
    with np.load(path, allow_pickle=False) as z:
        n = len(store)
        return Stage2Cache(lam=[torch.from_numpy(z[f"lam_{i}"]) for i in range(n)],
                           feats=[torch.from_numpy(z[f"feat_{i}"]) for i in range(n)])


def train_stage2(cfg: TrainConfig, out: str | Path, *, init: str | Path | None = None, resume: bool = False,
                 stop_after: int | None = None, log: Log | None = None) -> Path:
    """Train the FMT (and the audio projection) on frozen stage-1 latents; returns ``OUT/stage2/model.safetensors``.

    Args:
        cfg: training configuration (``data``, ``stage2``; the model config comes from ``init``).
        out: output folder.
        init: the stage-1 model (default ``OUT/stage1/model.safetensors``).
        resume: continue from the newest checkpoint in ``OUT/stage2/checkpoints``.
        stop_after: stop (with a checkpoint) after this many steps of this invocation.
        log: message sink (rank 0 only; default stderr).
    """
    from ..models.loader import load_model

    out, s = Path(out), cfg.stage2
    init = Path(init) if init is not None else out / "stage1" / "model.safetensors"
    ctx = setup_distributed(s.device)
    log = (log or _print) if ctx.is_main else (lambda _m: None)
    try:
        lo, hi = ctx.shard(s.batch)
        model, _ = load_model(init, device=ctx.device)
        if not isinstance(model, DemoModel):
            raise DemoInputError(f"stage 2 needs a DEMO-native stage-1 model; {init} is a FLOAT checkpoint")
        cfg = TrainConfig(model=model.cfg, data=cfg.data, stage1=cfg.stage1, stage2=s)
        store = _load_store(cfg, out, ctx, log)
        cache = _stage2_cache(model, store, init, out / "stage2" / "cache.npz", ctx, log)
        if any(v > 0 for v in s.smooth.values()):
            cache = smooth_cache(cache, model.cfg.factors, s.smooth)
            log(f"smoothed the encoded {', '.join(f'{k} (σ {v:g} frames)' for k, v in s.smooth.items())}")
        if model.cfg.flow_subspace:
            model.set_flow_scale(flow_scale_from_cache(cache))  # saved in the config of every checkpoint
        model.fmt.requires_grad_(True).train()
        model.audio_encoder.audio_projection.requires_grad_(s.train_audio_projection)
        objective = Stage2Objective(model, s).to(ctx.device)
        runner = _Runner("stage2", cfg, out, ctx, model, objective, None, log)
        start = runner.resume() if resume else 0
        Q = model.motion_autoencoder.directions().detach().cpu()
        fmt = model.fmt.cfg
        coupling = MinibatchOTCoupling() if s.ot_coupling else None

        def make_batch(step: int):
            g = step_generator(s.seed, step)
            b = sample_stage2_batch(cache, Q, batch=s.batch, window=fmt.num_frames, prefix=fmt.num_prev_frames,
                                    p_first=s.p_first_window, p_drop_audio=s.p_drop_audio,
                                    p_drop_emotion=s.p_drop_emotion, p_drop_reference=s.p_drop_reference, generator=g,
                                    subspace=model.cfg.flow_subspace, scale=model.fmt.latent_scale)
            if coupling is not None:
                data_side = ("prev_x", "wr", "feat", "prev_feat", "first", "keep_audio", "keep_emotion", "keep_reference")
                _, x_1, cond = coupling.couple(b.x_0, b.x_1, {k: getattr(b, k) for k in data_side})
                b = Stage2Batch(x_0=b.x_0, x_1=x_1, t=b.t, **cond)
            return slice_batch(b, lo, hi).to(ctx.device)

        done = runner.run(start, make_batch, stop_after)
        return runner.finish() if done else runner.dir / "checkpoints"
    finally:
        cleanup_distributed(ctx)
