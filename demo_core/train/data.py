"""Training data: a folder of talking-head clips, stage-1 samples and stage-2 latent windows.

* :class:`ClipStore` decodes every clip once (:func:`~demo_core.train.video.decode_clip`) and caches it as
  ``.npz`` (frames uint8, normalised audio, labels), keyed by the file, its size/mtime and the settings.
* Stage 1: :func:`sample_stage1_picks` draws (clip, source frame, first driving frame) for the GLOBAL batch
  from an explicit generator; :func:`build_stage1_batch` turns picks into tensors: source frame, ``F``
  consecutive driving frames, the audio segment around them (with enough context that its features equal
  the full-clip features), label targets in coefficient units, a photometric second view for the gaze
  contrastive loss where there are no gaze labels, the feature-region maps of the driving frames (zero for a
  clip without a ``.regions.npy`` sidecar), the VAE noise, and on request the counterfactual frames: a synthetic
  clip's driving frames drawn again by its renderer with one factor's parameters taken from another frame.
* Stage 2: :func:`encode_stage2_cache` encodes every frame with the frozen stage-1 model (posterior means)
  and the audio features of every clip; :func:`sample_stage2_batch` cuts prefix + window pairs from it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from ..errors import DemoInputError
from ..flow.window_sampler import span_noise
from ..motion.factors import FactorLayout
from .losses import condition_keep_mask
from .video import LABEL_NAMES, VIDEO_SUFFIXES, Clip, decode_clip

__all__ = ["ClipStore", "Stage1Batch", "supervised_axes", "sample_stage1_picks", "build_stage1_batch",
           "Stage2Cache", "encode_stage2_cache", "smooth_cache", "Stage2Batch", "sample_stage2_batch", "slice_batch"]

_CACHE_VERSION = "clip-v2"


def _atomic_savez(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name, suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ClipStore:
    """Decoded clips held in memory.

    Args:
        clips: the clips.
    """

    def __init__(self, clips: list[Clip]):
        if not clips:
            raise DemoInputError("ClipStore: no usable clips")
        self.clips = clips
        self._renderers: dict = {}

    def __len__(self) -> int:
        return len(self.clips)

    @staticmethod
    def list_videos(root: str | Path) -> list[Path]:
        root = Path(root)
        if not root.is_dir():
            raise DemoInputError(f"data.root: {root} is not a folder")
        return sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())

    @classmethod
    def from_folder(cls, root: str | Path, *, size: int, fps: float, sampling_rate: int, crop: str = "center",
                    cache_dir: str | Path | None = None, max_clips: int | None = None, min_frames: int = 8,
                    regions: bool = True, log: Callable[[str], None] | None = None) -> "ClipStore":
        """Decode (or read from the cache) every video under ``root``; clips shorter than ``min_frames`` are skipped."""
        videos = cls.list_videos(root)[: max_clips or None]
        if not videos:
            raise DemoInputError(f"data.root: no videos ({', '.join(VIDEO_SUFFIXES)}) under {root}")
        clips = []
        for path in videos:
            clip = cls._load_cached(path, size, fps, sampling_rate, crop, cache_dir, regions)
            if clip.num_frames >= min_frames:
                clips.append(clip)
            elif log is not None:
                log(f"skipping {path.name}: {clip.num_frames} frames < min_frames {min_frames}")
        return cls(clips)

    @staticmethod
    def _load_cached(path: Path, size, fps, sampling_rate, crop, cache_dir, regions) -> Clip:
        if cache_dir is None:
            return decode_clip(path, size=size, fps=fps, sampling_rate=sampling_rate, crop=crop, regions=regions)
        st = path.stat()
        key = (f"{_CACHE_VERSION}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{size}|{fps}|{sampling_rate}|{crop}"
               f"|regions={regions}")
        for side in (".labels.npz", ".wav", ".frames.npy") + ((".regions.npy",) if regions else ()):
            sidecar = Path(f"{path.with_suffix('')}{side}")
            if sidecar.is_file():
                key += f"|{side}:{sidecar.stat().st_mtime_ns}"
        cached = Path(cache_dir) / f"{path.stem}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"
        if cached.is_file():
            with np.load(cached, allow_pickle=False) as z:
                labels = {k[len("label_"):]: z[k] for k in z.files if k.startswith("label_")}
                regions = z["regions"] if "regions" in z.files else None
                return Clip(name=path.stem, frames=z["frames"], audio=z["audio"], labels=labels, regions=regions,
                            identity=str(z["identity"]), identity_size=int(z["identity_size"]))
        clip = decode_clip(path, size=size, fps=fps, sampling_rate=sampling_rate, crop=crop, regions=regions)
        extra = {} if clip.regions is None else {"regions": clip.regions}
        _atomic_savez(cached, frames=clip.frames, audio=clip.audio, **extra, identity=np.array(clip.identity),
                      identity_size=np.int64(clip.identity_size), **{f"label_{k}": v for k, v in clip.labels.items()})
        return clip

    def can_redraw(self, index: int) -> bool:
        """Clip ``index`` stores its synthetic face and every frame parameter (its frames can be drawn again)."""
        from ..synthetic.params import PARAM_NAMES

        clip = self.clips[index]
        return bool(clip.identity) and all(n in clip.labels for n in PARAM_NAMES)

    def renderer(self, index: int):
        """The synthetic renderer of clip ``index``'s face (:class:`~demo_core.synthetic.head.HeadRenderer` at its
        source size), made once; None when the clip cannot be redrawn (:meth:`can_redraw`)."""
        from ..synthetic.dataset import load_identity
        from ..synthetic.head import HeadRenderer

        if index not in self._renderers:
            clip = self.clips[index]
            self._renderers[index] = (HeadRenderer(load_identity({"identity_json": clip.identity}), clip.identity_size)
                                      if self.can_redraw(index) else None)
        return self._renderers[index]


def _to_model_frames(frames: np.ndarray) -> Tensor:
    """(..., S, S, 3) uint8 → (..., 3, S, S) float32 in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).float().div_(127.5).sub_(1.0)
    return x.movedim(-1, -3)


