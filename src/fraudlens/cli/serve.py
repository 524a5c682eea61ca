"""``fraudlens serve`` (the HTTP scoring service) and ``fraudlens cards process``
(the card event processor)."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from fraudlens._io import resolve
from fraudlens.cli._common import (
    MAX_SEED,
    ModelDir,
    cli_errors,
    console,
    db_option,
    fraudlens_command,
    gave_up_without_model,
    idle_seconds,
    plural,
    registry_root,
    shell_path,
    working,
)
from fraudlens.config import get_settings
from fraudlens.errors import ConfigError

__all__ = ["in_container", "process", "serve"]

#: ``--limit-concurrency`` and ``--header-timeout`` defaults: those of
#: :mod:`fraudlens.service._protocol` (not imported here: it pulls in uvicorn).
DEFAULT_LIMIT_CONCURRENCY = 1000
HEADER_SECONDS = 10.0

#: Where SageMaker puts a model's artifacts inside a serving container.
SAGEMAKER_MODEL_DIR = Path("/opt/ml/model")


def in_container() -> bool:
    """True inside Docker/Podman (or when ``FRAUDLENS_IN_CONTAINER=1``)."""
    if os.environ.get("FRAUDLENS_IN_CONTAINER", "").lower() in ("1", "true", "yes"):
        return True
    return Path("/.dockerenv").exists() or Path("/run/.containerenv").exists()


def _default_host() -> str:
    # SageMaker starts a serving container as `docker run <image> serve` and expects the
    # service on 0.0.0.0:8080; anywhere else, stay on loopback unless told otherwise.
    if in_container() and len(sys.argv) > 1 and sys.argv[1] == "serve":
        return "0.0.0.0"
    return "127.0.0.1"


def _default_models_dir() -> Path:
    if "FRAUDLENS_MODELS_DIR" not in os.environ and in_container() and SAGEMAKER_MODEL_DIR.is_dir():
        return SAGEMAKER_MODEL_DIR
    return Path(get_settings().models_dir)


@cli_errors
def serve(
    host: Annotated[
        str | None,
        typer.Option(
            envvar="FRAUDLENS_HOST",
            help="Address to bind [default: 127.0.0.1; 0.0.0.0 for `serve` inside a container].",
            show_default=False,
        ),
    ] = None,
    port: Annotated[
        int, typer.Option(envvar="FRAUDLENS_PORT", min=1, max=65535, help="Port.")
    ] = 8080,
    model_dir: Annotated[
        Path | None,
        typer.Option(
            "--model-dir",
            "-m",
            help="Model registry [default: FRAUDLENS_MODELS_DIR, /opt/ml/model in a container, "
            "./models].",
            show_default=False,
        ),
    ] = None,
    # At most as many as `worker --concurrency`: --workers 100000 had started processes,
    # each loading the models, until the machine ran out of memory.
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
    sink: Annotated[
        str | None,
        typer.Option(
            help="Also write each /v1/cards/score row to this sink (folder or s3://...); "
            "one worker only.",
            show_default=False,
        ),
    ] = None,
    log_level: Annotated[
        str,
        typer.Option(help="uvicorn log level: critical, error, warning, info, debug or trace."),
    ] = "info",
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Database of risk events for /v1/risk-events and /review "
            "[default: FRAUDLENS_DATABASE_URL or sqlite:///fraudlens.db].",
            show_default=False,
        ),
    ] = None,
    queue: Annotated[
        str | None,
        typer.Option(
            "--queue",
            help="Queue that /v1/accounts/{id}/check sends to "
            "[default: FRAUDLENS_QUEUE_URL or sqlite].",
            show_default=False,
        ),
    ] = None,
    limit_concurrency: Annotated[
        int,
        typer.Option(
            "--limit-concurrency",
            min=1,
            help="Connections (and requests in hand) each worker process serves at once; "
            "a request beyond gets 503 with Retry-After.",
        ),
    ] = DEFAULT_LIMIT_CONCURRENCY,
    header_timeout: Annotated[
        float,
        typer.Option(
            "--header-timeout",
            min=0.1,
            max=3600.0,
            help="Seconds a client may take to send a request's headers (408 and closed "
            "beyond; idle connections are closed too).",
        ),
    ] = HEADER_SECONDS,
) -> None:
    """Run the scoring service: SageMaker /ping + /invocations, /v1 API, /metrics, /docs,
    and the analysts' review page at /review."""
    import uvicorn
    from uvicorn.config import LOG_LEVELS

    from fraudlens.service._protocol import guarded_protocol

    # uvicorn looks the name up as given: another ended in its KeyError traceback.
    log_level = log_level.strip().lower()
    if log_level not in LOG_LEVELS:
        raise typer.BadParameter(
            f"{log_level!r} is not a log level: give one of {', '.join(LOG_LEVELS)}",
            param_hint="'--log-level'",
        )
    # Through the environment, so uvicorn's worker processes see the same settings.
    for var, value in (("FRAUDLENS_DATABASE_URL", db), ("FRAUDLENS_QUEUE_URL", queue)):
        if value is not None:
            os.environ[var] = value
    get_settings.cache_clear()

    bind = host or _default_host()
    _check_bind_address(bind, port)
    # The service demands sign-in unless it binds to loopback only (FRAUDLENS_AUTH
    # overrides); through the environment, so worker processes decide the same.
    os.environ["FRAUDLENS_HOST"] = bind
    get_settings.cache_clear()
    models = resolve(registry_root(model_dir or _default_models_dir()).expanduser())
    if not models.is_dir():
        console.print(
            f"[yellow]no model registry at {escape(str(models))} yet:[/] /ping answers 503 "
            "until a model is trained there",
            soft_wrap=True,
            markup=True,
        )
    console.print(
        f"serving models from {models} on http://{bind}:{port} "
        f"(docs at /docs, review page at /review)"
    )
    _say_auth(bind, port)
    if sink is not None and workers > 1:
        raise typer.BadParameter("--sink needs --workers 1 (each sink folder has one writer)")
    # The same connection bounds in both modes: a header deadline (slowloris) and a cap
    # on connections per process; no WebSocket upgrades (the service has no such route).
    bounds = {
        "http": guarded_protocol(header_timeout, limit_concurrency),
        "ws": "none",
        "host": bind,
        "port": port,
        "log_level": log_level,
    }
    if workers == 1:
        from fraudlens.service.app import create_app
        from fraudlens.sinks import open_sink

        out = open_sink(sink) if sink is not None else None
        uvicorn.run(create_app(models_dir=models, sink=out), **bounds)
        return
    # Worker processes build their own app from the settings, so pass the folder by env.
    os.environ["FRAUDLENS_MODELS_DIR"] = str(models)
    uvicorn.run("fraudlens.service.app:create_app", factory=True, workers=workers, **bounds)


