"""Motion curves for previews: a picture drawn with numpy and Pillow, and the front-end payload.

:func:`plot_curves` draws small multiples: one panel per curve, all panels on the same vertical
scale so amplitudes compare, time in seconds along the bottom.  :func:`motion_curves` gives the
``ui.demo_curves`` entries that ``web/js/motion_preview.js`` draws on the node.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["plot_curves", "motion_curves"]

_BACKGROUND = (24, 24, 28)
_FRAME = (80, 80, 90)
_ZERO = (55, 55, 62)
_TEXT = (210, 210, 215)
_PALETTE = [(102, 178, 255), (255, 153, 102), (119, 221, 119), (255, 105, 180), (186, 148, 255), (255, 221, 85)]
_HEADER = 18  # pixels above the panels for the title
_FOOTER = 14  # pixels below the panels for the time axis


def plot_curves(
    curves: np.ndarray,
    *,
    fps: float,
    labels: list[str] | None = None,
    width: int = 768,
    height: int = 512,
    title: str = "",
) -> np.ndarray:
    """Draw K curves of T samples as a grid of panels.

    Args:
        curves: (K, T) values; non-finite values are drawn as 0.
        fps: samples per second (for the time axis).
        labels: K panel labels (default ``"0"``, ``"1"``, ...).
        width, height: image size in pixels (at least 64 × 64).
        title: text above the panels.

    Returns:
        (height, width, 3) uint8 RGB image.
    """
    curves = np.nan_to_num(np.asarray(curves, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if curves.ndim != 2 or curves.shape[0] == 0 or curves.shape[1] == 0:
        raise ValueError(f"curves: expected a non-empty (K, T) array, got shape {curves.shape}")
    width, height = max(64, int(width)), max(64, int(height))
    k, t = curves.shape
    labels = labels or [str(i) for i in range(k)]
    limit = float(np.abs(curves).max()) or 1.0  # shared symmetric range
    cols = max(1, min(k, round(math.sqrt(k * width / height))))
    rows = math.ceil(k / cols)
    panel_w, panel_h = width / cols, (height - _HEADER - _FOOTER) / rows

    image = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    draw.text((4, 3), f"{title}  (range ±{limit:.3g}, {t} frames at {fps:g} fps)", fill=_TEXT, font=font)
    for i in range(k):
        x0, y0 = (i % cols) * panel_w + 3, _HEADER + (i // cols) * panel_h + 3
        x1, y1 = x0 + panel_w - 6, y0 + panel_h - 6
        draw.rectangle((x0, y0, x1, y1), outline=_FRAME)
        mid = (y0 + y1) / 2
        draw.line((x0, mid, x1, mid), fill=_ZERO)
        xs = x0 + (np.arange(t) + 0.5) / t * (x1 - x0)
        ys = mid - curves[i] / limit * (y1 - y0) / 2 * 0.9
        color = _PALETTE[i % len(_PALETTE)]
        if t == 1:
            draw.line((x0, ys[0], x1, ys[0]), fill=color)
        else:
            draw.line(list(zip(xs.tolist(), ys.tolist())), fill=color, width=1)
        draw.text((x0 + 3, y0 + 1), labels[i], fill=_TEXT, font=font)
    draw.text((4, height - _FOOTER + 1), "0 s", fill=_TEXT, font=font)
    end = f"{t / fps:.2f} s"
    draw.text((width - 6 * len(end) - 4, height - _FOOTER + 1), end, fill=_TEXT, font=font)
    return np.asarray(image, dtype=np.uint8)


def motion_curves(track, portrait_index: int = 0, digits: int = 4) -> list[dict]:
    """A track's coefficient curves as ``[{"name", "fps", "values"}, ...]`` for ``ui.demo_curves``.

    Args:
        track: a :class:`~demo_core.motion.track.MotionTrack` (no basis: no curves).
        portrait_index: which portrait's track.
        digits: decimals kept (the payload travels as JSON).
    """
    if track.basis is None:
        return []
    values = track.coefficients[portrait_index].double().cpu().round(decimals=digits).T.tolist()  # M lists of T
    return [{"name": name, "fps": track.fps, "values": v} for name, v in zip(track.coefficient_names(), values)]