def slice_batch(batch, start: int, stop: int):
    """Rows ``start:stop`` of every batched field of a stage-1/stage-2 batch dataclass (lists are sliced too)."""
    out = {}
    for f in fields(batch):
        v = getattr(batch, f.name)
        out[f.name] = v[start:stop] if isinstance(v, (Tensor, list)) else v
    return type(batch)(**out)


# ---------------------------------------------------------------------------------------------- stage 1


# Label names of the synthetic benchmark for axes whose "<block>_<axis>" name differs.
_LABEL_ALIASES = {"lip_open": "mouth_open", "lip_width": "mouth_width", "lip_round": "mouth_round"}


def supervised_axes(layout: FactorLayout) -> list[tuple[int, str, str, str]]:
    """Semantic axes that a label can supervise: ``(coefficient index, block, axis, label name)``.

    The label of axis ``a`` of block ``b`` is ``"{b}_{a}"``, else ``a``, else ``b`` for a one-axis block,
    whichever is a known label name (pose yaw → ``yaw``, gaze x → ``gaze_x``, blink closure → ``blink``).
    """
    out = []
    for block, s in zip(layout.blocks, layout.slices().values()):
        for i, axis in enumerate(block.axes):
            alias = _LABEL_ALIASES.get(f"{block.name}_{axis}")
            for cand in (alias, f"{block.name}_{axis}", axis, block.name if len(block.axes) == 1 else None):
                if cand in LABEL_NAMES:
                    out.append((s.start + i, block.name, axis, cand))
                    break
    return out


