"""DemoEditFactors (gains, offsets, smoothing, blinks, keyframes on one motion) and DemoMixMotion (factors
taken from several motions).

Both work in the motion's factor space: a DEMO-format model's own layout, or a FLOAT-family checkpoint's
calibration sidecar (see :mod:`.calibration`).  The keyframe editor of ``web/js/keyframe_editor.js`` attaches
to DemoEditFactors' ``keyframes`` text box; the text alone is what runs, so workflows work without it.
"""

from __future__ import annotations

from demo_core.errors import DemoInputError
from demo_core.motion.keyframes import check_value_ranges, parse_keyframes
from demo_core.motion.length_matching import LENGTH_MODES
from demo_core.pipeline import BLINK_MODES, FactorEdits, edit_motion_track, mix_motion_tracks, parse_blink_times

from .calibration import factor_space
from .errors import node_errors
from .plot import motion_curves
from .types import CATEGORY_ROOT, DEMO_MODEL, DEMO_MOTION

__all__ = ["DemoEditFactors", "DemoMixMotion"]

_GAIN = {"default": 1.0, "min": 0.0, "max": 3.0, "step": 0.05}
_DEGREES = {"default": 0.0, "min": -45.0, "max": 45.0, "step": 0.5}
_GAZE = {"default": 0.0, "min": -1.0, "max": 1.0, "step": 0.01}
_SIGMA = {"default": 0.0, "min": 0.0, "max": 25.0, "step": 0.5}
_MODEL_TOOLTIP = ("The model, for FLOAT-family checkpoints: its calibration (<checkpoint>.factors.json, from Demo "
                  "Calibrate Factors) names the factors. Not needed for DEMO-format models.")


def _gain(factor: str, what: str) -> tuple:
    return ("FLOAT", {**_GAIN, "tooltip": f"Scales the {what} around the clip's mean: 0 holds it still, 1 leaves "
                                          f"it as generated, 2 doubles it."})


