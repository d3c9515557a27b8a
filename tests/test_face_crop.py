"""Face detection, square crops and paste-back (demo_core/face_crop.py)."""

from __future__ import annotations

import json

import pytest
import torch

from demo_core.errors import DemoInputError
from demo_core.face_crop import CropBox, crop_image, detect_face, face_crop_box, paste_back
from demo_core.io.media import load_image
from tests.conftest import SHARED, require_shared


def smooth_image(H: int, W: int) -> torch.Tensor:
    y = torch.linspace(0, 1, H).view(H, 1)
    x = torch.linspace(0, 1, W).view(1, W)
    channels = [0.2 + 0.6 * x * y, 0.5 + 0.3 * torch.sin(3 * x) * y, (0.8 - 0.5 * x).expand(H, W)]
    return torch.stack(channels, -1)  # (H, W, 3)


def test_crop_box_dict_round_trip_and_validation():
    box = CropBox(-9.5, 12.25, 332.8, 350, 300)
    data = box.to_dict()
    assert CropBox.from_dict(json.loads(json.dumps(data))) == box
    assert box.pixel_box() == (-10, 12, 333)
    with pytest.raises(DemoInputError, match="crop_box"):
        CropBox.from_dict({"x0": 0, "y0": 0})
    with pytest.raises(DemoInputError, match="crop_box"):
        CropBox(0, 0, -5, 10, 10)
    with pytest.raises(DemoInputError, match="crop_box"):
        CropBox.from_dict({**data, "size": "big"})


def test_haar_cascade_finds_the_shared_portrait_face():
    image = load_image(require_shared(SHARED / "data" / "portraits" / "violet.png"))
    face = detect_face(image)
    assert face is not None, "the Haar cascade found no face in violet.png"
    x, y, w, h = face
    # the face is in the upper middle of the 350 x 350 portrait (eyes around y = 100, chin near 250)
    assert 100 < x + w / 2 < 220 and 60 < y + h / 2 < 180 and 120 < w < 260
    box, source = face_crop_box(image)
    assert source == "face"
    assert box.size == pytest.approx(max(w, h) * 1.6)
    assert box.x0 + box.size / 2 == pytest.approx(x + w / 2)
    assert box.y0 + box.size / 2 == pytest.approx(y + h / 2)


def test_detection_on_a_large_image_maps_back_to_source_pixels():
    image = load_image(require_shared(SHARED / "data" / "portraits" / "violet.png"))
    big = torch.nn.functional.interpolate(image.permute(2, 0, 1)[None], scale_factor=3, mode="bilinear")[0]
    small_face = detect_face(image)
    big_face = detect_face(big.permute(1, 2, 0).clamp(0, 1))  # 1050 px: detected on a 640 px copy
    assert small_face is not None and big_face is not None
    for a, b in zip(small_face, big_face):
        assert abs(3 * a - b) < 0.15 * 3 * small_face[2]


def test_no_face_falls_back_to_center():
    flat = torch.full((120, 200, 3), 0.5)
    assert detect_face(flat) is None
    box, source = face_crop_box(flat)
    assert source == "center"
    assert (box.x0, box.y0, box.size) == (40.0, 0.0, 120.0)


@pytest.mark.parametrize("broken", ["missing", "no_classes"])
def test_a_missing_or_broken_opencv_falls_back_to_center(monkeypatch, caplog, broken):
    """No cv2, or a cv2 that imports without its classes (two opencv packages in one ComfyUI environment):
    'auto' framing uses the centre crop and says why, instead of failing the run."""
    import sys
    import types

    from demo_core import face_crop

    monkeypatch.setitem(sys.modules, "cv2", None if broken == "missing" else types.ModuleType("cv2"))
    face_crop._haar_cascade.cache_clear()
    try:
        with caplog.at_level("INFO", logger="demo_core.face_crop"):
            image = torch.rand(90, 90, 3)
            assert detect_face(image) is None
            box, source = face_crop_box(image)
        assert source == "center" and (box.x0, box.y0, box.size) == (0.0, 0.0, 90.0)
        assert "face detection off" in caplog.text
        assert ("not installed" in caplog.text) == (broken == "missing")
    finally:
        face_crop._haar_cascade.cache_clear()  # the real cascade again for the other tests


def test_center_and_user_box_modes():
    image = torch.zeros(100, 60, 3)
    box, source = face_crop_box(image, mode="center")
    assert source == "center" and (box.x0, box.y0, box.size) == (0.0, 20.0, 60.0)
    box, source = face_crop_box(image, mode="box", box=(10, 20, 30, 50), scale=3.0)  # scale ignored
    assert source == "box" and (box.x0, box.y0, box.size) == (0.0, 20.0, 50.0)
    assert (box.image_width, box.image_height) == (60, 100)


@pytest.mark.parametrize("bad", [None, (1, 2, 3), (0, 0, 0, 10), (0, 0, 10, -1), (60, 0, 10, 10),
                                 (-20, 0, 10, 10), (0, 0, float("nan"), 4), ("a", 0, 1, 1)])
