"""Shared fixtures. The face corpus is read in place from ../shared (never copied into the repo)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def corpus_dir() -> Path:
    return Path(os.environ.get("FACEQUEUE_TESTDATA", REPO.parent / "shared" / "testdata" / "faces"))


@pytest.fixture(scope="session")
def testdata_dir() -> Path:
    path = corpus_dir()
    if not (path / "MANIFEST.tsv").is_file():
        pytest.fail(f"face corpus not found at {path}: set FACEQUEUE_TESTDATA to its folder")
    return path
