"""The installed daemon end to end: local search + image servers serving the corpus,
`facequeue run --once` as a real subprocess with real DeepFace models, then status, the
sqlite3 views, sidecars, recognize, report and forget as a user would run them."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from pathlib import Path

import pytest
from servers import fake_services
from test_report import CHROMIUM, Browser

pytestmark = [pytest.mark.slow, pytest.mark.model, pytest.mark.browser]

# Two people with enough photos to be promoted and one with too few; each search result is
# contaminated with another person's photo, a group photo, a no-face photo and broken hosts.
PEOPLE = {
    "Colin Powell": ("USA", "politician", 6),
    "Laura Bush": ("USA", "politician", 6),
    "Kit Harington": ("UK", "actor", 3),
}
HELD_BACK = 6  # photo n of each promoted person is never served: recognize must name it


MAXRSS_WRAPPER = (
    "import resource, subprocess, sys; "
    "r = subprocess.run([sys.executable, '-m', 'facequeue', *sys.argv[1:]]); "
    "kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss; "
    "print(f'MAXRSS_KB {kb}', file=sys.stderr); sys.exit(r.returncode)"
)


async def cli(
    cfg: Path, *args: str, timeout: float = 600, wrapper: str | None = None
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *(["-c", wrapper] if wrapper else ["-m", "facequeue"]),
        "--config",
        str(cfg),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "FACEQUEUE_LOG_LEVEL": "info"},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()


def photos(testdata_dir: Path, name: str) -> list[str]:
    folder = testdata_dir / "people" / name.replace(" ", "_")
    return sorted(f"people/{folder.name}/{p.name}" for p in folder.iterdir())


async def test_daemon_end_to_end(tmp_path, testdata_dir):
    async with fake_services(testdata_dir) as svc:
        img = svc.images
        for name, (_country, occupation, _) in PEOPLE.items():
            own = [p for p in photos(testdata_dir, name) if not p.endswith(f"/{HELD_BACK}.jpg")]
            # Laura Bush also appears beside George W. Bush: that photo must give her face.
            group = ["multi/lfw_Laura_Bush_0011.jpg"] if name == "Laura Bush" else []
            svc.mediawiki.results[f"{name} {occupation}"] = [
                img.face_url(p) for p in own + group
            ] + [
                img.face_url("people/Tony_Blair/1.jpg"),
                img.face_url(
                    "multi/" + next(p.name for p in sorted((testdata_dir / "multi").iterdir()))
                ),
                img.face_url(
                    "noface/" + sorted(p.name for p in (testdata_dir / "noface").iterdir())[0]
                ),
                img.url("/html-as-image"),
                img.url("/truncated.jpg"),
                img.url("/status/404"),
                img.url("/noai"),
                img.url("/bomb.png"),
            ]
        cfg = tmp_path / "facequeue.toml"
        cfg.write_text(f"""
