"""Helpers shared by the CLI modules: console, progress bars, error exit."""

from __future__ import annotations

import errno
import math
import os
import shlex
import shutil
import sys
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

__all__ = [
    "DbOpt",
    "ModelDir",
    "SeedOpt",
    "WindowHoursOpt",
    "cli_errors",
    "command_name",
    "console",
    "db_option",
    "error",
    "event_threshold_option",
    "existing_database",
    "fail_cleanly",
    "fraudlens_command",
    "progress",
    "registry_root",
    "shell_path",
]

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


#: The ``--db`` option of the commands that work on the store.
DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database URL [default: FRAUDLENS_DATABASE_URL or sqlite:///fraudlens.db].",
        show_default=False,
    ),
]

#: The ``--seed`` option of the commands that draw random numbers.
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]

#: Longest scoring window the CLI takes, in hours (about 11 years): past it the window's
#: start leaves pandas' time range.
MAX_WINDOW_HOURS = 100_000.0


def _window_hours(value: float) -> float:
    # 0, negative, nan or inf hours used to end in a pandas traceback (or an empty window).
    if not (math.isfinite(value) and 0.0 < value <= MAX_WINDOW_HOURS):
        raise typer.BadParameter(
            f"{value:g} is not a window: give hours above 0 and at most {MAX_WINDOW_HOURS:,.0f}"
        )
    return value


#: The ``--window-hours`` option: the scoring window that ends at an account's latest trade.
WindowHoursOpt = Annotated[
    float,
    typer.Option(
        "--window-hours",
        callback=_window_hours,
        help="Scoring window that ends at each account's latest trade, in hours.",
    ),
]


def event_threshold_option(*names: str) -> Any:
    """The risk-event threshold option (``flagged = score > it``), under ``names``.

    The worker calls it ``--threshold`` and ``models compare`` ``--event-threshold``; the
    range, the default and its help are the same for both.
    """
    return typer.Option(
        *names,
        min=0.0,
        max=1.0,
        help="Risk-event threshold: flagged = score > it [default: FRAUDLENS_EVENT_THRESHOLD "
        "or 0.9].",
        show_default=False,
    )


def registry_root(model_dir: Path | None, *, must_exist: bool = False) -> Path:
    """The registry folder ``-m`` names (default: the ``models_dir`` setting).

    A model's folder, a version folder or a file given instead of the registry is refused
    with a message that names the right folder. A folder that does not exist is refused
    only with ``must_exist`` (commands that train create it).

    Raises
    ------
    ModelNotFoundError
        Saying what the folder is and which one was meant.
    """
    from fraudlens.config import get_settings
    from fraudlens.errors import ModelNotFoundError
    from fraudlens.registry import Registry

    root = Path(model_dir or get_settings().models_dir)
    problem = Registry(root).root_problem()
    if problem is not None and (must_exist or root.exists()):
        raise ModelNotFoundError(problem)
    return root


def fraudlens_command() -> str:
    """How to run this very ``fraudlens`` from the working folder, as a shell word.

    ``fraudlens`` when that name on ``PATH`` is this installation (an activated
    virtualenv); else the path of this installation's script (``.venv/bin/fraudlens``
    after the README's install), relative when it lies under the working folder; else
    ``python -m fraudlens`` with this interpreter.
    """
    bindir = Path(sys.executable).parent
    script = bindir / ("fraudlens.exe" if os.name == "nt" else "fraudlens")
    if not script.is_file():
        return f"{shlex.quote(shell_path(Path(sys.executable)))} -m fraudlens"
    on_path = shutil.which("fraudlens")
    if on_path is not None and Path(on_path).resolve() == script.resolve():
        return "fraudlens"
    return shlex.quote(shell_path(script))


def db_option(url: str | None) -> tuple[str, str]:
    """``" --db URL"`` for a command printed for the user to run, shell-quoted, and a note.

    ``("", "")`` when ``url`` is None: the printed command then reads the same default
    store. A password in the URL is not printed (terminals and service logs keep what is
    printed): it shows as ``***`` and the note asks the user to put it back.
    """
    if url is None:
        return "", ""
    shown, note = url, ""
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
    except Exception:  # not a URL SQLAlchemy reads (or no SQLAlchemy): printed as given
        parsed = None
    if parsed is not None and parsed.password:
        shown = parsed.render_as_string(hide_password=True)
        note = " (with the database password in place of ***)"
    return f" --db {shlex.quote(shown)}", note


def shell_path(path: Path) -> str:
    """``path`` as typed in a shell: relative to the working folder when under it (a
    leading ``./`` when it would otherwise be a bare name), else absolute. Symlinks are
    kept (a virtualenv's python is one)."""
    absolute = Path(os.path.abspath(path))
    try:
        rel = absolute.relative_to(os.getcwd())
    except ValueError:
        return str(absolute)
    return str(rel) if len(rel.parts) > 1 else f".{os.sep}{rel}"


def existing_database(url: str) -> str:
    """``url``, for a command that only reads the database: an embedded SQLite file that
    does not exist is an error, not a new empty database.

    Raises
    ------
    StoreError
        Naming the file and the command that creates it.
    """
    from fraudlens.errors import StoreError

    text = url.strip()
    scheme, sep, rest = (
        ("sqlite", "://", "/fraudlens.db") if text == "sqlite" else text.partition("://")
    )
    if sep and scheme.split("+")[0] == "sqlite":
        file = rest.removeprefix("/").split("?")[0]
        if file not in ("", ":memory:") and not Path(file).expanduser().exists():
            exe, db = fraudlens_command(), db_option(url)[0]
            raise StoreError(
                f"database file {file} does not exist (--db {url}); "
                f"`{exe} db upgrade{db}` creates it and "
                f"`{exe} db load --klines K --trades T{db}` fills it"
            )
    return url


# Errors of a write that say what is wrong with the disk, not with fraudlens.
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})

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

    So is an :class:`OSError` about a named path (an output file that is a folder), or
    about the disk (full, read-only, failing).

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
    except OSError as exc:
        # A path the user gave that cannot be written or read (``--out`` at a folder, a
        # read-only place): one line naming it, not a traceback.
        if exc.filename is not None:
            error(f"cannot use {exc.filename}: {exc.strerror or exc}")
        elif exc.errno in _DISK_ERRNOS:
            # A full, read-only or failing disk: the write's error names no file.
            error(f"cannot write: {exc.strerror or exc}")
        else:
            raise
        raise typer.Exit(code=2) from None


def cli_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Decorator form of :func:`fail_cleanly` for Typer commands."""
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> R:
        with fail_cleanly():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
