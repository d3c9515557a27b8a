"""DemoRenderFrames (motion → IMAGE batch + fps + AUDIO) and DemoRenderToVideo (motion → mp4, streamed)."""

from __future__ import annotations

import torch

from demo_core.pipeline import fit_audio, render_track, write_track_video

from . import comfy_host
from .audio import unpack_audio
from .errors import node_errors
from .types import CATEGORY_ROOT, DEMO_MODEL, DEMO_MOTION, DEMO_PORTRAIT

__all__ = ["DemoRenderFrames", "DemoRenderToVideo"]

SILENCE_RATE = 16000  # sample rate of the silent AUDIO given when no soundtrack is connected


def _render_inputs() -> dict:
    return {
        "model": (DEMO_MODEL, {"tooltip": "The model from Demo Load Model."}),
        "portrait": (DEMO_PORTRAIT, {"tooltip": "The encoded portrait(s) from Demo Encode Portrait."}),
        "motion": (DEMO_MOTION, {"tooltip": "Motion from Demo Sample Motion, Demo Motion From Video or Demo Load "
                                            "Motion."}),
        "batch_size": ("INT", {"default": 8, "min": 1, "max": 256,
                               "tooltip": "Frames decoded at once; lower it if GPU memory runs out."}),
    }


class DemoRenderFrames:
    """Render motion into an IMAGE batch."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": _render_inputs(),
            "optional": {
                "audio": ("AUDIO", {"tooltip": "Soundtrack to pass through, cut or padded to the video length "
                                               "(silence when unconnected)."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    RETURN_TYPES = ("IMAGE", "FLOAT", "AUDIO")
    RETURN_NAMES = ("images", "fps", "audio")
    OUTPUT_TOOLTIPS = (
        "Rendered frames at the model's resolution (several portraits: all frames of the first, then the next...).",
        "Frame rate of the frames, for Create Video.",
        "The soundtrack cut or padded to exactly the frames' duration.",
    )
    FUNCTION = "render"
    CATEGORY = f"{CATEGORY_ROOT}/render"
    DESCRIPTION = ("Decodes the motion into frames chunk by chunk (cancel stops between chunks). All frames are "
                   "held in memory: for long clips prefer Demo Render To Video, which streams into an mp4.")

    @node_errors
    def render(self, model, portrait, motion, batch_size, audio=None, unique_id=None):
        waveform, rate = (torch.zeros(1, 1, 0), SILENCE_RATE) if audio is None else unpack_audio(audio)
        waveform = fit_audio(waveform, rate, motion.num_frames, motion.fps)  # checked before the long render
        progress = comfy_host.progress_callback(unique_id)
        images = render_track(model, portrait, motion, batch=batch_size, callback=progress,
                              device=comfy_host.intermediate_device())
        comfy_host.soft_empty_cache()
        return (images, motion.fps, {"waveform": waveform, "sample_rate": rate})


class DemoRenderToVideo:
    """Render motion straight into an mp4 in the output folder."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                **_render_inputs(),
                "filename_prefix": ("STRING", {
                    "default": "demo/talking",
                    "tooltip": "Output name inside ComfyUI's output folder (may include a subfolder); a counter is "
                               "appended, nothing is overwritten."}),
                "crf": ("INT", {"default": 18, "min": 0, "max": 51,
                                "tooltip": "h264 quality: 0 lossless, 18 visually lossless, higher is smaller."}),
            },
            "optional": {
                "audio": ("AUDIO", {"tooltip": "Soundtrack muxed into the mp4, cut or padded to the video length "
                                               "(a silent video when unconnected)."}),
                "original_image": ("IMAGE", {"tooltip": "The full portrait image(s): when connected, the face is "
                                                        "pasted back into them while streaming."}),
                "feather": ("FLOAT", {"default": 0.1, "min": 0.0, "max": 0.5, "step": 0.01,
                                      "tooltip": "Paste-back blend width as a fraction of the crop side."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("path",)
    OUTPUT_TOOLTIPS = ("Path of the mp4 written (one line per portrait).",)
    FUNCTION = "render"
    OUTPUT_NODE = True
    CATEGORY = f"{CATEGORY_ROOT}/render"
    DESCRIPTION = ("Decodes the motion chunk by chunk and encodes each chunk into an h264/AAC mp4 as it is made, "
                   "so memory stays flat for clips of any length. The file appears only when complete.")

    @node_errors
    def render(self, model, portrait, motion, batch_size, filename_prefix, crf, audio=None, original_image=None,
               feather=0.1, unique_id=None):
        size = portrait.image.shape[-1]
        targets = comfy_host.save_targets(filename_prefix, "mp4", portrait.batch, size, size)
        waveform, rate = (None, None) if audio is None else unpack_audio(audio)
        paths = write_track_video(
            model, portrait, motion, [path for path, _ in targets], audio=waveform, audio_rate=rate,
            original=original_image, feather=feather, batch=batch_size, crf=crf,
            callback=comfy_host.progress_callback(unique_id))
        comfy_host.soft_empty_cache()
        previews = [{"filename": path.name, "subfolder": subfolder, "type": "output"}
                    for path, (_, subfolder) in zip(paths, targets)]
        return {"ui": {"images": previews, "animated": (True,)}, "result": ("\n".join(str(p) for p in paths),)}
