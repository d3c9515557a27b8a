"""Socket type names of the pack, and what each carries.

* ``DEMO_MODEL``: a loaded :class:`demo_core.models.float_model.FloatModel` or
  :class:`demo_core.models.demo_model.DemoModel` (same pipeline attributes; eval mode, on its device).
* ``DEMO_PORTRAIT``: a :class:`demo_core.pipeline.Portrait`, B encoded portraits.
* ``DEMO_AUDIO_COND``: a :class:`demo_core.pipeline.AudioCondition`, per-frame audio features at the
  model's native fps plus the emotion condition.
* ``DEMO_MOTION``: a :class:`demo_core.motion.track.MotionTrack`, motion latents (B, T, W) at a frame rate,
  with the model's motion dictionary so edits can work on its coefficients, and the factor layout naming them
  (a DEMO model's own, or a FLOAT checkpoint's calibration from ``<checkpoint>.factors.json``; None before one).
* ``DEMO_CROP``: a tuple of :class:`demo_core.face_crop.CropBox` (or None for "no crop"), one per portrait.
"""

__all__ = ["DEMO_MODEL", "DEMO_PORTRAIT", "DEMO_AUDIO_COND", "DEMO_MOTION", "DEMO_CROP", "CATEGORY_ROOT"]

DEMO_MODEL = "DEMO_MODEL"
DEMO_PORTRAIT = "DEMO_PORTRAIT"
DEMO_AUDIO_COND = "DEMO_AUDIO_COND"
DEMO_MOTION = "DEMO_MOTION"
DEMO_CROP = "DEMO_CROP"

CATEGORY_ROOT = "DEMO"  # node categories are DEMO/<topic>
