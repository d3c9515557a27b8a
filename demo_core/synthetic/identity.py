"""Random but reproducible appearance ("identity") of the synthetic talking head.

An :class:`Identity` holds only plain Python floats and tuples (JSON-friendly); it is drawn from a
``torch.Generator`` so the same seed always gives the same person. Colours are sRGB in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import torch

__all__ = ["Identity", "sample_identity"]

RGB = tuple[float, float, float]

_SKIN: tuple[RGB, ...] = (
    (0.97, 0.86, 0.77), (0.93, 0.77, 0.65), (0.84, 0.64, 0.49),
    (0.70, 0.50, 0.35), (0.54, 0.36, 0.24), (0.38, 0.25, 0.17),
)
_HAIR: tuple[tuple[RGB, float], ...] = (  # colour, relative frequency
    ((0.07, 0.06, 0.06), 4.0), ((0.22, 0.14, 0.09), 4.0), ((0.42, 0.27, 0.15), 3.0),
    ((0.82, 0.68, 0.42), 2.0), ((0.58, 0.24, 0.11), 1.5), ((0.72, 0.72, 0.72), 1.0),
    ((0.25, 0.32, 0.75), 0.4), ((0.85, 0.40, 0.62), 0.4),
)
_IRIS: tuple[RGB, ...] = (
    (0.36, 0.21, 0.10), (0.20, 0.12, 0.07), (0.28, 0.48, 0.75),
    (0.30, 0.55, 0.33), (0.52, 0.42, 0.20), (0.50, 0.56, 0.62),
)
_LIPSTICK: tuple[RGB, ...] = ((0.75, 0.10, 0.15), (0.85, 0.40, 0.50), (0.45, 0.12, 0.30))


@dataclass(frozen=True)
class Identity:
    """Appearance parameters (all unitless ratios unless noted; colours sRGB 0..1).

    Attributes:
        seed: the seed it was drawn from (None when built by hand).
        skin, hair, brow, iris, lip, shirt: colours.
        face_w, face_h: head ellipsoid width / height multipliers (~0.9..1.1).
        eye_spacing, eye_size, brow_thick, nose_size, mouth_w: feature size multipliers.
        hairline: forehead hairline height on the unit head sphere (0.38 low .. 0.6 high).
        fringe: 0..1 how far bangs come down in the middle (never below the brows).
        hair_volume: hair volume ellipsoid enlargement (1.0..1.18).
        hair_length: 0 short .. 1 shoulder length (long hair drawn behind the neck when > 0.35).
        hair_wave: phase of the hairline wave (radians).
        ears: whether ears are drawn.
        blush: cheek redness 0..0.35.
        light: unit light direction in camera space (x right, y up, z towards viewer).
        bg0, bg1: background gradient colours; bg_angle: gradient direction (radians).
        bg_pattern: 0 none, 1 stripes, 2 dots, 3 waves; bg_freq (cycles across image), bg_amp (0..0.12).
    """

    seed: int | None
    skin: RGB
    hair: RGB
    brow: RGB
    iris: RGB
    lip: RGB
    shirt: RGB
    face_w: float
    face_h: float
    eye_spacing: float
    eye_size: float
    brow_thick: float
    nose_size: float
    mouth_w: float
    hairline: float
    fringe: float
    hair_volume: float
    hair_length: float
    hair_wave: float
    ears: bool
    blush: float
    light: RGB
    bg0: RGB
    bg1: RGB
    bg_angle: float
    bg_pattern: int
    bg_freq: float
    bg_amp: float

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Identity":
        conv = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
        return cls(**conv)


def _clip(c: Sequence[float]) -> RGB:
    return tuple(float(min(1.0, max(0.0, x))) for x in c)  # type: ignore[return-value]


def _hsv(h: float, s: float, v: float) -> RGB:
    i = int(h * 6.0) % 6
    f = h * 6.0 - math.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def sample_identity(generator: torch.Generator | int) -> Identity:
    """Draw an identity.

    Args:
        generator: a ``torch.Generator`` (advanced by the call) or an int seed.

    Returns:
        The :class:`Identity`; ``seed`` is the int seed when one was given, else None.
    """
    seed = None
    if isinstance(generator, int):
        seed = int(generator)
        generator = torch.Generator().manual_seed(seed)
    r = torch.rand(64, generator=generator, dtype=torch.float64).tolist()
    it = iter(r)

    def u(lo: float = 0.0, hi: float = 1.0) -> float:
        return lo + (hi - lo) * next(it)

    def jitter(c: RGB, amount: float) -> RGB:
        return _clip([x + u(-amount, amount) for x in c])

    # Skin: continuous interpolation along the tone ramp, plus a little warmth jitter.
    pos = u(0.0, len(_SKIN) - 1.0)
    i0 = min(int(pos), len(_SKIN) - 2)
    f = pos - i0
    skin = tuple(a + (b - a) * f for a, b in zip(_SKIN[i0], _SKIN[i0 + 1]))
    skin = jitter(skin, 0.03)

    weights = [w for _, w in _HAIR]
    pick, acc = u(0.0, sum(weights)), 0.0
    hair = _HAIR[-1][0]
    for col, w in _HAIR:
        acc += w
        if pick <= acc:
            hair = col
            break
    hair = jitter(hair, 0.04)
    brow = _clip([0.55 * h + 0.05 for h in hair]) if sum(hair) > 1.2 else _clip([0.8 * h for h in hair])
    iris = jitter(_IRIS[min(int(u(0, len(_IRIS))), len(_IRIS) - 1)], 0.04)
    natural = _clip([skin[0] * 0.82 + 0.10, skin[1] * 0.52, skin[2] * 0.55 + 0.02])
    lipstick = _LIPSTICK[min(int(u(0, len(_LIPSTICK))), len(_LIPSTICK) - 1)]
    lip = lipstick if u() < 0.18 else jitter(natural, 0.03)
    shirt = _hsv(u(), u(0.2, 0.8), u(0.25, 0.9))

    elev, azim = u(0.2, 0.7), u(-0.7, 0.7)
    light = (math.cos(elev) * math.sin(azim), math.sin(elev), math.cos(elev) * math.cos(azim))

    h0, dh = u(), u(0.05, 0.45)
    bg_v0, bg_s = u(0.35, 0.95), u(0.05, 0.6)
    bg0 = _hsv(h0, bg_s, bg_v0)
    bg1 = _hsv((h0 + dh) % 1.0, bg_s * u(0.5, 1.2), min(1.0, bg_v0 * u(0.6, 1.3)))
    pattern = min(int(u(0, 4)), 3)

    hair_length = u() ** 1.5
    return Identity(
        seed=seed, skin=skin, hair=hair, brow=brow, iris=iris, lip=lip, shirt=_clip(shirt),
        face_w=u(0.88, 1.1), face_h=u(0.92, 1.08), eye_spacing=u(0.88, 1.12), eye_size=u(0.88, 1.15),
        brow_thick=u(0.7, 1.4), nose_size=u(0.8, 1.25), mouth_w=u(0.85, 1.15),
        hairline=u(0.38, 0.6), fringe=u() ** 2, hair_volume=u(1.0, 1.18), hair_length=hair_length,
        hair_wave=u(0.0, 2 * math.pi), ears=u() < 0.85 and hair_length < 0.6, blush=u(0.0, 0.35),
        light=light, bg0=_clip(bg0), bg1=_clip(bg1), bg_angle=u(0.0, 2 * math.pi), bg_pattern=pattern,
        bg_freq=u(2.0, 7.0), bg_amp=u(0.03, 0.12),
    )
