"""Card event processor: score card transactions from a source and write them to a sink.

The reference system fires a function every minute that picks a transaction, scores it
and puts a CSV line ``timestamp, id, source, prediction`` (later with metadata and an
anomaly score) to a Firehose stream landing in S3. :func:`process` does the same job
without the cloud: it reads records from a source, scores each with the registry's
default card classifier (and the anomaly model when the registry has one) and writes one
row per record to a :class:`~fraudlens.sinks.Sink`.

Sources
-------
``file:PATH`` (or just a path)
    A CSV or Parquet card table: the ULB table, a feature table with the model's columns,
    or raw transactions (``transaction_id, ts, customer_id, terminal_id, amount``). Raw
    transactions get their window features from the whole file (it is its own history,
    and the features never look ahead), plus the ``history=`` file if one is given.
``generate`` or ``generate:PATH``
    Replays traffic like the reference's generator: samples rows of ``PATH`` (any table
    above) or, without a path, of a small simulated card history; gives each a fresh id
    and timestamp and a random channel ``source`` (Mobile, Web or Store). A pass makes
    ``batch_size`` records (or what is left of ``limit``).
``queue:URL``
    Messages of :func:`fraudlens.queues.open_queue` ``(URL, name=queue_name)``. A body is the record
    itself, or holds it under ``"record"`` or ``"transaction"`` (other top-level keys
    such as ``source`` are kept). A record is a feature row (every feature the models need)
    or a raw transaction. A message is acked only after the sink accepted its row (with
    a durable sink: spooled to disk; otherwise the sink is flushed first). A record that
    cannot be scored (missing fields, values that are not numbers, bad timestamp) is
    dead-lettered with a reason naming the field.

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
visible, a file pass re-reads the file, a generate pass makes one batch) until ``limit``
records are done, ``stop_event`` is set, or SIGTERM/SIGINT arrives (when called from the
main thread). Stopping finishes the batch in flight and flushes the sink; a second
SIGINT interrupts at once.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fraudlens.errors import ConfigError, DataError, ModelNotFoundError
from fraudlens.sinks import Sink, open_sink

if TYPE_CHECKING:
    from fraudlens._detector import Detector
    from fraudlens.model_cache import ModelCache
    from fraudlens.queues import Message, Queue

__all__ = ["CHANNELS", "OUTPUT_COLUMNS", "ProcessStats", "parse_source", "process"]

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
# Longest look-back of the window features: 30-day window + 7-day label delay, + slack.
_HISTORY_SPAN = pd.Timedelta(days=38)


@dataclass
class ProcessStats:
    """What a :func:`process` run did."""

    records: int = 0
    flagged: int = 0
    batches: int = 0
    passes: int = 0
    dead_lettered: int = 0
    seconds: float = 0.0
    models: dict[str, str] = field(default_factory=dict)
    objects: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Records per second."""
        return self.records / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Batch:
    X: pd.DataFrame
    meta: list[dict[str, Any]]
    messages: list[Message] | None = None


@dataclass(frozen=True)
class _Source:
    kind: str  # "file" | "generate" | "queue"
    arg: str | None


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
    """The classifier and the anomaly model, re-resolved from the registry every pass."""

    def __init__(self, cache: ModelCache) -> None:
        self.cache = cache
        self.classifier: Detector | None = None
        self.anomaly: Detector | None = None

    def refresh(self) -> None:
        self.classifier = self.cache.find("cards-classifier")
        self.anomaly = self.cache.find("cards-anomaly")
        if self.classifier is None and self.anomaly is None:
            raise ModelNotFoundError(
                f"no card model in registry {self.cache.root}; "
                "train one with `fraudlens cards train`"
            )

    @property
    def features(self) -> list[str]:
        names: dict[str, None] = {}
        for det in (self.classifier, self.anomaly):
            if det is not None:
                names.update(dict.fromkeys(det.feature_names_))  # type: ignore[attr-defined]
        return list(names)

    def versions(self) -> dict[str, str]:
        from fraudlens.model_cache import version_of

        return {
            role: version_of(det)
            for role, det in (("classifier", self.classifier), ("anomaly", self.anomaly))
            if det is not None
        }

    def score(self, X: pd.DataFrame) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
        """(classifier score or None, prediction, anomaly score or None)."""
        score = anomaly = None
        if self.classifier is not None:
            score = np.asarray(self.classifier.decision_function(X), dtype=np.float64)
            prediction = (score > self.classifier.threshold_).astype(np.int8)
        if self.anomaly is not None:
            anomaly = np.asarray(self.anomaly.decision_function(X), dtype=np.float64)
            if self.classifier is None:
                prediction = (anomaly > self.anomaly.threshold_).astype(np.int8)
        return score, prediction, anomaly


