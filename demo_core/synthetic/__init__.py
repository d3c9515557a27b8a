"""Synthetic talking-head benchmark with known ground-truth factors for every frame.

No real talking-head data is needed: a procedural 2.5-D head (:mod:`.head`) is driven by speech with
exact phone timings (:mod:`.speech`: espeak-ng synthesis or HTS-labelled recordings), lip shapes
derived from the phones with co-articulation (:mod:`.visemes`), and natural head pose, gaze and
blinks that are independent of the speech (:mod:`.motion`). Every frame's twelve factors
(:mod:`.params`, grouped into lip / pose / gaze / blink in ``FACTOR_NAMES``) are saved with it, so
disentanglement and lip sync can be measured exactly.

Modules: ``params`` (FrameParams, names, units), ``identity`` (appearance), ``head`` (renderer),
``speech`` (lab parsing, espeak), ``sentences`` (200 sentences, train/test split), ``visemes``,
``motion``, ``media`` (mp4/wav I/O), ``dataset`` (generate / write / load, CLI).

On-disk format (``write_dataset(OUT, ...)`` or ``python -m demo_core.synthetic.dataset OUT ...``)::

    OUT/manifest.json             fps, size, sample_rate, param_names, factor_names, units,
                                  viseme_names, video codec, generator version, and per split
                                  {"seed", "num_clips", "clips": [{"stem", "identity_seed",
                                  "sentence", "text", "voice", "mode", "num_frames", "seconds"}]}
    OUT/<split>/clip_XXXXX.mp4         H.264 video at fps (default 4:4:4 qp=0, i.e. lossless up to
                                       RGB<->YUV rounding; --compat-video: yuv420p crf 10) + AAC
                                       mono 16 kHz audio. Frame k shows time k / fps.
    OUT/<split>/clip_XXXXX.wav         the exact audio, 16-bit PCM mono 16 kHz
    OUT/<split>/clip_XXXXX.labels.npz  per-frame labels (written last: marks a complete clip)
    OUT/<split>/clip_XXXXX.frames.npy  optional (--frames-npy): exact uint8 frames (T, H, W, 3)

So each split folder is a plain "folder of talking-head videos with audio + optional per-frame
label sidecars sharing the video's stem". ``labels.npz`` (no pickles) holds: one float32 (T,)
array per factor name (``yaw`` ... ``blink``, units in :mod:`.params`), ``frame_times`` (T,)
= k / fps, ``viseme`` int16 (T,) indexing ``viseme_names``, ``phone_start`` / ``phone_end``
float32 (P,) seconds and ``phone`` str (P,), ``blink_onsets`` (s), ``identity_seed``,
``identity_json`` (appearance parameters), ``fps``, ``sample_rate``, ``num_frames``, ``size``,
``text``, ``voice``, ``alphabet`` (``espeak`` / ``arpabet``), ``mode`` (``talk`` / ``idle``),
``version``. T = ceil(audio_seconds * fps). The test split uses held-out sentences (every tenth)
and held-out identities (odd identity seeds; train seeds are even). :func:`load_clip` reads a clip
back as float frames (T,3,H,W), waveform and labels.
"""

from __future__ import annotations

import importlib

# Public names -> defining module; imported lazily (PEP 562) so ``python -m
# demo_core.synthetic.dataset`` does not import the module twice.
_EXPORTS = {
    "dataset": ("GENERATOR_VERSION", "generate_clip", "list_clips", "load_clip", "load_identity", "write_dataset"),
    "head": ("HeadRenderer", "render"),
    "identity": ("Identity", "sample_identity"),
    "motion": ("sample_blinks", "sample_gaze", "sample_motion", "sample_pose"),
    "params": ("FACTOR_NAMES", "NEUTRAL", "PARAM_NAMES", "PARAM_RANGES", "PARAM_UNITS", "FrameParams"),
    "speech": ("Phone", "SpeechClip", "espeak_available", "espeak_synthesize", "load_arctic", "parse_lab"),
    "visemes": ("VISEME_NAMES", "mouth_track", "num_frames", "phone_to_visemes"),
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
