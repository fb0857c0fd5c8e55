"""Issue 12 item 10: CSV import is parsed as CSV by the csv module, or refused with one clear
line; control and bidi characters never reach a stored name. Real CLI, real SQLite."""

from __future__ import annotations

import sqlite3

import pytest
from test_cli import run

pytestmark = pytest.mark.slow  # CLI subprocesses


@pytest.fixture
def cfg(tmp_path):
    path = tmp_path / "facequeue.toml"
    path.write_text('data_dir = "data"\n')
    return path


def names(cfg) -> list[tuple[str, str]]:
    db = cfg.parent / "data" / "facequeue.db"
    if not db.exists():
        return []
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT name, country FROM people ORDER BY id").fetchall()
    finally:
        con.close()


def test_quoted_newline_is_part_of_the_field(cfg, tmp_path):
    f = tmp_path / "people.csv"
    f.write_text('name,country\n"Ana\nIvanović",Serbia\nNovak Đoković,Serbia\n', encoding="utf-8")
    result = run(cfg, "import", str(f))
    assert result.returncode == 0, result.stderr
    assert names(cfg) == [("Ana Ivanović", "Serbia"), ("Novak Đoković", "Serbia")]


def test_next_line_character_is_not_a_line_break_and_is_refused(cfg, tmp_path):
    f = tmp_path / "people.csv"
    f.write_text("name,country\nAna\u0085Ivanović,Serbia\n", encoding="utf-8")
    result = run(cfg, "import", str(f))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "line 2" in lines[0] and "U+0085" in lines[0]
    assert names(cfg) == []


@pytest.mark.parametrize("char", ["\u202e", "\u2066", "\u200f", "\u0007", "\u2028"])
def test_bidi_and_control_characters_are_refused(cfg, tmp_path, char):
    f = tmp_path / "people.csv"
    f.write_text(f"name,country\nGood Name,Serbia\nEvil{char}Name,Serbia\n", encoding="utf-8")
    result = run(cfg, "import", str(f))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "line 3" in lines[0] and f"U+{ord(char):04X}" in lines[0]
    assert names(cfg) == []  # one bad line: nothing queued
    assert run(cfg, "add-person", f"Evil{char}Name", "-c", "Serbia").returncode == 2
    assert names(cfg) == []


def test_huge_field_is_one_clear_line(cfg, tmp_path):
    f = tmp_path / "people.csv"
    f.write_text("name,country\n" + '"' + "A" * 200 * 1024 + '",Serbia\n', encoding="utf-8")
    result = run(cfg, "import", str(f))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "line 2" in lines[0] and "field" in lines[0]
    assert "Traceback" not in result.stderr
    assert names(cfg) == []


def test_zero_width_joiner_in_a_name_is_kept(cfg, tmp_path):
    f = tmp_path / "people.csv"
    name = "می\u200cخواهم"
    f.write_text(f"name,country\n{name},Iran\n", encoding="utf-8")
    assert run(cfg, "import", str(f)).returncode == 0
    assert names(cfg) == [(name, "Iran")]
