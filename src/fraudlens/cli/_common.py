"""Helpers shared by the CLI modules: console, progress bars, error exit."""

from __future__ import annotations

import errno
import math
import os
import shlex
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from fraudlens._time import MAX_WINDOW_HOURS
from fraudlens.errors import FraudlensError

__all__ = [
    "MAX_SEED",
    "DbOpt",
    "LineProgress",
    "LineStatus",
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
    "gave_up_without_model",
    "idle_seconds",
    "lasting_url",
    "plural",
    "progress",
    "registry_root",
    "shell_path",
    "working",
]

# Markup off: messages carry paths, ids and names the user gave, in which the console
# would read [ and ] as styles ("scores [copy].csv" was shown as "scores .csv", and
# "[/]out.csv" ended a command that had done its work in a MarkupError traceback).
# The few styled messages ask for markup themselves (markup=True), their data escaped.
console = Console(stderr=True, markup=False)

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

#: Largest ``--seed``: the seeds every random source takes (numpy's generators refuse a
#: negative one, scikit-learn's and XGBoost's one past 32 bits).
MAX_SEED = 2**32 - 1
#: The ``--seed`` option of the commands that draw random numbers.
SeedOpt = Annotated[int, typer.Option("--seed", min=0, max=MAX_SEED, help="Random seed.")]


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


def plural(n: int, word: str, words: str | None = None) -> str:
    """``n`` and ``word`` in a message, plural unless ``n`` is 1: ``1 check``,
    ``2 checks``, ``0 checks``, ``1,234 checks``; ``words`` for a plural that is not
    ``word`` + ``s`` (``plural(2, "pass", "passes")``)."""
    return f"{n:,} {word if n == 1 else (words or word + 's')}"


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


def memory_short(need: float) -> str | None:
    """``None`` when ``need`` bytes fit in this machine's memory, else how much it has
    (``"24 GiB"``), for an up-front refusal of a size that would fill memory for hours
    before a MemoryError. ``None`` too where the memory cannot be read."""
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None  # no way to tell here: a MemoryError is still one line
    return f"{have / 2**30:,.0f} GiB" if need > have else None


def check_outputs(inputs: dict[str, Path | None], outputs: dict[str, Path | None]) -> None:
    """Refuse an output file that is one of the command's input files, or another of its
    outputs (the same path, a link to it or a hard link): ``market score --out`` naming
    its --trades file had replaced the trades with the scores, and ``market pairs
    --matches`` naming its --out file the pairs with the matches. Keys are the options'
    names (``--out``); None is an option not given. An output that exists and is not a
    regular file (``/dev/stdout``, a pipe) is written to as it is, and not compared.

    Raises
    ------
    ConfigError
        Naming both options and the file.
    """
    from fraudlens.errors import ConfigError

    given = [(opt, path) for opt, path in inputs.items() if path is not None]
    for opt, path in ((o, p) for o, p in outputs.items() if p is not None):
        if not (path.exists() and not path.is_file()):
            for other, seen in given:
                if _same_file(path, seen):
                    what = "that input" if other in inputs else "the other output"
                    raise ConfigError(
                        f"{opt} {path} is the same file as {other} {seen}: writing it would "
                        f"replace {what}; give another file"
                    )
        given.append((opt, path))


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:  # (unreadable: not known to be the same)
        return False
    return os.path.realpath(a) == os.path.realpath(b)


def existing_database(url: str) -> str:
    """``url``, for a command that only reads the database: an embedded SQLite file that
    does not exist is an error, not a new empty database.

    Raises
    ------
    StoreError
        Naming the file and the command that creates it.
    """
    from fraudlens.errors import StoreError

    file = _sqlite_file("sqlite:///fraudlens.db" if url.strip() == "sqlite" else url)
    if file not in (None, "", ":memory:") and not Path(file).expanduser().exists():
        exe, db = fraudlens_command(), db_option(url)[0]
        raise StoreError(
            f"database file {file} does not exist (--db {url}); "
            f"`{exe} db upgrade{db}` creates it and "
            f"`{exe} db load --klines K --trades T{db}` fills it"
        )
    return url