class DemoEditFactors:
    """Steer lips, head pose, gaze and blinks of a motion independently."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "motion": (DEMO_MOTION, {"tooltip": "The motion to edit (Demo Sample Motion, Demo Motion From Video, "
                                                    "Demo Load Motion...)."}),
                "lip_gain": _gain("lip", "lip motion"),
                "pose_gain": _gain("pose", "head motion"),
                "gaze_gain": _gain("gaze", "eye (gaze) motion"),
                "blink_gain": _gain("blink", "eyelid motion"),
                "yaw_offset": ("FLOAT", {**_DEGREES, "tooltip": "Turns the head sideways by this many degrees "
                                                                "(yaw) for the whole clip."}),
                "pitch_offset": ("FLOAT", {**_DEGREES, "tooltip": "Tilts the head up or down by this many degrees."}),
                "roll_offset": ("FLOAT", {**_DEGREES, "tooltip": "Rolls the head by this many degrees."}),
                "gaze_x_offset": ("FLOAT", {**_GAZE, "tooltip": "Moves the gaze sideways (-1..1 of the eye range)."}),
                "gaze_y_offset": ("FLOAT", {**_GAZE, "tooltip": "Moves the gaze up or down (-1..1 of the eye "
                                                                "range)."}),
                "lip_smoothing": ("FLOAT", {**_SIGMA, "tooltip": "Gaussian smoothing of the lips over time, sigma "
                                                                 "in frames (0 = off)."}),
                "pose_smoothing": ("FLOAT", {**_SIGMA, "tooltip": "Gaussian smoothing of the head motion, sigma in "
                                                                  "frames (0 = off); removes jitter."}),
                "gaze_smoothing": ("FLOAT", {**_SIGMA, "tooltip": "Gaussian smoothing of the gaze, sigma in frames "
                                                                  "(0 = off)."}),
                "blinks": (list(BLINK_MODES), {"default": "keep",
                                               "tooltip": "keep: the generated blinks; natural: replace them by "
                                                          "natural blinks at blink_rate; none: remove them; at "
                                                          "times: blinks starting at blink_times."}),
                "blink_rate": ("FLOAT", {"default": 17.0, "min": 1.0, "max": 50.0, "step": 0.5,
                                         "tooltip": "Blinks per minute for blinks = natural (people: 15-20)."}),
                "blink_times": ("STRING", {"default": "",
                                           "tooltip": "Blink start times in seconds for blinks = at times, e.g. "
                                                      "0.8, 2.5, 4.1"}),
                "freeze_pose": ("BOOLEAN", {"default": False,
                                            "tooltip": "Hold the head still at its first-frame pose (lips and "
                                                       "eyes keep moving)."}),
                "look_at_camera": ("BOOLEAN", {"default": False,
                                               "tooltip": "Set the gaze straight ahead (gaze x and y = 0; on "
                                                          "motion relative to a portrait: the portrait's own gaze); "
                                                          "the gaze offsets still apply."}),
                "blink_seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                                       "tooltip": "Seed of the natural blink times: the same seed gives the same "
                                                  "blinks."}),
                "keyframes": ("STRING", {
                    "default": "", "multiline": True,
                    "tooltip": 'Keyframe curves, applied last: JSON like {"pose.yaw": [[0, 0], [3, 15]]} (turn '
                               "15 degrees by 3 s). Tracks: pose.yaw/pitch/roll (deg), gaze.x/y, blink.closure, "
                               "<factor>.gain, <factor>.c<i>. The timeline editor writes this text."}),
            },
            "optional": {"model": (DEMO_MODEL, {"tooltip": _MODEL_TOOLTIP})},
        }

    RETURN_TYPES = (DEMO_MOTION,)
    RETURN_NAMES = ("motion",)
    OUTPUT_TOOLTIPS = ("The edited motion (same length and fps); only the factors you changed move.",)
    FUNCTION = "edit"
    CATEGORY = f"{CATEGORY_ROOT}/motion"
    DESCRIPTION = ("Edits each motion factor on its own: gains, head turns in degrees, gaze, smoothing, blinks and "
                   "keyframe curves. Applied in that order; the other factors stay exactly as they were. The node "
                   "shows the edited curves.")

    @classmethod
    def VALIDATE_INPUTS(cls, keyframes="", blink_times=""):
        try:
            check_value_ranges(parse_keyframes(keyframes))
            parse_blink_times(blink_times)
        except DemoInputError as err:
            return f"{cls.__name__}: {err}"
        return True

    @node_errors
    def edit(self, motion, lip_gain, pose_gain, gaze_gain, blink_gain, yaw_offset, pitch_offset, roll_offset,
             gaze_x_offset, gaze_y_offset, lip_smoothing, pose_smoothing, gaze_smoothing, blinks, blink_rate,
             blink_times, freeze_pose, look_at_camera, blink_seed, keyframes, model=None):
        edits = FactorEdits(
            gains={"lip": lip_gain, "pose": pose_gain, "gaze": gaze_gain, "blink": blink_gain},
            offsets={"pose.yaw": yaw_offset, "pose.pitch": pitch_offset, "pose.roll": roll_offset,
                     "gaze.x": gaze_x_offset, "gaze.y": gaze_y_offset},
            smoothing={"lip": lip_smoothing, "pose": pose_smoothing, "gaze": gaze_smoothing},
            freeze_pose=freeze_pose, look_at_camera=look_at_camera, blinks=blinks, blink_rate=blink_rate,
            blink_times=parse_blink_times(blink_times), seed=blink_seed, keyframes=keyframes)
        edited = edit_motion_track(motion, edits, factor_space(model, motion))
        return {"ui": {"demo_curves": motion_curves(edited)}, "result": (edited,)}


class DemoMixMotion:
    """Combine factors of several motions: one clip's lips, another's head pose, a third's gaze."""

    @classmethod
    def INPUT_TYPES(cls):
        def source(what: str) -> tuple:
            return (DEMO_MOTION, {"tooltip": f"Motion whose {what} replaces the base's (unconnected: the base's "
                                             f"own)."})

        return {
            "required": {
                "base": (DEMO_MOTION, {"tooltip": "The motion that sets the length, the fps and every factor not "
                                                  "taken from a source (usually the speech-driven motion)."}),
                "relative": ("BOOLEAN", {"default": True,
                                         "tooltip": "Transfer each source's motion from its first frame onto the "
                                                    "base's first-frame value (keeps the portrait's own rest "
                                                    "pose); off copies the coordinates as they are."}),
                "length_mode": (list(LENGTH_MODES), {"default": "pingpong",
                                                     "tooltip": "How a source shorter than the base is extended: "
                                                                "loop, pingpong (back and forth, no jump) or hold "
                                                                "its last frame; longer sources are cut."}),
            },
            "optional": {
                "lip": source("lip motion"),
                "pose": source("head pose"),
                "gaze": source("gaze"),
                "blink": source("blinks"),
                "model": (DEMO_MODEL, {"tooltip": _MODEL_TOOLTIP}),
            },
        }

    RETURN_TYPES = (DEMO_MOTION,)
    RETURN_NAMES = ("motion",)
    OUTPUT_TOOLTIPS = ("The base motion with the connected factors taken from their sources.",)
    FUNCTION = "mix"
    CATEGORY = f"{CATEGORY_ROOT}/motion"
    DESCRIPTION = ("Takes each connected factor (lips, head pose, gaze, blinks) from its own motion and everything "
                   "else from the base, e.g. speech-driven lips with the head motion of a driving video. Sources "
                   "are retimed to the base's fps.")

    @node_errors
    def mix(self, base, relative, length_mode, lip=None, pose=None, gaze=None, blink=None, model=None):
        sources = {name: track for name, track in (("lip", lip), ("pose", pose), ("gaze", gaze), ("blink", blink))
                   if track is not None}
        space = factor_space(model, base) if sources else None
        return (mix_motion_tracks(base, sources, space, relative=relative, length_mode=length_mode),)
