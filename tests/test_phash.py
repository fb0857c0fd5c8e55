"""facequeue's perceptual hash is imagehash's phash, bit for bit, without scipy."""

from __future__ import annotations

import imagehash
import numpy as np
from PIL import Image

from facequeue.vision.phash import phash


def test_same_hash_as_imagehash_on_corpus_photos_and_chips(testdata_dir):
    files = sorted(testdata_dir.rglob("*.jpg"))[::3]
    assert len(files) >= 40
    for f in files:
        with Image.open(f) as im:
            grey = np.asarray(im.convert("L"))
        for g in (grey, grey[:150, :150], np.ascontiguousarray(grey[:, ::-1])):
            assert phash(g) == str(imagehash.phash(Image.fromarray(g))), f


def test_flat_and_tiny_images():
    for g in (np.zeros((150, 150), np.uint8), np.full((3, 5), 200, np.uint8)):
        assert phash(g) == str(imagehash.phash(Image.fromarray(g)))
    rng = np.random.default_rng(7)
    for _ in range(50):
        g = rng.integers(0, 256, (int(rng.integers(8, 300)), int(rng.integers(8, 300))), np.uint8)
        assert phash(g) == str(imagehash.phash(Image.fromarray(g)))


def test_workers_do_not_need_scipy():
    import subprocess
    import sys

    code = (
        "import sys, numpy as np; from facequeue.vision.phash import phash; "
        "phash(np.zeros((150, 150), np.uint8)); print('scipy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
