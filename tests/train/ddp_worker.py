"""Entry point of one process of the two-process (Gloo, CPU) training test; see test_distributed.py."""

from __future__ import annotations

import os


def run(rank: int, world: int, port: int, out: str, cfg_dict: dict, init: str | None = None) -> None:
    import torch

    from demo_core.train import TrainConfig, train_stage1, train_stage2

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    cfg = TrainConfig.from_dict(cfg_dict)
    train_stage1(cfg, out, log=lambda _m: None)
    os.environ["MASTER_PORT"] = str(port + 1)
    train_stage2(cfg, out, init=init, log=lambda _m: None)