def _check_bind_address(bind: str, port: int) -> None:
    """ConfigError naming ``--host`` when ``bind`` is no address of this machine's
    resolver (``999.1.1.1``, ``a b``): uvicorn had printed the banner, then "ERROR:
    [Errno -2] Name or service not known" without the address, and exited 3."""
    import socket

    from fraudlens.errors import ConfigError

    try:
        socket.getaddrinfo(bind, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"--host {bind!r} is not an address to serve on: {reason}") from None


def _say_auth(bind: str, port: int) -> None:
    """Tell whether the service will demand sign-in, and how to get an identity."""
    from fraudlens.service._auth import auth_always

    settings = get_settings()
    if not auth_always(settings):
        why = (
            "FRAUDLENS_AUTH=off"
            if settings.auth == "off"
            else "bound to loopback only; FRAUDLENS_AUTH=on demands sign-in"
        )
        console.print(f"authentication is off ({why})", soft_wrap=True)
        return
    where = "127.0.0.1" if bind in ("0.0.0.0", "::") else bind
    # The commands name this service's store; its password, if any, is not printed.
    exe, (db, note) = fraudlens_command(), db_option(settings.database_url)
    console.print(
        f"authentication is on: analysts sign in at http://{where}:{port}/login; machines send "
        f"Authorization: Bearer TOKEN (`{exe} tokens create NAME{db}`{note})",
        soft_wrap=True,
        highlight=False,
        markup=False,
    )
    try:
        from fraudlens.store import open_store

        with open_store(settings.database_url) as store:
            if store.current_revision() is not None and not store.list_users():
                console.print(
                    "[yellow]no users yet:[/] add one with "
                    + escape(f"`{exe} users add NAME{db}`{note}"),
                    soft_wrap=True,
                    markup=True,
                    highlight=False,
                )
    except Exception:  # the store is the service's to report; this is only a hint
        pass


