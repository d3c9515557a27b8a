"""DemoEncodePortrait (crop + encode once) and DemoPasteBack (rendered crops → full-size frames)."""

from __future__ import annotations

from demo_core.io.media import frames_to_unit
from demo_core.pipeline import encode_portrait, paste_frames

from . import comfy_host
from .errors import node_errors
from .types import CATEGORY_ROOT, DEMO_CROP, DEMO_MODEL, DEMO_PORTRAIT

__all__ = ["DemoEncodePortrait", "DemoPasteBack"]

CROP_MODES = ["auto", "center", "box", "none"]
_BOX_PIXELS = {"default": 0, "min": 0, "max": 16384, "step": 1}


class DemoEncodePortrait:
    """Crop the face and encode the portrait once for every frame."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (DEMO_MODEL, {"tooltip": "The model from Demo Load Model."}),
                "image": ("IMAGE", {"tooltip": "Portrait(s) to animate; a batch animates several portraits at once."}),
                "crop": (CROP_MODES, {"default": "auto",
                                      "tooltip": "auto: detect the face (centre crop if none is found); center: the "
                                                 "largest centred square; box: the box below; none: the whole image, "
                                                 "squashed to a square."}),
                "box_x": ("INT", {**_BOX_PIXELS, "tooltip": "Face box left edge in pixels (crop = box only)."}),
                "box_y": ("INT", {**_BOX_PIXELS, "tooltip": "Face box top edge in pixels (crop = box only)."}),
                "box_w": ("INT", {**_BOX_PIXELS, "tooltip": "Face box width in pixels (crop = box only)."}),
                "box_h": ("INT", {**_BOX_PIXELS, "tooltip": "Face box height in pixels (crop = box only)."}),
                "scale": ("FLOAT", {"default": 1.6, "min": 0.5, "max": 4.0, "step": 0.05,
                                    "tooltip": "Crop side relative to the detected face (auto only); FLOAT frames "
                                               "faces at 1.6."}),
            }
        }

    RETURN_TYPES = (DEMO_PORTRAIT, DEMO_CROP, "IMAGE")
    RETURN_NAMES = ("portrait", "crop", "cropped_image")
    OUTPUT_TOOLTIPS = (
        "The encoded portrait(s): appearance, features and the portrait's own motion.",
        "Where each crop was taken, for Demo Paste Back and Demo Render To Video.",
        "What the model sees: the square crop at the model's resolution.",
    )
    FUNCTION = "encode"
    CATEGORY = f"{CATEGORY_ROOT}/portrait"
    DESCRIPTION = ("Frames the face like the model's training data and encodes the portrait once; every "
                   "rendered frame reuses this encoding.")

    @node_errors
    def encode(self, model, image, crop, box_x, box_y, box_w, box_h, scale):
        box = (box_x, box_y, box_w, box_h) if crop == "box" else None
        portrait = encode_portrait(model, image, crop=crop, box=box, scale=scale)
        preview = frames_to_unit(portrait.image).to(comfy_host.intermediate_device())  # (B, S, S, 3)
        return (portrait, tuple(portrait.crops), preview)


class DemoPasteBack:
    """Put rendered face crops back into the original image."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "rendered": ("IMAGE", {"tooltip": "Rendered frames (from Demo Render Frames)."}),
                "original": ("IMAGE", {"tooltip": "The portrait image(s) given to Demo Encode Portrait."}),
                "crop": (DEMO_CROP, {"tooltip": "The crop output of Demo Encode Portrait."}),
                "feather": ("FLOAT", {"default": 0.1, "min": 0.0, "max": 0.5, "step": 0.01,
                                      "tooltip": "Width of the soft blend at the crop edge, as a fraction of the "
                                                 "crop side (0 = hard edge)."}),
                "even_size": ("BOOLEAN", {"default": True,
                                          "tooltip": "Drop the last pixel row/column of an odd-sized image: video "
                                                     "encoders (h264, Save Video) need even sizes."}),
            }
        }

    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("images", "mask")
    OUTPUT_TOOLTIPS = (
        "Full-size frames with the animated face pasted in.",
        "The blend mask, one per portrait (1 = rendered face).",
    )
    FUNCTION = "paste"
    CATEGORY = f"{CATEGORY_ROOT}/portrait"
    DESCRIPTION = ("Composites rendered face crops back into the original full-size portrait. For long clips "
                   "prefer Demo Render To Video with the original image connected: it pastes while streaming.")

    @node_errors
    def paste(self, rendered, original, crop, feather, even_size):
        frames, masks = paste_frames(rendered, original, crop, feather=feather, even=even_size)
        device = comfy_host.intermediate_device()
        return (frames.to(device), masks.to(device))
