"""Per-frame feature-region maps of synthetic clips: where the mouth and the eyes can change the image.

The renderer changes a factor's pixels only (mouth parameters never touch the eyes and vice versa), so
the region a factor can reach in one frame is found exactly by rendering that frame again with the
factor at its extremes and taking the pixels that differ.  Two maps per frame, the mouth's and the eyes',
dilated by one pixel, are stored as uint8 (0 = elsewhere, 255 = feature region) in a ``<clip>.regions.npy``
sidecar of shape (N, 2, H, W) (an older sidecar holds their union only, (N, H, W)).  Stage-1 training reads
it to weight its reconstruction loss on the union (``stage1.weights.recon_region``,
:class:`demo_core.train.config.Stage1Weights`: at 64² the mouth and eyes are ~4 % of the pixels, and an
unweighted reconstruction loss learns to render pose but not their motion) and to keep a lip edit inside
the mouth map and a gaze or blink edit inside the eye map (``stage1.weights.locality``).

Command line (adds the sidecar to every clip of a folder that lacks it)::

    python -m demo_core.synthetic.regions FOLDER [FOLDER ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .head import HeadRenderer
from .identity import Identity
from .params import PARAM_NAMES, FrameParams

__all__ = ["FEATURE_VARIANTS", "MOUTH_VARIANTS", "EYE_VARIANTS", "REGION_PARTS", "feature_regions", "save_regions",
           "write_regions", "regions_path"]

#: factor settings whose renders, compared with the frame's own, outline the mouth
MOUTH_VARIANTS: tuple[dict[str, float], ...] = (
    {"mouth_open": 1.0, "mouth_width": 1.0, "mouth_round": 0.0},
    {"mouth_open": 1.0, "mouth_width": -1.0, "mouth_round": 1.0},
    {"mouth_open": 0.0, "mouth_width": -1.0, "mouth_round": 1.0},
    {"mouth_open": 0.0, "mouth_width": 1.0, "mouth_round": 0.0},
)
#: … and the eyes
EYE_VARIANTS: tuple[dict[str, float], ...] = (
    {"blink": 1.0, "gaze_x": 1.0, "gaze_y": 1.0},
    {"blink": 0.0, "gaze_x": -1.0, "gaze_y": -1.0},
    {"blink": 0.0, "gaze_x": 1.0, "gaze_y": -1.0},
)
FEATURE_VARIANTS = MOUTH_VARIANTS + EYE_VARIANTS
REGION_PARTS = ("mouth", "eyes")  #: the maps of a two-part sidecar, in order


@torch.no_grad()
def feature_regions(params: FrameParams, identity: Identity, size: int = 64, *, threshold: float = 0.02,
                    dilate: int = 1, parts: bool = False, device: torch.device | str = "cpu") -> torch.Tensor:
    """Mouth and eye region of every frame.

    Args:
        params: per-frame factors (N frames).
        identity: the face.
        size: image side in pixels.
        threshold: a pixel belongs to the region when some variant moves one of its channels by more
            than this (images in [0, 1]).
        dilate: grow the region by this many pixels.
        parts: return the mouth and the eye region apart, (N, 2, size, size) in :data:`REGION_PARTS` order,
            instead of their union.
        device: torch device for rendering.

    Returns:
        (N, size, size) bool, or (N, 2, size, size) with ``parts``.
    """
    renderer = HeadRenderer(identity, size, device)
    base = renderer.render(params)
    maps = []
    for variants in (MOUTH_VARIANTS, EYE_VARIANTS):
        region = torch.zeros(len(params), size, size, dtype=torch.bool, device=base.device)
        for variant in variants:
            moved = renderer.render(params.replace(**variant))
            region |= (moved - base).abs().amax(dim=1) > threshold
        maps.append(region)
    region = torch.stack(maps, dim=1)  # (N, 2, size, size)
    if dilate > 0:
        k = 2 * int(dilate) + 1
        region = F.max_pool2d(region.float(), k, stride=1, padding=int(dilate)) > 0.5
    return region if parts else region.any(dim=1)


def regions_path(stem: str | Path) -> Path:
    """``<stem>.regions.npy`` for a clip stem (the clip path without its suffix)."""
    return Path(f"{stem}.regions.npy")


def save_regions(path: str | Path, region: torch.Tensor) -> None:
    """Write a (N, H, W) or (N, 2, H, W) bool region map as the uint8 sidecar format (0 / 255), atomically."""
    from .media import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, region.cpu().numpy().astype(np.uint8) * 255)


def write_regions(labels_file: str | Path, *, overwrite: bool = False) -> Path | None:
    """Write the region sidecar of one synthetic clip from its ``.labels.npz`` (factors and identity).

    Writes the two-part form (N, 2, H, W): mouth, eyes.  Returns the sidecar path, or None when it exists and
    ``overwrite`` is False."""
    from .dataset import _stem, load_identity

    out = regions_path(_stem(labels_file))
    if out.exists() and not overwrite:
        return None
    with np.load(labels_file, allow_pickle=False) as z:
        labels = {k: z[k] for k in z.files}
    params = FrameParams.from_dict({k: labels[k] for k in PARAM_NAMES})
    save_regions(out, feature_regions(params, load_identity(labels), int(labels["size"]), parts=True))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m demo_core.synthetic.regions",
                                 description="Add <clip>.regions.npy (mouth and eye regions) to synthetic clips.")
    ap.add_argument("folders", nargs="+", help="folders of synthetic clips (searched recursively)")
    ap.add_argument("--overwrite", action="store_true", help="recompute existing sidecars")
    a = ap.parse_args(argv)
    done = 0
    for folder in a.folders:
        for lab in sorted(Path(folder).rglob("*.labels.npz")):
            done += write_regions(lab, overwrite=a.overwrite) is not None
    print(f"wrote {done} region maps")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
