"""Issue 12 item 12: a plain wheel (not an editable install) carries the SQL and migrations
and can migrate a database; README and pyproject agree on the Python version."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds a wheel


REPO = Path(__file__).resolve().parent.parent


def test_wheel_ships_migrations_and_migrates_from_the_installed_copy(tmp_path):
    out = tmp_path / "wheel"
    # Build from a copy of the source: setuptools leaves build/ beside the sources.
    src = tmp_path / "src"
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "data", "build", "*.egg-info", "__pycache__"
        ),
    )
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = out.glob("facequeue-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(n for n in names if re.match(r"facequeue/store/migrations/\d{4}_\w+\.sql$", n))
    in_repo = sorted(
        f"facequeue/store/migrations/{p.name}"
        for p in (REPO / "facequeue/store/migrations").glob("*.sql")
    )
    assert shipped == in_repo and shipped
    assert "facequeue/store/queries.sql" in names
    # "Install" it: a wheel of pure Python unpacks to exactly what pip puts in site-packages.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    work = tmp_path / "work"
    work.mkdir()
    (work / "facequeue.toml").write_text('data_dir = "data"\n')
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run(
        [sys.executable, "-c", "import facequeue; print(facequeue.__file__)"],
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
        timeout=60,
    )
    assert where.stdout.strip().startswith(str(site)), where.stdout + where.stderr
    result = subprocess.run(
        [sys.executable, "-m", "facequeue", "migrate"],
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    con = sqlite3.connect(work / "data" / "facequeue.db")
    versions = [r[0] for r in con.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    con.close()
    assert versions == [int(Path(n).name[:4]) for n in shipped]


def test_readme_and_pyproject_agree_on_python():
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = re.match(r">=\s*(3\.\d+)", requires).group(1)
    readme = (REPO / "README.md").read_text()
    said = set(re.findall(r"Python (3\.\d+)\+", readme))
    assert said == {minimum}, (said, requires)
    import facequeue.config  # noqa: F401 - needs tomllib, i.e. 3.11+

    assert minimum == "3.11"