# --------------------------------------------------------------------------- tables


def _read_any(path: str) -> pd.DataFrame:
    p = Path(path)
    if not p.is_file():
        raise DataError("no such file", file=path)
    try:
        if p.name.lower().endswith((".parquet", ".pq")):
            return pd.read_parquet(p)
        return pd.read_csv(p, low_memory=False)
    except (ValueError, OSError) as exc:
        from fraudlens._csvread import read_error

        # The card loader's words: empty file, not UTF-8 (with row and column), bad file.
        raise read_error(p, exc) from None


def _table(
    df: pd.DataFrame, features: Sequence[str], source: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate ``df`` and return (model features, validated frame) for its rows."""
    from fraudlens.cards.data import RAW_COLUMNS, ULB_FEATURES, validate_frame

    cols = set(map(str, df.columns))
    if set(ULB_FEATURES) <= cols and set(features) <= set(ULB_FEATURES):
        keep = [c for c in (*ULB_FEATURES, "transaction_id") if c in cols]
        table = validate_frame(df[keep], "ulb", source)
    elif set(RAW_COLUMNS[:-1]) <= cols and not set(features) <= cols:
        keep = [c for c in RAW_COLUMNS if c in cols]
        table = validate_frame(df[keep], "raw", source)
    else:
        missing = [c for c in features if c not in cols]
        if missing:
            raise DataError(
                f"missing feature column ({len(missing)} of the {len(features)} the model needs); "
                f"or give raw transactions ({', '.join(RAW_COLUMNS[:-1])})",
                file=source,
                row=0,
                column=missing[0],
            )
        keep = [c for c in (*features, "transaction_id", "ts") if c in cols]
        table = validate_frame(df[keep], "features", source)
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


def _meta(frame: pd.DataFrame, original: pd.DataFrame, default_source: str) -> list[dict[str, Any]]:
    n = len(frame)
    if "transaction_id" in frame.columns:
        ids = frame["transaction_id"].astype(str).to_numpy()
    else:
        ids = np.arange(1, n + 1).astype(str)  # 1-based data row, as in error messages
    out: dict[str, Any] = {"transaction_id": ids}
    src = original["source"] if "source" in original.columns else None
    out["source"] = (
        src.fillna(default_source).astype(str).to_numpy()
        if src is not None
        else [default_source] * n
    )
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


# --------------------------------------------------------------------------- sources


def _file_batches(
    path: str, models: _Models, history: pd.DataFrame | None, batch_size: int, budget: int | None
) -> Iterator[_Batch]:
    df = _read_any(path)
    X, frame = _table(df, models.features, path)
    if history is not None and "customer_id" in frame.columns and "ts" in frame.columns:
        X = _raw_features(frame, history).loc[:, models.features]
    meta = _meta(frame, df.reset_index(drop=True), "file")
    n = len(X) if budget is None else min(len(X), budget)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        yield _Batch(X.iloc[start:stop].reset_index(drop=True), meta[start:stop])


class _Generator:
    """A pool of scorable rows to replay as fresh traffic."""

    def __init__(self, path: str | None, models: _Models, seed: int | None) -> None:
        self.rng = np.random.default_rng(seed)
        if path is not None:
            df = _read_any(path)
            self.X, frame = _table(df, models.features, path)
            self.meta = _meta(frame, df.reset_index(drop=True), "file")
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

    def batch(self, n: int) -> _Batch:
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
        return _Batch(self.X.iloc[idx].reset_index(drop=True), meta)


def _record_of(body: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    for key in ("record", "transaction"):
        inner = body.get(key)
        if isinstance(inner, dict):
            outer = {k: v for k, v in body.items() if k != key}
            return inner, outer
    return dict(body), {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if np.isfinite(x) else None


def _utc(value: Any) -> pd.Timestamp | None:
    """An ISO-8601 text as a UTC timestamp (no zone means UTC), else None."""
    if not isinstance(value, str):
        return None
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        return None
    if pd.isna(ts):
        return None
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


class _QueueReader:
    """Leases messages, splits them into scorable rows and dead letters."""

    def __init__(
        self,
        url: str,
        models: _Models,
        history: pd.DataFrame | None,
        visibility_timeout: float,
        name: str,
    ) -> None:
        from fraudlens.queues import open_queue

        self.queue: Queue = open_queue(url, name=name)
        self.models = models
        self.history = history
        self.visibility_timeout = visibility_timeout

    def close(self) -> None:
        self.queue.close()

    def batch(self, n: int, stats: ProcessStats) -> _Batch | None:
        msgs = self.queue.receive(n, visibility_timeout=self.visibility_timeout, wait=0.0)
        if not msgs:
            return None
        features = self.models.features
        feat_rows: list[tuple[Message, dict[str, Any], dict[str, Any]]] = []
        raw_rows: list[tuple[Message, dict[str, Any], dict[str, Any]]] = []
        for msg in msgs:
            record, outer = _record_of(msg.body)
            problem, kind = self._check(record, features)
            if problem is not None:
                self.queue.dead_letter(msg, problem)
                stats.dead_lettered += 1
                continue
            (feat_rows if kind == "features" else raw_rows).append((msg, record, outer))
        parts: list[_Batch] = []
        if feat_rows:
            X = pd.DataFrame(
                [[float(r[c]) for c in features] for _, r, _ in feat_rows], columns=features
            )
            parts.append(
                _Batch(X, [self._meta(r, o) for _, r, o in feat_rows], [m for m, _, _ in feat_rows])
            )
        if raw_rows:
            frame = pd.DataFrame(
                {
                    "ts": pd.DatetimeIndex([_utc(r["ts"]) for _, r, _ in raw_rows]),
                    "customer_id": [str(r["customer_id"]) for _, r, _ in raw_rows],
                    "terminal_id": [str(r["terminal_id"]) for _, r, _ in raw_rows],
                    "amount": [float(r["amount"]) for _, r, _ in raw_rows],
                    "label": [np.nan] * len(raw_rows),
                }
            )
            X = _raw_features(frame, self.history).loc[:, features]
            self._remember(frame)
            parts.append(
                _Batch(X, [self._meta(r, o) for _, r, o in raw_rows], [m for m, _, _ in raw_rows])
            )
        if not parts:
            return _Batch(pd.DataFrame(columns=features), [], [])
        if len(parts) == 1:
            return parts[0]
        return _Batch(
            pd.concat([p.X for p in parts], ignore_index=True),
            parts[0].meta + parts[1].meta,
            (parts[0].messages or []) + (parts[1].messages or []),
        )

    @staticmethod
    def _check(record: dict[str, Any], features: Sequence[str]) -> tuple[str | None, str]:
        if all(c in record for c in features):
            for c in features:
                if _number(record[c]) is None:
                    return f"field {c!r}: {record[c]!r} is not a finite number", "features"
            return None, "features"
        if all(c in record for c in _RAW_REQUIRED):
            for c in ("transaction_id", "customer_id", "terminal_id"):
                if record[c] is None or str(record[c]).strip() == "":
                    return f"field {c!r}: missing value", "raw"
            amount = _number(record["amount"])
            if amount is None or amount < 0:
                return f"field 'amount': {record['amount']!r} is not a number >= 0", "raw"
            if _utc(record["ts"]) is None:
                return f"field 'ts': {record['ts']!r} is not an ISO-8601 timestamp", "raw"
            return None, "raw"
        missing = [c for c in features if c not in record]
        missing_raw = [c for c in _RAW_REQUIRED if c not in record]
        return (
            f"missing field {missing[0]!r} ({len(missing)} of the model's {len(features)} "
            f"features missing) and not a raw transaction (missing {missing_raw[0]!r})",
            "",
        )

    @staticmethod
    def _meta(record: dict[str, Any], outer: dict[str, Any]) -> dict[str, Any]:
        m: dict[str, Any] = {
            "transaction_id": str(record.get("transaction_id", outer.get("transaction_id", ""))),
            "source": str(outer.get("source", record.get("source", "queue"))),
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

    def _remember(self, frame: pd.DataFrame) -> None:
        both = (
            frame if self.history is None else pd.concat([self.history, frame], ignore_index=True)
        )
        latest = both["ts"].max()
        self.history = both[both["ts"] >= latest - _HISTORY_SPAN].reset_index(drop=True)


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


# --------------------------------------------------------------------------- main loop


class _Signals:
    """SIGTERM/SIGINT set ``stop`` (a second SIGINT raises KeyboardInterrupt)."""

    def __init__(self, stop: threading.Event, enabled: bool) -> None:
        self.stop = stop
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.old: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        if self.enabled:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        log.info("signal %s: finishing the batch in flight, then stopping", signum)
        self.stop.set()

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.old.items():
            signal.signal(sig, handler)


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
) -> ProcessStats:
    """Score card records from ``source`` and write one row per record to ``sink``.

    Each row holds ``timestamp`` (scoring time, UTC ISO-8601), ``transaction_id``,
    ``source`` (channel), ``prediction`` (0/1), ``score`` (classifier probability),
    ``anomaly_score``, then ``customer_id``, ``terminal_id``, ``amount`` and
    ``transaction_ts`` when known, and ``model`` (the versions that scored it).

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
        Records scored together (and, for ``generate``, records per pass).
    stop_event
        Set it to stop after the batch in flight.
    history
        Raw transactions that precede the source's, for window features of raw records.
    seed
        Random seed of the ``generate`` source.
    visibility_timeout
        Lease of queue messages, in seconds; longer than a batch takes to score.
    queue_name
        Name of the queue inside the backend (``queue:`` sources).
    handle_signals
        Stop cleanly on SIGTERM/SIGINT (only when called from the main thread).
    on_batch
        Called with the running stats after each batch (progress display).

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
        No card model in the registry.
    """
    kind, arg = parse_source(source)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if limit is not None and limit < 0:
        raise ConfigError(f"limit must be >= 0, got {limit}")
    if every is not None and every < 0:
        raise ConfigError(f"every must be >= 0 seconds, got {every}")
    from fraudlens.model_cache import ModelCache

    models = _Models(ModelCache(models_dir, check_seconds=0.0))
    models.refresh()
    hist = _load_history(history)
    own_sink = not isinstance(sink, Sink)
    out = sink if isinstance(sink, Sink) else open_sink(sink)
    stop = stop_event or threading.Event()
    stats = ProcessStats()
    started = time.monotonic()
    written_before = len(out.written)
    generator: _Generator | None = None
    reader: _QueueReader | None = None
    try:
        with _Signals(stop, handle_signals):
            if kind == "queue":
                assert arg is not None
                reader = _QueueReader(arg, models, hist, visibility_timeout, queue_name)
            while not stop.is_set():
                pass_start = time.monotonic()
                models.refresh()
                stats.models = models.versions()
                if kind == "generate" and generator is None:
                    generator = _Generator(arg, models, seed)
                for batch in _pass(
                    kind, arg, models, hist, batch_size, stats, limit, generator, reader, stop
                ):
                    _emit(batch, models, out, reader, stats)
                    stats.seconds = time.monotonic() - started
                    if on_batch is not None:
                        on_batch(stats)
                    if stop.is_set():
                        break
                stats.passes += 1
                if every is None or (limit is not None and stats.records >= limit):
                    break
                stop.wait(max(0.0, pass_start + every - time.monotonic()))
    finally:
        try:
            if own_sink:
                out.close()
            else:
                out.flush()
        finally:
            if reader is not None:
                reader.close()
    stats.seconds = time.monotonic() - started
    stats.objects = list(out.written[written_before:])
    return stats


def _pass(
    kind: str,
    arg: str | None,
    models: _Models,
    hist: pd.DataFrame | None,
    batch_size: int,
    stats: ProcessStats,
    limit: int | None,
    generator: _Generator | None,
    reader: _QueueReader | None,
    stop: threading.Event,
) -> Iterator[_Batch]:
    def left() -> int | None:
        return None if limit is None else max(0, limit - stats.records)

    if left() == 0:
        return
    if kind == "file":
        assert arg is not None
        yield from _file_batches(arg, models, hist, batch_size, left())
    elif kind == "generate":
        assert generator is not None
        n = batch_size if left() is None else min(batch_size, left() or 0)
        yield generator.batch(n)
    else:
        assert reader is not None
        while not stop.is_set():
            remaining = left()
            if remaining == 0:
                return
            batch = reader.batch(
                batch_size if remaining is None else min(batch_size, remaining), stats
            )
            if batch is None:
                return
            if batch.meta:
                yield batch


def _emit(
    batch: _Batch, models: _Models, out: Sink, reader: _QueueReader | None, stats: ProcessStats
) -> None:
    try:
        score, prediction, anomaly = models.score(batch.X)
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        version = ",".join(models.versions().values())
        rows = []
        for i, m in enumerate(batch.meta):
            row: dict[str, Any] = {
                "timestamp": now,
                "transaction_id": m.get("transaction_id"),
                "source": m.get("source"),
                "prediction": int(prediction[i]),
                "score": None if score is None else float(score[i]),
                "anomaly_score": None if anomaly is None else float(anomaly[i]),
            }
            for col in _META_COLUMNS:
                if col in m:
                    row[col] = m[col]
            if "replayed_from" in m:
                row["replayed_from"] = m["replayed_from"]
            row["model"] = version
            rows.append(row)
        out.put_many(rows)
        if batch.messages and not out.durable:
            # Nothing on disk holds the rows yet: write them out before the ack.
            out.flush()
    except BaseException as exc:
        if reader is not None and batch.messages:
            for msg in batch.messages:
                reader.queue.nack(msg, reason=f"processing failed: {exc}")
        raise
    if reader is not None and batch.messages:
        reader.queue.ack_many(batch.messages)
    stats.records += len(rows)
    stats.flagged += int(np.sum(prediction))
    stats.batches += 1
