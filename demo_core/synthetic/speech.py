"""Speech with exact phone timings: HTS label files and espeak-ng synthesis.

Phone timings are lists of :class:`Phone` ``(start, end, phone)`` in seconds, contiguous and
covering the whole waveform. Waveforms are float32 mono at :data:`SAMPLE_RATE` (16 kHz).

espeak-ng comes from the ``espeakng-loader`` wheel (library + voice data, no system install). It is
driven through its C API with ctypes in synchronous mode with phoneme events, which report each
phoneme's start as an exact sample index of the 22.05 kHz synthesis output; that audio is then
resampled to 16 kHz, keeping times. Phone names are espeak's mnemonics with stress marks removed
(``h``, ``i:``, ``3:``, ``aI``, ``tS``, ...), pauses are ``_`` / ``_:``.
"""

from __future__ import annotations

import ctypes
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ..errors import DemoInputError

__all__ = ["SAMPLE_RATE", "Phone", "Voice", "SpeechClip", "parse_lab", "load_wav", "load_arctic",
           "espeak_available", "espeak_synthesize", "sample_voice", "synthesize_sentence"]

SAMPLE_RATE = 16000
_STRESS = "',=%"


class Phone(NamedTuple):
    """One phone: start and end time in seconds, and its label."""

    start: float
    end: float
    phone: str


@dataclass
class SpeechClip:
    """A waveform with its phone timings.

    Attributes:
        waveform: float32 numpy array (S,), mono, in [-1, 1].
        sample_rate: Hz (16000 for everything produced here).
        phones: contiguous :class:`Phone` list covering [0, S / sample_rate].
        text: the sentence, when known.
        voice: description of the voice (e.g. ``"espeak:en-us+f3 rate=170 pitch=55"``).
        alphabet: ``"arpabet"`` (HTS labels) or ``"espeak"`` (espeak mnemonics).
    """

    waveform: np.ndarray
    sample_rate: int
    phones: list[Phone]
    text: str = ""
    voice: str = ""
    alphabet: str = "espeak"

    @property
    def seconds(self) -> float:
        return len(self.waveform) / float(self.sample_rate)


def parse_lab(path: str | Path) -> list[Phone]:
    """Parse an HTS label file (``start end label`` per line, times in 100 ns units).

    Full-context labels keep the phone between ``-`` and ``+``; plain mono labels are used as is.

    Returns:
        List of :class:`Phone` with times in seconds.
    """
    out: list[Phone] = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 3:
            raise DemoInputError(f"{path}:{n}: expected 'start end label', got {line!r}")
        label = parts[2]
        if "-" in label and "+" in label:
            label = label.split("-", 1)[1].split("+", 1)[0]
        out.append(Phone(int(parts[0]) * 1e-7, int(parts[1]) * 1e-7, label))
    return out


