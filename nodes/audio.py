"""DemoEncodeAudio: speech AUDIO → per-frame audio features and the emotion condition."""

from __future__ import annotations

import logging

import torch

from demo_core.models.emotion_encoder import EMOTION_LABELS
from demo_core.pipeline import encode_audio

from .errors import node_errors
from .types import CATEGORY_ROOT, DEMO_AUDIO_COND, DEMO_MODEL

__all__ = ["DemoEncodeAudio", "unpack_audio"]

log = logging.getLogger("comfyui-demo")


def unpack_audio(audio, name: str = "audio") -> tuple[torch.Tensor, int]:
    """A ComfyUI AUDIO dict → ``(waveform (B, C, n), sample_rate)``; the engine checks the values."""
    if not isinstance(audio, dict) or not isinstance(audio.get("waveform"), torch.Tensor) \
            or "sample_rate" not in audio:
        got = sorted(audio) if isinstance(audio, dict) else type(audio).__name__
        raise ValueError(f"{name}: expected a ComfyUI AUDIO {{'waveform': tensor (B, C, n), 'sample_rate': Hz}}, "
                         f"got {got}")
    return audio["waveform"], audio["sample_rate"]


class DemoEncodeAudio:
    """Encode speech for the motion sampler."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (DEMO_MODEL, {"tooltip": "The model from Demo Load Model."}),
                "audio": ("AUDIO", {"tooltip": "Speech at any sample rate, mono or multichannel (channels are "
                                               "mixed); only the first clip of a batch is used."}),
                "emotion": (["auto", *EMOTION_LABELS], {"default": "auto",
                                                        "tooltip": "auto: recognised from the speech; or force one "
                                                                   "emotion."}),
            },
            "optional": {
                "audio_encoder_output": ("AUDIO_ENCODER_OUTPUT", {
                    "tooltip": "Features from ComfyUI's Audio Encoder Encode, for models trained on them. The "
                               "current models use their own audio encoder: leave this unconnected."}),
            },
        }

    RETURN_TYPES = (DEMO_AUDIO_COND,)
    RETURN_NAMES = ("audio_cond",)
    OUTPUT_TOOLTIPS = ("Per-frame audio features at the model's frame rate, the emotion condition, the clip length.",)
    FUNCTION = "encode"
    CATEGORY = f"{CATEGORY_ROOT}/audio"
    DESCRIPTION = ("Resamples the speech to the model's rate, encodes it frame by frame and sets the emotion. "
                   "The clip length fixes the video length: ceil(seconds × fps) frames.")

    @node_errors
    def encode(self, model, audio, emotion, audio_encoder_output=None):
        if audio_encoder_output is not None:
            raise ValueError("audio_encoder_output: this model encodes speech with its own audio encoder (FLOAT's "
                             "wav2vec2 or DEMO's log-mel front end) and cannot use ComfyUI audio-encoder features; "
                             "disconnect the input")
        waveform, sample_rate = unpack_audio(audio)
        if waveform.dim() == 3 and waveform.shape[0] > 1:
            log.warning("DemoEncodeAudio: the AUDIO holds %d clips; only the first is used", waveform.shape[0])
            waveform = waveform[:1]
        return (encode_audio(model, waveform, sample_rate, emotion=emotion),)
