"""The real-time pipeline's commands: ``fraudlens db ...``, ``enqueue`` and ``worker``."""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from fraudlens._io import resolve
from fraudlens.cli._common import (
    DbOpt,
    ModelDir,
    cli_errors,
    console,
    event_threshold_option,
    existing_database,
    fraudlens_command,
    gave_up_without_model,
    idle_seconds,
    lasting_url,
    plural,
    progress,
    registry_root,
    shell_path,
    working,
)
from fraudlens.config import get_settings

if TYPE_CHECKING:
    from fraudlens.consume import SharedHealth
    from fraudlens.worker import WorkerConfig, WorkerStats

__all__ = ["db_app", "enqueue", "worker"]

db_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None)

QueueOpt = Annotated[
    str | None,
    typer.Option(
        "--queue",
        help="Queue URL: sqlite[:///path], redis://host:port/db, sqs://name "
        "[default: FRAUDLENS_QUEUE_URL or sqlite].",
        show_default=False,
    ),
]
QueueNameOpt = Annotated[str, typer.Option(help="Queue name (SQLite and Redis).")]


def _db_url(db: str | None) -> str:
    return db or get_settings().database_url


def _queue_url(queue: str | None) -> str:
    return queue or get_settings().queue_url


def _existing_db(db: str | None) -> str:
    return existing_database(_db_url(db))