data_dir = "data"
[queue]
poll_s = 0.2
[wikimedia]
api_url = "{svc.wikimedia_url}"
[download]
allow_private_addresses = true
retries = 1
retry_backoff_s = 0.05
[gallery]
min_images = 3
""")
        for name, (country, occupation, _) in PEOPLE.items():
            code, out, err = await cli(
                cfg, "add-person", name, "--country", country, "--occupation", occupation
            )
            assert code == 0, err
        # Through a wrapper that reports the largest RSS of the daemon and its workers
        # (RUSAGE_CHILDREN covers every waited-for descendant): the Pi budget, 250 MB each.
        code, out, err = await cli(cfg, "run", "--once", wrapper=MAXRSS_WRAPPER)
        assert code == 0, err[-3000:]
        max_rss_mb = int(err.rsplit("MAXRSS_KB ", 1)[1].split()[0]) / 1024
        stops = [json.loads(x) for x in err.splitlines() if "analysis_workers_stopping" in x]
        workers_mb = [mb for line in stops for mb in line["peak_rss_mb"]]
        (main_mb,) = [
            json.loads(x)["peak_rss_mb"] for x in err.splitlines() if "daemon_stopped" in x
        ]
        print(
            f"largest process of the daemon run: {max_rss_mb:.0f} MB; daemon {main_mb} MB, "
            f"analysis workers' peaks {workers_mb} MB"
        )
        # The Pi budget is 250 MB per process (issue 14): the main process peaks ~90 MB, an
        # analysis worker rests at ~160 MB and peaks ~200 MB here (JPEGs decoded straight
        # into one reduced BGR array; a large progressive JPEG's coefficients set the peak).
        assert main_mb <= 250
        assert max_rss_mb <= 250
        logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
        assert any(ln["event"] == "person_finished" and "person_id" in ln for ln in logs)

    db = sqlite3.connect(tmp_path / "data" / "facequeue.db")
    db.row_factory = sqlite3.Row
    states = {
        r["name"]: (r["state"], r["state_reason"]) for r in db.execute("SELECT * FROM people")
    }
    assert states["Colin Powell"][0] == "promoted", states
    assert states["Laura Bush"][0] == "promoted", states
    assert states["Kit Harington"][0] in ("insufficient", "no_consensus"), states
    assert states["Kit Harington"][1]  # with the reason

    outcomes = db.execute("SELECT * FROM image_outcomes").fetchall()
    assert all(r["state"] in ("accepted", "rejected") for r in outcomes)
    assert all(r["reason"] for r in outcomes if r["state"] == "rejected")
    reasons = {r["reason"] for r in outcomes}
    assert {"not_an_image", "http_404", "x_robots_tag", "too_many_pixels"} <= reasons, reasons
    for r in outcomes:
        if "Tony_Blair" in r["url"] or "/noface/" in r["url"] or "deepface_couple" in r["url"]:
            assert r["state"] == "rejected", dict(r)
    (group,) = [r for r in outcomes if "lfw_Laura_Bush_0011" in r["url"]]
    assert group["state"] == "accepted" and group["person"] == "Laura Bush", dict(group)
    side = json.loads((tmp_path / "data" / group["crop_path"]).with_suffix(".json").read_text())
    assert side["face_features"]["faces_detected"] == 2
    assert len(side["face_features"]["face_regions"]) == 1  # the face kept, in the crop
    row = db.execute(
        "SELECT face_index, face_count FROM images WHERE id = ?", (group["image_id"],)
    ).fetchone()
    assert row["face_count"] == 2 and row["face_index"] is not None
    accepted = [r for r in outcomes if r["state"] == "accepted"]
    assert len(accepted) >= 6
    for r in accepted:
        crop = tmp_path / "data" / r["crop_path"]
        sidecar = json.loads(crop.with_suffix(".json").read_text())
        assert sidecar["source_url"] == r["url"]
    assert not list((tmp_path / "data" / "raw").rglob("*.*"))  # originals deleted after curation

    code, out, err = await cli(cfg, "status", "Colin_Powell")
    assert code == 0 and "accepted" in out
    code, out, err = await cli(cfg, "status", "--json")
    assert json.loads(out)["queue"]["promoted"] == 2

    for name in ("Colin Powell", "Laura Bush"):
        held = testdata_dir / "people" / name.replace(" ", "_") / f"{HELD_BACK}.jpg"
        code, out, err = await cli(cfg, "recognize", str(held), "--json")
        assert code == 0, err
        answer = json.loads(out)
        names = [f.get("name") or f.get("person") for f in answer["faces"]]
        assert name in names, answer

    code, out, err = await cli(cfg, "report", "--out", str(tmp_path / "report"))
    assert code == 0, err
    pages = "".join(p.read_text() for p in (tmp_path / "report").rglob("*.html"))
    assert "Laura Bush" in pages
    if Path(CHROMIUM).exists():  # `make test` installs it; test_report.py says so when missing
        async with Browser(tmp_path / "chromium-profile") as browser:
            for page in sorted((tmp_path / "report").rglob("*.html")):
                res = await browser.check(page.as_uri())
                assert not res["errors"] and not res["broken"], (
                    page.name,
                    res["errors"],
                    res["broken"],
                )
                assert res["images"] or page.name == "index.html" or "Kit" in res["text"]

    code, out, err = await cli(cfg, "forget", "Laura_Bush", "--yes")
    assert code == 0, err
    code, out, err = await cli(cfg, "report", "--out", str(tmp_path / "report"))
    pages = "".join(p.read_text() for p in (tmp_path / "report").rglob("*.html"))
    assert "Laura Bush" not in pages
    assert not [p for p in (tmp_path / "data").rglob("*") if "Laura_Bush" in p.name]
    assert (
        db.execute(
            "SELECT COUNT(*) FROM images i JOIN people p ON p.id = i.person_id "
            "WHERE p.name = 'Laura Bush'"
        ).fetchone()[0]
        == 0
    )