def test_user_box_errors_name_box(bad):
    with pytest.raises(DemoInputError, match="box"):
        face_crop_box(torch.zeros(100, 60, 3), mode="box", box=bad)


def test_mode_scale_and_image_errors():
    with pytest.raises(DemoInputError, match="mode"):
        face_crop_box(torch.zeros(10, 10, 3), mode="face")
    with pytest.raises(DemoInputError, match="scale"):
        face_crop_box(torch.zeros(10, 10, 3), scale=0)
    with pytest.raises(DemoInputError, match="image"):
        face_crop_box(torch.zeros(10, 10, 4))


def test_crop_without_resize_is_exact_slicing_with_zero_padding():
    image = torch.rand(2, 30, 40, 3)
    box = CropBox(30.0, -5.0, 16.0, 40, 30)  # extends 6 px past the right and 5 px above
    crop = crop_image(image, box, 16)
    assert crop.shape == (2, 16, 16, 3)
    assert torch.equal(crop[:, 5:, :10], image[:, 0:11, 30:40])
    assert crop[:, :5].abs().max() == 0 and crop[:, :, 10:].abs().max() == 0


def test_crop_resizes_down_by_area_and_up_smoothly():
    image = torch.zeros(20, 20, 3)
    image[::2, ::2] = 1.0
    down = crop_image(image, CropBox(0, 0, 20, 20, 20), 10)  # every 2x2 block has one white pixel
    assert torch.allclose(down, torch.full_like(down, 0.25))
    up = crop_image(smooth_image(20, 20), CropBox(0, 0, 20, 20, 20), 64)
    assert up.shape == (1, 64, 64, 3) and up.min() >= 0 and up.max() <= 1
    with pytest.raises(DemoInputError, match="image"):
        crop_image(torch.zeros(21, 20, 3), CropBox(0, 0, 20, 20, 20), 10)
    with pytest.raises(DemoInputError, match="box"):
        crop_image(torch.zeros(20, 20, 3), CropBox(0, 0, 1000, 20, 20), 10)


@pytest.mark.parametrize("size", [None, 96, 512])  # None: the box's own pixel size, no resampling
def test_paste_back_of_unmodified_crop_reproduces_original(size):
    original = smooth_image(120, 160)
    box = CropBox(70.4, 20.0, 66.6, 160, 120)
    x0, y0, side = box.pixel_box()
    crop = crop_image(original, box, size or side)
    frames, mask = paste_back(crop.expand(3, -1, -1, -1), original, box, feather=0.1)
    assert frames.shape == (3, 120, 160, 3) and mask.shape == (120, 160)
    tolerance = 1e-6 if size is None else 0.02
    assert (frames - original).abs().max() < tolerance
    assert mask[y0:y0 + side, x0:x0 + side].min() > 0
    outside = mask.clone()
    outside[y0:y0 + side, x0:x0 + side] = 0
    assert outside.abs().max() == 0  # nothing outside the box


def test_paste_back_mask_feather_and_clipping():
    original = torch.zeros(50, 50, 3)
    box = CropBox(30, -10, 40, 50, 50)  # overhangs the right and top edges
    rendered = torch.ones(1, 40, 40, 3)
    frames, mask = paste_back(rendered, original, box, feather=0.25)
    assert frames.shape == (1, 50, 50, 3)
    assert float(mask[10, 40]) == pytest.approx(1.0)  # 10.5 px from the box's left edge > feather 10 px
    assert float(mask[0, 49]) == pytest.approx(1.0)  # box row 10, column 19: interior
    assert 0 < float(mask[29, 40]) < 0.1  # last box row: half a pixel from the edge
    assert 0 < float(mask[10, 32]) < float(mask[10, 35]) < 1  # ramp rises inward
    assert torch.allclose(frames[0, ..., 0], mask)  # white over black: the mask itself
    assert mask[:, :30].abs().max() == 0 and mask[30:].abs().max() == 0
    hard, hard_mask = paste_back(rendered, original, box, feather=0.0)
    assert hard_mask[:30, 30:].min() == 1 and hard_mask.sum() == 30 * 20


def test_paste_back_per_frame_originals_and_errors():
    originals = torch.rand(2, 40, 40, 3)
    box = CropBox(5, 5, 20, 40, 40)
    rendered = torch.zeros(2, 20, 20, 3)
    frames, _ = paste_back(rendered, originals, box, feather=0.0)
    assert torch.equal(frames[:, :5], originals[:, :5])
    assert frames[:, 5:25, 5:25].abs().max() == 0
    with pytest.raises(DemoInputError, match="original"):
        paste_back(torch.zeros(3, 20, 20, 3), originals, box)
    with pytest.raises(DemoInputError, match="original"):
        paste_back(rendered, torch.rand(40, 41, 3), box)
    with pytest.raises(DemoInputError, match="rendered"):
        paste_back(torch.zeros(2, 20, 10, 3), originals, box)
    with pytest.raises(DemoInputError, match="feather"):
        paste_back(rendered, originals, box, feather=0.7)
