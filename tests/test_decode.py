"""The analysis worker's decoder (vision/decode.py): orientation, reduction within
max_pixels, every JPEG colour mode, broken bytes and the memory budget. Real files, no model."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from facequeue.vision.decode import Unreadable, decode_bytes


def jpeg(size: tuple[int, int], mode: str = "RGB", **save) -> bytes:
    im = Image.new(mode, size, "white" if mode != "CMYK" else (0, 0, 0, 0))
    if mode == "RGB":
        im.paste((0, 0, 255), (0, 0, size[0] // 4, size[1] // 4))  # a blue top-left corner
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90, **save)
    return buf.getvalue()


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 400x200, shown rotated 90 degrees clockwise
    out, _ = decode_bytes(jpeg((400, 200), exif=exif))
    assert out.shape == (400, 200, 3)
    assert out[2, -3].tolist() == pytest.approx([255, 0, 0], abs=8)  # blue (BGR) moved right
    assert out[-3, 2].tolist() == pytest.approx([255, 255, 255], abs=8)


@pytest.mark.parametrize("progressive", [False, True])
def test_large_jpeg_is_reduced_below_max_pixels(progressive):
    out, scale = decode_bytes(jpeg((4000, 3000), progressive=progressive), max_pixels=2_000_000)
    h, w = out.shape[:2]
    assert 500_000 <= w * h <= 2_000_000  # the decoder's 1/2^k, as draft mode did
    assert scale == pytest.approx(w / 4000)
    assert out[5, 5].tolist() == pytest.approx([255, 0, 0], abs=8)  # blue is BGR (255, 0, 0)


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_grey_and_cmyk_jpegs_decode_to_bgr(mode):
    out, _ = decode_bytes(jpeg((300, 200), mode))
    assert out.shape == (200, 300, 3) and out.dtype == np.uint8
    assert int(out.min()) >= 240  # white either way (CMYK 0,0,0,0 is white)


def test_truncated_jpeg_is_unreadable():
    data = jpeg((600, 400))
    with pytest.raises(Unreadable, match="truncated"):
        decode_bytes(data[: len(data) // 2])


def test_progressive_jpeg_counts_its_full_size_coefficients_against_the_budget():
    data = jpeg((4000, 3000), progressive=True)
    # Reduced to ~2 MP the bitmap is 6 MB, but libjpeg keeps 12 MP of coefficients (72 MB).
    with pytest.raises(Unreadable, match="over the 32 MB budget"):
        decode_bytes(data, max_pixels=2_000_000, budget_bytes=32 << 20)
    decode_bytes(jpeg((4000, 3000)), max_pixels=2_000_000, budget_bytes=32 << 20)  # baseline fits
