"""Phones -> visemes -> per-frame mouth targets (``mouth_open``, ``mouth_width``, ``mouth_round``).

Each phone maps to one viseme (two for diphthongs, which split the phone 60 / 40). Co-articulation
follows a Cohen-Massaro style dominance model: every viseme segment has a per-parameter dominance
that is flat inside the segment and decays as a Gaussian of the distance outside it (faster after than before, so
anticipation is longer than carry-over); the mouth value at time t is the dominance-weighted mean
of all targets. Bilabials (/p b m/) and silence have a high opening dominance, so the lips really
close there; consonants such as /t k/ have a low shape dominance, so neighbouring rounding shows
through. All segments are moved ``lead`` seconds earlier, so the mouth moves slightly before the
sound. Frame k is sampled at exactly t = k / fps seconds of the audio.

Both ARPAbet (HTS ``.lab``: ``aa``, ``p``, ``sil`` ...) and espeak-ng mnemonics (``A:``, ``p``,
``aI``, ``_:`` ...) are understood; unknown phones fall back to a neutral vowel or consonant.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from .speech import Phone

__all__ = ["VISEMES", "VISEME_NAMES", "phone_to_visemes", "num_frames", "frame_times", "mouth_track",
           "viseme_track"]

# name: (open, width, round), dominance (open, width, round)
VISEMES: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "sil": ((0.0, 0.0, 0.0), (3.0, 1.0, 1.0)),
    "PBM": ((0.0, 0.0, 0.05), (8.0, 0.6, 0.4)),
    "FV": ((0.06, 0.15, 0.0), (4.0, 1.0, 0.8)),
    "TH": ((0.15, 0.1, 0.0), (1.0, 0.5, 0.5)),
    "DNL": ((0.15, 0.05, 0.0), (0.6, 0.3, 0.3)),
    "SZ": ((0.08, 0.35, 0.0), (1.5, 0.8, 0.6)),
    "SH": ((0.15, -0.35, 0.7), (1.5, 2.0, 2.0)),
    "KG": ((0.2, 0.05, 0.0), (0.5, 0.3, 0.3)),
    "R": ((0.15, -0.25, 0.5), (0.8, 1.5, 1.5)),
    "W": ((0.08, -0.7, 0.95), (2.0, 3.0, 3.0)),
    "Y": ((0.15, 0.5, 0.0), (0.8, 1.0, 1.0)),
    "AA": ((0.95, 0.1, 0.05), (3.0, 1.0, 1.0)),
    "AE": ((0.75, 0.45, 0.0), (3.0, 1.0, 1.0)),
    "AH": ((0.55, 0.0, 0.0), (2.0, 0.5, 0.5)),
    "EH": ((0.6, 0.4, 0.0), (2.5, 1.0, 1.0)),
    "IH": ((0.35, 0.55, 0.0), (2.0, 1.0, 1.0)),
    "IY": ((0.28, 0.85, 0.0), (2.0, 1.5, 1.5)),
    "ER": ((0.4, -0.2, 0.5), (2.0, 1.2, 1.2)),
    "AO": ((0.7, -0.4, 0.75), (3.0, 2.0, 2.0)),
    "OW": ((0.55, -0.5, 0.85), (2.5, 2.0, 2.0)),
    "UH": ((0.35, -0.5, 0.8), (2.0, 2.0, 2.0)),
    "UW": ((0.25, -0.75, 1.0), (2.0, 3.0, 3.0)),
}
VISEME_NAMES: tuple[str, ...] = tuple(VISEMES)

_ARPABET: dict[str, tuple[str, ...]] = {
    "aa": ("AA",), "ae": ("AE",), "ah": ("AH",), "ao": ("AO",), "aw": ("AA", "UW"), "ax": ("AH",),
    "axr": ("ER",), "ay": ("AA", "IY"), "eh": ("EH",), "er": ("ER",), "ey": ("EH", "IY"), "ih": ("IH",),
    "ix": ("IH",), "iy": ("IY",), "ow": ("OW", "UW"), "oy": ("AO", "IY"), "uh": ("UH",), "uw": ("UW",),
    "ux": ("UW",), "b": ("PBM",), "p": ("PBM",), "m": ("PBM",), "em": ("PBM",), "f": ("FV",), "v": ("FV",),
    "th": ("TH",), "dh": ("TH",), "t": ("DNL",), "d": ("DNL",), "n": ("DNL",), "l": ("DNL",), "el": ("DNL",),
    "en": ("DNL",), "nx": ("DNL",), "dx": ("DNL",), "s": ("SZ",), "z": ("SZ",), "sh": ("SH",), "zh": ("SH",),
    "ch": ("SH",), "jh": ("SH",), "k": ("KG",), "g": ("KG",), "ng": ("KG",), "hh": ("KG",), "q": ("KG",),
    "r": ("R",), "w": ("W",), "wh": ("W",), "y": ("Y",),
    "sil": ("sil",), "pau": ("sil",), "ssil": ("sil",), "h#": ("sil",), "sp": ("sil",),
}
_ESPEAK: dict[str, tuple[str, ...]] = {
    "@": ("AH",), "@2": ("AH",), "@5": ("AH",), "@#": ("AH",), "3": ("ER",), "3:": ("ER",), "@L": ("AH", "DNL"),
    "a": ("AE",), "aa": ("AA",), "a#": ("AH",), "A:": ("AA",), "A@": ("AA", "R"), "A": ("AA",),
    "aI": ("AA", "IY"), "aI@": ("AA", "IY"), "aI3": ("AA", "ER"), "aU": ("AA", "UW"), "aU@": ("AA", "UW"),
    "E": ("EH",), "e@": ("EH", "AH"), "eI": ("EH", "IY"), "e": ("EH",), "i": ("IY",), "i:": ("IY",),
    "I": ("IH",), "I2": ("IH",), "I#": ("IH",), "i@": ("IY", "AH"), "i@3": ("IY", "ER"), "0": ("AO",),
    "O:": ("AO",), "O": ("AO",), "O@": ("AO", "R"), "OI": ("AO", "IY"), "o@": ("OW", "R"), "oU": ("OW", "UW"),
    "oU#": ("OW", "UW"), "U": ("UH",), "u:": ("UW",), "U@": ("UH", "AH"), "V": ("AH",),
    "p": ("PBM",), "b": ("PBM",), "m": ("PBM",), "f": ("FV",), "v": ("FV",), "T": ("TH",), "D": ("TH",),
    "t": ("DNL",), "d": ("DNL",), "n": ("DNL",), "l": ("DNL",), "t#": ("DNL",), "d#": ("DNL",),
    "n-": ("DNL",), "l-": ("DNL",), "l/2": ("DNL",), "s": ("SZ",), "z": ("SZ",), "S": ("SH",), "Z": ("SH",),
    "tS": ("SH",), "dZ": ("SH",), "k": ("KG",), "g": ("KG",), "N": ("KG",), "h": ("KG",), "x": ("KG",),
    "?": ("KG",), "r": ("R",), "r-": ("R",), "w": ("W",), "w#": ("W",), "j": ("Y",), ";": ("Y",),
    "O2": ("AO",), "aI2": ("AA", "IY"), "t2": ("DNL",), "t[": ("DNL",), "@-": ("AH",), "VR": ("ER",),
}
_VOWEL_START = set("aeiouAEIOUV@03")


def phone_to_visemes(phone: str) -> tuple[str, ...]:
    """Viseme name(s) for an ARPAbet or espeak phone (stress marks and digits tolerated)."""
    p = phone.strip().lstrip("',=%")
    if not p or p.startswith("_") or p.lower() in ("sil", "pau", "ssil", "sp", "h#"):
        return ("sil",)
    if p in _ESPEAK:
        return _ESPEAK[p]
    low = p.lower().rstrip("012")
    if low in _ARPABET:
        return _ARPABET[low]
    base = p.rstrip("#-/23:")
    if base in _ESPEAK:
        return _ESPEAK[base]
    return ("AH",) if p[0] in _VOWEL_START else ("DNL",)


def num_frames(seconds: float, fps: float = 25.0) -> int:
    """Video frames for an audio duration: ceil(seconds * fps) (tolerant to float round-off)."""
    return max(1, int(math.ceil(seconds * fps - 1e-6)))


def frame_times(n: int, fps: float = 25.0) -> torch.Tensor:
    """Time in seconds of each frame, t_k = k / fps, shape (n,), float64."""
    return torch.arange(n, dtype=torch.float64) / fps


def _segments(phones: Sequence[Phone]):
    """Expand phones into viseme segments: (start, end, viseme) with diphthongs split 60 / 40."""
    segs = []
    for ph in phones:
        vis = phone_to_visemes(ph.phone)
        if len(vis) == 1:
            segs.append((ph.start, ph.end, vis[0]))
        else:
            mid = ph.start + 0.6 * (ph.end - ph.start)
            segs.append((ph.start, mid, vis[0]))
            segs.append((mid, ph.end, vis[1]))
    return segs


def mouth_track(phones: Sequence[Phone], n: int, fps: float = 25.0, *, lead: float = 0.035,
                tau_before: float = 0.05, tau_after: float = 0.035, gain: float = 1.0) -> dict[str, torch.Tensor]:
    """Mouth parameters per video frame from phone timings.

    Args:
        phones: contiguous phones (seconds). Time outside them counts as silence.
        n: number of frames (normally ``num_frames(audio_seconds, fps)``).
        fps: video frame rate; frame k is sampled at t = k / fps.
        lead: seconds the articulation runs ahead of the sound.
        tau_before, tau_after: dominance decay constants (seconds) before / after a segment.
        gain: speaker's articulation strength, scales the opening (clipped to 0..1).

    Returns:
        ``{"mouth_open", "mouth_width", "mouth_round"}``, each float32 (n,).
    """
    segs = _segments(phones)
    if not segs:
        z = torch.zeros(n)
        return {"mouth_open": z, "mouth_width": z.clone(), "mouth_round": z.clone()}
    end = segs[-1][1]
    segs = [(-10.0, segs[0][0], "sil")] + segs + [(end, end + 10.0, "sil")]
    start = torch.tensor([s[0] for s in segs], dtype=torch.float64) - lead
    stop = torch.tensor([s[1] for s in segs], dtype=torch.float64) - lead
    target = torch.tensor([VISEMES[s[2]][0] for s in segs], dtype=torch.float64)  # (P,3)
    dom = torch.tensor([VISEMES[s[2]][1] for s in segs], dtype=torch.float64)  # (P,3)
    t = frame_times(n, fps).view(-1, 1)  # (T,1)
    before = (start.view(1, -1) - t).clamp(min=0.0) / tau_before
    after = (t - stop.view(1, -1)).clamp(min=0.0) / tau_after
    w = torch.exp(-(before * before + after * after)).unsqueeze(-1) * dom.unsqueeze(0)  # (T,P,3)
    val = (w * target.unsqueeze(0)).sum(1) / w.sum(1).clamp(min=1e-12)
    val = val.to(torch.float32)
    return {"mouth_open": (val[:, 0] * gain).clamp(0.0, 1.0), "mouth_width": val[:, 1].clamp(-1.0, 1.0),
            "mouth_round": val[:, 2].clamp(0.0, 1.0)}


def viseme_track(phones: Sequence[Phone], n: int, fps: float = 25.0) -> torch.Tensor:
    """Index into :data:`VISEME_NAMES` of the viseme sounding at each frame time; int64 (n,)."""
    segs = _segments(phones)
    t = frame_times(n, fps).tolist()
    out, j = [], 0
    for tk in t:
        while j < len(segs) and segs[j][1] <= tk:
            j += 1
        out.append(VISEME_NAMES.index(segs[j][2]) if j < len(segs) and segs[j][0] <= tk else 0)
    return torch.tensor(out, dtype=torch.int64)