@dataclass
class Stage1Batch:
    """One stage-1 (per-process) batch; b samples, F driving frames, K supervised axes, M coefficients."""

    source: Tensor  # (b, 3, S, S)
    driving: Tensor  # (b, F, 3, S, S)
    audio: list  # b normalised waveform segments (n_i,)
    audio_frames: list  # b frame counts of the segments
    audio_offset: list  # b indices of the first driving frame inside its segment
    targets: Tensor  # (b, F, K) label targets in coefficient units
    target_mask: Tensor  # (b, F, K) bool
    gaze_view: Tensor  # (b, F, 3, S, S) photometrically jittered driving frames
    gaze_view_mask: Tensor  # (b,) bool: sample has no gaze labels → use the second view
    eps: Tensor  # (b, 1 + F, M) VAE noise (source first)
    region: Tensor  # (b, F, 1, S, S) feature-region map of the driving frames in [0, 1] (0 without a sidecar)
    edit: Tensor | None = None  # (b, F, M) N(0, 1) noise of the one-factor edits (weights.cycle / locality)
    parts: Tensor | None = None  # (b, F, 2, S, S) mouth and eye maps in [0, 1] (0 for a sample without a two-part
    # sidecar; None when no sample of the batch has one)
    parts_mask: Tensor | None = None  # (b,) bool: the sample's clip has a two-part sidecar
    counter: Tensor | None = None  # (b, F, 3, S, S) the driving frames drawn again by the synthetic renderer with
    # one factor's parameters taken from another frame (weights.counterfactual); None when not asked for
    counter_block: Tensor | None = None  # (b, F) int64 index in the layout of the swapped factor (-1: no frame)
    counter_targets: Tensor | None = None  # (b, F, K) label targets of the counterfactual frames

    def to(self, device) -> "Stage1Batch":
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        for k, v in kw.items():
            if isinstance(v, Tensor):
                kw[k] = v.to(device)
            elif k == "audio":
                kw[k] = [a.to(device) for a in v]
        return Stage1Batch(**kw)


def sample_stage1_picks(store: ClipStore, batch: int, frames: int, generator: torch.Generator) -> Tensor:
    """(batch, 3) int64 rows ``(clip, source frame, first driving frame)`` drawn uniformly."""
    clip = torch.randint(len(store), (batch,), generator=generator)
    u_src, u_start = torch.rand(batch, generator=generator), torch.rand(batch, generator=generator)
    rows = []
    for i in range(batch):
        T = store.clips[int(clip[i])].num_frames
        rows.append((int(clip[i]), min(int(u_src[i] * T), T - 1), min(int(u_start[i] * max(T - frames + 1, 1)), max(T - frames, 0))))
    return torch.tensor(rows, dtype=torch.int64)


def _jitter(frames: Tensor, params: Tensor) -> Tensor:
    """Photometric jitter (gaze-preserving): (F, 3, S, S) in [-1, 1], params (5,) uniform in [0, 1)."""
    gain = 0.8 + 0.4 * params[0:3]  # per-channel colour gain
    contrast, bright = 0.7 + 0.6 * params[3], 0.4 * (params[4] - 0.5)
    mean = frames.mean(dim=(-3, -2, -1), keepdim=True)
    return ((frames - mean) * contrast + mean + bright).mul(gain.view(1, 3, 1, 1)).clamp(-1.0, 1.0)


def _label_targets(labels: dict, idx, axes, layout: FactorLayout, frames: int) -> tuple[Tensor, Tensor]:
    """(F, K) targets in coefficient units and (F, K) bool mask of the supervised ``axes`` for label arrays
    ``labels`` (name → (T,)) at frames ``idx``."""
    t = torch.zeros(frames, len(axes))
    m = torch.zeros(frames, len(axes), dtype=torch.bool)
    for j, (_, block, axis, label) in enumerate(axes):
        if label in labels:
            t[:, j] = torch.as_tensor(layout.block(block).axis_coefficient(axis, labels[label][idx]))
            m[:, j] = True
    return t, m


