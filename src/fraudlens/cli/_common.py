"""Helpers shared by the CLI modules: console, progress bars, error exit."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from fraudlens.errors import FraudlensError

__all__ = ["ModelDir", "cli_errors", "console", "fail_cleanly", "progress"]

console = Console(stderr=True)

#: The ``--model-dir`` / ``-m`` option every command that reads the registry takes.
ModelDir = Annotated[
    Path | None,
    typer.Option(
        "--model-dir",
        "-m",
        help="Model registry folder [default: FRAUDLENS_MODELS_DIR or ./models].",
        show_default=False,
    ),
]

P = ParamSpec("P")
R = TypeVar("R")


def progress(transient: bool = False) -> Progress:
    """A rich progress display with bar, count, elapsed and remaining time."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
    )


def command_name() -> str:
    """The running command as a user types it, e.g. ``fraudlens market score``.

    Read from the process arguments (Typer does not expose a current context); anything
    that is not one of fraudlens's commands gives plain ``fraudlens``.
    """
    import sys

    from fraudlens.cli import app

    groups = {g.name for g in app.registered_groups}
    commands = {c.name for c in app.registered_commands} | groups
    words = [w for w in sys.argv[1:3]]
    if not words or words[0] not in commands:
        return "fraudlens"
    if words[0] in groups and len(words) > 1 and not words[1].startswith("-"):
        return f"fraudlens {words[0]} {words[1]}"
    return f"fraudlens {words[0]}"


def error(message: str) -> None:
    """Print one error line: never wrapped (so it can be copied) and no markup parsed."""
    from rich.markup import escape

    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)


@contextmanager
def fail_cleanly() -> Iterator[None]:
    """Turn a :class:`FraudlensError` into a red message and exit code 2.

    A missing module of an optional extra (``ray``, ``boto3``, ``torch``, ...) is one too:
    the message names the extra and the install command.
    """
    from fraudlens._optional import missing_dependency

    try:
        yield
    except FraudlensError as exc:
        # A library may have wrapped the missing import (a database driver, s3fs).
        missing = missing_dependency(exc, feature=command_name())
        error(str(missing or exc))
        raise typer.Exit(code=2) from None
    except ImportError as exc:
        missing = missing_dependency(exc, feature=command_name())
        if missing is None:
            raise
        error(str(missing))
        raise typer.Exit(code=2) from None


def cli_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Decorator form of :func:`fail_cleanly` for Typer commands."""
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> R:
        with fail_cleanly():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
