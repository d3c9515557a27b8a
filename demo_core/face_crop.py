"""Square face crops: find the face, cut the model's square input, paste rendered frames back.

A :class:`CropBox` is a square in source-pixel coordinates that may extend past the image; the
part outside is zero (black).  For cutting and pasting, the box is snapped to whole pixels
(:meth:`CropBox.pixel_box`), so a crop followed by a paste-back lands on exactly the same pixels.
Images use the host layout ``(B, H, W, 3)`` float in 0..1.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch

from demo_core.errors import DemoInputError
from demo_core.io.media import resize_images

log = logging.getLogger(__name__)

__all__ = ["CropBox", "detect_face", "face_crop_box", "crop_image", "paste_back"]

_DETECT_MAX_SIDE = 640  # images are downscaled to at most this side for the Haar detector
_MODES = ("auto", "center", "box")
_MAX_BOX_RATIO = 8  # a crop side beyond 8x the image's longer side is a mistake, not a portrait


@dataclass(frozen=True)
class CropBox:
    """Square crop region in source-pixel coordinates (may extend past the image).

    Attributes:
        x0: Left edge, pixels (may be negative).
        y0: Top edge, pixels (may be negative).
        size: Side of the square, pixels (> 0).
        image_width: Width of the source image.
        image_height: Height of the source image.
    """

    x0: float
    y0: float
    size: float
    image_width: int
    image_height: int

    def __post_init__(self) -> None:
        values = (self.x0, self.y0, self.size)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values) or self.size <= 0:
            raise DemoInputError(f"crop_box: expected finite x0, y0 and a positive size, got {values}")
        if int(self.image_width) <= 0 or int(self.image_height) <= 0:
            raise DemoInputError(
                f"crop_box: expected a positive image size, got {self.image_width}x{self.image_height}"
            )

    def pixel_box(self) -> tuple[int, int, int]:
        """The box snapped to whole pixels: ``(x0, y0, side)`` with ``side >= 1``."""
        return round(self.x0), round(self.y0), max(1, round(self.size))

    def to_dict(self) -> dict:
        """Plain-JSON form (floats and ints)."""
        return {k: (float(v) if k in ("x0", "y0", "size") else int(v)) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> "CropBox":
        """Inverse of :meth:`to_dict`.

        Raises:
            DemoInputError: if a field is missing or invalid.
        """
        fields = ("x0", "y0", "size", "image_width", "image_height")
        if not isinstance(data, dict) or any(k not in data for k in fields):
            raise DemoInputError(f"crop_box: expected a dict with keys {fields}, got {data!r}")
        try:
            return cls(float(data["x0"]), float(data["y0"]), float(data["size"]),
                       int(data["image_width"]), int(data["image_height"]))
        except (TypeError, ValueError) as err:
            if isinstance(err, DemoInputError):
                raise
            raise DemoInputError(f"crop_box: invalid field in {data!r}: {err}") from err


def _single_image(image: torch.Tensor | np.ndarray, name: str = "image") -> torch.Tensor:
    """``(H, W, 3)`` or ``(1, H, W, 3)`` → ``(H, W, 3)`` float tensor."""
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(image)
    if not isinstance(image, torch.Tensor):
        raise DemoInputError(f"{name}: expected a tensor (H, W, 3) in 0..1, got {type(image).__name__}")
    if image.dim() == 4 and image.shape[0] == 1:
        image = image[0]
    if image.dim() != 3 or image.shape[-1] != 3 or 0 in image.shape:
        raise DemoInputError(f"{name}: expected one image of shape (H, W, 3), got {tuple(image.shape)}")
    if not image.is_floating_point():
        raise DemoInputError(f"{name}: expected float values in 0..1, got dtype {image.dtype}")
    return image


def _image_batch(image: torch.Tensor, name: str) -> torch.Tensor:
    """``(H, W, 3)`` or ``(B, H, W, 3)`` float → ``(B, H, W, 3)``."""
    if not isinstance(image, torch.Tensor):
        raise DemoInputError(f"{name}: expected a tensor (B, H, W, 3) in 0..1, got {type(image).__name__}")
    if image.dim() == 3:
        image = image[None]
    if image.dim() != 4 or image.shape[-1] != 3 or 0 in image.shape:
        raise DemoInputError(f"{name}: expected shape (B, H, W, 3) or (H, W, 3), got {tuple(image.shape)}")
    if not image.is_floating_point():
        raise DemoInputError(f"{name}: expected float values in 0..1, got dtype {image.dtype}")
    return image


@functools.lru_cache(maxsize=1)
def _haar_cascade():
    """OpenCV's frontal-face cascade, or None (logged once) where OpenCV is missing or unusable.

    Python environments that host ComfyUI often hold two OpenCV distributions at once (opencv-python beside
    opencv-python-headless or -contrib); one's files then shadow the other's and ``cv2`` imports without its
    classes.  Face detection is a convenience (``auto`` falls back to the centre crop), so such an install
    degrades to that fallback instead of failing the run."""
    try:
        import cv2

        cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    except ImportError:
        log.info("face detection off: OpenCV (cv2) is not installed; 'auto' framing uses the centre crop")
        return None
    except Exception as err:  # noqa: BLE001 - AttributeError, cv2.error, ...: any broken install
        log.warning("face detection off: OpenCV is installed but unusable (%s: %s) - often two opencv packages "
                    "in one environment; reinstall opencv-python-headless alone. 'auto' framing uses the centre "
                    "crop", type(err).__name__, err)
        return None
    if cascade.empty():
        log.warning("face detection off: OpenCV's haarcascade_frontalface_default.xml did not load; "
                    "'auto' framing uses the centre crop")
        return None
    return cascade


def detect_face(image: torch.Tensor | np.ndarray) -> tuple[int, int, int, int] | None:
    """Find the largest frontal face with OpenCV's Haar cascade.

    The image is downscaled (area average) to at most 640 px on its longer side, then converted to 8-bit grey.

    Args:
        image: Shape ``(H, W, 3)`` (or ``(1, H, W, 3)``), float in 0..1.

    Returns:
        ``(x, y, w, h)`` in source pixels, or ``None`` if no face is found or OpenCV is missing or unusable.
    """
    image = _single_image(image)
    cascade = _haar_cascade()
    if cascade is None:
        return None
    import cv2  # usable: the cascade loaded
    H, W = image.shape[:2]
    scale = min(1.0, _DETECT_MAX_SIDE / max(H, W))
    small = image.detach().float()  # (H, W, 3)
    if scale < 1.0:  # shrink (area average) before any conversion: a 4K frame is never copied at full size
        h, w = max(1, round(H * scale)), max(1, round(W * scale))
        small = resize_images(small.permute(2, 0, 1)[None], h, w)[0].permute(1, 2, 0)  # (h, w, 3)
    rgb = (small.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()  # (h, w, 3)
    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)  # (h, w)
    min_side = max(20, round(0.08 * min(grey.shape)))
    faces = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
    if len(faces) == 0:
        return None
    x, y, w, h = max((tuple(int(v) for v in f) for f in faces), key=lambda f: f[2] * f[3])
    return round(x / scale), round(y / scale), round(w / scale), round(h / scale)


def _center_box(H: int, W: int) -> CropBox:
    side = min(H, W)
    return CropBox((W - side) / 2, (H - side) / 2, float(side), W, H)


def _user_box(box: Sequence[float], H: int, W: int) -> CropBox:
    if box is None or len(box) != 4:
        raise DemoInputError(f"box: expected (x, y, w, h) in pixels for mode 'box', got {box!r}")
    try:
        x, y, w, h = (float(v) for v in box)
    except (TypeError, ValueError) as err:
        raise DemoInputError(f"box: expected four numbers (x, y, w, h), got {box!r}") from err
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        raise DemoInputError(f"box: expected finite x, y and positive w, h, got {box!r}")
    if x >= W or y >= H or x + w <= 0 or y + h <= 0:
        raise DemoInputError(f"box: {box!r} does not overlap the {W}x{H} image")
    side = max(w, h)
    return CropBox(x + w / 2 - side / 2, y + h / 2 - side / 2, side, W, H)


def face_crop_box(
    image: torch.Tensor | np.ndarray,
    *,
    mode: str = "auto",
    box: Sequence[float] | None = None,
    scale: float = 1.6,
) -> tuple[CropBox, str]:
    """Choose the square crop for a portrait.

    Rules:

    * ``"auto"``: the detected face box ``(x, y, w, h)`` becomes a square of side
      ``max(w, h) * scale`` centred on ``(x + w/2, y + h/2)``; it may extend past the image (zero
      padding, as in FLOAT).  With no face found, the ``"center"`` crop is used.
    * ``"center"``: the largest centred square, side ``min(H, W)``.
    * ``"box"``: the user's ``box = (x, y, w, h)`` made square (side ``max(w, h)``) around its
      centre; ``scale`` is not applied.  ``box`` is ignored in the other modes.

    Args:
        image: Shape ``(H, W, 3)`` (or ``(1, H, W, 3)``), float in 0..1.
        mode: ``"auto"``, ``"center"`` or ``"box"``.
        box: ``(x, y, w, h)`` in source pixels, for ``mode="box"``.
        scale: Crop side relative to the detected face box, ``> 0``.

    Returns:
        ``(crop_box, source)`` where ``source`` says how it was chosen: ``"face"``, ``"center"``
        (including the auto fallback) or ``"box"``.

    Raises:
        DemoInputError: for an unknown mode, a bad ``box`` or ``scale``.
    """
    image = _single_image(image)
    H, W = image.shape[:2]
    if mode not in _MODES:
        raise DemoInputError(f"mode: expected one of {_MODES}, got {mode!r}")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise DemoInputError(f"scale: expected a positive number, got {scale!r}")
    if mode == "box":
        return _user_box(box, H, W), "box"
    if mode == "auto":
        face = detect_face(image)
        if face is not None:
            x, y, w, h = face
            side = max(w, h) * float(scale)
            return CropBox(x + w / 2 - side / 2, y + h / 2 - side / 2, side, W, H), "face"
    return _center_box(H, W), "center"


def _check_box(box: CropBox, H: int, W: int, name: str) -> None:
    if not isinstance(box, CropBox):
        raise DemoInputError(f"box: expected a CropBox, got {type(box).__name__}")
    if (box.image_height, box.image_width) != (H, W):
        raise DemoInputError(
            f"{name}: size {W}x{H} does not match the crop box's image {box.image_width}x{box.image_height}"
        )
    if box.size > _MAX_BOX_RATIO * max(H, W):
        raise DemoInputError(
            f"box: side {box.size:.0f} px is more than {_MAX_BOX_RATIO}x the {W}x{H} image (lower the scale)"
        )


def _overlap(start: int, side: int, limit: int) -> tuple[int, int, int, int]:
    """Overlap of ``[start, start + side)`` with ``[0, limit)``: (src_lo, src_hi, box_lo, box_hi)."""
    lo, hi = max(start, 0), min(start + side, limit)
    if hi <= lo:
        return 0, 0, 0, 0
    return lo, hi, lo - start, hi - start


def crop_image(image: torch.Tensor, box: CropBox, size: int) -> torch.Tensor:
    """Cut the square ``box`` out of images and resize it to ``size``.

    Pixels of the box outside the image are zero.  Resizing: area averaging down, bicubic with
    antialiasing up (:func:`demo_core.io.media.resize_images`).

    Args:
        image: Shape ``(H, W, 3)`` or ``(B, H, W, 3)``, float in 0..1, same size as the box's image.
        box: The crop (snapped to whole pixels, :meth:`CropBox.pixel_box`).
        size: Output side in pixels.

    Returns:
        Shape ``(B, size, size, 3)``.
    """
    image = _image_batch(image, "image")
    B, H, W, _ = image.shape
    _check_box(box, H, W, "image")
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise DemoInputError(f"size: expected a positive integer, got {size!r}")
    x0, y0, side = box.pixel_box()
    crop = image.new_zeros(B, side, side, 3)  # (B, side, side, 3)
    ys, ye, cys, cye = _overlap(y0, side, H)
    xs, xe, cxs, cxe = _overlap(x0, side, W)
    crop[:, cys:cye, cxs:cxe] = image[:, ys:ye, xs:xe]
    crop = resize_images(crop.permute(0, 3, 1, 2), size, size)  # (B, 3, size, size)
    return crop.permute(0, 2, 3, 1).contiguous()  # (B, size, size, 3)


def _feather_ramp(side: int, width: float, like: torch.Tensor) -> torch.Tensor:
    """1-D weights over a box side: 0 at the edges, smoothstep up to 1 over ``width`` pixels."""
    centres = torch.arange(side, dtype=torch.float64) + 0.5
    distance = torch.minimum(centres, side - centres)  # to the nearest edge
    if width <= 0:
        ramp = torch.ones(side, dtype=torch.float64)
    else:
        t = (distance / width).clamp(0.0, 1.0)
        ramp = t * t * (3.0 - 2.0 * t)
    return ramp.to(device=like.device, dtype=like.dtype)


def paste_back(
    rendered: torch.Tensor,
    original: torch.Tensor,
    box: CropBox,
    *,
    feather: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite rendered crops back into the source image.

    Each rendered frame is resized to the box's pixel side and blended into the original through
    a square mask that rises from 0 at the box edge to 1 over ``feather * side`` pixels
    (smoothstep, product of the row and column ramps); the parts of the box outside the image are
    dropped.

    Args:
        rendered: Shape ``(N, S, S, 3)``, float in 0..1.
        original: Shape ``(H, W, 3)`` (used for every frame) or ``(N, H, W, 3)``, float in 0..1.
        box: The crop the frames were rendered from.
        feather: Blend width as a fraction of the box side, 0 (hard edge) to 0.5.

    Returns:
        ``(frames, mask)``: frames of shape ``(N, H, W, 3)`` and the blend mask ``(H, W)`` in 0..1.
    """
    rendered = _image_batch(rendered, "rendered")
    if rendered.shape[1] != rendered.shape[2]:
        raise DemoInputError(f"rendered: expected square frames (N, S, S, 3), got {tuple(rendered.shape)}")
    original = _image_batch(original, "original")
    N = rendered.shape[0]
    _, H, W, _ = original.shape
    if original.shape[0] not in (1, N):
        raise DemoInputError(f"original: expected 1 or {N} images to match rendered, got {original.shape[0]}")
    _check_box(box, H, W, "original")
    if isinstance(feather, bool) or not isinstance(feather, (int, float)) or not 0 <= feather <= 0.5:
        raise DemoInputError(f"feather: expected a number from 0 to 0.5, got {feather!r}")

    x0, y0, side = box.pixel_box()
    dtype, device = rendered.dtype, rendered.device
    original = original.to(device=device, dtype=dtype)
    patch = resize_images(rendered.permute(0, 3, 1, 2), side, side).permute(0, 2, 3, 1)  # (N, side, side, 3)
    ramp = _feather_ramp(side, feather * side, rendered)  # (side,)
    box_mask = ramp[:, None] * ramp[None, :]  # (side, side)

    frames = original.expand(N, H, W, 3).clone()  # (N, H, W, 3)
    mask = torch.zeros(H, W, dtype=dtype, device=device)  # (H, W)
    ys, ye, cys, cye = _overlap(y0, side, H)
    xs, xe, cxs, cxe = _overlap(x0, side, W)
    if ye > ys and xe > xs:
        m = box_mask[cys:cye, cxs:cxe]
        mask[ys:ye, xs:xe] = m
        m = m[None, :, :, None]  # (1, h, w, 1)
        region = frames[:, ys:ye, xs:xe]
        frames[:, ys:ye, xs:xe] = m * patch[:, cys:cye, cxs:cxe] + (1 - m) * region
    return frames, mask
