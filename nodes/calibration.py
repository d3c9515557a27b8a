"""DemoCalibrateFactors, and the factor space every factor-control node works in.

A DEMO-format model names its motion factors itself (lip, pose with yaw/pitch/roll in degrees, gaze, blink).
A FLOAT-family checkpoint does not: Demo Calibrate Factors measures which dictionary directions move the head,
the lips and the eyes and saves ``<checkpoint>.factors.json`` beside the checkpoint.  :func:`factor_space` reads
that sidecar each time a node runs, so a model loaded before the calibration picks it up at once.
"""

from __future__ import annotations

import logging

from demo_core.motion.factor_sidecar import FactorCalibration
from demo_core.motion.factor_space import FactorSpace
from demo_core.pipeline import (calibrate_model, model_factor_calibration, model_factor_space, track_factor_space,
                                with_track_render_knots)

from .errors import node_errors
from .loaders import checkpoint_of
from .types import CATEGORY_ROOT, DEMO_MODEL, DEMO_MOTION, DEMO_PORTRAIT

__all__ = ["DemoCalibrateFactors", "factor_space", "describe_calibration"]

log = logging.getLogger("comfyui-demo")


def factor_space(model=None, motion=None) -> FactorSpace | None:
    """The model's factor space when a model is given and has one (DEMO layout or calibration sidecar; with the
    render knots ``motion`` carries from its portrait), else the one ``motion`` carries, else None."""
    if model is not None:
        space = model_factor_space(model, model_factor_calibration(model, checkpoint_of(model)))
        if space is not None:
            return with_track_render_knots(space, motion)
    return None if motion is None else track_factor_space(motion)


def describe_calibration(calibration: FactorCalibration, path, written: bool) -> str:
    """The report of Demo Calibrate Factors: where the sidecar is and which coordinates each factor has."""
    verb = "Saved" if written else "Kept the existing"
    lines = [f"{verb} factor calibration ({calibration.source}): {path}"]
    for block in calibration.layout.blocks:
        directions = ", ".join(str(i) for i in calibration.directions[block.name])
        lines.append(f"{block.name}: {block.name}.c0 … {block.name}.c{block.size - 1} (directions {directions})")
    if calibration.source == "measured" and "pose" in calibration.layout.names:
        lines.append("pose.c0 moves the head sideways, pose.c1 up and down, pose.c2 rolls it, pose.c3 scales it.")
    lines.append("Use these names in keyframes (e.g. lip.gain, pose.c0, eyes.c0); gains and smoothing work on "
                 "lip, pose and eyes (gaze and blink both mean eyes).")
    if not written:
        lines.append("Set overwrite to true to measure again or to apply a new manual_map.")
    return "\n".join(lines)


class DemoCalibrateFactors:
    """Name the motion factors of a FLOAT-family checkpoint."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (DEMO_MODEL, {"tooltip": "A FLOAT-family model from Demo Load Model (DEMO-format models "
                                                  "need no calibration)."}),
                "portrait": (DEMO_PORTRAIT, {"tooltip": "Encoded portraits to measure on: every portrait of a "
                                                        "batch is measured and the effects averaged, so a batch of "
                                                        "a few (say 4) frontal faces with open eyes is steadier "
                                                        "than one."}),
                "epsilon": ("FLOAT", {"default": 0.5, "min": 0.05, "max": 4.0, "step": 0.05,
                                      "tooltip": "Step along each motion direction when measuring what it moves: "
                                                 "in coefficient units, or with motion connected in standard "
                                                 "deviations of each direction in that motion (2 works well)."}),
                "overwrite": ("BOOLEAN", {"default": False,
                                          "tooltip": "Replace an existing <checkpoint>.factors.json; off keeps it "
                                                     "and reports what it holds."}),
            },
            "optional": {
                "manual_map": ("STRING", {
                    "default": "", "multiline": True,
                    "tooltip": "Instead of measuring: JSON direction indices per factor, e.g. "
                               '{"lip": [3, 7, 12], "pose": [0, 5], "eyes": [9]}; directions not named go to '
                               "residual."}),
                "motion": (DEMO_MOTION, {"tooltip": "Optional motion of this model (from Demo Sample Motion or a "
                                                    "driving video): each direction is then measured at the size it "
                                                    "moves there, so a direction that moves the lips a little per "
                                                    "unit but swings widely is still found."}),
            },
        }

    RETURN_TYPES = ("STRING", DEMO_MODEL)
    RETURN_NAMES = ("report", "model")
    OUTPUT_TOOLTIPS = (
        "Where the calibration is saved and which coordinates each factor has (lip.c0, pose.c0, eyes.c0...).",
        "The same model, for nodes that should run after the calibration is saved (sampling, editing).",
    )
    FUNCTION = "calibrate"
    OUTPUT_NODE = True
    CATEGORY = f"{CATEGORY_ROOT}/motion"
    DESCRIPTION = ("Measures which motion directions of a FLOAT-family checkpoint move the head, the lips and the "
                   "eyes, and saves <checkpoint>.factors.json beside it (never replacing one unless overwrite is "
                   "on). Sampling, editing and mixing nodes then work on lip, pose and eyes for that model.")

    @node_errors
    def calibrate(self, model, portrait, epsilon, overwrite, manual_map="", motion=None):
        checkpoint = checkpoint_of(model)
        if checkpoint is None and getattr(model, "layout", None) is None:
            raise ValueError("model: the calibration is saved beside the checkpoint file; load the model with "
                             "Demo Load Model")
        calibration, path, written = calibrate_model(model, portrait, checkpoint, manual_map=manual_map,
                                                     epsilon=epsilon, overwrite=overwrite, motion=motion)
        report = describe_calibration(calibration, path, written)
        log.info("DemoCalibrateFactors: %s", report)
        return {"ui": {"text": [report]}, "result": (report, model)}
