"""`facequeue serve`: the recognition API, /metrics and the review UI."""

from __future__ import annotations

import click

from facequeue.cli import App, main, pass_app, run_async


@main.command()
@click.option("--host", default=None, help="Address to listen on (default: serve.host).")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=None, help="Port (default: serve.port)."
)
@pass_app
def serve(app: App, host: str | None, port: int | None) -> None:
    """Serve the gallery: POST /api/recognize, the review UI at /, /healthz and /metrics.

    The gallery stays in memory and follows the daemon's changes. Set FACEQUEUE_API_TOKEN to
    require `Authorization: Bearer <token>`; without it only loopback addresses are allowed.
    """
    from facequeue.serve.app import serve as run_server

    cfg = app.config
    run_async(run_server(cfg, host or cfg.serve.host, cfg.serve.port if port is None else port))
