"""Passwords come from the environment URL, PGPASSWORD or ~/.pgpass (never the TOML), and a
database that cannot be reached is one clear line naming it, without its password."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest


def cli(cfg, *args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "facequeue", "--config", str(cfg), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def pw_db(pg_cluster):
    """A database owned by a role that must give its password (scram-sha-256)."""
    return pg_cluster.create_password_db()


def config(tmp_path, url=""):
    path = tmp_path / "facequeue.toml"
    line = f'database_url = "{url}"\n' if url else ""
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n{line}')
    return path


@pytest.mark.slow  # one subprocess per command
def test_password_from_pgpassword_pgpass_or_the_environment_url(tmp_path, pw_db):
    user, password, host, port, db = pw_db
    url = f"postgresql://{user}@{host}:{port}/{db}"
    cfg = config(tmp_path, url)
    clean = {"PGPASSWORD": "", "PGPASSFILE": str(tmp_path / "none")}
    denied = cli(cfg, "migrate", env=clean)
    assert denied.returncode != 0 and len(denied.stderr.strip().splitlines()) == 1
    assert "password" in denied.stderr.lower() and url in denied.stderr
    assert "applied 0001_initial" in cli(cfg, "migrate", env={"PGPASSWORD": password}).stdout
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"{host}:{port}:{db}:{user}:{password}\n")
    pgpass.chmod(0o600)
    ok = cli(cfg, "status", "--json", env={"PGPASSWORD": "", "PGPASSFILE": str(pgpass)})
    assert ok.returncode == 0, ok.stderr
    env_url = f"postgresql://{user}:{password}@{host}:{port}/{db}"
    ok = cli(
        config(tmp_path),
        "add-person",
        "Ana Ivanović",
        "--country",
        "Serbia",
        env={**clean, "FACEQUEUE_DATABASE_URL": env_url},
    )
    assert ok.returncode == 0, ok.stderr
    wrong = cli(
        config(tmp_path),
        "status",
        env={**clean, "FACEQUEUE_DATABASE_URL": env_url.replace(password, "wrong-pw")},
    )
    assert wrong.returncode != 0 and "wrong-pw" not in wrong.stderr + wrong.stdout


def test_unreachable_database_is_one_line_and_doctor_says_what_to_check(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    url = f"postgresql://fq:secret-pw@127.0.0.1:{port}/faces"
    cfg = config(tmp_path)
    res = cli(cfg, "status", env={"FACEQUEUE_DATABASE_URL": url})
    assert res.returncode != 0 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert f"127.0.0.1:{port}/faces" in res.stderr and "secret-pw" not in res.stderr
    doc = cli(cfg, "doctor", "--json", "--skip-models", env={"FACEQUEUE_DATABASE_URL": url})
    checks = json.loads(doc.stdout)
    db = next(c for c in checks if c["name"] == "database")
    assert db["status"] == "fail" and "PGPASSWORD" in db["fix"] and "secret-pw" not in doc.stdout
