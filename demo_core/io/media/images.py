"""Images in and frames out: image files, the host ``IMAGE`` layout ↔ model tensors.

Layout: the host's ``(B, H, W, 3)`` float in ``0..1`` (ComfyUI ``IMAGE``); the models take ``(B, 3, S, S)``
in ``[-1, 1]`` (:func:`to_model_image`) and give frames back in that layout (:func:`frames_to_unit`,
:func:`frames_to_uint8`).
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from demo_core.errors import DemoInputError

from .paths import _existing_file

__all__ = [
    "load_image",
    "resize_images",
    "to_model_image",
    "frames_to_uint8",
    "frames_to_unit",
]


def _pil_to_rgb(image) -> np.ndarray:
    """A Pillow image as float32 ``(H, W, 3)`` in 0..1; alpha composited over black."""
    mode = image.mode
    if mode.startswith("I"):  # 16-bit ("I;16*") or 32-bit integer grey, read as 16-bit scale
        grey = np.clip(np.asarray(image).astype(np.float64) / 65535.0, 0.0, 1.0).astype(np.float32)
        return np.repeat(grey[..., None], 3, axis=-1)
    if mode == "F":
        grey = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
        return np.repeat(grey[..., None], 3, axis=-1)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0  # (H, W, 4)
        return rgba[..., :3] * rgba[..., 3:]
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """Read an image file as RGB.

    The EXIF orientation is applied.  Grey, palette, CMYK and 16-bit images become RGB (16-bit
    values scale by 1/65535); transparency (RGBA, LA, palette transparency) is composited over
    black, the same black that pads crops outside the image.  An animated file gives its first frame.

    Args:
        path: Image file (png, jpg, webp, ...).

    Returns:
        Float32 tensor of shape ``(H, W, 3)`` in 0..1.

    Raises:
        DemoInputError: if the file is missing or is not a readable image.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = _existing_file(path, "image")
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            rgb = _pil_to_rgb(image)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DemoInputError(f"image: {str(path)!r} is not a readable image: {err}") from err
    return torch.from_numpy(np.ascontiguousarray(rgb))


def resize_images(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize images with values in 0..1.

    Area averaging when both sides shrink (or stay), bicubic with antialiasing otherwise; the
    result is clipped to 0..1 (bicubic overshoots at edges).

    Args:
        images: Shape ``(B, C, H, W)``, floating point, values in 0..1.
        height: Output height.
        width: Output width.

    Returns:
        Shape ``(B, C, height, width)``, same dtype.
    """
    H, W = images.shape[-2:]
    if (H, W) == (height, width):
        return images
    x = images if images.dtype in (torch.float32, torch.float64) else images.float()
    if height <= H and width <= W:
        out = F.interpolate(x, size=(height, width), mode="area")
    else:
        out = F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False, antialias=True)
        out = out.clamp(0.0, 1.0)
    return out.to(images.dtype)


def _check_image_batch(image: torch.Tensor, name: str) -> torch.Tensor:
    """``(H, W, 3)`` or ``(B, H, W, 3)`` float → ``(B, H, W, 3)``."""
    if not isinstance(image, torch.Tensor):
        raise DemoInputError(f"{name}: expected a tensor (B, H, W, 3) in 0..1, got {type(image).__name__}")
    if image.dim() == 3:
        image = image[None]
    if image.dim() != 4 or image.shape[-1] != 3 or image.shape[0] == 0 or 0 in image.shape[1:3]:
        raise DemoInputError(f"{name}: expected shape (B, H, W, 3) or (H, W, 3), got {tuple(image.shape)}")
    if not image.is_floating_point():
        raise DemoInputError(f"{name}: expected float values in 0..1, got dtype {image.dtype}")
    return image


def to_model_image(image: torch.Tensor, size: int) -> torch.Tensor:
    """Host images to the model's square input.

    Args:
        image: Shape ``(B, H, W, 3)`` or ``(H, W, 3)``, values in 0..1 (normally already a square crop;
            a non-square image is stretched).
        size: Side of the model input in pixels.

    Returns:
        Shape ``(B, 3, size, size)`` in ``[-1, 1]``: resized with :func:`resize_images`, then
        ``(x - 0.5) / 0.5``.
    """
    image = _check_image_batch(image, "image")
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise DemoInputError(f"size: expected a positive integer, got {size!r}")
    x = image.permute(0, 3, 1, 2)  # (B, 3, H, W)
    x = resize_images(x, size, size)  # (B, 3, size, size)
    return (x - 0.5) / 0.5


def _check_model_frames(frames: torch.Tensor) -> torch.Tensor:
    if not isinstance(frames, torch.Tensor) or frames.dim() != 4 or frames.shape[1] != 3:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise DemoInputError(f"frames: expected a tensor of shape (N, 3, H, W) in [-1, 1], got {shape}")
    return frames


def frames_to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """Model frames to 8-bit RGB, as FLOAT does it.

    ``((clamp(x, -1, 1) + 1) / 2 * 255)`` truncated toward zero (not rounded), so only exactly 1.0
    maps to 255.

    Args:
        frames: Shape ``(N, 3, H, W)`` in ``[-1, 1]``.

    Returns:
        uint8 tensor of shape ``(N, H, W, 3)`` on the same device.
    """
    frames = _check_model_frames(frames)
    x = (frames.detach().float().clamp(-1.0, 1.0) + 1.0) / 2.0 * 255.0
    return x.permute(0, 2, 3, 1).to(torch.uint8)  # (N, H, W, 3)


def frames_to_unit(frames: torch.Tensor) -> torch.Tensor:
    """Model frames to the host ``IMAGE`` layout.

    Args:
        frames: Shape ``(N, 3, H, W)`` in ``[-1, 1]``.

    Returns:
        Shape ``(N, H, W, 3)``, float32 in 0..1.
    """
    frames = _check_model_frames(frames)
    x = (frames.float().clamp(-1.0, 1.0) + 1.0) / 2.0
    return x.permute(0, 2, 3, 1).contiguous()  # (N, H, W, 3)
