"""A tiny DEMO-native configuration shared by the model and training tests (64², a few channels)."""

from __future__ import annotations

from demo_core.models.demo_model import DemoConfig


def tiny_demo_dict(vae: bool = False) -> dict:
    return {
        "family": "demo",
        "motion_autoencoder": {"size": 64, "dim_w": 32, "dim_m": 20,
                               "channels": {"4": 8, "8": 8, "16": 8, "32": 8, "64": 8}},
        "audio_encoder": {"kind": "logmel", "n_mels": 16, "channels": 16, "dilations": [1, 2], "dim_feature": 16,
                          "dim_a": 16},
        "flow_transformer": {"dim_w": 32, "dim_a": 16, "dim_e": 7, "dim_h": 32, "depth": 1, "num_heads": 2,
                             "mlp_ratio": 2.0, "num_frames": 8, "num_prev_frames": 2, "attention_window": 2},
        "vae": vae,
        "head_hidden": 16,
        "head_depth": 1,
    }


def tiny_demo_config(vae: bool = False) -> DemoConfig:
    return DemoConfig.from_dict(tiny_demo_dict(vae))
