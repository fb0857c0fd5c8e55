"""Shared fixtures. The face corpus is read in place from ../shared (never copied into the repo)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def corpus_dir() -> Path:
    """$FACEQUEUE_TESTDATA, else ../shared/testdata/faces beside this checkout, else beside
    the repository it was cloned from (a local `git clone` into a scratch folder)."""
    if os.environ.get("FACEQUEUE_TESTDATA"):
        return Path(os.environ["FACEQUEUE_TESTDATA"])
    here = REPO.parent / "shared" / "testdata" / "faces"
    if here.is_dir():
        return here
    try:
        origin = subprocess.run(
            ["git", "-C", str(REPO), "config", "remote.origin.url"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        origin = ""
    if origin and "://" not in origin and ":" not in origin.split("/")[0]:
        beside_origin = Path(origin).resolve().parent / "shared" / "testdata" / "faces"
        if beside_origin.is_dir():
            return beside_origin
    return here


@pytest.fixture(scope="session")
def testdata_dir() -> Path:
    path = corpus_dir()
    if not (path / "MANIFEST.tsv").is_file():
        pytest.fail(f"face corpus not found at {path}: set FACEQUEUE_TESTDATA to its folder")
    return path


@pytest.fixture(scope="session")
def pg_cluster():
    """A throwaway PostgreSQL cluster for the whole session (tests/pgcluster.py)."""
    from pgcluster import Cluster, pg_bin_dir

    bin_dir = pg_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server not installed (make test installs Debian's postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg not installed (pip install -e '.[test]')")
    cluster = Cluster(bin_dir)
    try:
        cluster.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        cluster.stop()
        pytest.fail(f"cannot start a test PostgreSQL cluster: {exc}")
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(pg_cluster) -> str:
    """A fresh empty database on the session cluster."""
    return pg_cluster.create_db()
