"""Card event processor: score card transactions from a source and write them to a sink.

The reference system fires a function every minute that picks a transaction, scores it
and puts a CSV line ``timestamp, id, source, prediction`` (later with metadata and an
anomaly score) to a Firehose stream landing in S3. :func:`process` does the same job
without the cloud: it reads records from a source, scores each through the one scoring
path (:func:`fraudlens.scoring.score_cards`) with the registry's card classifier (and the
anomaly model when the registry has one) and writes one row per record to a
:class:`~fraudlens.sinks.Sink`.

It runs on the same consumer loop as the account-check worker
(:class:`fraudlens.consume.Consumer`): the same classification of failures, back-off,
outage handling, Prometheus metrics (``fraudlens_processor_*``) and signal handling.

Sources
-------
``file:PATH`` (or just a path)
    A CSV or Parquet card table: the ULB table, a feature table with the model's columns,
    or raw transactions (``transaction_id, ts, customer_id, terminal_id, amount``). Raw
    transactions get their window features from the whole file (it is its own history,
    and the features never look ahead), plus the ``history=`` file if one is given.
    **Checkpointed**: each batch is put to the sink together with the file's position
    (the SHA-256 of the file and the next row), durable in the same fsync as the rows
    (see :mod:`fraudlens.sinks`). A run on the same file and sink resumes after the last
    row the sink accepted, so ``kill -9`` and a restart leave every row in the sink exactly
    once. A file whose content changed starts from its first row.
``generate`` or ``generate:PATH``
    Replays traffic like the reference's generator: samples rows of ``PATH`` (any table
    above) or, without a path, of a small simulated card history; gives each a fresh id
    and timestamp and a random channel ``source`` (Mobile, Web or Store). A pass makes
    ``batch_size`` records (or what is left of ``limit``).
``queue:URL``
    Messages of :func:`fraudlens.queues.open_queue` ``(URL, name=queue_name)``. A body is
    the record itself, or holds it under ``"record"`` or ``"transaction"`` (other
    top-level keys such as ``source`` are kept). A record is a feature row (every feature
    the models need) or a raw transaction. A message is acked only after the sink accepted
    its row (with a durable sink: spooled to disk; otherwise the sink is flushed first).
    **Exactly once with a durable sink** (one with a spool, see :mod:`fraudlens.sinks`):
    every put carries, as the queue's checkpoint, the ids of the messages whose rows the
    sink accepted and whose ack the queue has not confirmed yet, durable in the same
    fsync as the rows. A message received again whose id is among them (after a
    ``kill -9`` between the put and the ack, or an ack lost with the queue's server) is
    acked without being scored or written again (counted in ``ProcessStats.repeats``).
    The id is the one that stays the same across deliveries: the SQLite row id, the
    Redis stream entry id, the SQS MessageId (not the receipt handle, new with every
    receive). Confirmed acks drop their ids (recorded with the next put, or at the end of
    the run); so does a receive that finds the queue empty a lease
    (``visibility_timeout``, the same across runs) after an id was taken (an ack that
    went through unconfirmed, or a message the queue lost, does not come back). The
    checkpoint keeps when the ids were taken (Unix time), so a restarted processor ages
    the ids of the run before it from then, by the wall clock, not from its own start:
    those of a run killed after an ack go with the first such receive of the next run,
    however short that run is. In normal running the set holds one batch; it never
    holds more than
    :data:`MAX_UNACKED` ids (the oldest go first, with a warning). One processor per
    sink folder (the spool's lock) and per queue: a message a second processor takes
    over after a lease is written by both. A sink without a spool is flushed before each
    ack: at least once (a crash between the flush and the ack writes the batch again). A
    record that cannot be scored (missing fields, values that are not numbers, bad
    timestamp, an id with control characters) is dead-lettered with a reason naming the
    field. Every field is bounded: ``transaction_id``, ``customer_id`` and
    ``terminal_id`` follow the id rule (:mod:`fraudlens._ids`: a string or an integer of
    1 to 64 characters, no control or invisible character), ``source`` is a string of at
    most :data:`MAX_SOURCE_LENGTH` characters under the same rule, ``ts`` an ISO-8601
    text of at most :data:`MAX_TS_LENGTH`, numbers are JSON numbers or numeric text of
    at most 64 characters (never ``true``/``false``). A reason repeats at most 80
    characters of any value (:func:`fraudlens._echo.clip_echoes`).

Outages
-------
A sink that cannot write (disk full, folder gone, object store down) or a model that
cannot be loaded pauses the processor: the batch is handed back (queue messages without
spending an attempt, file rows from the last checkpoint), ``fraudlens_processor_healthy``
drops to 0, and it probes with back-off until it can write again.

No card model at the start is an error (:class:`~fraudlens.errors.ModelNotFoundError`).
One that goes later (the registry emptied, the active version broken: found at a pass's
start, or at a queue batch, whose models are resolved per batch like the worker's) is an
outage too: the processor logs a warning naming the registry and what to run, at once
and then once a minute (:data:`~fraudlens.consume.NO_MODEL_WARN_SECONDS`), and waits;
with ``idle_exit`` that wait counts as idle, as the worker's does: after ``idle_exit``
seconds without a usable model the run ends (:attr:`ProcessStats.gave_up`), the records
not scored still queued and none written.

Raw transactions and history
----------------------------
Customer and terminal window features look back up to 30 days (plus a 7-day label delay).
For a file, the file is the history. For streamed raw records the processor keeps the raw
transactions it has scored, trimmed to the longest look-back, and prepends the
``history=`` file when one is given. Without a history file, the first streamed records
see only each other: counts and averages are lower than in training until the processor
has run for the length of the windows. Labels arrive late or never on a stream, so the
terminal risk features only count the frauds present in the history file. Feature rows
(e.g. ULB) need no history.

Scheduling and stopping
-----------------------
With ``every``, a pass starts every ``every`` seconds (a queue pass drains what is
visible, a file pass scores the rows not yet scored, a generate pass makes one batch)
until ``limit`` records are done, ``stop_event`` is set, or SIGTERM/SIGINT arrives (when
called from the main thread). With ``idle_exit`` instead, a queue is consumed
continuously, as the worker consumes checks, until it has been empty that long.
Stopping finishes the batch in flight and flushes the sink;
a second SIGINT interrupts at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fraudlens._echo import clip_echoes
from fraudlens._ids import MAX_ID_LENGTH, bad_ids, id_problem
from fraudlens._io import missing
from fraudlens._time import utcnow
from fraudlens.consume import (
    MAX_REASON_CHARS,
    NO_MODEL_WARN_SECONDS,
    BatchResult,
    Consumer,
    ConsumerMetrics,
    ConsumerStats,
    NoModelWarning,
    stop_on_signals,
    work_isolated,
)
from fraudlens.errors import ConfigError, DataError, ModelNotFoundError, UnavailableError
from fraudlens.queues import Message
from fraudlens.sinks import Sink, open_sink

if TYPE_CHECKING:
    from fraudlens._detector import Detector
    from fraudlens.model_cache import ModelCache
    from fraudlens.queues import Queue

__all__ = [
    "CHANNELS",
    "OUTPUT_COLUMNS",
    "ProcessStats",
    "ProcessorMetrics",
    "parse_source",
    "process",
]

log = logging.getLogger(__name__)

#: Channels the traffic generator assigns, as in the reference system.
CHANNELS = ("Mobile", "Web", "Store")
#: Leading columns of every output row; metadata columns follow when known.
OUTPUT_COLUMNS = (
    "timestamp",
    "transaction_id",
    "source",
    "prediction",
    "score",
    "anomaly_score",
)
_META_COLUMNS = ("customer_id", "terminal_id", "amount", "transaction_ts")
_RAW_REQUIRED = ("transaction_id", "ts", "customer_id", "terminal_id", "amount")
#: Longest ``source`` (channel) of a queued record; it is written to the sink as is.
MAX_SOURCE_LENGTH = 64
#: Longest value of a text feature in a queued record (a transaction type, say).
MAX_TEXT_VALUE = 256
#: Longest ``ts`` text of a queued record (ISO-8601 with nanoseconds and a zone is 35).
MAX_TS_LENGTH = 64
#: Most ids of queue messages written but not acked that a durable sink keeps: one
#: batch at a time in normal running; more only while acks fail (see :func:`process`).
MAX_UNACKED = 20_000
# Longest look-back of the window features: 30-day window + 7-day label delay, + slack.
_HISTORY_SPAN = pd.Timedelta(days=38)


class ProcessorMetrics(ConsumerMetrics):
    """Prometheus metrics of the card processor: the consumer loop's metrics named
    ``fraudlens_processor_*`` (records by outcome, latency, batch time, health)."""

    def __init__(self, registry: Any = None) -> None:
        super().__init__("fraudlens_processor", registry)


@dataclass
class ProcessStats:
    """What a :func:`process` run did.

    ``records`` are rows written to the sink; ``dead_lettered`` counts every queue message
    moved to the dead-letter store (the queue's own moves included); ``resumed_from`` is
    the row a file source resumed at from its checkpoint (None: it started at the top);
    ``repeats`` are queue messages acked without being written, their rows being in the
    sink already (a lost ack, a restart).
    """

    records: int = 0
    flagged: int = 0
    batches: int = 0
    passes: int = 0
    dead_lettered: int = 0
    failed: int = 0
    released: int = 0
    outages: int = 0
    paused_seconds: float = 0.0
    resumed_from: int | None = None
    repeats: int = 0
    seconds: float = 0.0
    models: dict[str, str] = field(default_factory=dict)
    objects: list[str] = field(default_factory=list)
    #: Why the run ended with records left to score (``idle_exit`` spent without a usable
    #: model), else None.
    gave_up: str | None = None

    @property
    def rate(self) -> float:
        """Records per second."""
        return self.records / self.seconds if self.seconds > 0 else 0.0


def parse_source(source: str) -> tuple[str, str | None]:
    """Split a source string into ``(kind, argument)``.

    ``file:PATH`` or a bare path -> ``("file", PATH)``; ``generate[:PATH]`` ->
    ``("generate", PATH | None)``; ``queue:URL`` -> ``("queue", URL)``.

    Raises
    ------
    ConfigError
        For an empty or unknown source.
    """
    s = source.strip()
    if not s:
        raise ConfigError("empty source; use file:PATH, generate[:PATH] or queue:URL")
    if s == "generate":
        return "generate", None
    for kind in ("file", "generate", "queue"):
        if s.startswith(kind + ":"):
            arg = s[len(kind) + 1 :]
            if not arg:
                raise ConfigError(f"source {source!r} needs a value after '{kind}:'")
            return kind, arg
    if "://" not in s:
        return "file", s
    raise ConfigError(f"unknown source {source!r}; use file:PATH, generate[:PATH] or queue:URL")


# --------------------------------------------------------------------------- models


class _Models:
    """The classifier and the anomaly model, re-resolved from the registry every pass
    (and every batch of a queue).

    ``hint`` says what to run to get a usable model and ``waiting`` what becomes of the
    records meanwhile, for the warning logged while there is none (at once, then every
    :data:`~fraudlens.consume.NO_MODEL_WARN_SECONDS`).
    """

    def __init__(self, cache: ModelCache, hint: str | None = None) -> None:
        self.cache = cache
        self.classifier: Detector | None = None
        self.anomaly: Detector | None = None
        self.hint = hint or (
            f"`fraudlens cards train --data FILE -m {cache.root}` trains and activates one"
        )
        self.waiting = "the records wait"
        self._no_model = NoModelWarning(log)

    def refresh(self) -> None:
        self.classifier = self.cache.find("cards-classifier")
        self.anomaly = self.cache.find("cards-anomaly")
        if self.classifier is None and self.anomaly is None:
            raise ModelNotFoundError(
                f"no card model in registry {self.cache.root}; "
                f"train one with `fraudlens cards train --data FILE -m {self.cache.root}`"
            )

    def refresh_or_unavailable(self) -> None:
        """:meth:`refresh`, with any failure reported as a model outage (and warned
        about: where the models are looked for and what to run)."""
        try:
            self.refresh()
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            # NO_MODEL_WARN_SECONDS is read here at each warning (tests shorten it).
            self._no_model.warn(
                NO_MODEL_WARN_SECONDS,
                "no usable card model in the registry %s (%s); %s, none scored and none "
                "lost, until one is active: %s",
                self.cache.root,
                reason,
                self.waiting,
                self.hint,
            )
            raise UnavailableError(
                f"card models in {self.cache.root} cannot be used: {reason}", what="model"
            ) from exc
        self._no_model.usable()

    def _named(self, attr: str) -> set[str]:
        """The feature names keyed in the models' ``attr`` (a dict per model)."""
        models = (det for det in (self.classifier, self.anomaly) if det is not None)
        return {str(c) for det in models for c in getattr(det, attr, {})}

    @property
    def text_features(self) -> set[str]:
        """Features the models read as text (text columns of their training tables, dates
        among them)."""
        return self._named("categories_") | self._named("dates_")

    @property
    def blank_features(self) -> set[str]:
        """Numeric features that may be blank (blanks in the models' training rows)."""
        return self._named("fill_")

    @property
    def clock(self) -> dict[str, Any] | None:
        """The time column whose hour of the day a model reads (``cards train
        --time-of-day``), as ``{"column", "unit"}``, or None."""
        models = (det for det in (self.classifier, self.anomaly) if det is not None)
        return next((c for det in models if (c := getattr(det, "clock_", None))), None)

    @property
    def features(self) -> list[str]:
        names: dict[str, None] = {}
        for det in (self.classifier, self.anomaly):
            if det is not None:
                names.update(dict.fromkeys(det.feature_names_))  # type: ignore[attr-defined]
        return list(names)

    def versions(self) -> dict[str, str]:
        from fraudlens.scoring import model_id

        return {
            role: model_id(det)
            for role, det in (("classifier", self.classifier), ("anomaly", self.anomaly))
            if det is not None
        }

    def rows(self, X: pd.DataFrame, meta: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Score ``X`` through the one scoring path; one output row per record."""
        from fraudlens.scoring import score_cards

        # Flagged records carry their top reasons (a few rows: cheap).
        scored = score_cards(self.classifier, X, anomaly=self.anomaly, explain="flagged", top=3)
        now = utcnow().isoformat(timespec="milliseconds")
        version = ",".join(self.versions().values())
        score = scored.scores
        anomaly = scored.anomaly_scores
        flags = scored.flagged
        rows = []
        for i, m in enumerate(meta):
            row: dict[str, Any] = {
                "timestamp": now,
                "transaction_id": m.get("transaction_id"),
                "source": m.get("source"),
                "prediction": int(flags[i]),
                "score": None if score is None else float(score[i]),
                "anomaly_score": None if anomaly is None else float(anomaly[i]),
            }
            for col in _META_COLUMNS:
                if col in m:
                    row[col] = m[col]
            if "replayed_from" in m:
                row["replayed_from"] = m["replayed_from"]
            if scored.explanations is not None and scored.explanations[i]:
                row["reasons"] = json.dumps(scored.explanations[i])
            row["model"] = version
            row["threshold"] = scored.threshold
            rows.append(row)
        return rows


# --------------------------------------------------------------------------- tables


def _read_any(path: str) -> pd.DataFrame:
    p = Path(path)
    if not p.is_file():
        # (the market loader's words: a folder, or a pipe or a device that may never end)
        what = "is a folder, not a file" if p.is_dir() else "not a regular file"
        raise DataError(what if p.exists() else missing(p, "no such file"), file=path)
    from fraudlens._csvread import READ_ERRORS, check_header, read_csv, read_error, read_parquet

    check_header(p)  # the card loader's checks: header, compression bombs, Parquet footer
    try:
        if p.name.lower().endswith((".parquet", ".pq")):
            return read_parquet(p)
        return read_csv(p, low_memory=False)
    except READ_ERRORS as exc:
        # The card loader's words: empty file, not UTF-8 (with row and column), bad or
        # truncated file.
        raise read_error(p, exc) from None


def _table(
    df: pd.DataFrame, features: Sequence[str], source: str, clock: dict[str, Any] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate ``df`` and return (model features, validated frame) for its rows; with
    ``clock`` (:attr:`_Models.clock`), the hour of the day of its time column is built
    as the model's feature."""
    from fraudlens.cards.data import HOUR_OF_DAY, RAW_COLUMNS, ULB_FEATURES, validate_frame

    cols = set(map(str, df.columns))
    if set(ULB_FEATURES) <= cols and set(features) <= set(ULB_FEATURES):
        keep = [c for c in (*ULB_FEATURES, "transaction_id") if c in cols]
        table = validate_frame(df[keep], "ulb", source)
    elif set(RAW_COLUMNS[:-1]) <= cols and not set(features) <= cols:
        keep = [c for c in RAW_COLUMNS if c in cols]
        table = validate_frame(df[keep], "raw", source)
    else:
        tcol = None if clock is None else str(clock["column"])
        tod = None if tcol is None else f"{tcol}{HOUR_OF_DAY}"
        missing = [c for c in features if c not in cols and not (c == tod and tcol in cols)]
        if missing:
            raise DataError(
                f"missing feature column ({len(missing)} of the {len(features)} the model needs); "
                f"or give raw transactions ({', '.join(RAW_COLUMNS[:-1])})",
                file=source,
                row=0,
                column=missing[0],
            )
        # The hour of the day the model reads, from the time column.
        timed = tod in features and tod not in cols
        clocked = (tcol,) if timed else ()
        keep = list(
            dict.fromkeys(c for c in (*features, *clocked, "transaction_id", "ts") if c in cols)
        )
        table = validate_frame(
            df[keep],
            "features",
            source,
            time_column=tcol if timed else None,
            time_unit=float(clock["unit"]) if clock is not None and timed else 1.0,
            time_of_day=timed,
        )
    X = table.X
    missing = [c for c in features if c not in X.columns]
    if missing:
        raise DataError(
            f"the table has no feature {missing[0]!r} that the model needs",
            file=source,
            column=missing[0],
        )
    return X.loc[:, list(features)], table.frame


def _raw_features(batch: pd.DataFrame, history: pd.DataFrame | None) -> pd.DataFrame:
    """Window features of ``batch`` rows computed over ``history`` + ``batch``."""
    from fraudlens.cards.features import transaction_features

    cols = ["ts", "customer_id", "terminal_id", "amount", "label"]
    part = batch.reindex(columns=cols)
    # Ids are compared as text: a history file may read them as numbers, a queue as strings.
    for col in ("customer_id", "terminal_id"):
        part[col] = part[col].astype(str)
    if history is None or history.empty:
        return transaction_features(part).reset_index(drop=True)
    both = pd.concat([history.reindex(columns=cols), part], ignore_index=True)
    X = transaction_features(both)
    return X.iloc[len(history) :].reset_index(drop=True)


def _meta(
    frame: pd.DataFrame, original: pd.DataFrame, default_source: str, file: str | None = None
) -> list[dict[str, Any]]:
    n = len(frame)
    if "transaction_id" in frame.columns:
        ids = frame["transaction_id"].astype(str).to_numpy()
    else:
        ids = np.arange(1, n + 1).astype(str)  # 1-based data row, as in error messages
    out: dict[str, Any] = {"transaction_id": ids}
    src = original["source"] if "source" in original.columns else None
    if src is not None:
        text = src.fillna(default_source).astype(str)
        # A file's source column is written to the sink as is: the queue's bound on it.
        bad = bad_ids(text, max_length=MAX_SOURCE_LENGTH) | (text == "").to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            problem = id_problem(text.iloc[i], max_length=MAX_SOURCE_LENGTH)
            raise DataError(f"source {problem}", file=file, row=i + 1, column="source")
    out["source"] = text.to_numpy() if src is not None else [default_source] * n
    for col in ("customer_id", "terminal_id"):
        if col in frame.columns:
            out[col] = frame[col].astype(str).to_numpy()
    for col in ("amount", "Amount"):
        if col in frame.columns:
            out["amount"] = frame[col].to_numpy(dtype=np.float64)
            break
    if "ts" in frame.columns:
        ts = pd.to_datetime(frame["ts"], utc=True)
        out["transaction_ts"] = [t.isoformat() for t in ts]
    keys = list(out)
    return [{k: out[k][i] for k in keys} for i in range(n)]


class _Generator:
    """A pool of scorable rows to replay as fresh traffic."""

    def __init__(self, path: str | None, models: _Models, seed: int | None) -> None:
        self.rng = np.random.default_rng(seed)
        if path is not None:
            df = _read_any(path)
            self.X, frame = _table(df, models.features, path, models.clock)
            self.meta = _meta(frame, df.reset_index(drop=True), "file", path)
            return
        from fraudlens.cards.features import transaction_features
        from fraudlens.cards.simulate import simulate

        sim = simulate(
            200,
            400,
            45,
            seed=0 if seed is None else seed,
            compromised_terminals_per_day=1,
            compromised_customers_per_day=1,
        )
        X = transaction_features(sim)
        missing = [c for c in models.features if c not in X.columns]
        if missing:
            raise DataError(
                f"the card model needs column {missing[0]!r}, which simulated raw transactions "
                "do not have; give a table to replay with generate:PATH",
                column=missing[0],
            )
        # Replay only rows whose 30-day windows are full, as a live system would see.
        ok = (sim["ts"] >= sim["ts"].min() + pd.Timedelta(days=30)).to_numpy()
        self.X = X.loc[ok, models.features].reset_index(drop=True)
        self.meta = _meta(
            sim.loc[ok].reset_index(drop=True), sim.loc[ok].reset_index(drop=True), ""
        )

    def batch(self, n: int) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
        idx = self.rng.integers(0, len(self.X), size=n)
        channels = self.rng.choice(CHANNELS, size=n)
        meta = []
        for i, ch in zip(idx, channels, strict=True):
            m = dict(self.meta[int(i)])
            m["replayed_from"] = m.pop("transaction_id")
            m["transaction_id"] = uuid.uuid4().hex
            m["source"] = str(ch)
            m.pop("transaction_ts", None)
            meta.append(m)
        return self.X.iloc[idx].reset_index(drop=True), meta


def _record_of(body: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    for key in ("record", "transaction"):
        inner = body.get(key)
        if isinstance(inner, dict):
            outer = {k: v for k, v in body.items() if k != key}
            return inner, outer
    return dict(body), {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    if isinstance(value, str) and len(value) > 64:
        return None  # no number is written with more characters
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int past 1e308
        return None
    return x if np.isfinite(x) else None


def _ts(value: Any) -> pd.Timestamp | None:
    """An ISO-8601 text as a UTC timestamp, else None (:func:`fraudlens.cards.data.
    one_timestamp`)."""
    from fraudlens.cards.data import one_timestamp

    return one_timestamp(value, MAX_TS_LENGTH)


def _shown(value: Any) -> str:
    """A message value as a reason quotes it: scalars by repr (cut later by
    :func:`clip_echoes`), containers by their kind only."""
    if isinstance(value, str):
        return repr(value[: 2 * MAX_TS_LENGTH])
    if value is None or isinstance(value, bool | int | float):
        return (
            repr(value) if not isinstance(value, int) or abs(value) < 10**30 else "a huge integer"
        )
    return f"a {type(value).__name__}"


def _text_problem(record: Mapping[str, Any], field: str, max_length: int) -> str | None:
    """Why ``record[field]`` is not an acceptable id (or text of at most ``max_length``
    characters), or None. Ids may be integers (the reference's ids are numbers)."""
    value = record[field]
    if isinstance(value, bool) or not isinstance(value, str | int):
        return f"field {field!r}: must be a string, not {_shown(value)}"
    if isinstance(value, int) and abs(value) >= 10**max_length:
        return f"field {field!r}: the number has more than {max_length} digits"
    problem = id_problem(str(value), max_length=max_length)
    return None if problem is None else f"field {field!r}: {field} {problem}"


def _problem(
    record: dict[str, Any],
    outer: Mapping[str, Any],
    features: Sequence[str],
    text: Collection[str] = (),
    blank: Collection[str] = (),
) -> tuple[str | None, str]:
    """Why a queued message cannot be scored (None if it can), and its record's kind: the
    record's fields, then the envelope's. The reason repeats at most
    :data:`fraudlens._echo.MAX_ECHO_CHARS` characters of any value of the message.
    ``text``: features the models read as text; ``blank``: features that may be null."""
    problem, kind = _check(record, features, text, blank)
    if problem is None:
        problem = _check_outer(record, outer)
    return (None if problem is None else clip_echoes(problem, MAX_REASON_CHARS)), kind


def _check_outer(record: Mapping[str, Any], outer: Mapping[str, Any]) -> str | None:
    """Why the envelope's fields (``source``, an outer ``transaction_id``) are not
    acceptable, or None."""
    for where in (outer, record):
        if "source" in where and where["source"] is not None:
            problem = _text_problem(where, "source", MAX_SOURCE_LENGTH)
            if problem is not None:
                return problem
    if "transaction_id" not in record and outer.get("transaction_id") is not None:
        return _text_problem(outer, "transaction_id", MAX_ID_LENGTH)
    return None


def _check(
    record: dict[str, Any],
    features: Sequence[str],
    text: Collection[str] = (),
    blank: Collection[str] = (),
) -> tuple[str | None, str]:
    """Why a queued record cannot be scored (None if it can), and its kind. The caller
    cuts the reason with :func:`fraudlens._echo.clip_echoes` before recording it."""
    if all(c in record for c in features):
        for c in features:
            value = record[c]
            if c in text:
                # A level of a text column (a number or null reads as one too).
                if isinstance(value, str) and len(value) > MAX_TEXT_VALUE:
                    return (
                        f"field {c!r}: text of {len(value):,} characters (at most "
                        f"{MAX_TEXT_VALUE})",
                        "features",
                    )
                if value is None or isinstance(value, str | bool) or _number(value) is not None:
                    continue
                return f"field {c!r}: {_shown(value)} is not text", "features"
            if value is None and c in blank:
                continue
            if _number(value) is None:
                return f"field {c!r}: {_shown(value)} is not a finite number", "features"
        if record.get("transaction_id") is not None:
            problem = _text_problem(record, "transaction_id", MAX_ID_LENGTH)
            if problem is not None:
                return problem, "features"
        if record.get("ts") is not None and _ts(record["ts"]) is None:
            return f"field 'ts': {_shown(record['ts'])} is not an ISO-8601 timestamp", "features"
        return None, "features"
    if all(c in record for c in _RAW_REQUIRED):
        for c in ("transaction_id", "customer_id", "terminal_id"):
            if record[c] is None or (isinstance(record[c], str) and record[c].strip() == ""):
                return f"field {c!r}: missing value", "raw"
            problem = _text_problem(record, c, MAX_ID_LENGTH)
            if problem is not None:
                return problem, "raw"
        amount = _number(record["amount"])
        if amount is None or amount < 0:
            return f"field 'amount': {_shown(record['amount'])} is not a number >= 0", "raw"
        if _ts(record["ts"]) is None:
            return f"field 'ts': {_shown(record['ts'])} is not an ISO-8601 timestamp", "raw"
        return None, "raw"
    missing = [c for c in features if c not in record]
    missing_raw = [c for c in _RAW_REQUIRED if c not in record]
    return (
        f"missing field {missing[0]!r} ({len(missing)} of the model's {len(features)} "
        f"features missing) and not a raw transaction (missing {missing_raw[0]!r})",
        "",
    )


def _load_history(path: str | os.PathLike[str] | None) -> pd.DataFrame | None:
    if path is None:
        return None
    from fraudlens.cards.data import validate_frame

    table = validate_frame(_read_any(str(path)), "raw", str(path))
    cols = ["ts", "customer_id", "terminal_id", "amount"] + (
        ["label"] if table.label_column else []
    )
    frame = table.frame.loc[:, cols].copy()
    if table.label_column and table.label_column != "label":
        frame["label"] = table.frame[table.label_column]
    for col in ("customer_id", "terminal_id"):
        frame[col] = frame[col].astype(str)
    return frame


# --------------------------------------------------------------------------- sources


def _row_message(row: int) -> Message:
    return Message(str(row), {"row": row}, 1, "")


class _RowSource:
    """Prepared rows (a file, or a generated batch) shaped like a queue.

    A message is one row; ``receive`` hands out the next rows. Rows handed back by
    ``release`` (an outage) are handed out again. There is nowhere to dead-letter a row
    of a file: a row that fails is an error naming it.
    """

    def __init__(
        self, name: str, X: pd.DataFrame, meta: list[dict[str, Any]], start: int, stop: int
    ):
        self.name = name
        self.X = X
        self.meta = meta
        self.cursor = start
        self.stop = stop
        self.on_dead_letter: Callable[[str], None] | None = None

    def receive(
        self, max_messages: int = 10, *, visibility_timeout: float = 30.0, wait: float = 0.0
    ) -> list[Message]:
        end = min(self.stop, self.cursor + max(1, max_messages))
        msgs = [_row_message(i) for i in range(self.cursor, end)]
        self.cursor = end
        return msgs

    def ack_many(self, msgs: Iterable[Message]) -> None:
        pass  # the checkpoint went to the sink with the rows

    def release(self, msgs: Iterable[Message], *, delay: float = 0.0, reason: str = "") -> int:
        rows = [int(m.id) for m in msgs]
        if rows:
            self.cursor = min(self.cursor, min(rows))
        return len(rows)

    def nack(self, msg: Message, *, reason: str = "", delay: float = 0.0) -> None:
        self.dead_letter(msg, reason)

    def dead_letter(self, msg: Message, reason: str) -> None:
        raise DataError(f"{self.name}: row {int(msg.id) + 1} could not be scored: {reason}")

    def depth(self) -> int:
        return self.stop - self.cursor


def _digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- handlers


class _Handler:
    """Shared part of the processor's handlers: score, put to the sink, report."""

    def __init__(self, models: _Models, sink: Sink, *, ack_needs_flush: bool) -> None:
        self.models = models
        self.sink = sink
        # Queue messages may only be acked once their rows survive a crash: with a sink
        # that has no spool, that means written out in an object.
        self.ack_needs_flush = ack_needs_flush and not sink.durable
        self.records = 0
        self.flagged = 0

    def handle(self, msgs: Sequence[Message]) -> BatchResult:
        """Work one batch (each kind of source has its own)."""
        raise NotImplementedError

    def warm_up(self) -> None:
        """Load the models before the first batch (UnavailableError if they cannot be)."""
        self.models.refresh_or_unavailable()

    def probe(self) -> None:
        """Raise UnavailableError until the models load and the sink can write."""
        self.models.refresh_or_unavailable()
        try:
            self.sink.probe()
        except OSError as exc:
            raise UnavailableError(
                f"sink {self.sink.target} cannot write: {exc}", what="sink"
            ) from exc

    def _put(
        self, X: pd.DataFrame, meta: Sequence[Mapping[str, Any]], checkpoint: dict[str, Any] | None
    ) -> int:
        rows = self.models.rows(X, meta)
        try:
            self.sink.put_many(rows, checkpoint=checkpoint)
            if self.ack_needs_flush:
                self.sink.flush()
        except OSError as exc:
            raise UnavailableError(
                f"sink {self.sink.target} cannot write: {exc}", what="sink"
            ) from exc
        flagged = sum(r["prediction"] for r in rows)
        self.records += len(rows)
        self.flagged += flagged
        return flagged


class _RowHandler(_Handler):
    """Rows of a :class:`_RowSource`; a file's position rides with each put."""

    def __init__(
        self, models: _Models, sink: Sink, source: _RowSource, key: str | None, digest: str | None
    ):
        super().__init__(models, sink, ack_needs_flush=False)
        self.source = source
        self.key = key
        self.digest = digest

    def handle(self, msgs: Sequence[Message]) -> BatchResult:
        rows = [int(m.id) for m in msgs]
        X = self.source.X.iloc[rows[0] : rows[-1] + 1].reset_index(drop=True)
        meta = self.source.meta[rows[0] : rows[-1] + 1]
        checkpoint = None
        if self.key is not None:
            checkpoint = {
                self.key: {"sha256": self.digest, "offset": rows[-1] + 1, "rows": self.source.stop}
            }
        flagged = self._put(X, meta, checkpoint)
        return BatchResult(done=list(msgs), flagged=flagged, written=len(msgs))


class _QueueHandler(_Handler):
    """Card records from queue messages; bad ones are dead-lettered with the reason.

    With a durable sink, the stable ids of the messages whose rows the sink accepted but
    whose ack is not confirmed yet ride with every put as the queue's checkpoint (durable
    in the same fsync as the rows). A message received again whose id is among them is
    acked without being scored or written again.
    """

    def __init__(
        self,
        models: _Models,
        sink: Sink,
        history: pd.DataFrame | None,
        queue: Queue,
        visibility_timeout: float,
    ) -> None:
        super().__init__(models, sink, ack_needs_flush=True)
        self.history = history
        # Checkpoint key of this queue in the sink; None without a spool (flush, then ack).
        self.key = _queue_key(queue) if sink.durable else None
        self.visibility_timeout = visibility_timeout
        self.queue = queue
        # Which copy of the queue the ids below belong to (Queue.incarnation).
        self.incarnation = queue.incarnation
        # Stable ids accepted by the sink, ack not confirmed, oldest first; each with the
        # time (monotonic) from which its lease runs at the latest.
        self.unacked: dict[str, float] = {}
        # Whether ``unacked`` differs from what the sink last recorded.
        self.dirty = False
        #: Messages acked without scoring: their rows were in the sink already.
        self.repeats = 0
        if self.key is not None:
            saved = sink.checkpoint(self.key)
            if (
                isinstance(saved, dict)
                and isinstance(saved.get("unacked"), list)
                and saved["unacked"]
                and saved.get("incarnation", self.incarnation) != self.incarnation
            ):
                # The queue's storage was made anew since (a SQLite file deleted and made
                # again): its ids start over and name other messages; acking those as
                # repeats would lose them.
                log.warning(
                    "%d unacked message id(s) of %s belong to an earlier copy of the queue "
                    "(made anew since): not kept",
                    len(saved["unacked"]),
                    self.key,
                )
                self.dirty = True
            elif isinstance(saved, dict) and isinstance(saved.get("unacked"), list):
                self.unacked = _unacked_from(saved)
                if self.unacked:
                    log.info(
                        "%d message(s) of %s were written before a lost ack: "
                        "acked without writing them again if they come back",
                        len(self.unacked),
                        self.key,
                    )

    def acked(self, msgs: Sequence[Message]) -> None:
        """The queue confirmed these acks: their ids need no longer be kept."""
        for msg in msgs:
            if (sid := msg.key) is not None and sid in self.unacked:
                del self.unacked[sid]
                self.dirty = True

    def drained(self, msgs: Sequence[Message]) -> None:
        """A receive returned fewer messages than asked (``msgs``): no other message was
        visible. An id held for longer than a lease is not coming back (its ack went
        through though not confirmed, or the queue lost it): it need no longer be kept."""
        if not self.unacked:
            return
        back = {m.key for m in msgs}
        due = time.monotonic() - self.visibility_timeout * 1.1 - 0.5
        gone = [sid for sid, since in self.unacked.items() if since < due and sid not in back]
        for sid in gone:
            del self.unacked[sid]
        if gone:
            self.dirty = True
            log.info("%d unacked message id(s) did not come back after a lease: dropped", len(gone))

    def settle(self) -> None:
        """Record the ids still unacked (the acks confirmed since the last put are
        dropped) before the sink is flushed at the end of a run."""
        if self.key is None or not self.dirty:
            return
        try:
            self.sink.put_many([], checkpoint=self._checkpoint())
            self.dirty = False
        except (OSError, ConfigError) as exc:
            # The set on disk is a superset: acked ids come back only if reused, which
            # the backends' ids never are.
            log.warning("unacked message ids not updated in the sink: %s", exc)

    def _checkpoint(self) -> dict[str, Any] | None:
        if self.key is None:
            return None
        return {self.key: _unacked_record(self.unacked.items(), self.incarnation)}

    def handle(self, msgs: Sequence[Message]) -> BatchResult:
        # The models of each batch, as the worker's: a version activated meanwhile is
        # used, and a registry emptied meanwhile is an outage (the batch handed back).
        self.models.refresh_or_unavailable()
        if self.key is not None and self.queue.incarnation != self.incarnation:
            # The queue followed its storage made anew (a SQLite file replaced): the ids
            # kept are of the old one, and the same ids name other messages now.
            if self.unacked:
                log.warning(
                    "the queue %s was made anew: %d unacked message id(s) of the old one dropped",
                    self.key,
                    len(self.unacked),
                )
                self.unacked.clear()
                self.dirty = True
            self.incarnation = self.queue.incarnation
        from fraudlens.cards.data import with_clock

        result = BatchResult()
        features = self.models.features
        good: list[tuple[Message, dict[str, Any], dict[str, Any], str]] = []
        seen: set[str] = set()
        for msg in msgs:
            if self.key is not None:
                sid = msg.key
                if sid is not None and (sid in self.unacked or sid in seen):
                    # Its rows are in the sink already (a lost ack, a restart): ack only.
                    result.done.append(msg)
                    self.repeats += 1
                    continue
                if sid is not None:
                    seen.add(sid)
            record, outer = _record_of(msg.body)
            record, problem = with_clock(record, self.models.clock)
            if problem is None:
                problem, kind = _problem(
                    record, outer, features, self.models.text_features, self.models.blank_features
                )
            else:
                problem = clip_echoes(problem, MAX_REASON_CHARS)
            if problem is not None:
                result.invalid.append((msg, problem))
            else:
                good.append((msg, record, outer, kind))
        if good:
            work_isolated(good, lambda items: self._work(items, result), _first, result)
        return result

    def _work(
        self,
        items: Sequence[tuple[Message, dict[str, Any], dict[str, Any], str]],
        result: BatchResult,
    ) -> None:
        features = self.models.features
        parts: list[tuple[pd.DataFrame, list[dict[str, Any]]]] = []
        feat = [(r, o) for _, r, o, k in items if k == "features"]
        raw = [(r, o) for _, r, o, k in items if k == "raw"]
        frame = None
        if feat:
            text = self.models.text_features

            def value(r: Mapping[str, Any], c: str) -> Any:
                if c in text:
                    return r[c]
                return np.nan if r[c] is None else float(r[c])

            X = pd.DataFrame([[value(r, c) for c in features] for r, _ in feat], columns=features)
            parts.append((X, [_queue_meta(r, o) for r, o in feat]))
        if raw:
            frame = pd.DataFrame(
                {
                    "ts": pd.DatetimeIndex([_ts(r["ts"]) for r, _ in raw]),
                    "customer_id": [str(r["customer_id"]) for r, _ in raw],
                    "terminal_id": [str(r["terminal_id"]) for r, _ in raw],
                    "amount": [float(r["amount"]) for r, _ in raw],
                    "label": [np.nan] * len(raw),
                }
            )
            X = _raw_features(frame, self.history).loc[:, features]
            parts.append((X, [_queue_meta(r, o) for r, o in raw]))
        X = pd.concat([p[0] for p in parts], ignore_index=True) if len(parts) > 1 else parts[0][0]
        meta = [m for p in parts for m in p[1]]
        checkpoint = None
        new: list[str] = []
        if self.key is not None:
            new = [
                sid
                for sid in (m.key for m, *_ in items)
                if sid is not None and sid not in self.unacked
            ]
            self._bound(len(new))
            # Taken now at the latest: their leases ran from their receive, before this.
            now = time.monotonic()
            checkpoint = {
                self.key: _unacked_record(
                    [*self.unacked.items(), *((sid, now) for sid in new)], self.incarnation
                )
            }
        flagged = self._put(X, meta, checkpoint)
        if checkpoint is not None:
            self.unacked.update(dict.fromkeys(new, now))
            self.dirty = False
        if frame is not None:
            self._remember(frame)
        # The rows are accepted (spooled, or written out): the loop may ack now.
        result.done.extend(m for m, *_ in items)
        result.flagged += flagged
        result.written += len(meta)

    def _bound(self, adding: int) -> None:
        """Keep at most :data:`MAX_UNACKED` ids: the oldest go first (with a warning)."""
        over = len(self.unacked) + adding - MAX_UNACKED
        if over <= 0:
            return
        log.warning(
            "%d unacked message id(s) of %s forgotten (more than %d kept): "
            "should they come back, they are written again",
            over,
            self.key,
            MAX_UNACKED,
        )
        for sid in list(self.unacked)[:over]:
            del self.unacked[sid]

    def _remember(self, frame: pd.DataFrame) -> None:
        both = (
            frame if self.history is None else pd.concat([self.history, frame], ignore_index=True)
        )
        latest = both["ts"].max()
        self.history = both[both["ts"] >= latest - _HISTORY_SPAN].reset_index(drop=True)


def _first(item: tuple[Message, dict[str, Any], dict[str, Any], str]) -> Message:
    return item[0]


def _unacked_record(
    items: Iterable[tuple[str, float]], incarnation: str | None = None
) -> dict[str, Any]:
    """The sink checkpoint of unacked ids (oldest first, each with the monotonic time it
    was taken by): ``{"unacked": [id, ...], "taken": [[unix_time, count], ...]}``, the
    times of consecutive ids taken together given once, in Unix seconds (rounded up to
    the millisecond: never older than they are) so that a later process can age them,
    and the queue's ``incarnation`` the ids belong to (when it has one)."""
    ids: list[str] = []
    taken: list[list[float | int]] = []
    offset = time.time() - time.monotonic()
    last: float | None = None
    for sid, since in items:
        ids.append(sid)
        if since == last:
            taken[-1][1] += 1
        else:
            taken.append([math.ceil((since + offset) * 1000) / 1000, 1])
            last = since
    record: dict[str, Any] = {"unacked": ids, "taken": taken}
    if incarnation is not None:
        record["incarnation"] = incarnation
    return record


def _unacked_from(saved: Mapping[str, Any]) -> dict[str, float]:
    """The unacked ids of a sink checkpoint, each with the monotonic time it was taken by:
    read from the saved Unix times (:func:`_unacked_record`; a time in the future counts
    as now), or now for a checkpoint without them (their leases ran from before this
    process started at the latest)."""
    ids = [str(i) for i in saved["unacked"]]
    now, wall = time.monotonic(), time.time()
    taken = saved.get("taken")
    since: list[float] = []
    if isinstance(taken, list):
        for group in taken:
            if not (
                isinstance(group, list)
                and len(group) == 2
                and isinstance(group[0], int | float)
                and not isinstance(group[0], bool)
                and math.isfinite(group[0])
                and isinstance(group[1], int)
                and not isinstance(group[1], bool)
                and group[1] > 0
            ):
                since = []
                break
            since.extend([now - max(0.0, wall - group[0])] * group[1])
    if len(since) != len(ids):
        since = [now] * len(ids)
    return dict(zip(ids, since, strict=True))


def _queue_key(queue: Queue) -> str:
    """The sink checkpoint key of a queue: what names it, without credentials."""
    return f"queue:{queue.identity}"


class _AckedQueue:
    """A queue that tells the handler which acks the queue confirmed (a failed ack is
    owed by the consumer loop and tells it later, or never)."""

    def __init__(self, queue: Queue, handler: _QueueHandler) -> None:
        self.queue = queue
        self.handler = handler
        self.name = queue.name

    @property
    def on_dead_letter(self) -> Callable[[str], None] | None:
        return self.queue.on_dead_letter

    @on_dead_letter.setter
    def on_dead_letter(self, hook: Callable[[str], None] | None) -> None:
        self.queue.on_dead_letter = hook

    def receive(
        self, max_messages: int = 10, *, visibility_timeout: float = 30.0, wait: float = 0.0
    ) -> list[Message]:
        msgs = self.queue.receive(max_messages, visibility_timeout=visibility_timeout, wait=wait)
        if len(msgs) < max_messages:
            self.handler.drained(msgs)
        return msgs

    def ack_many(self, msgs: Iterable[Message]) -> None:
        todo = list(msgs)
        self.queue.ack_many(todo)
        self.handler.acked(todo)

    def nack(self, msg: Message, *, reason: str = "", delay: float = 0.0) -> None:
        self.queue.nack(msg, reason=reason, delay=delay)

    def release(self, msgs: Iterable[Message], *, delay: float = 0.0, reason: str = "") -> int:
        return self.queue.release(msgs, delay=delay, reason=reason)

    def dead_letter(self, msg: Message, reason: str) -> None:
        self.queue.dead_letter(msg, reason)

    def ping(self) -> None:
        self.queue.ping()

    def depth(self) -> int:
        return self.queue.depth()


def _queue_meta(record: dict[str, Any], outer: dict[str, Any]) -> dict[str, Any]:
    # Every value here passed _check and _check_outer: ids, bounded texts, numbers.
    tid = record.get("transaction_id")
    if tid is None:
        tid = outer.get("transaction_id")
    source = outer.get("source")
    if source is None:
        source = record.get("source")
    m: dict[str, Any] = {
        "transaction_id": "" if tid is None else str(tid),
        "source": "queue" if source is None else str(source),
    }
    for col in ("customer_id", "terminal_id"):
        if col in record:
            m[col] = str(record[col])
    for col in ("amount", "Amount"):
        if col in record:
            m["amount"] = _number(record[col])
            break
    if isinstance(record.get("ts"), str):
        m["transaction_ts"] = record["ts"]
    return m


# --------------------------------------------------------------------------- main loop


def process(
    source: str,
    sink: Sink | str | os.PathLike[str],
    models_dir: str | os.PathLike[str],
    *,
    every: float | None = None,
    limit: int | None = None,
    batch_size: int = 500,
    stop_event: threading.Event | None = None,
    history: str | os.PathLike[str] | None = None,
    seed: int | None = None,
    visibility_timeout: float = 60.0,
    queue_name: str = "card-events",
    handle_signals: bool = True,
    on_batch: Callable[[ProcessStats], None] | None = None,
    metrics: ProcessorMetrics | None = None,
    pause_cap: float = 10.0,
    idle_exit: float | None = None,
    model_hint: str | None = None,
) -> ProcessStats:
    """Score card records from ``source`` and write one row per record to ``sink``.

    Each row holds ``timestamp`` (scoring time, UTC ISO-8601), ``transaction_id``,
    ``source`` (channel), ``prediction`` (0/1: the flag of the one flag rule), ``score``
    (classifier probability), ``anomaly_score``, then ``customer_id``, ``terminal_id``,
    ``amount`` and ``transaction_ts`` when known, ``reasons`` on flagged records (the
    classifier's top 3 features, JSON: see :mod:`fraudlens.cards.explain`), ``model``
    (the versions that scored it) and ``threshold`` (the model's own, which the
    prediction used).

    Parameters
    ----------
    source
        ``file:PATH``, ``generate``, ``generate:PATH`` or ``queue:URL`` (see the module
        documentation).
    sink
        An open :class:`~fraudlens.sinks.Sink` (flushed at the end, left open), or a
        target for :func:`~fraudlens.sinks.open_sink` (opened and closed here).
    models_dir
        Model registry; a newly activated version is picked up at the next pass.
    every
        Seconds between pass starts; ``None`` runs one pass (a queue pass drains the queue).
    limit
        Stop after this many scored records.
    batch_size
        Records scored together (and, for ``generate``, records per pass); at most the
        sink's ``max_records`` for a file or a queue with a durable sink, so a batch and
        its checkpoint stay one object.
    stop_event
        Set it to stop after the batch in flight.
    history
        Raw transactions that precede the source's, for window features of raw records.
    seed
        Random seed of the ``generate`` source.
    visibility_timeout
        Lease of queue messages, in seconds; longer than a batch takes to score. Keep it
        the same across restarts: ids of messages written but not acked are dropped once
        the queue is found empty a lease after they were taken.
    queue_name
        Name of the queue inside the backend (``queue:`` sources).
    handle_signals
        Stop cleanly on SIGTERM/SIGINT (only when called from the main thread).
    on_batch
        Called with the running stats after each batch (progress display).
    metrics
        Prometheus metrics to update (``fraudlens_processor_*``), if any.
    pause_cap
        Longest wait between probes while the sink or the model is unavailable.
    idle_exit
        Seconds, as the worker's: a ``queue:`` source is consumed continuously (not
        drained once) until it has been empty this long; and in any pass, this long
        without a usable card model (the registry emptied or its model broken after
        the start) ends the run with :attr:`ProcessStats.gave_up` set, the records not
        scored still queued (a file's rows: after the sink's checkpoint). None: a pass
        drains its source, and a missing model is waited for however long. Not with
        ``every``.
    model_hint
        What to run to get a usable card model, for the warning logged (at once, then
        once a minute) while there is none (default: ``fraudlens cards train``).

    Returns
    -------
    ProcessStats

    Raises
    ------
    ConfigError
        Bad source or arguments.
    DataError
        A file source that breaks the card data contract (file, row, column named).
    ModelNotFoundError
        No card model in the registry (at the start; one that goes later is waited for).
    """
    kind, arg = parse_source(source)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if idle_exit is not None and not (math.isfinite(idle_exit) and idle_exit >= 0):
        raise ConfigError(f"idle_exit must be a number of seconds (0 or more), got {idle_exit}")
    if idle_exit is not None and every is not None:
        raise ConfigError(
            "idle_exit (--idle-exit) consumes the source until it has been idle that long; "
            "every (--every) runs passes on a schedule: give one or the other"
        )
    if limit is not None and limit < 0:
        raise ConfigError(f"limit must be >= 0, got {limit}")
    if every is not None and every < 0:
        raise ConfigError(f"every must be >= 0 seconds, got {every}")
    from fraudlens.model_cache import ModelCache

    models = _Models(ModelCache(models_dir, check_seconds=0.0), model_hint)
    models.waiting = {
        "queue": "the records stay queued",
        "file": "the file's rows wait (a new run resumes from the sink's checkpoint)",
        "generate": "no traffic is generated",
    }[kind]
    # No model at the start is a mistake to fix now; one that goes later is waited for.
    models.refresh()
    hist = _load_history(history)
    own_sink = not isinstance(sink, Sink)
    out = sink if isinstance(sink, Sink) else open_sink(sink)
    stop = stop_event or threading.Event()
    stats = ProcessStats()
    started = time.monotonic()
    written_before = len(out.written)
    generator: _Generator | None = None
    queue: Queue | None = None
    queue_handler: _QueueHandler | None = None
    if kind == "file":
        # A batch and its checkpoint go to the sink as one unit, in one object.
        batch_size = min(batch_size, out.max_records)
    try:
        with stop_on_signals(stop, enabled=handle_signals):
            if kind == "queue":
                from fraudlens.queues import open_queue

                assert arg is not None
                queue = open_queue(arg, name=queue_name)
                queue_handler = _QueueHandler(models, out, hist, queue, visibility_timeout)
                queue_source = _AckedQueue(queue, queue_handler)
                if queue_handler.key is not None:
                    # A put and its checkpoint (the unacked ids) stay one object.
                    batch_size = min(batch_size, out.max_records)
            while not stop.is_set():
                pass_start = time.monotonic()
                if stats.passes and not _models_back(
                    models, out, stats, metrics, stop, pause_cap, idle_exit
                ):
                    break
                stats.models = models.versions()
                left = None if limit is None else max(0, limit - stats.records)
                if left == 0:
                    break
                if kind == "queue":
                    assert queue is not None
                    src: Any = queue_source
                    handler: Any = queue_handler
                elif kind == "file":
                    assert arg is not None
                    src, handler = _file_pass(arg, models, hist, out, left, stats)
                else:
                    if generator is None:
                        generator = _Generator(arg, models, seed)
                    n = batch_size if left is None else min(batch_size, left)
                    X, meta = generator.batch(n)
                    src = _RowSource("generated traffic", X, meta, 0, len(X))
                    handler = _RowHandler(models, out, src, None, None)
                _run_pass(
                    src,
                    handler,
                    kind,
                    stats,
                    batch_size,
                    left,
                    visibility_timeout,
                    metrics,
                    stop,
                    pause_cap,
                    on_batch,
                    started,
                    idle_exit,
                )
                if queue is not None:
                    queue.on_dead_letter = None  # the next pass's loop counts its own
                stats.passes += 1
                if stats.gave_up is not None:
                    break
                if every is None or (limit is not None and stats.records >= limit):
                    break
                stop.wait(max(0.0, pass_start + every - time.monotonic()))
    finally:
        try:
            if queue_handler is not None:
                queue_handler.settle()
                stats.repeats = queue_handler.repeats
            if own_sink:
                out.close()
            else:
                out.flush()
        finally:
            if queue is not None:
                queue.close()
    stats.seconds = time.monotonic() - started
    stats.objects = list(out.written[written_before:])
    return stats


def _file_pass(
    path: str,
    models: _Models,
    hist: pd.DataFrame | None,
    out: Sink,
    left: int | None,
    stats: ProcessStats,
) -> tuple[_RowSource, _RowHandler]:
    df = _read_any(path)
    X, frame = _table(df, models.features, path, models.clock)
    if hist is not None and "customer_id" in frame.columns and "ts" in frame.columns:
        X = _raw_features(frame, hist).loc[:, models.features]
    meta = _meta(frame, df.reset_index(drop=True), "file", path)
    key = f"file:{Path(path).resolve()}"
    digest = _digest(path)
    start = 0
    saved = out.checkpoint(key)
    if isinstance(saved, dict) and saved.get("sha256") == digest:
        start = min(int(saved.get("offset", 0)), len(X))
        if start:
            log.info("%s: resuming at row %d of %d (checkpoint)", path, start + 1, len(X))
            if stats.resumed_from is None:
                stats.resumed_from = start
    elif saved is not None:
        log.info("%s changed since its checkpoint: starting from its first row", path)
    stop = len(X) if left is None else min(len(X), start + left)
    src = _RowSource(f"file {path}", X, meta, start, stop)
    return src, _RowHandler(models, out, src, key, digest)


def _run_pass(
    src: Any,
    handler: _Handler,
    kind: str,
    stats: ProcessStats,
    batch_size: int,
    left: int | None,
    visibility_timeout: float,
    metrics: ProcessorMetrics | None,
    stop: threading.Event,
    pause_cap: float,
    on_batch: Callable[[ProcessStats], None] | None,
    started: float,
    idle_exit: float | None = None,
) -> None:
    from fraudlens.queues import SQLiteQueue

    consumer = Consumer(
        src,
        handler,
        batch_size=batch_size,
        visibility_timeout=visibility_timeout,
        poll=kind != "queue" or isinstance(getattr(src, "queue", src), SQLiteQueue),
        wait=0.0,
        pause_cap=pause_cap,
        metrics=metrics,
        stop_event=stop,
    )
    records0, flagged0 = stats.records, stats.flagged
    handled0, marked0 = handler.records, handler.flagged

    def progress(_c: Any) -> None:
        stats.records = records0 + handler.records - handled0
        stats.flagged = flagged0 + handler.flagged - marked0
        stats.models = handler.models.versions()
        stats.batches += 1
        stats.seconds = time.monotonic() - started
        if on_batch is not None:
            on_batch(stats)

    # With idle_exit a queue is consumed until it has been empty that long (the worker's
    # loop); a file or a generated batch is finite either way. In both, idle_exit spent
    # without a usable model ends the run, the records handed back still queued.
    c = consumer.run(
        limit=left,
        drain=kind != "queue" or idle_exit is None,
        idle_exit=idle_exit,
        idle_without_model=True,
        on_batch=progress,
    )
    stats.records = records0 + handler.records - handled0
    stats.flagged = flagged0 + handler.flagged - marked0
    _add_loop_counts(stats, c)


def _add_loop_counts(stats: ProcessStats, c: ConsumerStats) -> None:
    stats.dead_lettered += c.dead_lettered
    stats.failed += c.failed
    stats.released += c.released
    stats.outages += c.outages
    stats.paused_seconds += c.paused_seconds
    stats.gave_up = c.gave_up or stats.gave_up


def _models_back(
    models: _Models,
    out: Sink,
    stats: ProcessStats,
    metrics: ProcessorMetrics | None,
    stop: threading.Event,
    pause_cap: float,
    idle_exit: float | None,
) -> bool:
    """Resolve the models for a pass after the first; while they cannot be used (the
    registry emptied, the active version broken), wait as for an outage, on the consumer
    loop (back-off, probes, health, metrics, the warning once a minute). Whether the
    pass may start: False when stopped meanwhile or ``idle_exit`` was spent waiting."""
    try:
        models.refresh_or_unavailable()
        return True
    except UnavailableError as exc:
        # Nothing to receive: the loop waits the outage out, then finds its source empty.
        nothing = _RowSource("waiting for a card model", pd.DataFrame(), [], 0, 0)
        waiter = Consumer(
            nothing,
            _Handler(models, out, ack_needs_flush=False),
            poll=True,
            wait=0.0,
            pause_cap=pause_cap,
            metrics=metrics,
            stop_event=stop,
        )
        waiter.hold(exc)
        _add_loop_counts(
            stats, waiter.run(drain=True, idle_exit=idle_exit, idle_without_model=True)
        )
    return stats.gave_up is None and not stop.is_set()
