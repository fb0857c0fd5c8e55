"""`facequeue doctor`: every check with its fix, non-zero exit on failure, secrets never shown."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from facequeue.cli import main
from facequeue.store import SqliteStore
from facequeue.vision import engine as faces

SECRET_R = "rk-very-secret-0123456789"
SECRET_O = "sk-also-secret-9876543210"
NO_KEYS = {"RAPIDAPI_KEY": None, "OPENAI_API_KEY": None, "FACEQUEUE_CONFIG": None}


@pytest.fixture(scope="module")
def weights_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("deepface")
    faces.setup_weights(home)
    return home


def write_config(tmp_path: Path, weights_home: Path, extra: str = "", **sections) -> Path:
    sec = {
        "search": 'provider = "folder"',
        "llm": 'base_url = "http://127.0.0.1:9/v1"',
        "analysis": f'deepface_home = "{weights_home}"',
    }
    sec.update(sections)
    body = 'data_dir = "data"\n' + extra + "".join(f"[{k}]\n{v}\n" for k, v in sec.items())
    path = tmp_path / "facequeue.toml"
    path.write_text(body)
    return path


def doctor(config: Path, *args: str, env: dict | None = None):
    return CliRunner().invoke(
        main,
        ["--config", str(config), "doctor", *args],
        env={**NO_KEYS, **(env or {})},
        catch_exceptions=False,
    )


def by_name(result) -> dict[str, dict]:
    return {c["name"]: c for c in json.loads(result.output)}


@pytest.mark.model
def test_healthy_installation_passes_and_loads_models(tmp_path, weights_home):
    cfg = write_config(tmp_path, weights_home)
    asyncio.run(_make_db(tmp_path / "data" / "facequeue.db"))
    res = doctor(cfg, "--json")
    assert res.exit_code == 0, res.output
    checks = by_name(res)
    assert {n: c["status"] for n, c in checks.items()} == {
        "config": "ok",
        "data_dir": "ok",
        "disk": checks["disk"]["status"],
        "database": "ok",
        "gallery": "ok",
        "weights": "ok",
        "models": "ok",
        "RAPIDAPI_KEY": "ok",
        "OPENAI_API_KEY": "ok",
    }
    assert "loaded" in checks["models"]["detail"] and "GiB free" in checks["disk"]["detail"]
    assert checks["disk"]["status"] in ("ok", "warn")
    text = doctor(cfg)
    assert text.exit_code == 0 and "✓ models: Dlib + dlib loaded" in text.output


async def _make_db(path: Path) -> None:
    store = await SqliteStore.open(path)
    await store.close()


def test_failures_exit_non_zero_with_fixes_and_never_hang(tmp_path, weights_home):
    cfg = write_config(
        tmp_path,
        weights_home,
        search='provider = "rapidapi"',
        llm='base_url = "https://api.openai.com/v1"',
        analysis=f'model = "ArcFace"\ndeepface_home = "{tmp_path / "empty"}"',
    )
    t = time.monotonic()
    res = doctor(cfg, "--json")
    assert time.monotonic() - t < 30
    assert res.exit_code == 1
    checks = by_name(res)
    assert checks["database"]["status"] == "warn"  # not created yet: not a failure
    assert (
        checks["weights"]["status"] == "fail" and "arcface_weights.onnx" in checks["weights"]["fix"]
    )
    assert checks["models"]["status"] == "skip"
    assert checks["RAPIDAPI_KEY"]["status"] == "fail"  # the daemon needs it
    assert checks["OPENAI_API_KEY"]["status"] == "warn"  # only add-country needs it
    for key in ("RAPIDAPI_KEY", "OPENAI_API_KEY"):
        assert "export " + key in checks[key]["fix"]
    text = doctor(cfg).output
    assert "✗ RAPIDAPI_KEY: not set" in text and "fix: export RAPIDAPI_KEY" in text

    # keys present: reported as set, values never printed
    env = {"RAPIDAPI_KEY": SECRET_R, "OPENAI_API_KEY": SECRET_O}
    for args in ((), ("--json",)):
        res = doctor(cfg, *args, env=env)
        assert SECRET_R not in res.output and SECRET_O not in res.output
        assert res.exit_code == 1  # the weights still fail
    assert by_name(doctor(cfg, "--json", env=env))["RAPIDAPI_KEY"]["status"] == "ok"


def test_bad_config_and_corrupt_database(tmp_path, weights_home):
    cfg = write_config(tmp_path, weights_home, extra="colour = 3\n")
    res = doctor(cfg, "--json")
    assert res.exit_code == 1
    checks = by_name(res)
    assert (
        checks["config"]["status"] == "fail" and "colour: unknown key" in checks["config"]["detail"]
    )
    assert checks["database"]["status"] == "skip"

    cfg = write_config(tmp_path, weights_home)
    db = tmp_path / "data" / "facequeue.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(b"this is not a database" * 100)
    res = doctor(cfg, "--json", "--skip-models")
    assert res.exit_code == 1
    checks = by_name(res)
    assert checks["database"]["status"] == "fail" and checks["database"]["fix"]
    assert "models" not in checks


def test_dlib_weights_not_linked_yet_is_a_warning(tmp_path, weights_home):
    cfg = write_config(tmp_path, weights_home, analysis=f'deepface_home = "{tmp_path / "fresh"}"')
    res = doctor(cfg, "--json")
    checks = by_name(res)
    assert checks["weights"]["status"] == "warn" and "setup-weights" in checks["weights"]["fix"]
    assert checks["models"]["status"] == "skip"
    assert res.exit_code == 0
    assert not (tmp_path / "fresh").exists()  # doctor changes nothing