@db_app.command("upgrade")
@cli_errors
def db_upgrade(
    db: DbOpt = None,
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Create or migrate the tables (trades, klines, risk_events) with Alembic."""
    from fraudlens.store import open_store

    with open_store(lasting_url(_db_url(db), "database")) as store:
        before = store.current_revision()
        after = store.upgrade(revision)
        console.print(f"{store!r}: schema revision {before or '(none)'} -> {after}")


@db_app.command("status")
@cli_errors
def db_status(db: DbOpt = None) -> None:
    """Show the schema revision and the number of rows per table."""
    from fraudlens.store import open_store

    with open_store(_existing_db(db)) as store:
        current, head = store.current_revision(), store.head_revision()
        console.print(f"{store!r}: revision {current or '(none)'} (newest {head})")
        if current is not None:
            for table, n in store.counts().items():
                console.print(f"  {table:12s} {n:>12,}")


@db_app.command("load")
@cli_errors
def db_load(
    klines: Annotated[Path, typer.Option(help="k-lines file (CSV or Parquet).")],
    trades: Annotated[Path, typer.Option(help="Trades file (CSV or Parquet).")],
    db: DbOpt = None,
) -> None:
    """Validate and bulk-import k-lines and trades (rows already stored are kept)."""
    from fraudlens.market.data import load_klines, load_trades
    from fraudlens.store import open_store

    url = lasting_url(_db_url(db), "database")
    t0 = time.perf_counter()
    with working("reading and validating the files"):
        k = load_klines(klines)
        t = load_trades(trades, klines=k)
    with open_store(url) as store:
        store.require_schema()
        with progress() as bar:
            task = bar.add_task("k-lines", total=len(k))
            nk = store.load_klines(k, on_progress=lambda n: bar.advance(task, n))
            task = bar.add_task("trades", total=len(t))
            nt = store.load_trades(t, on_progress=lambda n: bar.advance(task, n))
    seconds = time.perf_counter() - t0
    console.print(
        f"loaded {nk:,} new k-lines (of {len(k):,}) and {nt:,} new trades (of {len(t):,}) "
        f"in {seconds:.1f} s"
    )


@db_app.command("events")
@cli_errors
def db_events(
    db: DbOpt = None,
    status: Annotated[str | None, typer.Option(help="open, confirmed or dismissed.")] = None,
    account: Annotated[str | None, typer.Option(help="Only this account.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Rows to show.")] = 20,
    csv_file: Annotated[
        Path | None,
        typer.Option(
            "--csv",
            help="Write the events to this CSV file for a spreadsheet instead of showing "
            "a table: every field of the service's export, text that a spreadsheet would "
            "run as a formula quoted.",
        ),
    ] = None,
) -> None:
    """List risk events, newest first."""
    from fraudlens._ids import id_problem
    from fraudlens.store import open_store

    # --account follows the id rule: one that is not UTF-8 or holds a control character is
    # refused (exit 2) before the database is read (its driver could not encode it).
    problem = id_problem(account) if account is not None else None
    if account is not None and problem is not None:
        # a byte that is not UTF-8 reaches Python as a lone surrogate (U+DC80-U+DCFF)
        raw = next((ord(ch) - 0xDC00 for ch in account if "\udc80" <= ch <= "\udcff"), None)
        if raw is not None:
            problem = f"is not UTF-8 text: byte 0x{raw:02X}"
        raise typer.BadParameter(f"the account id {problem}", param_hint="--account")
    with open_store(_existing_db(db)) as store:
        store.require_schema(upgrade_empty=False)
        items, total = store.list_risk_events(status=status, account_id=account, limit=limit)
    if csv_file is not None:
        from fraudlens._csvsafe import RISK_EVENT_COLUMNS, csv_chunks, risk_event_row
        from fraudlens._io import write_text_chunks

        header = [name for name, _key in RISK_EVENT_COLUMNS]
        write_text_chunks(csv_chunks(header, [[risk_event_row(e) for e in items]]), csv_file)
        console.print(
            f"wrote {plural(len(items), 'risk event')} (of {total:,}) to {shell_path(csv_file)}"
        )
        return
    table = Table(title=f"risk events ({len(items)} of {total:,})")
    for col in ("id", "account", "score", "status", "business", "window end", "model"):
        table.add_column(col)
    for e in items:
        table.add_row(
            str(e["id"]),
            e["account_id"],
            f"{e['score']:.3f}",
            e["status"],
            e["business_type"] or "",
            e["window_end"],
            e["model_version"],
        )
    console.print(table)


#: Longest line of an ``enqueue --file`` id file (ids are at most 64 characters; the
#: rest leaves room for blanks around them).
MAX_ID_LINE_CHARS = 256
#: Most lines (blank lines and the header included) ``enqueue --file`` reads.
MAX_ID_FILE_LINES = 1_000_000


def _account_file(file: Path) -> list[str]:
    """The account ids of a file, one a line (an ``account_id`` header line is skipped),
    or the ``account_id`` column of a CSV file whose header names it (``labels.csv``;
    each account once), each checked against the id rule; DataError naming the file and
    line otherwise. An empty file, or one with only a header row, is refused with the
    words every loader uses.

    The file is read a line at a time, and at most :data:`MAX_ID_FILE_LINES` lines of at
    most :data:`MAX_ID_LINE_CHARS` characters are read: ``/dev/zero``, a file with no line
    break or an endless stream of blank lines is refused at once instead of read forever.
    """
    from fraudlens._ids import check_id
    from fraudlens.errors import ConfigError, DataError

    if file.is_dir():
        raise DataError("is a folder, not a file", file=str(file))

    # Rows are numbered as in every other loader: after a header line (an account_id
    # header, or a CSV header naming it) the header is row 0 and the first id row 1; a
    # file of bare ids has no header, and its first line is row 1 (a CSV's rows had been
    # named by their line, one more than the market loaders say for the same labels.csv).
    header_line = 0

    def bad(message: str, no: int) -> DataError:
        return DataError(message, file=str(file), row=no - header_line, column="account_id")

    ids = []
    # The account_id column's position when the first line is a CSV header (a CSV row
    # used to be queued whole as one account id, header included).
    column: int | None = None
    seen_text = False
    try:
        # Universal newlines (\n, \r\n, \r); bytes that are not UTF-8 are kept as
        # surrogates so that the first one can be named with its line.
        with open(file, encoding="utf-8-sig", errors="surrogateescape") as f:
            for no in range(1, MAX_ID_FILE_LINES + 2):
                line = f.readline(MAX_ID_LINE_CHARS + 1)
                if not line:
                    break
                if no > MAX_ID_FILE_LINES:
                    raise bad(
                        f"more than {MAX_ID_FILE_LINES:,} lines; split the file and "
                        "enqueue each part",
                        no,
                    )
                if len(line) > MAX_ID_LINE_CHARS and not line.endswith("\n"):
                    raise bad(
                        f"the line is longer than {MAX_ID_LINE_CHARS} characters (account "
                        "ids are at most 64): is this a file of account ids, one a line?",
                        no,
                    )
                undecodable = next((ch for ch in line if "\udc80" <= ch <= "\udcff"), None)
                if undecodable is not None:
                    raise bad(
                        f"the file is not UTF-8 text: byte 0x{ord(undecodable) - 0xDC00:02X}; "
                        "save the file as UTF-8",
                        no,
                    )
                text = line.strip()
                if not text:
                    continue
                if not seen_text:
                    seen_text = True
                    if "," in text:
                        names = [c.strip() for c in next(csv.reader([text]))]
                        header_line = no
                        if "account_id" not in names:
                            raise bad(
                                "a CSV header without an account_id column: give a file "
                                "of account ids, one a line, or a CSV with an account_id "
                                "column",
                                no,
                            )
                        column = names.index("account_id")
                        continue
                    if text == "account_id":
                        header_line = no
                        continue
                if column is not None:
                    fields = next(csv.reader([text]))
                    if len(fields) <= column:
                        raise bad(
                            f"{len(fields)} values; the header names account_id as value "
                            f"{column + 1}",
                            no,
                        )
                    text = fields[column].strip()
                if text != "account_id":
                    ids.append(
                        check_id(text, column="account_id", file=str(file), row=no - header_line)
                    )
    except OSError as exc:
        raise ConfigError(f"cannot read {file}: {exc}") from None
    if not ids:
        from fraudlens._csvread import EMPTY_FILE, NO_DATA_ROWS

        raise DataError(NO_DATA_ROWS if seen_text else EMPTY_FILE, file=str(file))
    # A CSV repeats an account on each of its rows (trades.csv): each is checked once.
    return list(dict.fromkeys(ids)) if column is not None else ids


@cli_errors
def enqueue(
    account_ids: Annotated[
        list[str] | None, typer.Argument(help="Accounts to check.", show_default=False)
    ] = None,
    all_accounts: Annotated[
        bool, typer.Option("--all", help="Every account with trades in the database.")
    ] = False,
    file: Annotated[
        Path | None,
        typer.Option(
            help="A file with one account id per line, or a CSV file with an account_id column."
        ),
    ] = None,
    business_type: Annotated[
        str | None, typer.Option(help="Why the check is asked for (e.g. withdrawal).")
    ] = None,
    queue: QueueOpt = None,
    queue_name: QueueNameOpt = "checks",
    db: DbOpt = None,
) -> None:
    """Queue account checks for the worker."""
    from fraudlens._ids import check_id
    from fraudlens.checks import check_message
    from fraudlens.queues import open_queue

    queue_url = lasting_url(_queue_url(queue), "queue")
    # Every id is checked before anything is sent: a bad id on line 600 used to leave the
    # first 500 queued.
    ids = [check_id(a, column="account_id", row=k + 1) for k, a in enumerate(account_ids or [])]
    if file is not None:
        ids += _account_file(file)
    if all_accounts:
        from fraudlens.store import open_store

        with open_store(_existing_db(db)) as store:
            store.require_schema(upgrade_empty=False)
            ids += store.account_ids()
    if not ids:
        raise typer.BadParameter("give account ids, --file or --all")
    with open_queue(queue_url, name=queue_name) as q, progress() as bar:
        task = bar.add_task("enqueue", total=len(ids))
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            q.send_batch([check_message(a, business_type) for a in chunk])
            bar.advance(task, len(chunk))
    console.print(f"queued {plural(len(ids), 'check')} on {_queue_url(queue)} ({queue_name})")


@cli_errors
def worker(
    queue: QueueOpt = None,
    db: DbOpt = None,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
    model_dir: ModelDir = None,
    model: Annotated[str, typer.Option(help="Model name or domain.")] = "market",
    threshold: Annotated[float | None, event_threshold_option("--threshold")] = None,
    # (no bound: 99999999999999999999999 ended a SQLite queue's receive in an
    # OverflowError traceback, and each message of a batch is held at once)
    batch_size: Annotated[
        int, typer.Option(min=1, max=10_000, help="Messages worked together.")
    ] = 100,
    # At most SQS's own bound, 12 h: inf ended a Redis or SQS receive in an OverflowError
    # traceback, and 1e20 had Redis refuse every receive, read as an outage for ever.
    visibility_timeout: Annotated[
        float,
        typer.Option(min=1.0, max=43_200.0, help="Seconds a received batch stays leased."),
    ] = 60.0,
    queue_name: QueueNameOpt = "checks",
    max_attempts: Annotated[
        int, typer.Option(min=1, help="Deliveries before a message is dead-lettered.")
    ] = 5,
    metrics_port: Annotated[
        int,
        typer.Option(
            min=0,
            max=65535,
            help="Prometheus metrics port (0: off); on 127.0.0.1, or 0.0.0.0 in a container.",
        ),
    ] = 9108,
    idle_exit: Annotated[
        float | None,
        typer.Option(
            callback=idle_seconds,
            help="Exit after the queue has been empty, or the worker without a usable "
            "model, this many seconds (checks waiting for a model stay queued; exit 2).",
        ),
    ] = None,
) -> None:
    """Work account checks from the queue: score the last 24 h, write risk events.

    Stops on SIGTERM or Ctrl-C after finishing the batch in hand.
    """
    import shlex

    from fraudlens.store import open_store
    from fraudlens.worker import WorkerConfig

    queue_url, db_url = _queue_url(queue), _db_url(db)
    models = resolve(registry_root(model_dir).expanduser())
    # Logged while there is no usable model (at start, then every minute), and printed if
    # --idle-exit ends the wait for one: this installation's fraudlens and this registry.
    exe, m = fraudlens_command(), shlex.quote(shell_path(models))
    hint = (
        f"`{exe} market train --data DIR -m {m}` trains and activates one, "
        f"`{exe} models activate NAME VERSION -m {m}` activates one trained before"
    )
    # The parent migrates an empty embedded database before any worker starts, so the
    # processes never race to create the tables.
    with open_store(db_url) as store:
        store.require_schema()
    console.print(
        f"worker x{concurrency}: {queue_url} ({queue_name}) -> {db_url}, models {models}"
        + (f", metrics on :{metrics_port}/metrics" if metrics_port else "")
    )
    config = WorkerConfig(
        queue_url=queue_url,
        db_url=db_url,
        models_dir=models,
        queue_name=queue_name,
        max_attempts=max_attempts,
        model=model,
        threshold=threshold,
        batch_size=batch_size,
        visibility_timeout=visibility_timeout,
        idle_exit=idle_exit,
        model_hint=hint,
    )
    if concurrency == 1:
        all_stats = [_run_one(config, metrics_port)]
    else:
        from fraudlens.worker import run_workers

        folder = _multiprocess_metrics() if metrics_port else None

        def serve(health: SharedHealth) -> None:
            # /metrics gathered from the processes' files; /healthz 503 while any live
            # process is paused by an outage (or starting, or dead), with what and why
            if folder is not None:
                _serve_multiprocess_metrics(folder, metrics_port, health)

        try:
            all_stats = run_workers(config, concurrency, on_start=serve)
        finally:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
    processed = sum(s.processed for s in all_stats)
    flagged = sum(s.flagged for s in all_stats)
    seconds = max((s.seconds for s in all_stats), default=0.0)
    console.print(
        f"processed {plural(processed, 'check')} ({flagged:,} flagged, "
        f"{plural(sum(s.written for s in all_stats), 'new risk event')}, "
        f"{plural(sum(s.failed for s in all_stats), 'failed attempt')}, "
        f"{sum(s.dead_lettered for s in all_stats):,} dead-lettered) in {seconds:.1f} s"
    )
    outages = sum(s.outages for s in all_stats)
    if outages:
        console.print(
            f"paused by {plural(outages, 'outage')} for "
            f"{sum(s.paused_seconds for s in all_stats):.1f} s in all; "
            f"{plural(sum(s.released for s in all_stats), 'message')} handed back unspent"
        )
    cut = sum(s.cut for s in all_stats)
    if cut:
        from fraudlens.consume import cut_after

        console.print(
            f"cut the store's connections {plural(cut, 'time')}: a call had not returned in "
            f"{cut_after(config.visibility_timeout):g} s (a server that stopped answering "
            "without closing them)"
        )
    gave_up = next((s.gave_up for s in all_stats if s.gave_up), None)
    if gave_up is not None:
        # --idle-exit spent without a model: the checks are still queued, and the run
        # did not do its work (a script or CI job must not read it as done).
        assert idle_exit is not None
        gave_up_without_model(idle_exit, models, "the checks stay queued for the next worker", hint)


def _run_one(config: WorkerConfig, metrics_port: int) -> WorkerStats:
    from fraudlens.worker import Worker, WorkerMetrics, work

    metrics = WorkerMetrics()

    def serve(worker: Worker) -> None:
        # /metrics and /healthz (503 with the reason while the store is down)
        metrics.serve(metrics_port, addr=_metrics_host(), health=worker.consumer.health)

    on_start = serve if metrics_port else None
    if not console.is_terminal:
        # Under a supervisor (a container, systemd) there is no one to watch a spinner,
        # and its refresh thread would compete with the checks for the interpreter.
        return work(config, metrics=metrics, on_batch=_log_every(60.0), on_start=on_start)
    with working("waiting for checks...") as status:

        def show(s: WorkerStats) -> None:
            status.update(
                f"[bold]{s.processed:,}[/] {'check' if s.processed == 1 else 'checks'}, "
                f"{s.flagged:,} flagged, {s.failed:,} failed, {s.dead_lettered:,} dead-lettered, "
                f"{s.rate:,.0f}/s"
            )

        return work(config, metrics=metrics, on_batch=show, on_start=on_start)


def _log_every(seconds: float) -> Callable[[WorkerStats], None]:
    """A batch callback that prints the counts at most once per ``seconds``."""
    last = [time.monotonic()]

    def log(s: WorkerStats) -> None:
        now = time.monotonic()
        if now - last[0] >= seconds:
            last[0] = now
            console.print(
                f"{plural(s.processed, 'check')}, {s.flagged:,} flagged, {s.failed:,} failed, "
                f"{s.dead_lettered:,} dead-lettered"
            )

    return log


def _metrics_host() -> str:
    # Inside a container the scraper is outside it; elsewhere stay on loopback.
    from fraudlens.cli.serve import in_container

    return "0.0.0.0" if in_container() else "127.0.0.1"


def _multiprocess_metrics() -> str:
    """Make the folder the worker processes write their metrics to (prometheus-client
    multiprocess mode) and name it in the environment they inherit; return it."""
    folder = tempfile.mkdtemp(prefix="fraudlens-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    return folder


def _serve_multiprocess_metrics(folder: str, port: int, health: SharedHealth) -> None:
    """Serve the worker processes' metrics (collected from ``folder``) on ``/metrics``
    and their health, the worst live process's, on ``/healthz``."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    from fraudlens.consume import serve_metrics

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=folder)
    try:
        serve_metrics(registry, port, _metrics_host(), health)
    except OSError as exc:
        console.print(f"[yellow]metrics not exported on :{port}: {escape(str(exc))}", markup=True)
