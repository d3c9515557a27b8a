"""Measure how a DEMO-native model's decoder renders its semantic axes, and store the inverse in the checkpoint.

An edit in an axis unit (set yaw to 15°, a keyframe, an offset in degrees) writes a coefficient; the decoder
draws it, and the encoder, the model's label-supervised instrument (it reads yaw to 0.5° on held-out clips),
reads what was drawn.  The two need not agree: the embedded 64² model draws a 15° coefficient as 13.7° and a
20° one as 17.4°, because large turns are rare in its training data (yaw spread 5.5°).

For each chosen axis this tool sets the axis, on frames of the given clips, to a grid of values spanning the
clips' own range widened by ``span``, renders each frame from its clip's first frame, re-encodes it and reads
the axis back; the mean read-back per grid value is the render curve.  The knots ``(read-back, coefficient)``
over the curve's rising part around the data's median (each step gaining at least ``min_gain`` of what was
asked) become the block's ``axis_render`` in the saved config, which edits in axis units invert
(:meth:`~demo_core.motion.factors.FactorBlock.render_coefficient`).  Weights are copied unchanged.  Motion
sampled for a portrait measures the same curve on that portrait
(:func:`~demo_core.motion.render_axes.portrait_render_layout`), over the range these knots span.

Usage::

    python -m demo_core.tools.render_axes IN.safetensors OUT.safetensors --data CLIPS [CLIPS ...] \\
        [--axes pose.yaw,pose.pitch,pose.roll] [--clips 16] [--frames 6] [--points 13] [--span 1.6]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

import torch

from ..errors import DemoInputError
from ..motion.render_axes import DEFAULT_RENDER_AXES, MIN_GAIN, curve_knots, parse_axes, render_curve, with_render_knots
from .common import load_float32, run_tool, save_like, training_clips

__all__ = ["calibrate", "main"]

READ_FRAMES = 50  # frames read per clip; ``frames`` of them, evenly spaced, are edited


def calibrate(src: str | Path, dst: str | Path, data: list[str | Path], *, axes: str = ",".join(DEFAULT_RENDER_AXES),
              clips: int = 16, frames: int = 6, points: int = 13, span: float = 1.6, min_gain: float = MIN_GAIN,
              log: Callable[[str], None] = print) -> Path:
    """Write ``src`` with render knots for ``axes`` measured on ``clips`` clips of each ``data`` folder."""
    from ..models.demo_model import DemoModel

    if points < 3 or span <= 0 or frames < 1 or clips < 1:
        raise DemoInputError(f"need points >= 3, span > 0, frames >= 1, clips >= 1; got {points}, {span}, "
                             f"{frames}, {clips}")
    model, dtype, extra = load_float32(src)
    if not isinstance(model, DemoModel):
        raise DemoInputError(f"{src}: not a DEMO-native checkpoint (FLOAT-family models have no semantic axes)")
    mae, layout = model.motion_autoencoder, model.cfg.factors
    chosen = parse_axes(axes, layout)
    sources = []
    with torch.no_grad():
        for folder in data:
            for clip in training_clips(folder, mae.cfg.size, clips, READ_FRAMES):
                picked = clip[torch.linspace(0, clip.shape[0] - 1, min(frames, clip.shape[0])).round().long().unique()]
                h, _, feats = mae.encode(picked[:1])  # the clip's first frame is the appearance
                sources.append((h, feats, mae.encode(picked)[1]))
    knots = {}
    for factor, axis in chosen:
        block = layout.block(factor)
        j = layout.slices()[factor].start + block.axis_index(axis)
        seen = torch.cat([block.axis_value(axis, lam[:, j]) for _, _, lam in sources]).double()
        lo, mid, hi = (float(torch.quantile(seen, q)) for q in (0.01, 0.5, 0.99))
        values = torch.linspace(mid - span * (mid - lo), mid + span * (hi - mid), points, dtype=torch.float64)
        readback = render_curve(mae, layout, sources, factor, axis, values)
        k = curve_knots(block, axis, values, readback, mid, min_gain=min_gain)
        coefs = {c for _, c in k}
        log(f"{factor}.{axis} ({block.axis_units[block.axis_index(axis)]}): clips' range {lo:.3g} … {hi:.3g}, "
            f"median {mid:.3g}")
        for v, r in zip(values.tolist(), readback.tolist()):
            mark = "  knot" if float(block.axis_coefficient(axis, v)) in coefs else ""
            log(f"  asked {v:9.4g} → rendered {r:9.4g}{mark}")
        if k:
            knots[(factor, axis)] = k
        else:
            log(f"  fewer than 3 rising points: {factor}.{axis} keeps rendering as it reads")
    model.cfg.factors = with_render_knots(layout, knots)
    return save_like(dst, model, dtype, extra)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m demo_core.tools.render_axes", description=__doc__.split("\n\n")[0])
    ap.add_argument("src", help="DEMO-native checkpoint (.safetensors)")
    ap.add_argument("dst", help="output checkpoint (never overwritten)")
    ap.add_argument("--data", required=True, nargs="+", help="folder(s) of training clips (videos)")
    ap.add_argument("--axes", default=",".join(DEFAULT_RENDER_AXES), help="comma-separated factor.axis names")
    ap.add_argument("--clips", type=int, default=16, help="clips read from each folder")
    ap.add_argument("--frames", type=int, default=6, help="frames edited per clip (evenly spaced)")
    ap.add_argument("--points", type=int, default=13, help="grid values per axis")
    ap.add_argument("--span", type=float, default=1.6, help="grid half-width / the clips' half-range")
    args = ap.parse_args(argv)
    return run_tool(lambda: calibrate(args.src, args.dst, args.data, axes=args.axes, clips=args.clips,
                                      frames=args.frames, points=args.points, span=args.span))


if __name__ == "__main__":
    raise SystemExit(main())
