"""Training of DEMO-native models (stage 1: motion auto-encoder with factor heads; stage 2: flow matching).

Library code never imports this package; the CLI (``python -m demo_core train …``) imports it lazily.
"""

from .config import DataConfig, Stage1Config, Stage1Weights, Stage2Config, TrainConfig, load_train_config
from .loop import lr_at, step_generator, train_stage1, train_stage2

__all__ = [
    "DataConfig",
    "Stage1Config",
    "Stage1Weights",
    "Stage2Config",
    "TrainConfig",
    "load_train_config",
    "lr_at",
    "step_generator",
    "train_stage1",
    "train_stage2",
    "default_config_path",
    "run_train_command",
]


def default_config_path():
    """The bundled small-model config (``configs/demo_synthetic_64.json``)."""
    from pathlib import Path

    return Path(__file__).resolve().parent / "configs" / "demo_synthetic_64.json"


def run_train_command(args) -> int:
    """Run ``python -m demo_core train stage1|stage2`` with parsed CLI arguments (see ``demo_core.cli``)."""
    import dataclasses

    cfg = load_train_config(args.config or default_config_path())
    if args.data:
        cfg.data = dataclasses.replace(cfg.data, root=str(args.data))
    if not cfg.data.root:
        from ..errors import DemoInputError

        raise DemoInputError("no data folder: give --data DIR or set data.root in the config")
    stage = dataclasses.replace(getattr(cfg, args.stage), **{
        k: v for k, v in (("steps", args.steps), ("batch", args.batch), ("device", args.device), ("seed", args.seed))
        if v is not None
    })
    setattr(cfg, args.stage, stage)
    reinit = list(getattr(args, "reinit", None) or [])
    if args.stage == "stage1":
        path = train_stage1(cfg, args.out, init=args.init, reinit=reinit, resume=args.resume,
                            stop_after=args.stop_after)
    else:
        if reinit:
            from ..errors import DemoInputError

            raise DemoInputError("--reinit applies to stage 1 only")
        path = train_stage2(cfg, args.out, init=args.init, resume=args.resume, stop_after=args.stop_after)
    print(path)
    return 0
