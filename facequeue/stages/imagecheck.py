"""Cheap checks that downloaded bytes are a usable image, without decoding any pixels.

`inspect_image(data, max_pixels, min_side)` reads what Pillow's lazy `Image.open` parses
(format from the magic bytes, dimensions from the header, EXIF orientation) and checks the
file is structurally complete (JPEG end marker, PNG IEND, GIF trailer, RIFF/BMP sizes). The
full decode is left to the analysis worker, which decodes every image anyway and reports
what does not decode as `unreadable`. Runs in microseconds, so it runs on the event loop.

Plain 8-bit JPEGs, nearly every body, skip Pillow: `_plain_jpeg` walks the marker segments
to the frame header and the EXIF orientation in ~5 us, where Pillow's opener (which also
parses every quantisation and Huffman table) takes ~60 us, about a tenth of the
downloader's CPU per image. Anything unusual (CMYK, 12-bit, MPO, a segment that does not
add up) goes to Pillow, which has the last word.
"""

from __future__ import annotations

import functools
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

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


# Frame headers (SOFn) and the other marker segments a plain JPEG has before its first scan.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_SEGMENTS = _SOF | {0xC4, 0xCC, 0xDB, 0xDD, 0xFE} | frozenset(range(0xE0, 0xF0))


def _header_segments(data: bytes) -> list[tuple[int, int, int]] | None:
    """(marker, start, end) of each marker segment of a JPEG before its first scan; None
    when the bytes are not laid out as a plain JPEG's are."""
    if not data.startswith(b"\xff\xd8\xff"):
        return None
    pos, size = 2, len(data)
    found: list[tuple[int, int, int]] = []
    while True:
        if pos + 4 > size or data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:  # start of scan: the header is over
            return found
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker not in _SEGMENTS or length < 2 or pos + 2 + length > size:
            return None
        found.append((marker, pos + 4, pos + 2 + length))
        pos += 2 + length


def _plain_jpeg(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, EXIF orientation) of an 8-bit grey or colour JPEG, from its marker
    segments; None when anything is unusual (Pillow decides then)."""
    segments = _header_segments(data)
    if segments is None:
        return None
    frame, orientation, exif = None, 1, False
    for marker, start, end in segments:
        if marker in _SOF:
            if frame is not None or end - start < 6 or data[start] != 8:
                return None  # two frames, 12-bit
            if data[start + 5] not in (1, 3):
                return None  # CMYK, YCCK
            h = int.from_bytes(data[start + 1 : start + 3], "big")
            frame = int.from_bytes(data[start + 3 : start + 5], "big"), h
        elif marker == 0xE1 and data.startswith(b"Exif\0\0", start):
            found = None if exif else _exif_orientation(data[start + 6 : end])
            if found is None:  # unreadable here, or several EXIF segments (Pillow joins them)
                return None
            exif, orientation = True, found
        elif marker == 0xE2 and data.startswith(b"MPF\0", start):
            return None  # maybe MPO
    bomb = Image.MAX_IMAGE_PIXELS  # None when a user switched Pillow's check off
    if frame is None or 0 in frame or (bomb and frame[0] * frame[1] > 2 * bomb):
        return None  # no frame, empty, or what Pillow calls a decompression bomb
    return frame[0], frame[1], orientation


_BYTE_ORDERS: dict[bytes, Literal["little", "big"]] = {b"II": "little", b"MM": "big"}


def _exif_orientation(tiff: bytes) -> int | None:
    """Orientation tag (0x0112) of IFD0 of an EXIF block (1 when absent); None if odd."""
    order = _BYTE_ORDERS.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return None

    def number(at: int, width: int) -> int:
        return int.from_bytes(tiff[at : at + width], order)

    ifd = number(4, 4)
    entries = number(ifd, 2)
    if ifd + 2 + 12 * entries > len(tiff):
        return None
    for at in range(ifd + 2, ifd + 2 + 12 * entries, 12):
        if number(at, 2) == 0x0112:
            if number(at + 2, 2) != 3 or number(at + 4, 4) != 1:
                return None  # not one SHORT: let Pillow read it
            return number(at + 8, 2)
    return 1


def inspect_image(source: bytes | Path, max_pixels: int, min_side: int) -> ImageCheck:
    """Accept or reject by content: format, header dimensions, completeness. No decoding.

    `source` is the body (event loop side) or a file holding it (thread side: it reads)."""
    head, tail, size = _ends(source)
    header = _plain_jpeg(source) if isinstance(source, bytes) else None
    if header is not None:
        raw_fmt, (w, h, orientation) = "JPEG", header
    else:
        opened = _pillow_header(source, head)
        if isinstance(opened, ImageCheck):
            return opened
        raw_fmt, w, h, orientation = opened
    fmt = raw_fmt.lower()
    if w * h > max_pixels:
        return ImageCheck("too_many_pixels", f"{w}x{h} = {w * h} pixels > {max_pixels}", fmt, w, h)
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    if min(w, h) < min_side:
        return ImageCheck("too_small", f"{w}x{h} is below {min_side} px", fmt, w, h)
    broken = _incomplete(raw_fmt, head, tail, size)
    if broken:
        return ImageCheck("unreadable", broken, fmt, w, h)
    return ImageCheck(None, f"{raw_fmt} {w}x{h}", fmt, w, h)


def _pillow_header(source: bytes | Path, head: bytes) -> tuple[str, int, int, int] | ImageCheck:
    """(Pillow format, width, height, EXIF orientation) by Pillow's lazy open, or a rejection."""
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
            return im.format or "?", im.size[0], im.size[1], _orientation(im)


def check_image(
    path: Path, max_pixels: int, min_side: int
) -> tuple[str | None, str, str | None, int | None, int | None]:
    """(reason or None, detail, format, width, height) of a file, by the same cheap checks."""
    c = inspect_image(Path(path), max_pixels, min_side)
    return c.reason, c.detail, c.format, c.width, c.height