def _sqlite_file(url: str) -> str | None:
    """The file part of a ``sqlite://`` URL (``""`` when it names none, ``:memory:``),
    its query left out; None for any other URL."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep or scheme.split("+")[0].lower() != "sqlite":
        return None
    return rest.removeprefix("/").split("?")[0]


def lasting_url(url: str, what: str) -> str:
    """``url``, for a command whose writes another process reads later: an in-memory
    SQLite database is an error, since what the command writes is gone when it ends.
    ``what`` is ``database`` (``sqlite://`` and ``sqlite:///:memory:`` are in memory) or
    ``queue`` (``sqlite:///:memory:``; a bare ``sqlite`` is the default file).

    Raises
    ------
    ConfigError
        Naming the URL and what to give instead.
    """
    from fraudlens.errors import ConfigError

    file = _sqlite_file(url)
    if file == ":memory:" or (what == "database" and file == ""):
        option = "--db" if what == "database" else "--queue"
        raise ConfigError(
            f"{what} URL {url} is an in-memory SQLite {what}: it is gone when this command "
            f"ends, with what the command writes; give a file (e.g. {option} "
            f"sqlite:///fraudlens{'' if what == 'database' else '-queue'}.db)"
        )
    return url


# Errors of a write that say what is wrong with the disk, not with fraudlens.
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})

P = ParamSpec("P")
R = TypeVar("R")


#: Off a terminal, a bar's line is written once it has moved this share of its total and
#: :data:`LINE_SECONDS` have passed since its last line (whichever comes later).
LINE_SHARE = 0.10
#: Seconds between two lines of one bar off a terminal (a bar without a total writes a
#: "running" line this often).
LINE_SECONDS = 30.0


def _duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _count(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:,.1f}"


class LineProgress(Progress):
    """The progress display off a terminal (a pipe, a log file, a service's journal).

    A live bar cannot redraw there, so rich writes it once, at the end: a long step said
    nothing for minutes. This one writes plain lines instead, no more often than
    :data:`LINE_SHARE` of the total and :data:`LINE_SECONDS` (the rarer of the two):

    - a line when a task has moved :data:`LINE_SHARE` of its total and
      :data:`LINE_SECONDS` have passed since its start or last line; a task without a
      total writes a ``running`` line every :data:`LINE_SECONDS`;
    - a line when a task added with ``line_each_step=True`` starts and one for every step
      it makes (the CNN's epochs); its ``unit`` and ``detail`` fields name the step and
      its figures;
    - a last line when the task completes or the display stops (for a ``transient``
      display only when the task had written a line).

    So a step that ends within :data:`LINE_SECONDS` writes one line, at its end, as the
    bar did.

    A line reads ``NAME: [UNIT ]DONE/TOTAL (PCT%)[, DETAIL], ELAPSED elapsed[, about LEFT
    left]``, NAME being the task's ``name`` field or else its description; LEFT, while a
    counted task is under way, is the time the rest takes at the rate so far.
    """

    def __init__(self, *columns: Any, transient: bool = False, **kwargs: Any) -> None:
        super().__init__(*columns, transient=transient, disable=True, **kwargs)
        self._transient = transient
        # task id -> (completed, time) at its last line; absent: no line written yet.
        self._last: dict[Any, tuple[float, float]] = {}
        self._done: set[Any] = set()
        self._stop_beat = threading.Event()
        self._beat: threading.Thread | None = None

    def _line(self, task: Any, *, done: bool = False) -> None:
        name = task.fields.get("name") or task.description
        unit = task.fields.get("unit")
        detail = task.fields.get("detail")
        elapsed = _duration(task.elapsed or 0.0)
        if task.total is None:
            state = "done" if done else "running"
        else:
            pct = 100.0 * task.completed / task.total if task.total else 100.0
            state = f"{unit + ' ' if unit else ''}{_count(task.completed)}/{_count(task.total)}"
            state += f" ({pct:.0f}%)"
        parts = [f"{name}: {state}"]
        if detail:
            parts.append(str(detail))
        parts.append(f"{elapsed} elapsed")
        if not done and task.total and 0 < task.completed < task.total and task.elapsed:
            # the rate so far (the display's own estimate needs steps under 30 s apart)
            left = task.elapsed * (task.total - task.completed) / task.completed
            parts.append(f"about {_duration(left)} left")
        self.console.print(", ".join(parts), markup=False, highlight=False, soft_wrap=True)
        self._last[task.id] = (task.completed, self.get_time())
        if done:
            self._done.add(task.id)

    def _check(self, task_id: Any, *, stepped: bool = False) -> None:
        with self._lock:
            task = self._tasks[task_id]
            if task_id in self._done:
                return
            if task.total is not None and task.completed >= task.total:
                self._line(task, done=True)
                return
            last_n, last_t = self._last.get(task_id, (0.0, task.start_time or self.get_time()))
            each_step = stepped and bool(task.fields.get("line_each_step"))
            moved = task.total is None or task.completed - last_n >= LINE_SHARE * task.total
            if (each_step and task.completed != last_n) or (
                moved and self.get_time() - last_t >= LINE_SECONDS
            ):
                self._line(task)

    def add_task(self, description: str, *args: Any, **kwargs: Any) -> TaskID:
        task_id = super().add_task(description, *args, **kwargs)
        if kwargs.get("line_each_step"):
            with self._lock:
                self._line(self._tasks[task_id])
        return task_id

    def update(self, task_id: TaskID, **kwargs: Any) -> None:  # type: ignore[override]
        super().update(task_id, **kwargs)
        self._check(task_id, stepped="completed" in kwargs or "advance" in kwargs)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._check(task_id, stepped=True)

    def tick(self) -> None:
        """Write the ``running`` lines that are due (tasks without a total)."""
        with self._lock:
            due = [t.id for t in self._tasks.values() if t.total is None]
        for task_id in due:
            self._check(task_id)

    def _heartbeat(self) -> None:
        while not self._stop_beat.wait(1.0):
            self.tick()

    def start(self) -> None:
        super().start()
        self._stop_beat.clear()
        self._beat = threading.Thread(target=self._heartbeat, name="progress-lines", daemon=True)
        self._beat.start()

    def stop(self) -> None:
        self._stop_beat.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        super().stop()
        with self._lock:
            for task in self._tasks.values():
                if task.id in self._done:
                    continue
                if not self._transient or task.id in self._last:
                    self._line(task, done=True)


def progress(transient: bool = False) -> Progress:
    """A rich progress display with bar, count, elapsed and remaining time.

    Off a terminal (stderr piped or sent to a file), a :class:`LineProgress` writing a few
    plain lines instead.
    """
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    if not console.is_terminal:
        return LineProgress(*columns, console=console, transient=transient)
    return Progress(*columns, console=console, transient=transient)


class LineStatus:
    """What :func:`working` shows off a terminal (a pipe, a log file, a service's
    journal), where rich's spinner prints nothing: a step that took a minute left no
    sign in the log that it had begun or how long it took.

    Plain lines instead, as :class:`LineProgress` writes for a bar:

    - ``MESSAGE ...`` when the step starts;
    - ``MESSAGE: LATEST, ELAPSED elapsed`` every :data:`LINE_SECONDS` while it runs,
      LATEST being the text of the last :meth:`update` (``running`` without one);
    - ``MESSAGE: done in S.S s`` when it ends (``stopped after S.S s`` when it ends by
      an exception).

    Markup in the texts is rendered as plain text.
    """

    def __init__(
        self,
        message: str,
        *,
        console: Console,
        get_time: Callable[[], float] = time.monotonic,
        heartbeat: bool = True,
    ) -> None:
        self.console = console
        self.get_time = get_time
        # "starting..." and "starting" read the same in a line that adds its own " ...".
        self.message = _plain(message).rstrip(". ") or _plain(message)
        self.latest: str | None = None
        self.started = 0.0
        self._last = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._heartbeat = heartbeat

    def _print(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def __enter__(self) -> LineStatus:
        self.started = self._last = self.get_time()
        self._print(f"{self.message} ...")
        if self._heartbeat:
            self._beat = threading.Thread(target=self._beating, name="status-lines", daemon=True)
            self._beat.start()
        return self

    def update(self, status: str) -> None:
        """Record the step's latest state (written with the next ``running`` line)."""
        with self._lock:
            self.latest = _plain(status)

    def tick(self) -> None:
        """Write the ``running`` line if :data:`LINE_SECONDS` have passed since the last."""
        now = self.get_time()
        with self._lock:
            if now - self._last < LINE_SECONDS:
                return
            self._last = now
            state = self.latest or "running"
        self._print(f"{self.message}: {state}, {_duration(now - self.started)} elapsed")

    def _beating(self) -> None:
        while not self._stop.wait(1.0):
            self.tick()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        seconds = self.get_time() - self.started
        how = f"done in {seconds:.1f} s" if exc_type is None else f"stopped after {seconds:.1f} s"
        self._print(f"{self.message}: {how}")


def _plain(text: str) -> str:
    """``text`` with its rich markup rendered (``[bold]1[/]`` -> ``1``); as is when it
    is not valid markup (a path with brackets)."""
    from rich.errors import MarkupError
    from rich.text import Text

    try:
        return Text.from_markup(text).plain
    except MarkupError:
        return text


def working(message: str) -> AbstractContextManager[Any]:
    """Show that a step without a count is under way: rich's spinner on a terminal;
    off one (stderr piped or sent to a file), a :class:`LineStatus` writing plain lines
    when the step starts and ends (with its seconds) and every :data:`LINE_SECONDS` in
    between. Both take ``.update(text)``.

    Use it instead of ``console.status``, whose spinner prints nothing off a terminal.
    """
    if not console.is_terminal:
        return LineStatus(message, console=console)
    return console.status(Text(message))


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

    console.print(
        f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False, markup=True
    )


def idle_seconds(value: float | None) -> float | None:
    """The ``--idle-exit`` callback of the worker and the card processor: seconds, 0 or
    more. nan never compared as reached (the consumer ran forever); a negative value
    exited before the first receive."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise typer.BadParameter(f"{value:g} is not a number of seconds (0 or more)")
    return value


def gave_up_without_model(idle_exit: float, models: Path, waiting: str, hint: str) -> NoReturn:
    """End a worker's or a processor's run that ``--idle-exit`` stopped without a usable
    model: one error line (the registry, what became of the work, the fix) and exit
    status 2, so a script or a CI job does not read the run as done."""
    error(
        f"stopped after --idle-exit {idle_exit:g} s without a usable model in {models}; "
        f"{waiting}: {hint}"
    )
    raise typer.Exit(code=2)


@contextmanager
def fail_cleanly() -> Iterator[None]:
    """Turn a :class:`FraudlensError` into a red message and exit code 2.

    So is an :class:`OSError` about a named path (an output file that is a folder), or
    about the disk (full, read-only, failing).

    So is a MemoryError (a size no machine holds), naming what could not be allocated.

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
    except MemoryError as exc:
        # A size past the memory the process may use (`cards simulate --terminals
        # 100000000` under `ulimit -v 4000000`): numpy says
        # how much it could not allocate, which is the useful line, not the traceback.
        error(f"{command_name()}: not enough memory ({exc or 'MemoryError'})")
        raise typer.Exit(code=2) from None


def cli_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Decorator form of :func:`fail_cleanly` for Typer commands."""
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> R:
        with fail_cleanly():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
