"""Cheap checks that downloaded bytes are a usable image, without decoding any pixels.

`inspect_image(data, max_pixels, min_side)` reads what Pillow's lazy `Image.open` parses
(format from the magic bytes, dimensions from the header, EXIF orientation) and checks the
file is structurally complete (JPEG end marker, PNG IEND, GIF trailer, RIFF/BMP sizes). The
full decode is left to the analysis worker, which decodes every image anyway and reports
what does not decode as `unreadable`. Runs in microseconds, so it runs on the event loop.
"""

from __future__ import annotations

import functools
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

# Formats accepted (detected from content by Pillow) -> file extension. Never EPS & co.
FORMATS = {
    "JPEG": "jpg",
    "MPO": "jpg",
    "PNG": "png",
    "WEBP": "webp",
    "GIF": "gif",
    "BMP": "bmp",
    "TIFF": "tif",
    "AVIF": "avif",
}
TAIL = 4096  # the end markers are searched for in the last bytes only


@dataclass(frozen=True)
class ImageCheck:
    reason: str | None  # None = accepted
    detail: str
    format: str | None = None  # lower case Pillow format name
    width: int | None = None  # after EXIF orientation
    height: int | None = None

    @property
    def extension(self) -> str:
        return FORMATS[(self.format or "").upper()]


@functools.cache
def _open_formats() -> tuple[str, ...]:
    Image.init()
    return tuple(f for f in FORMATS if f in Image.OPEN)  # MPO comes out of the JPEG opener


def _sniff(head: bytes) -> str:
    text = head[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if not head:
        return "empty body"
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "HTML page, not an image"
    return (
        "markup (HTML/XML/SVG), not a raster image"
        if text.startswith(b"<")
        else f"unrecognised data starting {head[:8].hex()}"
    )


def _incomplete(fmt: str, head: bytes, tail: bytes, size: int) -> str | None:
    """Why the bytes stop before the image does, for formats whose end is cheap to see."""
    if fmt in ("JPEG", "MPO") and tail.rfind(b"\xff\xd9") < 0:
        return "JPEG is truncated (no end-of-image marker)"
    if fmt == "PNG" and tail.rfind(b"IEND") < 0:
        return "PNG is truncated (no IEND chunk)"
    if fmt == "GIF" and not tail.rstrip(b"\x00").endswith(b";"):
        return "GIF is truncated (no trailer)"
    if fmt == "WEBP" and size < int.from_bytes(head[4:8], "little") + 8:
        return "WebP is truncated (shorter than its RIFF size)"
    if fmt == "BMP" and size < int.from_bytes(head[2:6], "little"):
        return "BMP is truncated (shorter than its header says)"
    return None


def _ends(source: bytes | Path) -> tuple[bytes, bytes, int]:
    """(first 512 bytes, last TAIL bytes, size) of bytes or of a file."""
    if isinstance(source, bytes):
        return source[:512], source[-TAIL:], len(source)
    with open(source, "rb") as f:
        head = f.read(512)
        size = f.seek(0, 2)
        f.seek(max(0, size - TAIL))
        return head, f.read(), size


def _orientation(im: Image.Image) -> int:
    # Without an EXIF block there is nothing to read (and PNG's getexif() would decode the
    # whole image); TIFF keeps its orientation among its own tags.
    if im.format != "TIFF" and "exif" not in im.info:
        return 1
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a broken EXIF block is not fatal
        return 1


def inspect_image(source: bytes | Path, max_pixels: int, min_side: int) -> ImageCheck:
    """Accept or reject by content: format, header dimensions, completeness. No decoding.

    `source` is the body (event loop side) or a file holding it (thread side: it reads)."""
    head, tail, size = _ends(source)
    stream = io.BytesIO(source) if isinstance(source, bytes) else Path(source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(stream, formats=_open_formats())
        except Image.DecompressionBombError as exc:
            return ImageCheck("too_many_pixels", f"decompression bomb: {exc}")
        except UnidentifiedImageError:
            return ImageCheck("not_an_image", _sniff(head))
        except Exception as exc:  # noqa: BLE001 - any parser failure is "unreadable"
            return ImageCheck("unreadable", f"header does not parse: {exc}")
        with im:
            raw_fmt = im.format or "?"
            fmt, (w, h) = raw_fmt.lower(), im.size
            if w * h > max_pixels:
                return ImageCheck(
                    "too_many_pixels", f"{w}x{h} = {w * h} pixels > {max_pixels}", fmt, w, h
                )
            if _orientation(im) in (5, 6, 7, 8):
                w, h = h, w
    if min(w, h) < min_side:
        return ImageCheck("too_small", f"{w}x{h} is below {min_side} px", fmt, w, h)
    broken = _incomplete(raw_fmt, head, tail, size)
    if broken:
        return ImageCheck("unreadable", broken, fmt, w, h)
    return ImageCheck(None, f"{raw_fmt} {w}x{h}", fmt, w, h)


def check_image(
    path: Path, max_pixels: int, min_side: int
) -> tuple[str | None, str, str | None, int | None, int | None]:
    """(reason or None, detail, format, width, height) of a file, by the same cheap checks."""
    c = inspect_image(Path(path), max_pixels, min_side)
    return c.reason, c.detail, c.format, c.width, c.height
