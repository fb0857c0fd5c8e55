"""The installed command as a user runs it: bad input, config errors, help, forget, systemd."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run(cfg: Path | None, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = [sys.executable, "-m", "facequeue"] + (["--config", str(cfg)] if cfg else [])
    import os

    return subprocess.run(
        base + list(args),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def cfg(tmp_path) -> Path:
    path = tmp_path / "facequeue.toml"
    path.write_text('data_dir = "data"\n')
    return path


def people(cfg: Path) -> list[tuple]:
    con = sqlite3.connect(cfg.parent / "data" / "facequeue.db")
    return con.execute(
        "SELECT name, slug, country, occupation, source FROM people ORDER BY id"
    ).fetchall()


@pytest.mark.slow  # one subprocess per command
def test_every_command_has_help():
    from facequeue.cli import main

    for name, command in main.commands.items():
        assert command.help, f"{name} has no help text"
        result = run(None, name, "--help")
        assert result.returncode == 0 and "Usage:" in result.stdout, name


def test_add_person_keeps_name_and_makes_safe_slug(cfg):
    assert (
        run(
            cfg,
            "add-person",
            "Novak Đoković",
            "--country",
            "Serbia",
            "--occupation",
            "tennis player",
        ).returncode
        == 0
    )
    assert run(cfg, "add-person", "../../etc/passwd", "--country", "Serbia").returncode == 0
    assert (
        run(cfg, "add-person", "Robert'); DROP TABLE people;--", "--country", "Serbia").returncode
        == 0
    )
    rows = people(cfg)
    assert rows[0][:2] == ("Novak Đoković", "Novak_Djokovic")
    assert rows[1][0] == "../../etc/passwd" and "/" not in rows[1][1] and ".." not in rows[1][1]
    assert rows[2][0] == "Robert'); DROP TABLE people;--" and rows[2][1].replace("_", "").isalnum()
    again = run(cfg, "add-person", "Novak Đoković", "--country", "Serbia")
    assert again.returncode == 0 and "already queued" in again.stdout
    assert len(people(cfg)) == 3


@pytest.mark.parametrize("name", ["", "   ", "x" * 10_000, "bad\x07name"])
def test_bad_names_are_one_line_errors_and_change_nothing(cfg, name):
    run(cfg, "add-person", "Kept Person", "--country", "Serbia")
    result = run(cfg, "add-person", name, "--country", "Serbia")
    assert result.returncode != 0
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert [r[0] for r in people(cfg)] == ["Kept Person"]


def test_csv_with_a_malformed_line_queues_nothing(cfg, tmp_path):
    run(cfg, "add-person", "Kept Person", "--country", "Serbia")
    bad = tmp_path / "bad.csv"
    bad.write_text('name,country,occupation\nAna Ivanović,Serbia,athlete\n"unterminated,Serbia\n')
    result = run(cfg, "import", str(bad))
    assert result.returncode != 0 and "line 3" in result.stderr
    empty = tmp_path / "empty.csv"
    empty.write_text("name,country\n,Serbia\n")
    result = run(cfg, "import", str(empty))
    assert result.returncode != 0 and "line 2" in result.stderr and "name is empty" in result.stderr
    assert [r[0] for r in people(cfg)] == ["Kept Person"]
    good = tmp_path / "good.csv"
    good.write_text(
        "name,country,occupation\nAna Ivanović,Serbia,athlete\nЉубиша Самарџић,Serbia,actor\n"
    )
    assert run(cfg, "import", str(good)).returncode == 0
    assert [(r[1], r[4]) for r in people(cfg)][1:] == [
        ("Ana_Ivanovic", "csv"),
        ("Ljubisa_Samardzic", "csv"),
    ]


def test_config_errors_name_the_key(cfg, tmp_path):
    cfg.write_text('data_dir = "data"\n[search]\nmax_results = "many"\n')
    result = run(cfg, "status")
    assert result.returncode == 2 and "search.max_results" in result.stderr
    cfg.write_text('data_dir = "data"\n[search]\nmax_resluts = 5\n')
    result = run(cfg, "status")
    assert result.returncode == 2 and "search.max_resluts: unknown key" in result.stderr
    cfg.write_text('data_dir = "data"\n')
    result = run(cfg, "status", env={"FACEQUEUE_DOWNLOAD__PER_HOST": "lots"})
    assert result.returncode == 2 and "download.per_host" in result.stderr
    result = run(None, "status", env={"FACEQUEUE_CONFIG": str(tmp_path / "missing.toml")})
    assert result.returncode == 2 and "missing.toml" in result.stderr


def test_environment_overrides_use_the_documented_names(cfg, tmp_path, monkeypatch):
    from facequeue.config import load_config

    monkeypatch.setenv("FACEQUEUE_SEARCH__PROVIDER", "rapidapi")
    monkeypatch.setenv("FACEQUEUE_DATA_DIR", str(tmp_path / "elsewhere"))
    c = load_config(cfg)
    assert c.search.provider == "rapidapi" and c.db_path == tmp_path / "elsewhere" / "facequeue.db"


def test_shipped_toml_documents_every_key_with_its_default():
    import tomllib

    from pydantic import BaseModel

    from facequeue.config import Config

    shipped = tomllib.loads((REPO / "facequeue.toml").read_text())
    defaults = Config.model_construct()
    for section, _model in Config.model_fields.items():
        value = getattr(defaults, section)
        if isinstance(value, BaseModel):
            for key in type(value).model_fields:
                default = getattr(value, key)
                if default is None:
                    continue  # optional keys are shown commented out
                assert key in shipped.get(section, {}), (
                    f"{section}.{key} missing from facequeue.toml"
                )
                assert shipped[section][key] == default, f"{section}.{key} default differs"
        else:
            assert section in shipped, f"{section} missing from facequeue.toml"


def test_status_json_and_forget(cfg):
    run(cfg, "add-person", "Ana Ivanović", "--country", "Serbia")
    run(cfg, "add-person", "Other Person", "--country", "Serbia")
    status = run(cfg, "status", "--json")
    assert status.returncode == 0 and '"queued": 2' in status.stdout
    assert run(cfg, "forget", "Ana_Ivanovic", "--yes").returncode == 0
    assert [r[0] for r in people(cfg)] == ["Other Person"]
    missing = run(cfg, "forget", "Nobody", "--yes")
    assert missing.returncode != 0 and "no person matches" in missing.stderr


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze not installed (Debian package systemd)",
)
def test_systemd_unit_verifies(tmp_path):
    unit = (REPO / "systemd" / "facequeue.service").read_text()
    # verify checks that ExecStart exists: point it at this checkout's installed command.
    exe = Path(sys.executable).with_name("facequeue")
    unit = unit.replace("/opt/facequeue/.venv/bin/facequeue", str(exe))
    path = tmp_path / "facequeue.service"
    path.write_text(unit)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
