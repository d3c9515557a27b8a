"""Media in and out: audio and image files, host layouts ↔ model tensors, mp4 writing.

Layouts used here:

* audio: ``(C, n)`` float32 in ``[-1, 1]`` plus an integer sample rate; the models take mono
  ``(n,)`` at 16 kHz (:func:`prepare_waveform`).
* images: the host layout ``(B, H, W, 3)`` float in ``0..1`` (ComfyUI ``IMAGE``); the models take
  ``(B, 3, S, S)`` in ``[-1, 1]`` (:func:`to_model_image`) and give frames back in that layout
  (:func:`frames_to_unit`, :func:`frames_to_uint8`).
* video files: h264 ``yuv420p`` + AAC in mp4, written by :class:`VideoWriter` atomically (a hidden
  ``.partial.mp4`` beside the target, renamed on success) and never over an existing file unless
  asked.

Decoding and encoding go through PyAV (FFmpeg); still and animated WebP/GIF images go through
Pillow, because FFmpeg's WebP decoder does not handle animated files.

Modules:
    * :mod:`.audio` — audio files and waveforms: decoding, mixing to mono, block-wise resampling.
    * :mod:`.images` — image files, resizing, host images ↔ model tensors.
    * :mod:`.video_writer` — :class:`VideoWriter` and :func:`write_video` (mp4 out).
    * :mod:`.video_reader` — :func:`read_video` (driving videos in).
    * :mod:`.paths` — input files that must exist, output names that are free (:func:`unique_path`).

Every name is importable from here.  Functions look their helpers and constants up in the module that
defines them, so a test that changes one (``_BLOCK``, say) patches that module (``demo_core.io.media.audio``).
"""

from __future__ import annotations

from . import audio, images, paths, video_reader, video_writer
# Re-exported (F401): __all__ is made of the modules' own; _SampleBuffer and _check_audio_track are private
# helpers, re-exported for their tests.
from .audio import _SampleBuffer, load_audio, load_audio_mono, prepare_waveform  # noqa: F401
from .images import frames_to_uint8, frames_to_unit, load_image, resize_images, to_model_image  # noqa: F401
from .paths import unique_path  # noqa: F401
from .video_reader import read_video  # noqa: F401
from .video_writer import VideoWriter, _check_audio_track, even_size, write_video  # noqa: F401

__all__ = [*audio.__all__, *images.__all__, *paths.__all__, *video_writer.__all__, *video_reader.__all__]