#: The shortest ``--every`` (seconds).
_MIN_EVERY_S = 1.0


def parse_duration(text: str) -> float:
    """Seconds in ``"90"``, ``"60s"``, ``"5m"`` or ``"1h"``; raises ConfigError otherwise."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    t = text.strip().lower()
    scale = units.get(t[-1:])
    number = t[:-1] if scale is not None else t
    try:
        value = float(number) * (scale or 1.0)
    except ValueError:
        raise ConfigError(f"--every {text!r}: use seconds (60), or 60s, 5m, 1h") from None
    if not value > 0 or value == float("inf"):  # nan and inf are no schedule
        raise ConfigError(f"--every {text!r} must be positive")
    # A shorter one re-reads the source back to back, a busy loop, not a schedule.
    if value < _MIN_EVERY_S:
        raise ConfigError(f"--every {text!r}: at least {_MIN_EVERY_S:g} s between passes")
    # A longer wait between passes overflows the platform's timeout (an OverflowError
    # traceback after the first pass).
    if value > threading.TIMEOUT_MAX:
        raise ConfigError(
            f"--every {text!r}: at most {threading.TIMEOUT_MAX:,.0f} s between passes "
            "(the longest wait this platform allows)"
        )
    return value


def _folders_to_make(target: str) -> list[Path]:
    """The folders a local sink at ``target`` will create (deepest first): none for a
    remote one or one that exists."""
    if "://" in target and not target.startswith("file://"):
        return []
    local = target.removeprefix("file://")
    if not local.strip():
        return []
    made, folder = [], Path(local).expanduser().absolute()
    while not folder.exists() and folder != folder.parent:
        made.append(folder)
        folder = folder.parent
    return made


@contextmanager
def _unmade_on_error(made: list[Path]) -> Iterator[None]:
    """On an error, remove the folders of ``made`` that the run left with nothing but an
    empty spool: a bad source, a missing model or history had left a new sink folder
    (and its hidden spool) behind, though nothing was written."""
    from fraudlens.sinks import SPOOL_NAME

    try:
        yield
    except BaseException:
        for folder in made:
            spool = folder / SPOOL_NAME
            try:
                if spool.is_file() and not spool.is_symlink() and spool.stat().st_size == 0:
                    spool.unlink()
                folder.rmdir()  # only when empty
            except OSError:
                break
        raise


@cli_errors
def process(
    source: Annotated[
        str,
        typer.Option(
            "--source",
            help="file:PATH (or a path), generate, generate:PATH, queue:URL, or queue "
            "(the FRAUDLENS_QUEUE_URL queue).",
        ),
    ],
    sink: Annotated[
        str | None,
        typer.Option(
            help="Folder or s3://bucket/prefix [default: FRAUDLENS_SINK or ./sink].",
            show_default=False,
        ),
    ] = None,
    model_dir: ModelDir = None,
    every: Annotated[
        str | None,
        typer.Option(
            help="Repeat a pass on a schedule: 60, 60s, 5m or 1h, at least 1 s (the reference: 1m)."
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=0, help="Stop after this many records.")] = None,
    # (no bound: the generate source made a pass's records at once, 2.9 GB a million,
    # and a SQLite queue's receive ended in an OverflowError traceback past 2**63)
    batch_size: Annotated[
        int, typer.Option(min=1, max=10_000, help="Records scored together.")
    ] = 500,
    history: Annotated[
        Path | None, typer.Option(help="Raw transactions preceding the source's (window features).")
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(min=0, max=MAX_SEED, help="Random seed of the generate source."),
    ] = None,
    queue_name: Annotated[str, typer.Option(help="Queue name for queue: sources.")] = "card-events",
    fmt: Annotated[str, typer.Option("--format", help="Sink object format: csv or jsonl.")] = "csv",
    max_seconds: Annotated[
        float, typer.Option(min=0.001, help="Flush the sink when its oldest record is this old.")
    ] = 60.0,
    metrics_port: Annotated[
        int,
        typer.Option(
            min=0,
            max=65535,
            help="Prometheus metrics port (0: off), fraudlens_processor_*; on 127.0.0.1.",
        ),
    ] = 0,
    idle_exit: Annotated[
        float | None,
        typer.Option(
            callback=idle_seconds,
            help="Consume a queue until it has been empty this many seconds, and exit "
            "after this long without a usable card model (records waiting for one stay "
            "queued; exit 2). Not with --every.",
        ),
    ] = None,
) -> None:
    """Score card transactions from a source and write them to a sink (Firehose-like).

    A file source resumes after the last row the sink accepted (a checkpoint kept with
    the sink), so an interrupted run can simply be started again.
    """
    import shlex

    from fraudlens.processor import ProcessorMetrics, ProcessStats, parse_source
    from fraudlens.processor import process as run
    from fraudlens.sinks import open_sink

    settings = get_settings()
    if source == "queue":
        source = f"queue:{settings.queue_url}"
    every_s = parse_duration(every) if every is not None else None
    target = sink or settings.sink
    models = registry_root(model_dir)
    # Logged while the card model is gone (at once, then every minute), and printed if
    # --idle-exit ends the wait for one: this installation's fraudlens and this registry.
    where = resolve(models.expanduser())
    exe, m = fraudlens_command(), shlex.quote(shell_path(where))
    hint = (
        f"`{exe} cards train --data FILE -m {m}` trains and activates one, "
        f"`{exe} models activate NAME VERSION -m {m}` activates one trained before"
    )
    if fmt not in ("csv", "jsonl"):
        raise typer.BadParameter("--format must be csv or jsonl")
    metrics = ProcessorMetrics()
    if metrics_port:
        metrics.serve(metrics_port)

    made = _folders_to_make(target)
    with working("scoring card records") as status, _unmade_on_error(made):

        def show(stats: ProcessStats) -> None:
            status.update(
                f"[bold]{stats.records:,}[/] scored, {stats.flagged:,} flagged, "
                f"{stats.dead_lettered:,} dead-lettered, {stats.rate:,.0f}/s, "
                f"pass {stats.passes + 1} ({', '.join(stats.models.values())})"
            )

        with open_sink(target, fmt=fmt, max_seconds=max_seconds) as out:  # type: ignore[arg-type]
            if out.recovered:
                console.print(f"recovered {plural(out.recovered, 'record')} from the sink spool")
            stats = run(
                source,
                out,
                models,
                every=every_s,
                limit=limit,
                batch_size=batch_size,
                history=history,
                seed=seed,
                queue_name=queue_name,
                on_batch=show,
                metrics=metrics,
                idle_exit=idle_exit,
                model_hint=hint,
            )
    if stats.resumed_from:
        console.print(f"resumed after row {stats.resumed_from:,} (the sink's checkpoint)")
    if stats.repeats:
        console.print(
            f"{plural(stats.repeats, 'queue message')} came back whose rows the sink already "
            "held: acked without writing them again"
        )
    if stats.outages:
        console.print(
            f"paused by {plural(stats.outages, 'outage')} for {stats.paused_seconds:.1f} s "
            f"in all; {plural(stats.released, 'record')} handed back and redone"
        )
    console.print(
        f"scored {plural(stats.records, 'record')} ({stats.flagged:,} flagged, "
        f"{stats.dead_lettered:,} dead-lettered) in {stats.seconds:.1f} s over "
        f"{plural(stats.passes, 'pass', 'passes')}; wrote {plural(len(out.written), 'object')} "
        f"to {target}"
    )
    for path in out.written[-5:]:
        console.print(f"  {path}")
    if stats.gave_up is not None:
        # --idle-exit spent without a model: the records wait, and the run did not do its
        # work (a script or CI job must not read it as done).
        assert idle_exit is not None
        waiting = {
            "queue": "the records stay queued for the next processor",
            "file": "a new run resumes after the last row the sink accepted",
            "generate": "no traffic was generated meanwhile",
        }[parse_source(source)[0]]
        gave_up_without_model(idle_exit, where, waiting, hint)
