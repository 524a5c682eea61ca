"""Analysts' decisions back into training: reviewed windows as labels, and comparisons.

An analyst who confirms a market risk event says "this window is a takeover" (label 1);
one who dismisses it says "this window is normal" (label 0). This module turns those
decisions into training data and measures models on them:

- :func:`load_reviewed`: every confirmed and dismissed market event of a store, with
  the trades of its window (``window_start <= ts <= window_end``) and the bars of the
  symbols traded over whole UTC days (what the worker loaded to score it), as
  :class:`~fraudlens.market.data.MarketData` with labels (``kind`` =
  ``reviewed_confirmed`` / ``reviewed_dismissed``) and a provenance record;
- :func:`merge_training`: simulated training data plus reviewed windows, each reviewed
  case weighted ``review_weight`` times a simulated account
  (:data:`REVIEW_WEIGHT` by default);
- :func:`compare_versions`: a candidate and the active version scored on the reviewed
  events they did not train on: reviewed precision at the event threshold, recall of
  the confirmed, dismissed alerts that would no longer fire, AP and ROC AUC;
- :func:`reviewed_precision`: confirmed / (confirmed + dismissed), the one definition
  used here and by monitoring.

Samples
-------
Each reviewed event is one sample, named ``review-<event id>`` (an account may have
several events with overlapping windows). The samples' symbols get a suffix ``@<n>``
(``n``: the event's rank among its account's events), and trade ids the event id as a
prefix: reviewed windows then never share bars or trades with simulated data or with
another window of the same account, while the windows of different accounts keep each
other's trades in view, as in a worker's batch. Every feature reads symbols as keys
only, so the renaming changes no score (tested). Features that look at other accounts'
trades (mirrored fills, and the counterparty evidence) read each layer's samples against
the stored trades that mirror them, as the worker read its batch against the store
(:meth:`fraudlens.store.Store.mirror_candidates`); trades stored after an event was
raised may still make a rescored event differ from its recorded score, and
:class:`VersionFigures` reports how many were reproduced.

Hold-out rule
-------------
Reviewed events a version trained on are never used to compare it. ``market train
--reviewed-from`` takes a :class:`HoldoutSplit` (events whose window ends after a time,
and/or a fixed share chosen by a hash of the event id) and trains on the rest only; the
metadata lists the event ids it trained on (as ranges, with a SHA-256 over them) and the
database they came from. :func:`compare_versions` leaves out every event either version
trained on (say so, loudly) unless asked to keep them, in which case it warns that the
figures are optimistic.

Selection bias
--------------
Reviewed events are alerts: the model that raised them scored them above the event
threshold. Takeovers that no model flagged are not in the set, so "recall of confirmed"
is recall among confirmed alerts, not among all takeovers.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np
import pandas as pd

from fraudlens._time import utc, utcnow
from fraudlens.errors import DataError

if TYPE_CHECKING:
    from fraudlens.market.data import MarketData
    from fraudlens.registry import Registry
    from fraudlens.store import Store

__all__ = [
    "REVIEWED_KINDS",
    "REVIEW_WEIGHT",
    "Comparison",
    "HoldoutSplit",
    "ReviewedWindows",
    "TrainingSet",
    "VersionFigures",
    "compare_versions",
    "id_ranges",
    "ids_from_ranges",
    "label_sources",
    "load_reviewed",
    "merge_training",
    "redact_url",
    "reviewed_precision",
    "trained_event_ids",
    "trained_on_reviewed",
]

#: Default weight of one reviewed case, in simulated accounts: an analyst's decision on
#: a real window counts like five simulated accounts. With the quickstart's 4,000
#: simulated accounts, 200 reviewed events then carry a fifth of the weight of the
#: simulated ones: enough to move the boundary where analysts disagree with it, not
#: enough for a few hundred decisions to erase what the simulator teaches.
REVIEW_WEIGHT: Final = 5.0
#: ``kind`` of reviewed samples by status.
REVIEWED_KINDS: Final = {"confirmed": "reviewed_confirmed", "dismissed": "reviewed_dismissed"}
#: Events read per store query.
_PAGE: Final = 1000
_SAMPLE_PREFIX: Final = "review-"
_HASH_SALT: Final = b"fraudlens-holdout:"


# ------------------------------------------------------------------------------ figures


def reviewed_precision(confirmed: int, dismissed: int) -> float | None:
    """Reviewed precision: the share of reviewed alerts that analysts confirmed.

    ``confirmed / (confirmed + dismissed)``; open (undecided) events count in neither.
    The same definition serves monitoring (the events a version raised) and
    :func:`compare_versions` (the reviewed events a version would flag).

    Parameters
    ----------
    confirmed, dismissed
        Counts of confirmed and dismissed alerts (>= 0).

    Returns
    -------
    float or None
        None when nothing was reviewed.
    """
    c, d = int(confirmed), int(dismissed)
    if c < 0 or d < 0:
        raise ValueError(f"counts must be >= 0, not {c} and {d}")
    return c / (c + d) if c + d else None


def redact_url(url: str) -> str:
    """A database URL with its password hidden (``***``), as recorded in metadata."""
    import os

    import sqlalchemy as sa

    from fraudlens.store import normalise_url

    try:
        parsed = sa.engine.make_url(normalise_url(url))
    except Exception:  # not a URL SQLAlchemy parses: keep the scheme only
        return url.split("://", 1)[0] + "://***"
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        # the same file reached from another folder must read the same
        parsed = parsed.set(database=os.path.abspath(os.path.expanduser(str(parsed.database))))
    return parsed.render_as_string(hide_password=True)


def id_ranges(ids: Iterable[int]) -> list[list[int]]:
    """Sorted unique integers as ``[first, last]`` runs: ``[1, 2, 3, 7]`` ->
    ``[[1, 3], [7, 7]]`` (compact in metadata when reviews come in runs)."""
    out: list[list[int]] = []
    for i in sorted({int(x) for x in ids}):
        if out and i == out[-1][1] + 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return out


def ids_from_ranges(ranges: Iterable[Sequence[int]]) -> set[int]:
    """The integers of :func:`id_ranges` runs."""
    out: set[int] = set()
    for run in ranges:
        first, last = int(run[0]), int(run[1])
        if last < first or last - first > 10_000_000:
            raise DataError(f"bad event id range {list(run)!r}", column="event_ids")
        out.update(range(first, last + 1))
    return out


def _ids_digest(ids: Iterable[int]) -> str:
    text = ",".join(str(i) for i in sorted({int(x) for x in ids}))
    return hashlib.sha256(text.encode()).hexdigest()


# ----------------------------------------------------------------------------- hold-out


@dataclass(frozen=True)
class HoldoutSplit:
    """Which reviewed events are held out of training (and kept for comparison).

    An event is held out when its window ends after ``after``, or when a hash of its id
    falls in the first ``fraction`` of the range (a fixed choice: the same event is
    always on the same side, whatever else is in the store).

    Parameters
    ----------
    after
        Hold out events whose ``window_end`` is later than this (aware or UTC).
    fraction
        Hold out this share of events (0 < fraction < 1), chosen by event id.
    """

    after: datetime | None = None
    fraction: float | None = None

    def __post_init__(self) -> None:
        if self.after is not None:
            object.__setattr__(self, "after", utc(self.after))
        if self.fraction is not None:
            f = float(self.fraction)
            if not math.isfinite(f) or not 0.0 < f < 1.0:
                raise DataError(
                    f"hold-out fraction must be between 0 and 1, not {self.fraction!r}",
                    column="holdout_fraction",
                )
            object.__setattr__(self, "fraction", f)

    @property
    def active(self) -> bool:
        """Whether anything is held out at all."""
        return self.after is not None or self.fraction is not None

    def held_out(self, event_ids: Sequence[int], window_end: Sequence[Any]) -> np.ndarray:
        """Boolean mask of the held-out events."""
        ids = np.asarray(event_ids, dtype=np.int64)
        out = np.zeros(len(ids), dtype=bool)
        if self.after is not None:
            ends = pd.to_datetime(pd.Series(list(window_end)), utc=True)
            out |= (ends > pd.Timestamp(self.after)).to_numpy()
        if self.fraction is not None:
            out |= np.array([_unit_hash(int(i)) < self.fraction for i in ids], dtype=bool)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON, for metadata."""
        return {
            "holdout_after": None if self.after is None else self.after.isoformat(),
            "holdout_fraction": self.fraction,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> HoldoutSplit:
        """The split :meth:`to_dict` wrote (an empty split for None)."""
        values = values or {}
        after = values.get("holdout_after")
        return cls(
            after=None if after is None else datetime.fromisoformat(str(after)),
            fraction=values.get("holdout_fraction"),
        )

    @classmethod
    def parse(cls, after: str | None = None, fraction: float | None = None) -> HoldoutSplit:
        """The split of command-line options: ``after`` as ISO-8601 text (no zone: UTC).

        Raises
        ------
        DataError
            ``after`` is not an ISO-8601 time, or ``fraction`` is not within (0, 1).
        """
        when = None
        if after is not None:
            try:
                when = datetime.fromisoformat(after.strip().replace("Z", "+00:00"))
            except ValueError:
                raise DataError(
                    f"hold-out time {after!r} is not ISO-8601 (e.g. 2024-03-01T00:00)",
                    column="holdout_after",
                ) from None
            try:
                when = utc(when)
            except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00: past year 9999 in UTC
                raise DataError(
                    f"hold-out time {after!r} lies outside years 1-9999 in UTC",
                    column="holdout_after",
                ) from None
        return cls(after=when, fraction=fraction)

    def describe(self) -> str:
        """Words for the console."""
        parts = []
        if self.after is not None:
            parts.append(f"window ends after {self.after.isoformat()}")
        if self.fraction is not None:
            parts.append(f"{self.fraction:.0%} of events by id hash")
        return " or ".join(parts) if parts else "none"


def _unit_hash(event_id: int) -> float:
    digest = hashlib.sha256(_HASH_SALT + str(event_id).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


# ------------------------------------------------------------------------ reviewed data


@dataclass
class ReviewedWindows:
    """Reviewed market events as samples: one account (``review-<id>``) per event.

    Attributes
    ----------
    data
        The samples' trades and bars (renamed as in the module docstring), with labels
        ``account_id, label, kind``; ``data.account_ids`` is the sample order.
    events
        One row per sample, in ``data.account_ids`` order: ``sample_id, event_id,
        account_id, status, label, kind, score (recorded), event_threshold,
        model_version, window_start, window_end, reviewed_at, reviewed_by``.
    database
        The store's URL with the password hidden.
    split
        The hold-out split applied (if any) and ``part``: which side was kept.
    skipped
        Reviewed events left out, by reason (``no_trades``: none of the window's trades
        is in the store; ``held_out``; ``excluded``: asked to leave out).
    """

    data: MarketData
    events: pd.DataFrame
    database: str
    split: HoldoutSplit = field(default_factory=HoldoutSplit)
    part: str = "all"
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.events)

    def y(self) -> np.ndarray:
        """Labels in sample order (1 confirmed, 0 dismissed)."""
        return self.events["label"].to_numpy(dtype=np.int8)

    @property
    def event_ids(self) -> list[int]:
        """The events' store ids, in sample order."""
        return [int(i) for i in self.events["event_id"]]

    def counts(self) -> dict[str, int]:
        """``{"confirmed": n, "dismissed": m}``."""
        y = self.y()
        return {"confirmed": int(y.sum()), "dismissed": int(len(y) - y.sum())}

    def provenance(self) -> dict[str, Any]:
        """Where the labels came from, for a model's metadata (see :func:`label_sources`)."""
        ev = self.events
        ids = self.event_ids

        def span(col: str) -> list[str | None]:
            if ev.empty or ev[col].isna().all():
                return [None, None]
            values = pd.to_datetime(ev[col], utc=True)
            return [values.min().isoformat(), values.max().isoformat()]

        return {
            "database": self.database,
            "fraud_type": _fraud_type(),
            "events": len(ev),
            **self.counts(),
            "windows": span("window_end"),
            "reviewed": span("reviewed_at"),
            "event_ids": id_ranges(ids),
            "event_ids_sha256": _ids_digest(ids),
            "split": {**self.split.to_dict(), "part": self.part},
            "skipped": dict(self.skipped),
            "loaded_at": utcnow().isoformat(timespec="seconds"),
        }

    def select(self, keep: np.ndarray) -> ReviewedWindows:
        """Only the samples where ``keep`` (sample order) is true."""
        keep = np.asarray(keep, dtype=bool)
        ids = self.events["sample_id"].to_numpy()[keep]
        return replace(
            self,
            data=self.data.subset(ids),
            events=self.events[keep].reset_index(drop=True),
        )


def _fraud_type() -> str:
    from fraudlens.store.records import FRAUD_TYPE

    return FRAUD_TYPE


def _reviewed_events(store: Store, fraud_type: str) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    for status in ("confirmed", "dismissed"):
        offset = 0
        while True:
            page, total = store.list_risk_events(
                status=status, fraud_type=fraud_type, sort="id", limit=_PAGE, offset=offset
            )
            rows.extend(page)
            offset += len(page)
            if not page or offset >= total:
                break
    cols = [
        "id",
        "account_id",
        "status",
        "score",
        "event_threshold",
        "model_version",
        "window_start",
        "window_end",
        "reviewed_at",
        "reviewed_by",
    ]
    frame = pd.DataFrame([{c: r.get(c) for c in cols} for r in rows], columns=cols)
    frame = frame.rename(columns={"id": "event_id"})
    for col in ("window_start", "window_end", "reviewed_at"):
        frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601")
    frame["event_id"] = frame["event_id"].astype(np.int64)
    return frame.sort_values("event_id", kind="stable").reset_index(drop=True)


def load_reviewed(
    store: Store | str,
    *,
    split: HoldoutSplit | None = None,
    part: Literal["all", "train", "holdout"] = "all",
    exclude: Iterable[int] = (),
    fraud_type: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> ReviewedWindows:
    """Every confirmed and dismissed market risk event of a store, as labelled samples.

    Parameters
    ----------
    store
        The store, or its URL.
    split
        A hold-out split; with ``part="train"`` only the events it does not hold out are
        kept, with ``part="holdout"`` only those it holds out.
    part
        ``all``, ``train`` or ``holdout`` (see ``split``).
    exclude
        Event ids to leave out (e.g. those a model trained on).
    fraud_type
        Events of this type (default the market detector's,
        :data:`fraudlens.store.FRAUD_TYPE`).
    progress
        Called with a short description of each step.

    Returns
    -------
    ReviewedWindows
        Possibly empty (check ``len``).

    Raises
    ------
    StoreError
        The store cannot be read.
    """
    from fraudlens.store import Store as _Store

    own = isinstance(store, str)
    st: Store = _Store(store) if isinstance(store, str) else store
    try:
        say = progress or (lambda _msg: None)
        say("reading reviewed events")
        events = _reviewed_events(st, fraud_type or _fraud_type())
        split = split or HoldoutSplit()
        skipped: dict[str, int] = {}
        if part != "all":
            if part not in ("train", "holdout"):
                raise DataError(f"part must be all, train or holdout, not {part!r}")
            held = split.held_out(events["event_id"].to_numpy(), events["window_end"])
            keep = ~held if part == "train" else held
            skipped["held_out" if part == "train" else "not_held_out"] = int((~keep).sum())
            events = events[keep].reset_index(drop=True)
        drop = {int(i) for i in exclude}
        if drop:
            mask = events["event_id"].isin(drop).to_numpy()
            skipped["excluded"] = int(mask.sum())
            events = events[~mask].reset_index(drop=True)
        say(f"loading the windows of {len(events):,} reviewed events")
        windows = [
            (a, s.to_pydatetime(), e.to_pydatetime())
            for a, s, e in events[["account_id", "window_start", "window_end"]].itertuples(
                index=False
            )
        ]
        raw = st.trades_in_windows(windows) if windows else None
        context = None
        if raw is not None and not raw.trades.empty:
            say("looking up the windows' counterparties")
            context = st.mirror_candidates(raw.trades)
        data, events, no_trades = _samples(events, raw, context)
        if no_trades:
            skipped["no_trades"] = no_trades
        return ReviewedWindows(
            data=data,
            events=events,
            database=redact_url(st.url),
            split=split,
            part=part,
            skipped=skipped,
        )
    finally:
        if own:
            st.close()


def _samples(
    events: pd.DataFrame, raw: MarketData | None, context: pd.DataFrame | None = None
) -> tuple[MarketData, pd.DataFrame, int]:
    """Cut the stored trades into one renamed sample per event (see the module docs).

    ``context``: stored trades that may mirror ``raw``'s (beyond them), e.g.
    :meth:`fraudlens.store.Store.mirror_candidates`; with ``raw``'s own trades they make
    the samples' book (:func:`_sample_book`)."""
    from fraudlens.market.data import KLINE_COLUMNS, LABEL_COLUMNS, TRADE_COLUMNS, MarketData
    from fraudlens.market.features import TradeBook

    empty_k = pd.DataFrame({c: pd.Series(dtype=_KDTYPES[c]) for c in KLINE_COLUMNS})
    empty_t = pd.DataFrame({c: pd.Series(dtype=_TDTYPES[c]) for c in TRADE_COLUMNS})
    ev = events.copy()
    ev["sample_id"] = [f"{_SAMPLE_PREFIX}{int(i):012d}" for i in ev["event_id"]]
    ev["label"] = (ev["status"] == "confirmed").astype(np.int8)
    ev["kind"] = ev["status"].map(REVIEWED_KINDS)
    # rank of the event among its account's events: windows of one account never share
    # a layer, so their (possibly common) trades never meet as different accounts
    ev["layer"] = ev.sort_values(["window_end", "event_id"]).groupby("account_id").cumcount()
    book = None
    if raw is None or raw.trades.empty:
        trades, klines = empty_t, empty_k
    else:
        t = raw.trades.merge(
            ev[["account_id", "event_id", "sample_id", "layer", "window_start", "window_end"]],
            on="account_id",
        )
        t = t[(t["ts"] >= t["window_start"]) & (t["ts"] <= t["window_end"])]
        layer_sym = t[["symbol", "layer"]].drop_duplicates()
        trades = pd.DataFrame(
            {
                "trade_id": t["event_id"].astype(str) + "/" + t["trade_id"].astype(str),
                "account_id": t["sample_id"].astype(str),
                "symbol": t["symbol"].astype(str) + "@" + t["layer"].astype(str),
                "ts": t["ts"],
                "side": t["side"],
                "price": t["price"],
                "quantity": t["quantity"],
            }
        )
        k = raw.klines.merge(layer_sym, on="symbol")
        k = k.assign(symbol=k["symbol"].astype(str) + "@" + k["layer"].astype(str))
        klines = k[list(KLINE_COLUMNS)]
        trades = trades.sort_values(["account_id", "ts", "trade_id"], kind="stable")
        trades = trades.reset_index(drop=True)
        klines = klines.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)
        book = TradeBook(_sample_book(t, raw.trades, context, trades))
    have = set(trades["account_id"].unique())
    present = ev["sample_id"].isin(have).to_numpy()
    no_trades = int((~present).sum())
    ev = ev[present].sort_values("sample_id").reset_index(drop=True)
    labels = ev[["sample_id", "label", "kind"]].rename(columns={"sample_id": "account_id"})
    labels = labels.assign(label=labels["label"].astype(np.int64))
    assert list(labels.columns[:2]) == list(LABEL_COLUMNS)
    cols = [
        "sample_id",
        "event_id",
        "account_id",
        "status",
        "label",
        "kind",
        "score",
        "event_threshold",
        "model_version",
        "window_start",
        "window_end",
        "reviewed_at",
        "reviewed_by",
    ]
    return MarketData(klines, trades, labels, book=book), ev[cols], no_trades


def _sample_book(
    cut: pd.DataFrame,
    stored: pd.DataFrame,
    context: pd.DataFrame | None,
    samples: pd.DataFrame,
) -> pd.DataFrame:
    """The trades the samples' mirror evidence is read against: the samples' own, and
    for each layer the stored trades that mirror one of its samples' trades but are not
    among them, renamed into the layer.

    The worker read an event's window against every stored trade that mirrors one of
    its trades (:meth:`fraudlens.store.Store.mirror_candidates`), whoever's window it
    was in. Here those trades are another reviewed window's (in view already when that
    window is in the same layer), or trades of no window of the layer, added here: of a
    sample's account, they join that sample's account (so both legs of a round trip it
    mirrors stay one account's); of any other account, they keep its id (marked when it
    looks like a sample's name, so it never joins one).

    ``cut``: the stored trades of each event's window with the event's ``sample_id`` and
    ``layer``; ``stored``: the windows' stored trades; ``context``: further stored trades
    that may mirror them; ``samples``: the renamed samples' trades.
    """
    from fraudlens.market.data import TRADE_COLUMNS
    from fraudlens.market.features import TradeBook

    cols = list(TRADE_COLUMNS)
    pool = stored[cols]
    if context is not None and len(context):
        pool = pd.concat([pool, context[cols]], ignore_index=True)
    pool = pool.drop_duplicates("trade_id").reset_index(drop=True)
    lookup = TradeBook(pool)
    parts = [samples[cols]]
    for layer, mine in cut.groupby("layer", sort=True):
        found = lookup.candidates(mine[cols])
        found = found[~found["trade_id"].isin(set(mine["trade_id"]))]
        if found.empty:
            continue
        own = dict(zip(mine["account_id"].astype(str), mine["sample_id"].astype(str), strict=False))
        accounts = found["account_id"].astype(str)
        parts.append(
            pd.DataFrame(
                {
                    "trade_id": f"c{layer}/" + found["trade_id"].astype(str),
                    "account_id": [own.get(a) or _not_a_sample(a) for a in accounts.tolist()],
                    "symbol": found["symbol"].astype(str) + "@" + str(layer),
                    "ts": found["ts"],
                    "side": found["side"],
                    "price": found["price"],
                    "quantity": found["quantity"],
                }
            )
        )
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def _not_a_sample(account: str) -> str:
    """``account``, or a name no sample has when it looks like one (``review-...``)."""
    return "~" + account if account.startswith(_SAMPLE_PREFIX) else account


_KDTYPES = {
    "symbol": object,
    "ts": "datetime64[ns, UTC]",
    "open": np.float64,
    "high": np.float64,
    "low": np.float64,
    "close": np.float64,
    "volume": np.float64,
}
_TDTYPES = {
    "trade_id": object,
    "account_id": object,
    "symbol": object,
    "ts": "datetime64[ns, UTC]",
    "side": object,
    "price": np.float64,
    "quantity": np.float64,
}


# ----------------------------------------------------------------------------- training


@dataclass
class TrainingSet:
    """Simulated and reviewed samples merged for one fit.

    Attributes
    ----------
    data
        Trades, bars and labels (``account_id, label, kind``) of every sample.
    y
        Labels in ``data.account_ids`` order.
    sample_weight
        Weights in the same order: 1 for simulated accounts, ``review_weight`` for
        reviewed ones.
    reviewed
        The reviewed windows merged in (None: simulated only).
    review_weight
        The weight of a reviewed sample.
    """

    data: MarketData
    y: np.ndarray
    sample_weight: np.ndarray
    reviewed: ReviewedWindows | None = None
    review_weight: float = REVIEW_WEIGHT

    @property
    def is_reviewed(self) -> np.ndarray:
        """Which samples are reviewed events."""
        ids = np.asarray(self.data.account_ids, dtype=str)
        if self.reviewed is None:
            return np.zeros(len(ids), dtype=bool)
        return np.char.startswith(ids, _SAMPLE_PREFIX)


def merge_training(
    simulated: MarketData,
    reviewed: ReviewedWindows | None = None,
    *,
    review_weight: float = REVIEW_WEIGHT,
) -> TrainingSet:
    """Simulated training data plus reviewed windows, weighted.

    Parameters
    ----------
    simulated
        Labelled (simulated) training data, windowed as trained on.
    reviewed
        Reviewed windows (:func:`load_reviewed`); None or empty for simulated only.
    review_weight
        What one reviewed case counts for, in simulated accounts (> 0).

    Raises
    ------
    DataError
        A bad weight, or simulated account ids or symbols that clash with the reviewed
        samples' names.
    """
    from fraudlens.market.data import TRADE_COLUMNS, MarketData
    from fraudlens.market.features import TradeBook

    w = float(review_weight)
    if not math.isfinite(w) or w <= 0:
        raise DataError(
            f"review weight must be a positive number, not {review_weight!r}",
            column="review_weight",
        )
    y_sim = simulated.y()
    if reviewed is None or len(reviewed) == 0:
        return TrainingSet(simulated, y_sim, np.ones(len(y_sim)), None, w)
    if reviewed.data.bar != simulated.bar:
        raise DataError(
            f"reviewed bars are {reviewed.data.bar} long, simulated ones {simulated.bar}"
        )
    sim_ids = simulated.account_ids
    clash = sim_ids[np.char.startswith(sim_ids.astype(str), _SAMPLE_PREFIX)]
    if len(clash):
        raise DataError(
            f"simulated account ids may not start with {_SAMPLE_PREFIX!r} "
            f"(e.g. {clash[0]!r}): reviewed samples are named so",
            column="account_id",
        )
    sym_clash = set(simulated.klines["symbol"].astype(str)) & set(
        reviewed.data.klines["symbol"].astype(str)
    )
    if sym_clash:
        raise DataError(
            f"simulated symbols clash with reviewed sample symbols: {sorted(sym_clash)[:3]}",
            column="symbol",
        )
    sim_labels = simulated.labels
    assert sim_labels is not None  # y() succeeded
    sim_labels = sim_labels.copy()
    if "kind" not in sim_labels.columns:
        sim_labels["kind"] = np.where(sim_labels["label"] == 1, "simulated_1", "simulated_0")
    rev_labels = reviewed.data.labels
    assert rev_labels is not None
    labels = pd.concat(
        [sim_labels[["account_id", "label", "kind"]], rev_labels[["account_id", "label", "kind"]]],
        ignore_index=True,
    )
    # each part's mirror evidence is read against its own book, as when scored alone
    # (the simulated accounts' whole days, the reviewed windows' stored counterparties)
    cols = list(TRADE_COLUMNS)
    books = [d.the_book().all_trades()[cols] for d in (simulated, reviewed.data)]
    data = MarketData(
        pd.concat([simulated.klines, reviewed.data.klines], ignore_index=True),
        pd.concat([simulated.trades, reviewed.data.trades], ignore_index=True),
        labels,
        simulated.bar,
        TradeBook(pd.concat(books, ignore_index=True)),
    )
    ids = np.asarray(data.account_ids, dtype=str)
    is_rev = np.char.startswith(ids, _SAMPLE_PREFIX)
    weight = np.where(is_rev, w, 1.0)
    return TrainingSet(data, data.y(), weight, reviewed, w)


def label_sources(
    training: TrainingSet, *, simulated_path: str, simulated_hash: str
) -> dict[str, Any]:
    """The ``labels`` block of a trained version's metadata: which labels trained it.

    Parameters
    ----------
    training
        What :func:`merge_training` returned.
    simulated_path, simulated_hash
        The simulated data's folder and content hash.
    """
    is_rev = training.is_reviewed
    y = training.y
    sim = {
        "kind": "simulated",
        "path": simulated_path,
        "data_hash": simulated_hash,
        "accounts": int((~is_rev).sum()),
        "takeover": int(y[~is_rev].sum()),
        "normal": int((~is_rev).sum() - y[~is_rev].sum()),
        "weight": 1.0,
    }
    counts = {"simulated_takeover": sim["takeover"], "simulated_normal": sim["normal"]}
    block: dict[str, Any] = {"sources": ["simulated"], "simulated": sim, "reviewed": None}
    if training.reviewed is not None and is_rev.any():
        rev = {
            "kind": "reviewed",
            **training.reviewed.provenance(),
            "weight": training.review_weight,
        }
        block["sources"].append("reviewed")
        block["reviewed"] = rev
        counts["reviewed_confirmed"] = int(rev["confirmed"])
        counts["reviewed_dismissed"] = int(rev["dismissed"])
    block["counts"] = counts
    return block


def trained_event_ids(metadata: Mapping[str, Any]) -> tuple[set[int], str | None]:
    """The reviewed event ids a version trained on, and the database they came from.

    Returns
    -------
    (set of int, str or None)
        Empty and None for a version trained on simulated labels only.

    Raises
    ------
    DataError
        The metadata's id list does not match its recorded SHA-256 (edited by hand?).
    """
    labels = metadata.get("labels")
    rev = labels.get("reviewed") if isinstance(labels, Mapping) else None
    if not isinstance(rev, Mapping):
        return set(), None
    ids = ids_from_ranges(rev.get("event_ids") or [])
    digest = rev.get("event_ids_sha256")
    if digest is not None and digest != _ids_digest(ids):
        raise DataError(
            "the reviewed event ids in the metadata do not match their SHA-256",
            column="labels.reviewed.event_ids",
        )
    return ids, str(rev.get("database")) if rev.get("database") else None


def trained_on_reviewed(metadata: Mapping[str, Any]) -> bool:
    """Whether reviewed labels trained a version (from its metadata)."""
    labels = metadata.get("labels")
    return isinstance(labels, Mapping) and "reviewed" in (labels.get("sources") or [])


# ---------------------------------------------------------------------------- comparing


@dataclass(frozen=True)
class VersionFigures:
    """One version's figures on the reviewed events.

    Attributes
    ----------
    model
        ``name:version``.
    role
        ``candidate`` or ``active`` (or ``against``).
    flagged
        Reviewed events it flags (score > event threshold).
    confirmed_flagged, dismissed_flagged
        ... of which confirmed / dismissed.
    precision
        :func:`reviewed_precision` of the flagged ones.
    recall
        Share of confirmed events it flags.
    dismissed_silenced
        Dismissed events it would not flag (alerts that would no longer fire).
    confirmed_missed
        Confirmed events it would not flag.
    roc_auc, average_precision
        Over the scores, when both classes are present.
    reproduced
        For the version that raised events: how many of its recorded scores the
        rescoring reproduced (within 1e-6), out of how many; None otherwise.
    """

    model: str
    role: str
    flagged: int
    confirmed_flagged: int
    dismissed_flagged: int
    precision: float | None
    recall: float | None
    dismissed_silenced: int
    confirmed_missed: int
    roc_auc: float | None
    average_precision: float | None
    reproduced: tuple[int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["reproduced"] = None if self.reproduced is None else list(self.reproduced)
        return out


@dataclass
class Comparison:
    """A candidate against another version on reviewed events (:func:`compare_versions`).

    Attributes
    ----------
    versions
        Figures of the candidate, then the version it is compared against.
    events
        The events compared on: ids, labels, recorded scores and each version's score.
    event_threshold
        The risk-event threshold flags were computed with.
    database
        The store (password hidden).
    confirmed, dismissed
        Counts among the events compared on.
    excluded
        Events left out because a version trained on them: ``{model: n}``.
    raised_by
        Reviewed precision of the events as raised, per recorded model version
        (``model_version, confirmed, dismissed, reviewed, precision``).
    warnings
        Things the reader must know (printed loudly by the CLI).
    split
        The hold-out split applied on top (if any).
    """

    versions: list[VersionFigures]
    events: pd.DataFrame
    event_threshold: float
    database: str
    confirmed: int
    dismissed: int
    excluded: dict[str, int]
    raised_by: list[dict[str, Any]]
    warnings: list[str]
    split: HoldoutSplit

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (without the per-event table)."""
        return {
            "event_threshold": self.event_threshold,
            "database": self.database,
            "events": len(self.events),
            "confirmed": self.confirmed,
            "dismissed": self.dismissed,
            "event_ids_sha256": _ids_digest(self.events["event_id"]),
            "excluded": dict(self.excluded),
            "split": self.split.to_dict(),
            "versions": [v.to_dict() for v in self.versions],
            "raised_by": self.raised_by,
            "warnings": list(self.warnings),
            "compared_at": utcnow().isoformat(timespec="seconds"),
        }


def _figures(
    model: str,
    role: str,
    y: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    recorded: pd.DataFrame,
) -> VersionFigures:
    from fraudlens.scoring import flag

    flags = flag(scores, threshold)
    pos = y == 1
    cf = int((flags & pos).sum())
    df = int((flags & ~pos).sum())
    n_pos = int(pos.sum())
    auc = ap = None
    if 0 < n_pos < len(y):
        from sklearn.metrics import average_precision_score, roc_auc_score

        auc = float(roc_auc_score(y, scores))
        ap = float(average_precision_score(y, scores))
    reproduced = None
    mine = (recorded["model_version"] == model).to_numpy()
    if mine.any():
        close = np.abs(recorded["score"].to_numpy(dtype=np.float64)[mine] - scores[mine]) <= 1e-6
        reproduced = (int(close.sum()), int(mine.sum()))
    return VersionFigures(
        model=model,
        role=role,
        flagged=cf + df,
        confirmed_flagged=cf,
        dismissed_flagged=df,
        precision=reviewed_precision(cf, df),
        recall=cf / n_pos if n_pos else None,
        dismissed_silenced=int((~flags & ~pos).sum()),
        confirmed_missed=int((~flags & pos).sum()),
        roc_auc=auc,
        average_precision=ap,
        reproduced=reproduced,
    )


def compare_versions(
    registry: Registry,
    name: str,
    candidate: str,
    store: Store | str,
    *,
    against: str | None = None,
    event_threshold: float | None = None,
    split: HoldoutSplit | None = None,
    include_trained: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Comparison:
    """Score ``candidate`` and the active version (or ``against``) on reviewed events.

    Events either version trained on are left out (see the module's hold-out rule),
    unless ``include_trained``; then they are kept and a warning says the figures are
    optimistic. With ``split``, only the events it holds out are used.

    Parameters
    ----------
    registry, name
        The registry and the model name (``market-features``, ``market-cnn``, ``market``).
    candidate
        The version to judge (``v0002``).
    store
        The store with the reviewed events, or its URL.
    against
        The version to compare with (default the active one).
    event_threshold
        Flag above this (default the ``event_threshold`` setting, 0.9).
    split
        Use only the events this split holds out.
    include_trained
        Keep events a version trained on (their figures are then optimistic).
    progress
        Called with a short description of each step.

    Raises
    ------
    DataError
        No reviewed events are left to compare on (the message says why), or a bad
        threshold.
    ModelNotFoundError
        No such model or version.
    """
    from fraudlens.scoring import score_market

    say = progress or (lambda _msg: None)
    model_name = registry.resolve(name)
    cand = registry.get(model_name, candidate)
    other = registry.get(model_name, against or registry.active_version(model_name))
    if cand.metadata.get("domain") != "market":
        raise DataError(f"{model_name} is not a market model: reviewed events are market windows")
    if other.version == cand.version:
        raise DataError(
            f"{model_name} {cand.version} is "
            + ("the active version" if against is None else "given twice")
            + ": compare it with another version (--against VERSION)"
        )
    if event_threshold is None:
        from fraudlens.config import get_settings

        event_threshold = float(get_settings().event_threshold)
    thr = float(event_threshold)
    if not math.isfinite(thr) or not 0.0 <= thr <= 1.0:
        raise DataError(f"event threshold must be within 0..1, not {event_threshold!r}")
    split = split or HoldoutSplit()
    part: Literal["all", "holdout"] = "holdout" if split.active else "all"
    reviewed = load_reviewed(store, split=split, part=part, progress=say)
    database = reviewed.database
    warnings: list[str] = []
    excluded: dict[str, int] = {}
    if len(reviewed) == 0:
        why = "no confirmed or dismissed market risk events"
        if reviewed.skipped:
            why += f" left ({', '.join(f'{k}: {v}' for k, v in reviewed.skipped.items())})"
        raise DataError(
            f"nothing to compare on in {database}: {why}; review alerts first "
            "(the review page, or POST /v1/risk-events/{id}/review)"
        )
    present = set(reviewed.event_ids)
    drop: set[int] = set()
    for mv in {cand.version: cand, other.version: other}.values():
        ids, source = trained_event_ids(mv.metadata)
        if not ids:
            continue
        tag = f"{mv.name}:{mv.version}"
        if source is not None and source != database:
            warnings.append(
                f"{tag} trained on reviewed events of {source}, not of {database}: "
                "event ids cannot be matched, so some compared events may be ones it "
                "trained on; compare with --holdout-after on events reviewed since"
            )
            continue
        seen = present & ids
        if not seen:
            continue
        if include_trained:
            warnings.append(
                f"{len(seen):,} of the {len(present):,} compared events trained {tag}: "
                "its figures on them are optimistic (drop --include-trained to leave them out)"
            )
        else:
            excluded[tag] = len(seen)
            drop |= seen
    if drop:
        reviewed = reviewed.select(~reviewed.events["event_id"].isin(drop).to_numpy())
        if len(reviewed) == 0:
            raise DataError(
                f"all {len(present):,} reviewed events in {database} trained "
                + " or ".join(excluded)
                + ": hold some out when training (market train --holdout-after TS or "
                "--holdout-fraction F), or review more alerts"
            )
    y = reviewed.y()
    events = reviewed.events[
        ["event_id", "account_id", "status", "label", "model_version", "score", "window_end"]
    ].rename(columns={"score": "recorded_score"})
    figures: list[VersionFigures] = []
    recorded = reviewed.events[["model_version", "score"]]
    for mv, role in ((cand, "candidate"), (other, "active" if against is None else "against")):
        tag = f"{mv.name}:{mv.version}"
        say(f"scoring {len(y):,} reviewed events with {tag}")
        det = registry.load(mv.name, mv.version)
        result = score_market(det, reviewed.data, threshold=thr)
        # score_market returns sample order (sorted sample ids), as the events frame
        scores = result.scores
        events[f"score_{mv.version}"] = scores
        figures.append(_figures(tag, role, y, scores, thr, recorded))
    versions_seen = reviewed.events.groupby(["model_version", "status"]).size()
    raised: list[dict[str, Any]] = []
    for version in sorted({v for v, _ in versions_seen.index}):
        c = int(versions_seen.get((version, "confirmed"), 0))
        d = int(versions_seen.get((version, "dismissed"), 0))
        raised.append(
            {
                "model_version": version,
                "confirmed": c,
                "dismissed": d,
                "reviewed": c + d,
                "precision": reviewed_precision(c, d),
            }
        )
    if int(y.sum()) in (0, len(y)):
        warnings.append(
            "the compared events are all "
            + ("confirmed" if int(y.sum()) else "dismissed")
            + ": ROC AUC and AP need both"
        )
    return Comparison(
        versions=figures,
        events=events,
        event_threshold=thr,
        database=database,
        confirmed=int(y.sum()),
        dismissed=int(len(y) - y.sum()),
        excluded=excluded,
        raised_by=raised,
        warnings=warnings,
        split=split,
    )
