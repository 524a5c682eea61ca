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


@contextmanager
def fail_cleanly() -> Iterator[None]:
    """Turn a :class:`FraudlensError` into a red message and exit code 2."""
    try:
        yield
    except FraudlensError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(code=2) from None


def cli_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Decorator form of :func:`fail_cleanly` for Typer commands."""
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> R:
        with fail_cleanly():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
