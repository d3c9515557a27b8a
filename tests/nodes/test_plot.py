"""plot_curves: image size, one panel per curve, a shared scale, and input checks."""

from __future__ import annotations

import numpy as np
import pytest

from nodes.plot import plot_curves

BACKGROUND = np.array([24, 24, 28])


def _ink(image: np.ndarray, rows: slice, cols: slice) -> int:
    """Pixels differing from the background in a region."""
    return int((np.abs(image[rows, cols].astype(int) - BACKGROUND).sum(-1) > 0).sum())


def test_shape_dtype_and_panels():
    t = np.linspace(0, 2 * np.pi, 50)
    curves = np.stack([np.sin(t), np.zeros_like(t), 0.5 * np.cos(t), np.ones_like(t)])
    image = plot_curves(curves, fps=25, labels=["a", "b", "c", "d"], width=400, height=300, title="test")
    assert image.shape == (300, 400, 3) and image.dtype == np.uint8
    # 4 curves at 400x300 → a 2 × 2 grid; every panel has something drawn in it
    for rows in (slice(20, 150), slice(150, 285)):
        for cols in (slice(0, 200), slice(200, 400)):
            assert _ink(image, rows, cols) > 100


def test_shared_scale_keeps_small_curves_small():
    t = np.linspace(0, 1, 40)
    image = plot_curves(np.stack([np.sin(6 * t), 0.01 * np.sin(6 * t)]), fps=25, width=400, height=200)

    def rows_with(colour):  # rows where the curve of that palette colour is drawn
        return len(np.unique(np.nonzero((image == colour).all(-1))[0]))

    assert rows_with((102, 178, 255)) > 100  # the big curve spans most of its panel height
    assert rows_with((255, 153, 102)) <= 3  # the small one stays near zero on the shared scale


def test_single_frame_and_non_finite_values():
    image = plot_curves(np.array([[np.nan], [np.inf]]), fps=30, width=64, height=64)
    assert image.shape == (64, 64, 3)


@pytest.mark.parametrize("bad", [np.zeros(5), np.zeros((0, 4)), np.zeros((3, 0))])
def test_rejects_non_2d_or_empty(bad):
    with pytest.raises(ValueError, match="curves"):
        plot_curves(bad, fps=25)
