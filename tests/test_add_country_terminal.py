"""Issue 13, item 7: `add-country` reads like a command on a terminal, and logs JSON off one.

The real CLI runs in a subprocess under a pseudo-terminal (what a person sees: spinner
lines, retries on them, a summary table, one clear line on failure) and with pipes
(JSON log lines on stderr), against the local SPARQL engine.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import re
import struct
import sys
import termios

import pytest
from fake_services import Status
from wikidata_endpoint import WikidataEndpoint, timeout_500
from wikidata_world import serbia_world

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\x1b[()][A-Z0-9]")
CLI = [sys.executable, "-c", "from facequeue.cli import entrypoint; entrypoint()"]


@pytest.fixture
async def wd():
    async with WikidataEndpoint(serbia_world(), strict=True) as server:
        yield server


def write_config(tmp_path, url: str) -> str:
    path = tmp_path / "facequeue.toml"
    path.write_text(
        f'data_dir = "data"\n[wikidata]\nsparql_url = "{url}"\n'
        "max_retries = 3\nretry_backoff_s = 0.6\ntimeout_s = 20\n",
        encoding="utf-8",
    )
    return str(path)


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith(("FACEQUEUE_", "OPENAI_"))}
    out.update(TERM="xterm-256color", COLUMNS="160", LINES="50", PYTHONUNBUFFERED="1")
    out.pop("NO_COLOR", None)
    return out


async def run_on_terminal(args: list[str]) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as stdin/stdout/stderr; (exit code, the screen text)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, stdin=slave, stdout=slave, stderr=slave, env=env()
    )
    os.close(slave)
    chunks: list[bytes] = []

    def read_all() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other side is closed
                return
            if not data:
                return
            chunks.append(data)

    reader = asyncio.create_task(asyncio.to_thread(read_all))
    code = await asyncio.wait_for(proc.wait(), 120)
    await asyncio.wait_for(reader, 30)
    os.close(master)
    return code, ANSI.sub("", b"".join(chunks).decode("utf-8", "replace")).replace(
        "\r\n", "\n"
    ).replace("\r", "\n")


async def test_terminal_shows_spinner_lines_and_a_summary(tmp_path, wd):
    config = write_config(tmp_path, wd.url)
    wd.faults.append(("wdt:P279* wd:Q33999", Status(503)))  # actor people query: once
    code, screen = await run_on_terminal(
        ["--config", config, "add-country", "Serbia", "--source", "wikidata"]
        + ["--occupation", "actor", "--occupation", "athlete", "--count", "3"]
    )
    assert code == 0, screen
    # a line per occupation while it works; a retry shows on its line (it waits the backoff)
    assert "retry 1 (people (actor)): HTTP 503" in screen  # the retry is on the actor line
    assert "done: 3 of 3 found" in screen
    assert "wikidata_retry" not in screen  # ...not a log line per attempt
    assert not [ln for ln in screen.splitlines() if ln.lstrip().startswith("{")]
    summary = screen[screen.index("Summary") :]
    assert re.search(r"actor\s*│\s*3\s*│\s*3\s*│\s*3\s*│\s*0\s*│\s*0\s*│\s*0", summary)
    assert "queued 6 people for Serbia" in screen


async def test_terminal_failure_is_one_clear_line(tmp_path, wd):
    config = write_config(tmp_path, wd.url)
    wd.script.extend([timeout_500(), timeout_500()])
    code, screen = await run_on_terminal(
        ["--config", config, "add-country", "Serbia", "--source", "wikidata", "--count", "3"]
    )
    assert code == 1
    lines = [ln.strip() for ln in screen.splitlines() if ln.strip()]
    assert lines[-1].startswith("error: the country query timed out at ")
    assert "--count" in lines[-1]
    assert sum("error" in ln.lower() for ln in lines) == 1
    assert "Traceback" not in screen and "wikidata_retry" not in screen


async def test_ambiguous_country_on_the_terminal(tmp_path, wd):
    config = write_config(tmp_path, wd.url)
    args = ["--config", config, "add-country", "Congo", "--source", "wikidata"]
    code, screen = await run_on_terminal(args + ["--occupation", "musician"])
    assert code == 2
    last = [ln for ln in screen.splitlines() if ln.strip()][-1]
    assert "(Q974)" in last and "(Q971)" in last and "--country Q974" in last
    code, screen = await run_on_terminal(
        args + ["--occupation", "musician", "--country", "Q974", "--dry-run"]
    )
    assert code == 0, screen
    assert "Papa Wemba" in screen and "would queue 1 people" in screen


async def test_off_a_terminal_logs_are_json_lines(tmp_path, wd):
    config = write_config(tmp_path, wd.url)
    wd.faults.append(("wdt:P279* wd:Q33999", Status(503)))
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        *["--config", config, "add-country", "Serbia", "--source", "wikidata"],
        *["--occupation", "actor", "--count", "3"],
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env(),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    events = [json.loads(line) for line in err.decode().splitlines() if line.strip()]
    retry = next(e for e in events if e["event"] == "wikidata_retry")
    assert retry["query"] == "people (actor)" and retry["attempt"] == 1
    assert any(e["event"] == "people_queued" for e in events)
    text = out.decode()
    assert "Summary" in text and "queued 3 people for Serbia" in text
    assert "\x1b[" not in text  # no terminal codes in a file or pipe
