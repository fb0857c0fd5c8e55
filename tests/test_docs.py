"""Docs that cannot rot silently (after sqlite-utils' tests/test_docs.py): every CLI command
has help text and is shown in the README's usage block."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from facequeue.cli import main

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
COMMANDS = sorted(main.commands)


def test_commands_are_found():
    assert {"add-person", "run", "status", "forget"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help(name: str):
    command: click.Command = main.commands[name]
    assert command.help and command.help.strip(), f"{name} has no help text"
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"{name} {param.opts[0]} has no help text"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_is_in_the_readme(name: str):
    assert re.search(rf"^facequeue {re.escape(name)}\b", README, re.M), (
        f"README's usage block lacks `facequeue {name}`"
    )
