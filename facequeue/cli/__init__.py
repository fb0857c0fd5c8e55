"""The `facequeue` command. Commands live in cli/<concern>.py and register on `main`.

Every FacequeueError becomes one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import click

from facequeue.config import Config, load_config
from facequeue.errors import FacequeueError
from facequeue.logs import setup_logging


@dataclass
class App:
    """What every command gets: the config path and a lazily loaded config."""

    config_path: str | None
    _config: Config | None = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
            setup_logging(self._config.log_level, self._config.log_file or None)
        return self._config


pass_app = click.make_pass_decorator(App)


def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Config file (default: $FACEQUEUE_CONFIG, else ./facequeue.toml).",
)
@click.version_option(package_name="facequeue")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """facequeue: collect clean face-recognition training data of public figures.

    Queue people (add-person, import, add-country), run the daemon (run), and watch it
    (status, the sqlite3 views, the logs).
    """
    ctx.obj = App(config_path)


def entrypoint() -> None:
    try:
        result = main.main(standalone_mode=False)
        if isinstance(result, int) and result:
            sys.exit(result)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except FacequeueError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


# Command modules register themselves on `main` when imported.
import importlib  # noqa: E402

for _module in ("queue", "faces", "names", "metadata", "gallery", "serve", "database"):
    try:
        importlib.import_module(f"{__name__}.{_module}")
    except ModuleNotFoundError as exc:  # a concern not built yet
        if exc.name != f"{__name__}.{_module}":
            raise