def load_wav(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read a PCM wav file as float32 mono at ``sample_rate`` (resampled if needed)."""
    from scipy.io import wavfile
    from scipy.signal import resample_poly

    sr, x = wavfile.read(str(path))
    if x.dtype.kind == "i":
        x = x.astype(np.float32) / float(np.iinfo(x.dtype).max + 1)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if sr != sample_rate:
        g = math.gcd(sr, sample_rate)
        x = resample_poly(x, sample_rate // g, sr // g).astype(np.float32)
    return x


def load_arctic(wav_path: str | Path, lab_path: str | Path) -> SpeechClip:
    """A CMU ARCTIC clip with its HTS phone labels (ARPAbet, ``sil`` / ``pau`` for silence)."""
    wav = load_wav(wav_path)
    phones = parse_lab(lab_path)
    seconds = len(wav) / SAMPLE_RATE
    if phones and phones[-1].end < seconds:
        phones.append(Phone(phones[-1].end, seconds, "sil"))
    return SpeechClip(wav, SAMPLE_RATE, phones, voice="arctic", alphabet="arpabet")


# ----------------------------------------------------------------------------------- espeak-ng
class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))
_EVENT_PHONEME, _OUTPUT_SYNCHRONOUS, _INIT_PHONEME_EVENTS, _INIT_DONT_EXIT = 7, 2, 0x0001, 0x8000
_RATE, _PITCH, _RANGE = 1, 3, 4
_lock = threading.Lock()
_engine: dict = {}


def _load_engine() -> dict:
    """Load and initialise libespeak-ng once per process (raises RuntimeError if impossible)."""
    if _engine:
        return _engine
    try:
        import espeakng_loader
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("espeakng-loader is not installed (pip install espeakng-loader)") from exc
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    data = espeakng_loader.get_data_path().encode()
    rate = lib.espeak_Initialize(_OUTPUT_SYNCHRONOUS, 0, data, _INIT_PHONEME_EVENTS | _INIT_DONT_EXIT)
    if rate <= 0:
        raise RuntimeError(f"espeak_Initialize failed ({rate})")
    state = {"pcm": [], "events": []}

    def callback(wav, n, events) -> int:
        if n > 0 and wav:
            state["pcm"].append(np.ctypeslib.as_array(wav, (n,)).copy())
        i = 0
        while events[i].type != 0:
            ev = events[i]
            if ev.type == _EVENT_PHONEME:
                state["events"].append((int(ev.sample), bytes(ev.id).split(b"\0")[0].decode("utf-8", "replace")))
            i += 1
        return 0

    cb = _CALLBACK(callback)
    lib.espeak_SetSynthCallback(cb)
    _engine.update(lib=lib, rate=rate, state=state, callback=cb)
    return _engine


def espeak_available() -> bool:
    """True when libespeak-ng can be loaded and initialised."""
    try:
        with _lock:
            _load_engine()
        return True
    except (RuntimeError, OSError):
        return False


@dataclass(frozen=True)
class Voice:
    """espeak voice settings: ``name`` like ``"en-us+f3"``, rate in words/min, pitch / range 0..100."""

    name: str = "en-us"
    rate: int = 165
    pitch: int = 50
    pitch_range: int = 50

    def describe(self) -> str:
        return f"espeak:{self.name} rate={self.rate} pitch={self.pitch} range={self.pitch_range}"


_ACCENTS = ("en-us", "en-us", "en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-us-nyc", "en-029")
_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "", "")


def sample_voice(generator: torch.Generator) -> Voice:
    """Draw a random speaker: accent, voice variant, speaking rate (130-210 wpm), pitch, range."""
    r = torch.rand(5, generator=generator).tolist()
    accent = _ACCENTS[min(int(r[0] * len(_ACCENTS)), len(_ACCENTS) - 1)]
    variant = _VARIANTS[min(int(r[1] * len(_VARIANTS)), len(_VARIANTS) - 1)]
    return Voice(accent + (f"+{variant}" if variant else ""), int(130 + 80 * r[2]), int(25 + 55 * r[3]),
                 int(30 + 50 * r[4]))


def espeak_synthesize(text: str, voice: Voice = Voice(), sample_rate: int = SAMPLE_RATE) -> SpeechClip:
    """Synthesise ``text`` with espeak-ng.

    Args:
        text: the sentence (UTF-8).
        voice: espeak voice settings.
        sample_rate: output rate in Hz (espeak's native 22050 Hz is resampled).

    Returns:
        :class:`SpeechClip` with float32 audio (peak-normalised to 0.9) and contiguous phones; the
        gaps before the first and after the last phoneme are labelled ``_``.
    """
    from scipy.signal import resample_poly

    if not text.strip():
        raise DemoInputError("espeak_synthesize: empty text")
    with _lock:
        eng = _load_engine()
        lib, state = eng["lib"], eng["state"]
        if lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
            raise DemoInputError(f"espeak_synthesize: unknown voice {voice.name!r}")
        lib.espeak_SetParameter(_RATE, int(voice.rate), 0)
        lib.espeak_SetParameter(_PITCH, int(voice.pitch), 0)
        lib.espeak_SetParameter(_RANGE, int(voice.pitch_range), 0)
        state["pcm"].clear()
        state["events"].clear()
        raw = text.encode("utf-8") + b"\0"
        err = lib.espeak_Synth(raw, len(raw), 0, 1, 0, 1, None, None)  # POS_CHARACTER, espeakCHARS_UTF8
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed with code {err}")
        pcm = np.concatenate(state["pcm"]) if state["pcm"] else np.zeros(0, np.int16)
        events = list(state["events"])
        native = eng["rate"]
    if pcm.size == 0:
        raise RuntimeError(f"espeak produced no audio for {text!r}")
    g = math.gcd(native, sample_rate)
    wav = resample_poly(pcm.astype(np.float32) / 32768.0, sample_rate // g, native // g).astype(np.float32)
    wav *= 0.9 / max(float(np.abs(wav).max()), 1e-6)
    seconds = len(wav) / sample_rate
    return SpeechClip(wav, sample_rate, _events_to_phones(events, native, seconds), text, voice.describe(), "espeak")


def _events_to_phones(events: list[tuple[int, str]], rate: int, seconds: float) -> list[Phone]:
    """Turn (start sample, name) events into contiguous phones covering [0, seconds]."""
    starts = [(min(s / rate, seconds), name.lstrip(_STRESS) or "_") for s, name in events]
    starts.sort(key=lambda e: e[0])
    phones: list[Phone] = []
    t = 0.0
    if not starts or starts[0][0] > 0.0:
        starts.insert(0, (0.0, "_"))
    for i, (s, name) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else seconds
        if end > s:
            phones.append(Phone(max(s, t), end, name))
            t = end
    if t < seconds:
        phones.append(Phone(t, seconds, "_"))
    return phones


def synthesize_sentence(text: str, generator: torch.Generator) -> SpeechClip:
    """espeak synthesis of ``text`` with a voice drawn from ``generator`` (see :func:`sample_voice`)."""
    return espeak_synthesize(text, sample_voice(generator))
