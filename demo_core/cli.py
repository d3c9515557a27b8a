"""Command-line interface: ``python -m demo_core <command>``.

Commands:
    generate   portrait + speech → mp4 (defaults: the embedded model, portrait and speech clip)
    inspect    print what a checkpoint holds and the configuration inferred from it
    train      train a DEMO-native model: ``train stage1|stage2 --config cfg.json|--data DIR --out DIR [--resume]``
               (multi-process: ``torchrun --nproc_per_node N -m demo_core train ...``)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import CheckpointError, DemoInputError

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_CHECKPOINT = ASSETS / "models" / "demo_synthetic_64.safetensors"
DEFAULT_PORTRAIT = ASSETS / "portrait_synthetic.png"
DEFAULT_SPEECH = ASSETS / "speech_arctic_a0009.wav"

__all__ = ["main", "build_parser"]


def _dtype(name: str):
    import torch

    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if name not in table:
        raise DemoInputError(f"--dtype must be one of float32, bfloat16, float16, got {name!r}")
    return table[name]


def _parse_box(text: str | None):
    if text is None:
        return None
    try:
        parts = [float(v) for v in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) != 4:
        raise DemoInputError(f"--box must be 'x,y,w,h' in pixels, got {text!r}")
    return tuple(parts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m demo_core", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="portrait + speech → talking-portrait mp4")
    g.add_argument("--checkpoint", nargs="+", default=None,
                   help="checkpoint file(s) or folder: the pack's .safetensors, FLOAT's float.pth, FLOAT.safetensors "
                        "or its split parts (default: the embedded synthetic-domain demo model)")
    g.add_argument("--image", default=None, help="portrait image (default: the bundled synthetic portrait)")
    g.add_argument("--audio", default=None, help="speech audio or video file (default: the bundled speech clip)")
    g.add_argument("--out", default="out.mp4", help="output mp4; an existing file is never overwritten")
    g.add_argument("--fps", type=float, default=25.0, help="output frame rate, 10–60 (default 25)")
    g.add_argument("--steps", type=int, default=10, help="ODE steps per window (default 10; FLOAT's nfe=10 is 9)")
    g.add_argument("--solver", default="euler", choices=["euler", "midpoint", "rk4"])
    g.add_argument("--a-cfg", type=float, default=2.0, help="audio guidance scale (default 2.0)")
    g.add_argument("--e-cfg", type=float, default=1.0, help="emotion guidance scale (default 1.0)")
    g.add_argument("--emotion", default="auto",
                   help="auto (from speech) or angry, disgust, fear, happy, neutral, sad, surprise")
    g.add_argument("--seed", type=int, default=0,
                   help="noise seed, any integer (taken modulo 2**64: -1 is 18446744073709551615, as in ComfyUI)")
    g.add_argument("--crop", default="auto", choices=["auto", "center", "box", "none"],
                   help="face framing: auto (detect, else centre), center, box (--box) or none")
    g.add_argument("--box", default=None, help="x,y,w,h face box in pixels for --crop box")
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps ...")
    g.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16")
    g.add_argument("--render-batch", type=int, default=8, help="frames decoded per batch")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")

    i = sub.add_parser("inspect", help="show what a checkpoint holds")
    i.add_argument("checkpoint", nargs="+")

    t = sub.add_parser("train", help="train a DEMO-native model (stage1: auto-encoder, stage2: flow matching)")
    t.add_argument("stage", choices=["stage1", "stage2"])
    t.add_argument("--config", default=None,
                   help="training config JSON (default: demo_core/train/configs/demo_synthetic_64.json)")
    t.add_argument("--data", default=None, help="folder of training videos (overrides data.root)")
    t.add_argument("--out", required=True, help="run folder (stage1/ and stage2/ are written inside)")
    t.add_argument("--resume", action="store_true", help="continue from the newest checkpoint of this stage")
    t.add_argument("--init", default=None,
                   help="stage 1: start from this model's weights (fine-tuning: fresh optimiser, schedule and step "
                        "count); stage 2: the stage-1 model (default OUT/stage1/model.safetensors)")
    t.add_argument("--reinit", nargs="+", default=None, metavar="FACTOR",
                   help="stage 1 with --init: restart these factors' encoders and heads from a fresh initialisation")
    t.add_argument("--steps", type=int, default=None, help="override the stage's step count")
    t.add_argument("--batch", type=int, default=None, help="override the stage's global batch")
    t.add_argument("--device", default=None, help="override the device (cpu, cuda)")
    t.add_argument("--seed", type=int, default=None, help="override the stage's seed")
    t.add_argument("--stop-after", type=int, default=None, help="stop (with a checkpoint) after N steps of this run")
    return parser


def _generate(args) -> int:
    import torch

    from .io.media import load_audio_mono, load_image
    from .models.loader import load_model
    from .pipeline import GenerationSettings, generate_video

    ckpt = args.checkpoint or [DEFAULT_CHECKPOINT]
    if args.checkpoint is None and not DEFAULT_CHECKPOINT.exists():
        raise CheckpointError(f"no --checkpoint given and the embedded default model {DEFAULT_CHECKPOINT} is missing")
    image_path = Path(args.image) if args.image else DEFAULT_PORTRAIT
    audio_path = Path(args.audio) if args.audio else DEFAULT_SPEECH
    settings = GenerationSettings(steps=args.steps, method=args.solver, a_cfg=args.a_cfg, e_cfg=args.e_cfg,
                                  emotion=args.emotion, seed=args.seed, fps=args.fps, render_batch=args.render_batch)
    settings.validate()
    box = _parse_box(args.box)
    if args.crop == "box" and box is None:
        raise DemoInputError("--crop box needs --box x,y,w,h")
    device = torch.device(args.device)
    model, report = load_model(ckpt, device=device, dtype=_dtype(args.dtype))
    print(f"model: {report.summary()}", file=sys.stderr)
    image = load_image(image_path)
    # decoded, mixed and resampled to the model's rate frame by frame: the file's channels at their own rate
    # are never held whole (the same samples as load_audio + prepare_waveform; the length follows the file)
    rate = model.cfg.sampling_rate
    waveform, source_samples, source_rate = load_audio_mono(audio_path, rate)

    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=1, unit="step", desc="generating", dynamic_ncols=True)

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.n = done
            bar.refresh()

    try:
        out = generate_video(model, image, waveform, rate, args.out, settings, crop=args.crop, box=box,
                             progress=progress, source=(source_samples, source_rate))
    finally:
        if bar is not None:
            bar.close()
    print(out)
    return 0


def _inspect(args) -> int:
    from .io.checkpoints import collect_state_dict
    from .models.loader import infer_float_config

    state, meta, sources, hf = collect_state_dict(args.checkpoint)
    n = sum(t.numel() for t in state.values())
    print(f"files: {', '.join(sources)}")
    print(f"tensors: {len(state)}  parameters: {n:,}")
    tops: dict[str, int] = {}
    for k, t in state.items():
        top = k.split(".")[0]
        tops[top] = tops.get(top, 0) + t.numel()
    for top, count in tops.items():
        print(f"  {top}: {count:,}")
    if meta:
        print(f"metadata: {', '.join(sorted(meta))}")
    if "config" not in meta:
        import json

        print("inferred config:", json.dumps(infer_float_config(state, hf).to_dict(), indent=1)[:4000])
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "generate":
            return _generate(args)
        if args.command == "inspect":
            return _inspect(args)
        if args.command == "train":
            from .train import run_train_command

            return run_train_command(args)
    except (DemoInputError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
