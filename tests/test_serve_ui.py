"""The live review UI in headless Chromium: log in with the token, click a reject, see the
face move to the reviewer's rejections (and back with accept). Plain forms, no JavaScript."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from serve_helpers import built_once, copy_gallery, running_server
from test_report import CHROMIUM, Browser

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def built(tmp_path_factory, testdata_dir) -> Path:
    return built_once(tmp_path_factory, testdata_dir)


async def run_js(browser: Browser, expression: str):
    res = await browser.call("Runtime.evaluate", expression=expression, returnByValue=True)
    return res["result"].get("value")


async def click_and_load(browser: Browser, selector: str) -> None:
    browser.events.clear()
    found = await run_js(
        browser,
        f"(() => {{ const b = document.querySelector({selector!r}); "
        "if (!b) return false; b.click(); return true; })()",
    )
    assert found, selector
    await browser.wait_event("Page.loadEventFired")


async def test_ui_reject_and_accept_move_the_face(tmp_path, built):
    cfg = copy_gallery(built, tmp_path)
    with sqlite3.connect(cfg.db_path) as conn:
        colin = conn.execute("SELECT id, slug FROM people WHERE slug = 'Colin_Powell'").fetchone()
    token = "ui-token"
    async with running_server(cfg, token=token) as base, Browser(tmp_path / "profile") as browser:
        res = await browser.check(f"{base}/index.html")
        assert "API token" in res["text"] and res["errors"] == []  # the login form
        browser.events.clear()
        await run_js(
            browser,
            f"document.querySelector('input[name=token]').value = {token!r};"
            "document.querySelector('form').submit()",
        )
        await browser.wait_event("Page.loadEventFired")
        res = await browser.check(f"{base}/index.html")
        assert "Colin Powell" in res["text"] and "Show only flagged people" in res["text"]
        assert res["errors"] == [], res["errors"]

        page = f"{base}/people/{colin[0]}_{colin[1]}.html"
        res = await browser.check(page)
        assert res["errors"] == [] and res["broken"] == [], res
        assert "reject" in res["text"]
        first = await run_js(browser, "document.querySelector('#accepted figure').dataset.imageId")
        accepted_before = await run_js(
            browser, "document.querySelectorAll('#accepted figure').length"
        )

        await click_and_load(browser, f'#accepted figure[data-image-id="{first}"] button.reject')
        where = await run_js(
            browser,
            f"(() => {{ const f = document.querySelector('figure[data-image-id=\"{first}\"]');"
            " return f && f.closest('.sheet').dataset.reason || f.closest('.sheet').id; })()",
        )
        assert where == "reviewer"
        text = await run_js(browser, "document.body.innerText")
        assert f"image {first}: reject recorded; now rejected" in text
        assert "reviewer: reject" in text
        after = await run_js(browser, "document.querySelectorAll('#accepted figure').length")
        assert after == accepted_before - 1
        with sqlite3.connect(cfg.db_path) as conn:
            assert conn.execute(
                "SELECT state, reason FROM images WHERE id = ?", (int(first),)
            ).fetchone() == ("rejected", "reviewer")
            assert not conn.execute(
                "SELECT 1 FROM gallery_images WHERE image_id = ?", (int(first),)
            ).fetchone()

        await click_and_load(browser, f'figure[data-image-id="{first}"] button.accept')
        where = await run_js(
            browser,
            f"document.querySelector('figure[data-image-id=\"{first}\"]').closest('.sheet').id",
        )
        assert where == "accepted"
        res = await browser.check(page)
        assert res["errors"] == [] and res["broken"] == [], res

        res = await browser.check(f"{base}/index.html?flagged=1")
        assert "Showing only people the self-test flagged" in res["text"]