def _counterfactual(store: ClipStore, c: int, idx: np.ndarray, u: Tensor, layout: FactorLayout, axes,
                    size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Clip ``c``'s frames ``idx`` (F,) drawn again by its synthetic renderer, each with one factor's parameters
    (factor ``u[k, 2]`` of lip, pose, gaze, blink in the layout) taken from frame ``u[k, 1]`` of clip ``u[k, 0]``
    (uniform numbers (F, 3)).

    Returns:
        ``(frames (F, 3, S, S) in [-1, 1] (rounded to 8 bits like the data), swapped block's index in the layout
        (F,) (-1 where the clip or the donor has no face or parameters: zero frame), label targets (F, K))``.
    """
    from ..synthetic.params import FACTOR_NAMES, PARAM_NAMES, FrameParams
    from .video import _resize

    F = len(idx)
    out, block = torch.zeros(F, 3, size, size), torch.full((F,), -1, dtype=torch.long)
    targets = torch.zeros(F, len(axes))
    renderer = store.renderer(c)
    factors = [name for name in layout.names if name in FACTOR_NAMES]
    if renderer is None or not factors:
        return out, block, targets
    clip = store.clips[c]
    values = {n: np.asarray(clip.labels[n][idx], dtype=np.float32).copy() for n in PARAM_NAMES}
    ok = []
    for k in range(F):
        d = min(int(u[k, 0] * len(store)), len(store) - 1)
        donor = store.clips[d]
        f = factors[min(int(u[k, 2] * len(factors)), len(factors) - 1)]
        if not store.can_redraw(d):
            continue
        j = min(int(u[k, 1] * donor.num_frames), donor.num_frames - 1)
        for n in FACTOR_NAMES[f]:
            values[n][k] = donor.labels[n][j]
        block[k] = layout.names.index(f)
        ok.append(k)
    if ok:
        params = FrameParams.from_dict({n: torch.from_numpy(v[ok]) for n, v in values.items()})
        x = renderer.render(params).permute(0, 2, 3, 1)  # (n, R, R, 3) in [0, 1]
        x = _resize(x, size) if x.shape[1] != size else x
        out[ok] = _to_model_frames((x.clamp(0, 1) * 255.0).round().to(torch.uint8).numpy())
    targets = _label_targets(values, slice(None), axes, layout, F)[0]
    return out, block, targets


def build_stage1_batch(store: ClipStore, picks: Tensor, *, frames: int, layout: FactorLayout, context: int,
                       fps: float, sampling_rate: int, jitter: Tensor, eps: Tensor,
                       edit: Tensor | None = None, counter: Tensor | None = None) -> Stage1Batch:
    """Tensors for the given picks.

    Args:
        store: the clips.
        picks: (b, 3) rows of :func:`sample_stage1_picks`.
        frames: F driving frames per sample.
        layout: factor layout (decides the supervised axes).
        context: audio context in frames each side (the audio encoder's ``context_frames``).
        fps, sampling_rate: model rates.
        jitter: (b, 5) uniform numbers for the gaze second view.
        eps: (b, 1 + F, M) VAE noise.
        edit: (b, F, M) noise of the re-encoding edits, or None.
        counter: (b, F, 3) uniform numbers of the counterfactual frames (donor clip, donor frame, factor), or None.
    """
    axes = supervised_axes(layout)
    spf = sampling_rate / fps
    src, drv, audio, a_frames, a_off, tgt, msk, gaze_mask, reg, parts, cf = ([] for _ in range(11))
    for c, s, k0 in picks.tolist():
        clip = store.clips[c]
        T = clip.num_frames
        idx = np.minimum(np.arange(k0, k0 + frames), T - 1)  # short clips repeat their last frame
        src.append(_to_model_frames(clip.frames[s]))
        drv.append(_to_model_frames(clip.frames[idx]))
        S = clip.frames.shape[1]
        maps = None if clip.regions is None else torch.from_numpy(clip.regions[idx]).float().div_(255.0)
        two = maps is not None and maps.ndim == 4  # (F, 2, S, S) mouth, eyes; else (F, S, S) their union
        reg.append(torch.zeros(frames, 1, S, S) if maps is None
                   else maps.amax(dim=1, keepdim=True) if two else maps[:, None])
        parts.append(maps if two else None)
        s0, s1 = max(0, k0 - context), min(T, k0 + frames + context)
        audio.append(torch.from_numpy(clip.audio[int(round(s0 * spf)): int(round(s1 * spf))].copy()))
        a_frames.append(s1 - s0)
        a_off.append(k0 - s0)
        t, m = _label_targets(clip.labels, idx, axes, layout, frames)
        tgt.append(t)
        msk.append(m)
        gaze_mask.append(not all(n in clip.labels for n in ("gaze_x", "gaze_y")))
        if counter is not None:
            cf.append(_counterfactual(store, c, idx, counter[len(cf)], layout, axes, S))
    driving = torch.stack(drv)  # (b, F, 3, S, S)
    view = torch.stack([_jitter(d, p) if g else d for d, p, g in zip(driving, jitter, gaze_mask)])
    return Stage1Batch(source=torch.stack(src), driving=driving, audio=audio, audio_frames=a_frames,
                       audio_offset=a_off, targets=torch.stack(tgt), target_mask=torch.stack(msk), gaze_view=view,
                       gaze_view_mask=torch.tensor(gaze_mask), eps=eps, region=torch.stack(reg), edit=edit,
                       parts=None if all(p is None for p in parts) else
                       torch.stack([torch.zeros(frames, 2, S, S) if p is None else p for p in parts]),
                       parts_mask=torch.tensor([p is not None for p in parts], dtype=torch.bool),
                       counter=torch.stack([x[0] for x in cf]) if cf else None,
                       counter_block=torch.stack([x[1] for x in cf]) if cf else None,
                       counter_targets=torch.stack([x[2] for x in cf]) if cf else None)


# ---------------------------------------------------------------------------------------------- stage 2


@dataclass
class Stage2Cache:
    """Per clip: posterior-mean coefficients (T, M) and audio features (T, D_f) of the frozen stage-1 model."""

    lam: list
    feats: list


def smooth_cache(cache: Stage2Cache, layout: FactorLayout, smooth: dict[str, float]) -> Stage2Cache:
    """The cache with each named factor's coefficients Gaussian-smoothed over time (σ in frames; 0 = as is)."""
    from ..motion.edits import gaussian_smooth_time

    slices = layout.slices()
    unknown = sorted(set(smooth) - set(slices))
    if unknown:
        raise DemoInputError(f"stage2.smooth: unknown factor(s) {unknown}; the layout has {list(slices)}")
    lams = []
    for lam in cache.lam:
        lam = lam.clone()
        for name, sigma in smooth.items():
            if sigma > 0 and lam.shape[0] > 1:
                sl = slices[name]
                lam[:, sl] = gaussian_smooth_time(lam[None, :, sl].double(), sigma)[0].to(lam.dtype)
        lams.append(lam)
    return Stage2Cache(lam=lams, feats=cache.feats)


@torch.no_grad()
def flow_scale_from_cache(cache: "Stage2Cache", floor: float = 0.05) -> Tensor:
    """Per-coefficient spread σ (M,) of the cached motion, floored at ``floor`` × the largest one (a coefficient
    that never varies still gets noise of a sensible size)."""
    lam = torch.cat(cache.lam).double()  # (ΣT, M)
    std = lam.std(dim=0)
    return std.clamp(min=floor * float(std.max())).float()


def encode_stage2_cache(model, store: ClipStore, *, device, chunk: int = 64) -> Stage2Cache:
    """Encode every frame and the audio of every clip with the (frozen) stage-1 ``DemoModel``."""
    mae, audio_encoder = model.motion_autoencoder, model.audio_encoder
    lams, feats = [], []
    for clip in store.clips:
        rows = []
        for i in range(0, clip.num_frames, chunk):
            x = _to_model_frames(clip.frames[i:i + chunk]).to(device=device, dtype=model.dtype)
            rows.append(mae.coefficients_posterior(x)[0].float().cpu())
        lams.append(torch.cat(rows))  # (T, M)
        a = torch.from_numpy(clip.audio)[None].to(device=device, dtype=model.dtype)
        feats.append(audio_encoder.features(a, clip.num_frames)[0].float().cpu())  # (T, D_f)
    return Stage2Cache(lam=lams, feats=feats)


@dataclass
class Stage2Batch:
    """One stage-2 batch (global before sharding): B windows of L frames with a P-frame prefix."""

    x_0: Tensor  # (B, L, W) noise
    x_1: Tensor  # (B, L, W) motion latents of the window
    prev_x: Tensor  # (B, P, W) prefix latents (zeros for a first window)
    wr: Tensor  # (B, W) reference motion (a random frame of the clip)
    feat: Tensor  # (B, L, D_f) audio features of the window
    prev_feat: Tensor  # (B, P, D_f) audio features of the prefix
    first: Tensor  # (B,) bool: first window (prefix and prefix audio are zero)
    t: Tensor  # (B,) flow times
    keep_audio: Tensor  # (B,) 1 = keep wa, 0 = dropped (CFG)
    keep_emotion: Tensor  # (B,)
    keep_reference: Tensor  # (B,)

    def to(self, device) -> "Stage2Batch":
        return Stage2Batch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def _window(x: Tensor, start: int, length: int) -> Tensor:
    """Rows ``start … start + length − 1`` of x (T, D), repeating the last row past the end."""
    idx = torch.clamp(torch.arange(start, start + length), max=x.shape[0] - 1)
    return x[idx]


def sample_stage2_batch(cache: Stage2Cache, Q: Tensor, *, batch: int, window: int, prefix: int,
                        p_first: float, p_drop_audio: float, p_drop_emotion: float, p_drop_reference: float,
                        generator: torch.Generator, subspace: bool = False,
                        scale: Tensor | None = None) -> Stage2Batch:
    """Draw a global stage-2 batch on the CPU (motion latents = coefficients @ Qᵀ).

    With ``subspace`` the noise is ``N(0, I_M) @ Qᵀ``: standard normal inside the span of Q, zero outside
    (models with ``flow_subspace``, sampled the same way), times ``scale`` (M,) per coordinate when given."""
    Q = Q.detach().float().cpu()
    W = Q.shape[0]
    clip = torch.randint(len(cache.lam), (batch,), generator=generator)
    u = torch.rand(batch, 3, generator=generator)
    first = torch.rand(batch, generator=generator) < p_first
    x1, px, wr, ft, pft = [], [], [], [], []
    for i in range(batch):
        lam, feat = cache.lam[int(clip[i])], cache.feats[int(clip[i])]
        T = lam.shape[0]
        if bool(first[i]):
            s = 0
            px.append(torch.zeros(prefix, W))
            pft.append(torch.zeros(prefix, feat.shape[1]))
        else:
            s = prefix + min(int(u[i, 0] * max(T - prefix - window + 1, 1)), max(T - prefix - window, 0))
            px.append(_window(lam, s - prefix, prefix) @ Q.T)
            pft.append(_window(feat, s - prefix, prefix))
        x1.append(_window(lam, s, window) @ Q.T)  # (L, W)
        ft.append(_window(feat, s, window))
        wr.append(lam[min(int(u[i, 1] * T), T - 1)] @ Q.T)
    x_1 = torch.stack(x1)
    if subspace:
        c_0 = torch.randn(*x_1.shape[:-1], Q.shape[1], generator=generator)  # (B, L, M)
        x_0 = span_noise(c_0, Q, None if scale is None else scale.float().cpu())  # (B, L, W) in span(Q)
    else:
        x_0 = torch.randn(x_1.shape, generator=generator)
    return Stage2Batch(
        x_0=x_0, x_1=x_1, prev_x=torch.stack(px), wr=torch.stack(wr),
        feat=torch.stack(ft), prev_feat=torch.stack(pft), first=first, t=torch.rand(batch, generator=generator),
        keep_audio=condition_keep_mask(batch, p_drop_audio, generator),
        keep_emotion=condition_keep_mask(batch, p_drop_emotion, generator),
        keep_reference=condition_keep_mask(batch, p_drop_reference, generator),
    )
