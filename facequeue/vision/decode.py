"""Decode an image file into a BGR array within a memory budget (analysis worker side).

The downloader only checks headers; this is where every body is fully decoded, so an
unreadable body (an HTML page, truncated or corrupt bytes) becomes a one-line reason here.
Large photos are decoded reduced: JPEG in draft mode (the decoder scales by 1/2, 1/4, 1/8
while decoding, so the full-size bitmap never exists), other formats decoded and then
reduced at once. What would need more than ``budget_bytes`` of bitmap to decode is refused
before decoding. Every failure is ``Unreadable`` (a ValueError) with a one-line reason.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

# Bytes per pixel of the bitmap PIL holds for each mode (what a full decode allocates).
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "LA": 2, "PA": 2, "I;16": 2, "RGB": 3, "YCbCr": 3, "LAB": 3}
DEFAULT_MAX_PIXELS = 6_000_000  # decoded size (3000x2000): faces stay far above min_face_px
DEFAULT_BUDGET_MB = 256  # 50 MP RGBA (the downloader's max_pixels) still fits


class Unreadable(ValueError):
    """The file cannot be decoded as an image (the message is the one-line reason)."""


def sniff(data: bytes) -> str:
    """A one-line guess of what a body that is not an image is."""
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in head:
        return "an HTML page, not an image"
    if head.startswith((b"{", b"[")):
        return "JSON, not an image"
    if head.startswith(b"<?xml") or head.startswith(b"<svg"):
        return "XML/SVG, not a raster image"
    return f"not a recognised image format (starts with {data[:8].hex()})"


def _bitmap_bytes(mode: str, w: int, h: int) -> int:
    return w * h * _MODE_BYTES.get(mode, 4)


def decode_bytes(
    data: bytes,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    budget_bytes: int = DEFAULT_BUDGET_MB << 20,
) -> tuple[np.ndarray, float]:
    """(BGR uint8 array, scale of the array relative to the file's own size)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise Unreadable("empty file")
    try:
        im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise Unreadable(sniff(data)) from None
    except Exception as exc:  # PIL raises many types for bad headers
        raise Unreadable(f"bad image header: {type(exc).__name__}: {exc}") from None
    with im:
        w, h = im.size
        if w < 2 or h < 2:
            raise Unreadable(f"degenerate image of {w}x{h} pixels")
        scale = min(1.0, math.sqrt(max_pixels / (w * h)))
        if im.format in ("JPEG", "MPO") and im.mode in ("RGB", "L"):
            return _decode_jpeg(data, im, scale, max_pixels, budget_bytes)
        if im.format == "JPEG" and scale < 1.0:  # CMYK and YCCK JPEGs: Pillow knows them best
            # The decoder picks the strongest 1/2^k reduction still at least the requested
            # size; asking for half the side lets it go below max_pixels (>= a quarter of it)
            # instead of decoding at full size and resizing: far less memory on big photos.
            im.draft("RGB", (max(1, math.ceil(w * scale / 2)), max(1, math.ceil(h * scale / 2))))
        need = _bitmap_bytes(im.mode, *im.size)
        if need > budget_bytes:
            raise Unreadable(
                f"{w}x{h} {im.format} ({im.mode}) needs {need >> 20} MB to decode, "
                f"over the {budget_bytes >> 20} MB budget"
            )
        try:
            im.load()
            small = _reduce(im, max_pixels)
            if small is not im:
                im.close()  # free the full-size bitmap before the conversions below
            small = _fit(small, max_pixels)
            ImageOps.exif_transpose(small, in_place=True)  # a copy otherwise, even when upright
            rgb = _to_rgb(small)
        except MemoryError:
            raise Unreadable(f"{w}x{h} image does not fit in memory") from None
        except Exception as exc:  # truncated, corrupt: PIL raises OSError, SyntaxError...
            raise Unreadable(f"corrupt or truncated {im.format}: {_one_line(exc)}") from None
    out = np.array(rgb)  # writable: channels swapped in place below (no third copy)
    del rgb
    if out.ndim != 3 or out.shape[0] < 2 or out.shape[1] < 2:
        raise Unreadable(f"degenerate image of shape {out.shape}")
    out[:, :, [0, 2]] = out[:, :, [2, 0]]  # RGB -> BGR
    return out, out.shape[1] / w


def _jpeg_reduction(scale: float) -> int:
    """The decoder's 1/k (k in 1, 2, 4, 8) for a photo that must shrink by `scale`: the
    strongest still at least half the wanted side (it may go below max_pixels, as draft)."""
    k = 1
    while k < 8 and scale < 1.0 and k * 2 <= 2 / scale:
        k *= 2
    return k


def _decode_jpeg(
    data: bytes, im: Image.Image, scale: float, max_pixels: int, budget_bytes: int
) -> tuple[np.ndarray, float]:
    """JPEG straight into one BGR array, reduced by the decoder (IMREAD_REDUCED_COLOR_k) and
    turned by its EXIF orientation: no second bitmap (Pillow's image and a numpy copy of it)
    and no channel swap, 15-20 MB less at the worker's peak on large photos."""
    import cv2

    w, h = im.size
    k = _jpeg_reduction(scale)
    need = _bitmap_bytes("RGB", math.ceil(w / k), math.ceil(h / k))
    if im.info.get("progressive"):
        # libjpeg holds every DCT coefficient of a progressive JPEG at full size, whatever
        # the reduction: two bytes a sample, 1.5-3 samples a pixel.
        need += w * h * 2 * (1 if im.mode == "L" else 3)
    if need > budget_bytes:
        raise Unreadable(
            f"{w}x{h} {im.format} needs {need >> 20} MB to decode, "
            f"over the {budget_bytes >> 20} MB budget"
        )
    flag = {
        1: cv2.IMREAD_COLOR,
        2: cv2.IMREAD_REDUCED_COLOR_2,
        4: cv2.IMREAD_REDUCED_COLOR_4,
        8: cv2.IMREAD_REDUCED_COLOR_8,
    }[k]
    out = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if out is None or out.ndim != 3 or min(out.shape[:2]) < 2:
        raise Unreadable(f"corrupt or truncated {im.format}: the decoder gave no image")
    oh, ow = out.shape[:2]
    if ow * oh > max_pixels:
        f = math.sqrt(max_pixels / (ow * oh))
        size = (max(1, int(ow * f)), max(1, int(oh * f)))
        out = cv2.resize(out, size, interpolation=cv2.INTER_AREA)
    turned = (ow > oh) != (w > h)  # EXIF orientation swapped the sides
    return out, out.shape[1] / (h if turned else w)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def _reduce(im: Image.Image, max_pixels: int) -> Image.Image:
    """Integer box reduction towards max_pixels (strip by strip: cheap on memory)."""
    w, h = im.size
    factor = int(math.sqrt(w * h / max_pixels))
    if factor >= 2 and im.mode not in ("P", "1"):
        return _reduce_in_strips(im, factor)
    return im


def _fit(im: Image.Image, max_pixels: int) -> Image.Image:
    """The last step down to at most max_pixels, once the full-size bitmap is gone."""
    w, h = im.size
    if w * h > max_pixels:
        s = math.sqrt(max_pixels / (w * h))
        im = im.resize((max(1, int(w * s)), max(1, int(h * s))))
    return im


def _reduce_in_strips(im: Image.Image, factor: int) -> Image.Image:
    """``im.reduce(factor)`` strip by strip: Pillow's reduce of a whole RGBA image takes a
    second full-size buffer (measured: 7000x7000 RGBA peaks at 436 MB instead of ~250)."""
    from PIL import Image

    w, h = im.size
    out = Image.new(im.mode, (math.ceil(w / factor), math.ceil(h / factor)))
    rows = 256 * factor
    for y in range(0, h, rows):
        strip = im.crop((0, y, w, min(h, y + rows))).reduce(factor)
        out.paste(strip, (0, y // factor))
    out.info = dict(im.info)
    return out


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB, with transparency composited on white (a transparent background is not black)."""
    from PIL import Image

    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im if im.mode == "RGBA" else im.convert("RGBA")
        out = Image.new("RGB", rgba.size, (255, 255, 255))
        out.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))  # one RGB copy, not three
        return out
    if im.mode in ("I", "I;16", "F"):  # 16/32-bit grey: scale to 8 bits, do not clip
        arr = np.asarray(im, dtype=np.float32)
        hi = float(arr.max()) or 1.0
        return Image.fromarray((arr * (255.0 / hi)).astype(np.uint8)).convert("RGB")
    return im if im.mode == "RGB" else im.convert("RGB")  # no copy of an RGB image


def decode_file(
    path: str,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    budget_bytes: int = DEFAULT_BUDGET_MB << 20,
) -> tuple[np.ndarray, float]:
    try:
        with open(path, "rb") as fh:  # Python I/O: non-ASCII paths work
            data = fh.read()
    except OSError as exc:
        raise Unreadable(f"cannot read file: {exc.strerror or exc}") from None
    return decode_bytes(data, max_pixels, budget_bytes)
