"""Perceptual hash of a face chip: imagehash's `phash`, with its DCT done by numpy.

`imagehash.phash` imports scipy for two 32-point DCTs, which costs each analysis worker
16 MB of resident memory for good (the Pi budget is 250 MB a process). The same steps here:
grey image resized to 32x32 by Pillow (Lanczos), the unnormalised DCT-II that
`scipy.fftpack.dct` computes, along both axes, the 8x8 lowest frequencies compared with
their median, and imagehash's `ImageHash` for the hex string. `tests/test_phash.py` checks
the hashes equal imagehash's own.
"""

from __future__ import annotations

import functools

import numpy as np

HASH_SIZE = 8
IMAGE_SIZE = HASH_SIZE * 4  # imagehash's highfreq_factor 4


@functools.cache
def _dct_rows() -> np.ndarray:
    """The first HASH_SIZE rows of the unnormalised DCT-II matrix scipy.fftpack.dct uses:
    y[k] = 2 * sum_n x[n] * cos(pi * k * (2n + 1) / 2N)."""
    k = np.arange(HASH_SIZE)[:, None]
    n = np.arange(IMAGE_SIZE)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * n + 1) / (2 * IMAGE_SIZE))


def phash(grey: np.ndarray) -> str:
    """The 64-bit perceptual hash (16 hex digits) of a greyscale uint8 image."""
    import imagehash
    from PIL import Image

    size, lanczos = (IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS
    small = Image.fromarray(grey).convert("L").resize(size, lanczos)
    pixels = np.asarray(small, dtype=np.float64)
    rows = _dct_rows()
    # The top-left 8x8 of the DCT along both axes, rounded far below any real difference
    # (pixels are integers) so that what is zero for scipy (a flat chip) is zero here too.
    low = np.round(rows @ pixels @ rows.T, 6)
    return str(imagehash.ImageHash(low > np.median(low)))
