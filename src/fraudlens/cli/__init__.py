"""The ``fraudlens`` command line: a thin shell over the library.

Sub-commands live in one module per command group (``market``, ``cards``, ``models``,
``pipeline``, ``quickstart``, ``serve``, ``users``), mounted here; ``_common`` holds their
shared helpers.
"""

from __future__ import annotations

from typing import Annotated

import typer

from fraudlens.cli._market_import import import_reference
from fraudlens.cli.cards import app as cards_app
from fraudlens.cli.market import app as market_app
from fraudlens.cli.models import app as models_app
from fraudlens.cli.pipeline import db_app, enqueue, worker
from fraudlens.cli.quickstart import quickstart
from fraudlens.cli.serve import process, serve
from fraudlens.cli.users import tokens_app, users_app

__all__ = ["app", "main"]

app = typer.Typer(
    name="fraudlens",
    help="Local-first fraud detection: brokerage account takeover (market) and card fraud (cards).",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_show_locals=False,
)


def _show_version(value: bool) -> None:
    if value:
        from fraudlens import __version__

        typer.echo(f"fraudlens {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Options of the ``fraudlens`` command itself."""


app.add_typer(
    market_app, name="market", help="Account-takeover detection on trades and 5-minute bars."
)
app.add_typer(cards_app, name="cards", help="Card-transaction fraud models.")
app.add_typer(models_app, name="models", help="Inspect the model registry.")
app.add_typer(db_app, name="db", help="The SQL store: schema, bulk loads, risk events.")
app.add_typer(users_app, name="users", help="Who may sign in: analysts, admins, service accounts.")
app.add_typer(tokens_app, name="tokens", help="API tokens for the /v1 API and scoring endpoints.")
app.command("quickstart")(quickstart)
app.command("serve")(serve)
app.command("enqueue")(enqueue)
app.command("worker")(worker)
cards_app.command("process")(process)
market_app.command("import-reference")(import_reference)


def _exit_on_sigterm() -> None:
    """Make SIGTERM end the command as Ctrl-C does: by an exception (exit status 143),
    so ``finally`` blocks run and a half-written output's hidden temporary file is
    removed. Commands that handle SIGTERM themselves (the worker, the processor, the
    server) install their own handlers over this one."""
    import signal

    def _stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _stop)


def main() -> None:
    """Entry point of the ``fraudlens`` console script."""
    _exit_on_sigterm()
    app()


if __name__ == "__main__":
    main()
