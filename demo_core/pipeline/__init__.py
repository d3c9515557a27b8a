"""The generation pipeline: portrait + speech → motion trajectory → frames → video.

One implementation serves the CLI, the ComfyUI nodes and ``bench/``.  Each step is a function that
takes tensors and explicit settings and returns tensors; nothing is stored on the model between
runs.

Steps:
    1. :func:`encode_portrait` — crop and normalise the portrait, encode appearance, features and
       source motion once (reused for every frame).
    2. :func:`encode_audio` — mono 16 kHz waveform → per-frame audio conditions at the model's
       native fps, plus the emotion condition.
    3. :func:`sample_motion` — flow-matching sampling window by window.
    4. :func:`retime_motion` — resample the latent trajectory to the output fps.
    5. :func:`iter_frames` — decode frames chunk by chunk (streaming).
    6. :func:`generate_video` — all of the above into an mp4, encoding each chunk as it is made.

Modules:
    * :mod:`.settings` — :class:`GenerationSettings` (per-run options) and :func:`make_generator`.
    * :mod:`.encoding` — steps 1 and 2: :class:`Portrait`, :class:`AudioCondition` and their encoders.
    * :mod:`.generation` — steps 3 to 6.
    * :mod:`.tracks` — motion tracks, rendering, paste-back and video files for hosts (the ComfyUI nodes).
    * :mod:`.factor_control` — calibration sidecars, factor spaces, edits, mixing and factor-conditioned sampling.

Every name is importable from here (``from demo_core.pipeline import encode_portrait``).  Functions look their
helpers up in the module that defines them, so a test that replaces a helper (``iter_frames``, say) patches that
module (``demo_core.pipeline.tracks``), not this one.
"""

from __future__ import annotations

from . import encoding, factor_control, generation, settings, tracks
# Re-exported (F401): __all__ is made of the modules' own; MIN_IMAGE_SIDE, SOLVER_METHODS, Callback and
# iter_motion are public but, as before, not in __all__.
from .encoding import MIN_IMAGE_SIDE, AudioCondition, Portrait, encode_audio, encode_portrait  # noqa: F401
from .factor_control import (  # noqa: F401
    BLINK_MODES,
    NO_LAYOUT_HINT,
    FactorEdits,
    attach_factor_space,
    calibrate_model,
    edit_motion_track,
    fit_track_frames,
    mix_motion_tracks,
    model_factor_calibration,
    model_factor_space,
    parse_blink_times,
    portrait_factor_space,
    sample_motion_track_conditioned,
    track_factor_space,
    with_track_render_knots,
)
from .generation import generate_video, iter_frames, iter_motion, retime_motion, sample_motion  # noqa: F401
from .settings import SOLVER_METHODS, Callback, GenerationSettings, make_generator  # noqa: F401
from .tracks import (  # noqa: F401
    fit_audio,
    iter_track_frames,
    motion_from_frames,
    paste_frames,
    render_track,
    sample_motion_track,
    track_with_model_basis,
    write_track_video,
)

__all__ = [*settings.__all__, *encoding.__all__, *generation.__all__, *tracks.__all__, *factor_control.__all__]
