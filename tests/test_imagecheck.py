"""The downloader's cheap image check: the JPEG marker walk agrees with Pillow's opener.

`inspect_image(bytes)` reads plain JPEGs' headers itself (`_plain_jpeg`); given a file it
always asks Pillow. So on any body the two calls must give the same verdict, format and
size: every JPEG of the corpus, every EXIF orientation, progressive, grey, CMYK, MPO,
EXIF oddities and truncated headers.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from facequeue.stages.imagecheck import _plain_jpeg, inspect_image

LIMITS = (50_000_000, 64)


def jpeg(mode: str = "RGB", size=(320, 200), **save) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, 90 if mode == "L" else (200, 120, 40)[: len(mode)]).save(
        buf, "JPEG", **save
    )
    return buf.getvalue()


def with_exif(orientation, tag_type: int | None = None) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "camera maker"  # another IFD0 entry before and beside it
    body = jpeg(exif=exif.tobytes())
    if tag_type is not None:  # rewrite the orientation entry's type field (SHORT = 3)
        at = body.index(b"\x12\x01\x03\x00") if b"II*" in body else body.index(b"\x01\x12\x00\x03")
        body = body[: at + 2] + tag_type.to_bytes(2, "little") + body[at + 4 :]
    return body


def same_verdict(body: bytes, tmp_path: Path):
    path = tmp_path / "body"
    path.write_bytes(body)
    by_bytes, by_pillow = inspect_image(body, *LIMITS), inspect_image(path, *LIMITS)
    assert by_bytes == by_pillow
    return by_bytes


def test_every_corpus_jpeg_gets_pillows_verdict(testdata_dir, tmp_path):
    files = sorted(testdata_dir.rglob("*.jp*g"))
    assert len(files) >= 50
    walked = 0
    for f in files:
        body = f.read_bytes()
        walked += _plain_jpeg(body) is not None
        same_verdict(body, tmp_path)
    assert walked >= 0.9 * len(files)  # the fast path is the usual one, not the exception


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation(orientation, tmp_path):
    check = same_verdict(with_exif(orientation), tmp_path)
    assert (check.width, check.height) == ((200, 320) if orientation >= 5 else (320, 200))
    assert _plain_jpeg(with_exif(orientation)) == (320, 200, orientation)


@pytest.mark.parametrize(
    "body",
    [
        jpeg(progressive=True),
        jpeg("L"),
        jpeg("CMYK"),  # left to Pillow
        jpeg(size=(40, 300)),  # too small
        jpeg(subsampling=0, quality=95),
        with_exif(6, tag_type=4),  # orientation as a LONG: left to Pillow
        b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00II*\x00\xff\xff\x00\x00" + jpeg()[2:],  # bad IFD
    ],
    ids=["progressive", "grey", "cmyk", "too-small", "4:4:4", "exif-long", "exif-bad-ifd"],
)
def test_odd_but_valid_jpegs(body, tmp_path):
    same_verdict(body, tmp_path)


def test_mpo_is_left_to_pillow(tmp_path):
    buf = io.BytesIO()
    frames = [Image.new("RGB", (300, 200), c) for c in ((200, 0, 0), (0, 200, 0))]
    frames[0].save(buf, "MPO", save_all=True, append_images=frames[1:])
    assert _plain_jpeg(buf.getvalue()) is None
    assert same_verdict(buf.getvalue(), tmp_path).format == "mpo"


def test_truncated_headers_and_fill_bytes(tmp_path):
    body = with_exif(3)
    scan = body.index(b"\xff\xda")
    for cut in (2, 3, 4, 5, 20, scan - 1, scan, scan + 2, len(body) - 2):
        same_verdict(body[:cut], tmp_path)
    padded = body[:2] + b"\xff\xff\xff" + body[2:]  # fill bytes before a marker are allowed
    assert same_verdict(padded, tmp_path).reason is None
    assert _plain_jpeg(padded) == (320, 200, 3)
    junk = body[:2] + b"\x00" + body[2:]  # junk between segments: Pillow skips it, we defer
    assert _plain_jpeg(junk) is None
    same_verdict(junk, tmp_path)


@pytest.mark.parametrize("order", ["MM", "II"])
def test_exif_in_either_byte_order(order, tmp_path):
    """A camera's own EXIF block (written by hand here: Motorola or Intel byte order)."""
    end = "big" if order == "MM" else "little"

    def n(value: int, width: int) -> bytes:
        return value.to_bytes(width, end)

    entry = n(0x0112, 2) + n(3, 2) + n(1, 4) + n(8, 2) + b"\0\0"  # orientation 8: turned
    tiff = order.encode() + n(42, 2) + n(8, 4) + n(1, 2) + entry + n(0, 4)
    app1 = b"Exif\0\0" + tiff
    body = jpeg()[:2] + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + jpeg()[2:]
    assert _plain_jpeg(body) == (320, 200, 8)
    check = same_verdict(body, tmp_path)
    assert (check.width, check.height) == (200, 320)
