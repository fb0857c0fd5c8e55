"""database_url: empty is SQLite as before; a password never comes from the TOML."""

from __future__ import annotations

import subprocess
import sys

import pytest

from facequeue.config import load_config
from facequeue.errors import ConfigError


def write(tmp_path, text: str):
    path = tmp_path / "facequeue.toml"
    path.write_text(f'data_dir = "data"\n{text}')
    return path


def test_empty_means_sqlite_in_data_dir(tmp_path):
    cfg = load_config(write(tmp_path, ""))
    assert cfg.database_url == "" and cfg.database_label == str(tmp_path / "data" / "facequeue.db")


def test_postgres_url_from_toml_without_password(tmp_path):
    cfg = load_config(write(tmp_path, 'database_url = "postgresql://fq@db.lan:5432/faces"\n'))
    assert cfg.database_url == "postgresql://fq@db.lan:5432/faces"


def test_password_in_toml_is_refused_in_one_line(tmp_path):
    path = write(tmp_path, 'database_url = "postgresql://fq:s3cret@db.lan/faces"\n')
    with pytest.raises(ConfigError, match="must not contain a password") as err:
        load_config(path)
    assert "s3cret" not in str(err.value) and "\n" not in str(err.value)
    res = subprocess.run(
        [sys.executable, "-m", "facequeue", "--config", str(path), "status"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "FACEQUEUE_DATABASE_URL" in res.stderr and "s3cret" not in res.stderr


def test_password_from_the_environment_is_accepted_and_hidden(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEQUEUE_DATABASE_URL", "postgresql://fq:s3cret@db.lan/faces")
    cfg = load_config(write(tmp_path, ""))
    assert cfg.database_url.endswith("@db.lan/faces")
    assert "s3cret" not in cfg.database_label and "***" in cfg.database_label


def test_other_schemes_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="database_url"):
        load_config(write(tmp_path, 'database_url = "mysql://x@y/z"\n'))
