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
from pathlib import Path

import torch
from torch import Tensor

from ..errors import DemoInputError
from ..models.motion_autoencoder import qr_basis
from .common import load_float32, run_tool, save_like, training_clips

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


def convert(src: str | Path, dst: str | Path, data: str | Path, *, clips: int = 4, frames: int = 32, log=print) -> Path:
    """Write ``src`` with a positive-sign motion basis equal to its best-reconstructing LAPACK basis."""
    model, dtype, extra = load_float32(src)
    mae = model.motion_autoencoder
    if mae.cfg.basis_signs == "positive":
        raise DemoInputError(f"{src}: the motion basis already uses the positive sign convention")
    target = choose_basis(model, training_clips(Path(data), mae.cfg.size, clips, frames), log)
    with torch.no_grad():
        mae.dec.direction.weight.copy_(positive_sign_weight(mae.dec.direction.weight, target))
    mae.cfg.basis_signs = "positive"
    mae.dec.direction.positive = True
    q = mae.directions().double()
    log(f"positive-sign basis vs the chosen one: max |difference| {float((q - target).abs().max()):.2e}")
    return save_like(dst, model, dtype, extra)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m demo_core.tools.basis_signs", description=__doc__.split("\n\n")[0])
    ap.add_argument("src", help="DEMO-native checkpoint (.safetensors)")
    ap.add_argument("dst", help="output checkpoint (never overwritten)")
    ap.add_argument("--data", required=True, help="folder of clips (videos, with their .frames.npy when present) to measure reconstruction on")
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--frames", type=int, default=32)
    args = ap.parse_args(argv)
    return run_tool(lambda: convert(args.src, args.dst, args.data, clips=args.clips, frames=args.frames))


if __name__ == "__main__":
    raise SystemExit(main())
