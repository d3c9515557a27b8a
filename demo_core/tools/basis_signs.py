"""Move a model's motion basis to the ``"positive"`` sign convention, keeping the signs its encoder and decoder use.

FLOAT's motion basis is ``Q = QR(dec.direction.weight)`` as LAPACK returns it: the sign of column j follows
the sign of an intermediate Householder pivot, so when that pivot is near zero a change of the weights as small
as float16 rounding flips the column.  The trained 64² synthetic model had two such columns (pose ``tx`` and
gaze ``y``): its float32 weights gave one sign and their float16 copy the other, and the reconstruction PSNR
was 26.1 dB with the first and 28.7 dB with the second, i.e. the encoder and decoder had been trained with
the second.  A flipped column renders that coefficient backwards.

This tool finds the fragile columns (whose sign changes under float16 rounding or a 1e-4 relative
perturbation), picks for them the signs with the lowest reconstruction error on a few clips, and writes the
model with ``motion_autoencoder.basis_signs = "positive"`` (Q signed so that R has a positive diagonal: a
continuous function of the weights) and the direction weights' columns negated where needed so that the
positive-sign basis equals the chosen one.  Nothing else changes.

Usage::

    python -m demo_core.tools.basis_signs IN.safetensors OUT.safetensors --data CLIPS_DIR [--clips 4]
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import torch
from torch import Tensor

from ..errors import DemoInputError
from ..models.motion_autoencoder import qr_basis

__all__ = ["lapack_basis", "fragile_columns", "positive_sign_weight", "choose_basis", "convert"]

MAX_FRAGILE = 6  # at most 2**6 sign patterns are tried


def lapack_basis(weight: Tensor) -> tuple[Tensor, Tensor]:
    """(Q, diag R) of ``weight + 1e-8`` in float64, no sign fix (:func:`~demo_core.models.motion_autoencoder.qr_basis`)."""
    return qr_basis(weight.detach().double())


def fragile_columns(weight: Tensor, *, trials: int = 8, relative: float = 1e-4, seed: int = 0) -> list[int]:
    """Columns whose LAPACK sign flips under float16 rounding or random perturbations of ``relative`` size."""
    q, _ = lapack_basis(weight)
    g = torch.Generator().manual_seed(seed)
    w = weight.detach().double()
    variants = [weight.detach().half().double()]
    variants += [w + relative * w.abs().mean() * torch.randn(w.shape, generator=g, dtype=torch.float64)
                 for _ in range(trials)]
    flipped = set()
    for v in variants:
        qv, _ = lapack_basis(v)
        flipped |= {j for j in range(q.shape[1]) if float((q[:, j] * qv[:, j]).sum()) < 0}
    return sorted(flipped)


def positive_sign_weight(weight: Tensor, target: Tensor) -> Tensor:
    """``weight · diag(s)`` (s = ±1) whose positive-sign basis equals ``target`` (W, M) up to rounding.

    Raises:
        DemoInputError: if ``target`` does not span the same columns as ``weight``'s basis.
    """
    q_pos, _ = qr_basis(weight.detach().double(), positive=True)
    dots = (q_pos * target.double()).sum(0)
    if float(dots.abs().min()) < 0.99:
        raise DemoInputError(f"target basis: its columns are not ± the weight's basis columns (|dot| >= 0.99), "
                             f"got {dots.abs().min():.3f}")
    return weight * torch.where(dots < 0, -1.0, 1.0).to(weight.dtype)


@torch.no_grad()
def _reconstruction_error(mae, clips: list[Tensor]) -> float:
    errs = []
    for x in clips:  # (T, 3, S, S) in [-1, 1]
        h, _, feats = mae.encode(x[:1])
        lam = mae.encode(x)[1]
        motion = mae.motion_from_coefficients(lam)
        rec = mae.decode(h, feats, motion[None])[0]
        errs.append(float((rec.clamp(-1, 1) - x).abs().mean()))
    return sum(errs) / len(errs)


def choose_basis(model, clips: list[Tensor], log=print) -> Tensor:
    """The LAPACK basis of the model's direction weights with the fragile columns' signs chosen by the lowest
    reconstruction L1 on ``clips`` (each (T, 3, S, S) in [-1, 1], frame 0 the source)."""
    mae = model.motion_autoencoder
    direction = mae.dec.direction
    weight = direction.weight.detach().clone()
    q, _ = lapack_basis(weight)
    fragile = fragile_columns(weight)
    if len(fragile) > MAX_FRAGILE:
        raise DemoInputError(f"{len(fragile)} fragile basis columns {fragile}: too many sign patterns to try")
    log(f"fragile basis columns: {fragile or 'none'}")
    positive = direction.positive
    best, best_err = q, float("inf")
    try:
        direction.positive = True
        for flips in itertools.product((1.0, -1.0), repeat=len(fragile)):
            candidate = q.clone()
            for j, s in zip(fragile, flips):
                candidate[:, j] *= s
            direction.weight.copy_(positive_sign_weight(weight, candidate))
            err = _reconstruction_error(mae, clips)
            log(f"  signs {dict(zip(fragile, flips))}: reconstruction L1 {err:.5f}")
            if err < best_err:
                best, best_err = candidate, err
    finally:
        direction.positive = positive
        direction.weight.copy_(weight)
    return best


def _clips(folder: Path, size: int, count: int, frames: int) -> list[Tensor]:
    """The first ``count`` clips of ``folder`` prepared as for training (centre crop, ``size``², the clip's
    ``.frames.npy`` when present), ``frames`` frames each, (T, 3, S, S) in [-1, 1]."""
    from ..train.data import ClipStore, _to_model_frames
    from ..train.video import decode_clip

    videos = ClipStore.list_videos(folder)[:count]
    if not videos:
        raise DemoInputError(f"--data {folder}: no clips (videos) found")
    return [_to_model_frames(decode_clip(v, size=size, crop="center", regions=False).frames[:frames]) for v in videos]


def convert(src: str | Path, dst: str | Path, data: str | Path, *, clips: int = 4, frames: int = 32, log=print) -> Path:
    """Write ``src`` with a positive-sign motion basis equal to its best-reconstructing LAPACK basis."""
    from ..io.checkpoints import read_tensor_file, save_checkpoint
    from ..models.loader import load_model

    tensors, metadata = read_tensor_file(src)
    dtype = tensors["motion_autoencoder.dec.direction.weight"].dtype if \
        "motion_autoencoder.dec.direction.weight" in tensors else torch.float32
    extra = {k: v for k, v in metadata.items() if k not in ("config", "format", "format_version")}
    del tensors
    model, _ = load_model(src, device="cpu", dtype=torch.float32)
    mae = model.motion_autoencoder
    if mae.cfg.basis_signs == "positive":
        raise DemoInputError(f"{src}: the motion basis already uses the positive sign convention")
    target = choose_basis(model.eval(), _clips(Path(data), mae.cfg.size, clips, frames), log)
    with torch.no_grad():
        mae.dec.direction.weight.copy_(positive_sign_weight(mae.dec.direction.weight, target))
    mae.cfg.basis_signs = "positive"
    mae.dec.direction.positive = True
    q = mae.directions().double()
    log(f"positive-sign basis vs the chosen one: max |difference| {float((q - target).abs().max()):.2e}")
    model = model.to(dtype)
    return save_checkpoint(dst, model, model.cfg.to_dict(), extra_metadata=extra)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m demo_core.tools.basis_signs", description=__doc__.split("\n\n")[0])
    ap.add_argument("src", help="DEMO-native checkpoint (.safetensors)")
    ap.add_argument("dst", help="output checkpoint (never overwritten)")
    ap.add_argument("--data", required=True, help="folder of clips (videos, with their .frames.npy when present) to measure reconstruction on")
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--frames", type=int, default=32)
    args = ap.parse_args(argv)
    try:
        out = convert(args.src, args.dst, args.data, clips=args.clips, frames=args.frames)
    except DemoInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
