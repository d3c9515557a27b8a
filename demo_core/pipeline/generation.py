"""Steps 3 to 6 of the pipeline: motion sampled from the encoded inputs, frames decoded, the video written.

Steps:
    3. :func:`sample_motion` — flow-matching sampling window by window.
    4. :func:`retime_motion` — resample the latent trajectory to the output fps.
    5. :func:`iter_frames` — decode frames chunk by chunk (streaming).
    6. :func:`generate_video` — all of the above into an mp4, encoding each chunk as it is made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import torch

from ..errors import DemoInputError
from ..flow.window_sampler import SamplerSettings, iter_motion_windows
from ..io.media import VideoWriter, frames_to_uint8
from ..models.float_model import FloatModel
from ..motion.retime import fps_fraction, resample_trajectory
from .encoding import AudioCondition, Portrait, _check_image, encode_audio, encode_portrait
from .settings import Callback, GenerationSettings, make_generator

__all__ = [
    "sample_motion",
    "retime_motion",
    "iter_frames",
    "generate_video",
]


def iter_motion(
    model: FloatModel,
    portrait: Portrait,
    audio: AudioCondition,
    settings: GenerationSettings,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> Iterator[torch.Tensor]:
    """Yield motion latents window by window, (B, L_k, W) at the model's native fps."""
    settings.validate()
    b = portrait.batch
    if generator is None:
        generator = make_generator(settings.seed, model.device)
    wa = audio.features.expand(b, -1, -1)
    we = audio.emotion.expand(b, -1, -1)
    sampler = SamplerSettings(steps=settings.steps, method=settings.method, a_cfg=settings.a_cfg, e_cfg=settings.e_cfg)
    with torch.inference_mode():
        yield from iter_motion_windows(
            model.fmt, wr=portrait.source_motion, wa=wa, we=we, settings=sampler, generator=generator, callback=callback
        )


def sample_motion(
    model: FloatModel,
    portrait: Portrait,
    audio: AudioCondition,
    settings: GenerationSettings,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Sample the whole motion trajectory (B, T, W) at the model's native fps."""
    out, t = None, 0
    for window in iter_motion(model, portrait, audio, settings, generator=generator, callback=callback):
        if out is None:  # filled in place: no list of windows next to their concatenation
            out = window.new_empty(window.shape[0], int(audio.features.shape[1]), window.shape[2])
        out[:, t:t + window.shape[1]] = window
        t += int(window.shape[1])
    if out is None or t != out.shape[1]:
        raise RuntimeError(f"sample_motion: the windows cover {t} frames, expected {audio.features.shape[1]}")
    return out


def retime_motion(motion: torch.Tensor, audio: AudioCondition, native_fps: float, fps: float) -> torch.Tensor:
    """Resample a native-fps trajectory to ``fps`` with exactly ``ceil(seconds × fps)`` frames."""
    return resample_trajectory(motion, native_fps, fps, audio.num_frames(fps))


def iter_frames(
    model: FloatModel,
    portrait: Portrait,
    motion: torch.Tensor,
    *,
    batch: int = 8,
    callback: Callback | None = None,
) -> Iterator[torch.Tensor]:
    """Decode frames chunk by chunk: yields (B, t, 3, S, S) in [-1, 1]-ish (not clamped)."""
    total = int(motion.shape[1])
    done = 0
    with torch.inference_mode():
        for chunk in model.motion_autoencoder.iter_decode(portrait.h_source, portrait.feats, motion, chunk_size=batch):
            done += int(chunk.shape[1])
            if callback is not None:
                callback(done, total)
            yield chunk


def generate_video(
    model: FloatModel,
    image: torch.Tensor,
    waveform: torch.Tensor,
    sample_rate: int,
    out_path: str | Path,
    settings: GenerationSettings | None = None,
    *,
    crop: str = "auto",
    box: tuple[float, float, float, float] | None = None,
    progress: Callback | None = None,
    overwrite: bool = False,
    source: tuple[int, int] | None = None,
) -> Path:
    """Portrait + speech → mp4 with the speech muxed in, streamed chunk by chunk.

    The number of frames is exactly ``ceil(audio_seconds × fps)``; besides the 16 kHz mono waveform and the
    per-frame audio features and motion latents (T × W floats), memory is bounded by one audio segment, one
    window of motion and one render batch, whatever the audio length.

    Args:
        model: loaded model.
        image: (H, W, 3) float in [0, 1] (one portrait).
        waveform: audio (n,) or (C, n) at ``sample_rate``.
        sample_rate: audio rate in Hz.
        out_path: destination mp4; an existing file is never overwritten unless ``overwrite``
            (a numbered name is chosen instead).
        settings: generation options.
        crop, box: portrait framing (see :func:`encode_portrait`).
        progress: ``callback(done, total)`` over sampling steps plus frames.  An exception it raises (a
            host's cancel, Ctrl-C) stops the run; the mp4 is written under a hidden temporary name and
            renamed only when complete, so nothing is left behind and the next run starts clean.
        source: see :func:`encode_audio` (the CLI passes :func:`~demo_core.io.media.load_audio_mono`'s
            16 kHz mono with the file's length and rate, so the file's channels are never held whole).

    Returns:
        The path written.
    """
    settings = settings or GenerationSettings()
    settings.validate()
    image = _check_image(image)
    if image.shape[0] != 1:
        raise DemoInputError(f"image: generate_video animates one portrait (H, W, 3), got a batch of "
                             f"{image.shape[0]}; use encode_portrait and write_track_video for several")
    portrait = encode_portrait(model, image, crop=crop, box=box)
    audio = encode_audio(model, waveform, sample_rate, emotion=settings.emotion, source=source)
    native = model.cfg.fps
    n_native = int(audio.features.shape[1])
    n_out = audio.num_frames(settings.fps)
    windows = -(-n_native // model.fmt.cfg.num_frames)
    total = windows * settings.steps + n_out
    state = {"sampled": 0, "rendered": 0}

    def on_step(done: int, _total: int) -> None:
        state["sampled"] = done
        if progress is not None:
            progress(state["sampled"] + state["rendered"], total)

    generator = make_generator(settings.seed, model.device)
    motion = sample_motion(model, portrait, audio, settings, generator=generator, callback=on_step)
    if not (fps_fraction(native) == fps_fraction(settings.fps) and n_out == n_native):
        motion = resample_trajectory(motion, native, settings.fps, n_out)  # (else it would be a copy)
    wave, wave_rate = audio.waveform, audio.sample_rate
    del audio  # the features are no longer needed while frames are rendered

    def on_frames(done: int, _total: int) -> None:
        state["rendered"] = done
        if progress is not None:
            progress(state["sampled"] + state["rendered"], total)

    with VideoWriter(out_path, settings.fps, audio=wave, audio_rate=wave_rate, overwrite=overwrite) as writer:
        for chunk in iter_frames(model, portrait, motion, batch=settings.render_batch, callback=on_frames):
            writer.write(frames_to_uint8(chunk[0]))
    return writer.path
