"""DemoSampleMotion (speech → motion, optionally with factors following given tracks) and DemoMotionFromVideo
(driving frames → motion, usable as such a track)."""

from __future__ import annotations

from demo_core.motion.length_matching import LENGTH_MODES
from demo_core.pipeline import (
    GenerationSettings,
    attach_factor_space,
    motion_from_frames,
    portrait_factor_space,
    sample_motion_track,
    sample_motion_track_conditioned,
)

from . import comfy_host
from .calibration import factor_space
from .errors import node_errors
from .plot import motion_curves
from .types import CATEGORY_ROOT, DEMO_AUDIO_COND, DEMO_MODEL, DEMO_MOTION, DEMO_PORTRAIT

__all__ = ["DemoSampleMotion", "DemoMotionFromVideo"]

SOLVERS = ["euler", "midpoint", "rk4"]
VIDEO_CROP_MODES = ["auto", "center", "none"]


class DemoSampleMotion:
    """Sample a motion trajectory from speech with flow matching."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (DEMO_MODEL, {"tooltip": "The model from Demo Load Model."}),
                "portrait": (DEMO_PORTRAIT, {"tooltip": "The encoded portrait(s): motion starts from their pose."}),
                "audio_cond": (DEMO_AUDIO_COND, {"tooltip": "The encoded speech from Demo Encode Audio."}),
                "steps": ("INT", {"default": 10, "min": 1, "max": 100,
                                  "tooltip": "ODE steps per 2-second window: more is smoother and slower (FLOAT's "
                                             "nfe=10 equals 9)."}),
                "solver": (SOLVERS, {"default": "euler",
                                     "tooltip": "ODE solver: euler (FLOAT's), midpoint or rk4 (2 and 4 model calls "
                                                "per step)."}),
                "a_cfg": ("FLOAT", {"default": 2.0, "min": 0.0, "max": 20.0, "step": 0.1,
                                    "tooltip": "Audio guidance: higher follows the speech more strongly."}),
                "e_cfg": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 20.0, "step": 0.1,
                                    "tooltip": "Emotion guidance: higher shows the emotion more strongly."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                                 "tooltip": "Noise seed: the same seed gives the same motion on the same device."}),
                "fps": ("FLOAT", {"default": 25.0, "min": 10.0, "max": 60.0, "step": 0.01,
                                  "tooltip": "Output frame rate; the motion is resampled from the model's 25 fps, so "
                                             "audio and video stay in sync at any rate."}),
            },
            "optional": {
                "pose_track": (DEMO_MOTION, {"tooltip": "Head pose to follow exactly (e.g. Demo Motion From Video); "
                                                        "lips, gaze and blinks still come from the speech."}),
                "gaze_track": (DEMO_MOTION, {"tooltip": "Gaze to follow exactly; the other factors come from the "
                                                        "speech."}),
                "blink_track": (DEMO_MOTION, {"tooltip": "Blinks (eyelids) to follow exactly; the other factors "
                                                         "come from the speech."}),
                "track_length": (list(LENGTH_MODES), {
                    "default": "pingpong",
                    "tooltip": "How a track shorter than the speech is extended: loop, pingpong (back and forth, "
                               "no jump) or hold its last frame; longer tracks are cut."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    RETURN_TYPES = (DEMO_MOTION,)
    RETURN_NAMES = ("motion",)
    OUTPUT_TOOLTIPS = ("Motion latents at the chosen fps, exactly ceil(audio seconds × fps) frames.",)
    FUNCTION = "sample"
    CATEGORY = f"{CATEGORY_ROOT}/motion"
    DESCRIPTION = ("Generates head, lip and eye motion for the speech, 2-second window by window, and retimes it "
                   "to the output frame rate. Connected pose/gaze/blink tracks are followed exactly while the other "
                   "factors are generated to match. For DEMO models it also measures how this portrait renders "
                   "yaw, pitch and roll, so that edits in degrees downstream render as degrees. Cancel stops it "
                   "between steps. The node shows the motion curves.")

    @node_errors
    def sample(self, model, portrait, audio_cond, steps, solver, a_cfg, e_cfg, seed, fps, pose_track=None,
               gaze_track=None, blink_track=None, track_length="pingpong", unique_id=None):
        settings = GenerationSettings(steps=steps, method=solver, a_cfg=a_cfg, e_cfg=e_cfg, seed=seed, fps=fps)
        callback = comfy_host.progress_callback(unique_id)
        space = portrait_factor_space(model, portrait, factor_space(model))  # degrees render as degrees on it
        tracks = {name: track for name, track in (("pose", pose_track), ("gaze", gaze_track), ("blink", blink_track))
                  if track is not None}
        if tracks:
            track = sample_motion_track_conditioned(model, portrait, audio_cond, settings, tracks, space,
                                                    length_mode=track_length, callback=callback)
        else:
            track = attach_factor_space(sample_motion_track(model, portrait, audio_cond, settings, callback=callback),
                                        space)
        return {"ui": {"demo_curves": motion_curves(track)}, "result": (track,)}


class DemoMotionFromVideo:
    """Take the motion of a driving video."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (DEMO_MODEL, {"tooltip": "The model from Demo Load Model."}),
                "images": ("IMAGE", {"tooltip": "Frames of the driving video (e.g. from Load Video)."}),
                "fps": ("FLOAT", {"default": 25.0, "min": 1.0, "max": 120.0, "step": 0.01,
                                  "tooltip": "Frame rate of the driving frames."}),
                "crop": (VIDEO_CROP_MODES, {"default": "auto",
                                            "tooltip": "Face framing, chosen on the first frame and kept for all "
                                                       "frames."}),
                "scale": ("FLOAT", {"default": 1.6, "min": 0.5, "max": 4.0, "step": 0.05,
                                    "tooltip": "Crop side relative to the detected face (crop = auto)."}),
                "relative": ("BOOLEAN", {"default": True,
                                         "tooltip": "Apply the video's motion relative to its first frame, starting "
                                                    "from the portrait's own pose (best across identities)."}),
                "batch_size": ("INT", {"default": 16, "min": 1, "max": 256,
                                       "tooltip": "Frames encoded at once; lower it if memory runs out."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    RETURN_TYPES = (DEMO_MOTION,)
    RETURN_NAMES = ("motion",)
    OUTPUT_TOOLTIPS = ("One motion latent per driving frame, at the given fps.",)
    FUNCTION = "extract"
    CATEGORY = f"{CATEGORY_ROOT}/motion"
    DESCRIPTION = ("Encodes the motion of every driving frame with the model's motion encoder, to re-enact a "
                   "portrait with someone else's head and face movement, or as a pose/gaze track for Demo Sample "
                   "Motion and Demo Mix Motion (an animated WebP/GIF from Load Image works as the driving video).")

    @node_errors
    def extract(self, model, images, fps, crop, scale, relative, batch_size, unique_id=None):
        track = motion_from_frames(model, images, fps, crop=crop, scale=scale, relative=relative, batch=batch_size,
                                   callback=comfy_host.progress_callback(unique_id))
        return (attach_factor_space(track, factor_space(model)),)
