"""The one scoring path: parsed input and a loaded detector in, typed results out.

The HTTP service, the queue worker, the card event processor and batch scoring all score
through the two functions here, so a score, a flag and an explanation mean the same thing
whichever way a record arrived:

- :func:`score_market`: accounts' trades with their bars (:class:`~fraudlens.market.data.
  MarketData`) and a market detector -> :class:`MarketScores`;
- :func:`score_cards`: card feature rows and a card classifier (and/or the anomaly model)
  -> :class:`CardScores`.

Neither reads files, parses requests, windows data or loads models: callers do that and
pass parsed input. Both are cheap around the detector call itself (no pandas frame is
built unless asked for), because the worker calls them on its hot path.

The flag rule
-------------
One rule for the whole project, written once in :func:`flag`: **a record is flagged when
its score is strictly greater than the threshold** (``score > threshold``), as PyOD's
``predict`` and the reference's "above 0.90". A score equal to the threshold is not
flagged.

Two thresholds, named apart
---------------------------
- ``model_threshold``: the model's own operating point, chosen on validation data when
  it was trained and stored in its ``metadata.json``. Used when no threshold is given.
- ``event_threshold``: the risk-event threshold of the real-time pipeline
  (:data:`EVENT_THRESHOLD`, 0.9, the reference's), passed as ``threshold=`` by the worker.

Every result carries ``model`` (``name:version``), ``model_threshold`` and ``threshold``
(the one the flags were computed with), so each flag can be traced to a model and a
threshold.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np

from fraudlens.config import DEFAULT_EVENT_THRESHOLD
from fraudlens.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from fraudlens._detector import Detector
    from fraudlens.market.data import MarketData
    from fraudlens.market.features import TradeBook

__all__ = [
    "EVENT_THRESHOLD",
    "EVIDENCE_COLUMNS",
    "CardScores",
    "Explain",
    "MarketScores",
    "flag",
    "market_chunks",
    "market_evidence",
    "model_id",
    "resolve_threshold",
    "score_cards",
    "score_market",
]

#: The risk-event threshold of the real-time pipeline (the reference's 0.9); the
#: ``event_threshold`` setting overrides it.
EVENT_THRESHOLD = DEFAULT_EVENT_THRESHOLD

#: Per-account evidence columns that :func:`score_market` adds to its results beside the
#: score, from :func:`fraudlens.market.pairs.account_evidence` (see its
#: ``EVIDENCE_DESCRIPTIONS``): the value the account's matched round trips moved
#: (``value_moved`` >= 0, ``value_lost`` signed: > 0 moved out of the account), its round
#: trips, its strongest mirror partner (``counterparty``, None if none), its mirrored
#: trades and the value moved with that partner. Values are in the quote currency.
EVIDENCE_COLUMNS: tuple[str, ...] = (
    "value_moved",
    "value_lost",
    "n_round_trips",
    "counterparty",
    "n_mirrored",
    "counterparty_value_moved",
)

#: ``True`` explains every record, ``"flagged"`` only the flagged ones, ``False`` none.
Explain = bool | Literal["flagged"]


def flag(scores: Any, threshold: float) -> np.ndarray:
    """The flag rule: ``scores > threshold``, element-wise, as a boolean array.

    Parameters
    ----------
    scores
        Scores (array-like of floats); higher means more suspicious.
    threshold
        The threshold; a score equal to it is not flagged.

    Returns
    -------
    numpy.ndarray
        Boolean array of the shape of ``scores``.
    """
    return np.asarray(scores, dtype=np.float64) > float(threshold)


def model_id(detector: Detector) -> str:
    """``name:version`` of a detector loaded from the registry (its name if unsaved)."""
    return str(getattr(detector, "model_version_", None) or detector.name)


def resolve_threshold(detector: Detector, threshold: float | None) -> float:
    """The threshold to flag with: ``threshold`` if given, else the model's own.

    Raises
    ------
    ConfigError
        If ``threshold`` is not a finite number.
    """
    if threshold is None:
        return float(detector.threshold_)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise ConfigError(f"threshold must be a number, not {type(threshold).__name__}")
    value = float(threshold)
    if not math.isfinite(value):
        raise ConfigError(f"threshold must be a finite number, not {threshold!r}")
    return value


# ------------------------------------------------------------------------------ market


@dataclass(frozen=True, eq=False)
class MarketScores:
    """Scores of accounts by one market model, in ``account_ids`` order (sorted ids).

    Attributes
    ----------
    account_ids
        Account ids (str), sorted, one per scored account.
    scores
        float64 scores (probability of takeover), aligned to ``account_ids``.
    flagged
        Boolean flags, ``flag(scores, threshold)``.
    model
        ``name:version`` of the model that scored.
    model_threshold
        The model's own threshold (from its metadata).
    threshold
        The threshold the flags were computed with (``model_threshold`` unless the caller
        gave another, e.g. the risk-event threshold).
    explanations
        ``account_id -> trades that drove the score`` for the explained accounts (see
        :func:`fraudlens.market.explain.explain_batch`), or None when not asked.
    evidence
        Per-account evidence (columns :data:`EVIDENCE_COLUMNS`) indexed by account id, or
        None when there is none.
    """

    account_ids: np.ndarray
    scores: np.ndarray
    flagged: np.ndarray
    model: str
    model_threshold: float
    threshold: float
    explanations: dict[str, list[dict[str, Any]]] | None = None
    evidence: pd.DataFrame | None = None

    def __len__(self) -> int:
        return len(self.account_ids)

    @property
    def n_flagged(self) -> int:
        """How many accounts are flagged."""
        return int(np.count_nonzero(self.flagged))

    def flagged_ids(self) -> list[str]:
        """Flagged account ids, in ``account_ids`` order."""
        return [str(a) for a in self.account_ids[self.flagged]]

    def score_map(self) -> dict[str, float]:
        """``account_id -> score``."""
        return dict(zip(self.account_ids.tolist(), self.scores.tolist(), strict=True))

    def frame(self) -> pd.DataFrame:
        """The public ``scores`` table: ``account_id, score, flagged, model, threshold``
        (``flagged`` as 0/1), then the evidence columns."""
        import pandas as pd

        out = pd.DataFrame(
            {
                "account_id": self.account_ids,
                "score": self.scores,
                "flagged": self.flagged.astype(np.int8),
                "model": self.model,
                "threshold": self.threshold,
            }
        )
        if self.evidence is not None and len(self.evidence.columns):
            ev = self.evidence.reindex(pd.Index(self.account_ids, name="account_id"))
            for col in ev.columns:
                out[str(col)] = ev[col].to_numpy()
        return out

    def records(self) -> list[dict[str, Any]]:
        """One plain-JSON dict per account: ``account_id, score, flagged``, the evidence
        fields, and ``trades`` (the explanation) when explanations were asked for."""
        ev: dict[str, dict[str, Any]] = {}
        if self.evidence is not None and len(self.evidence.columns):
            ev = {
                str(k): {str(c): _plain(v) for c, v in row.items()}
                for k, row in self.evidence.to_dict("index").items()
            }
        out = []
        for a, s, f in zip(
            self.account_ids.tolist(), self.scores.tolist(), self.flagged.tolist(), strict=True
        ):
            rec: dict[str, Any] = {"account_id": a, "score": s, "flagged": f}
            rec.update(ev.get(a, {}))
            if self.explanations is not None:
                rec["trades"] = self.explanations.get(a, [])
            out.append(rec)
        return out


def score_market(
    detector: Detector,
    data: MarketData,
    *,
    threshold: float | None = None,
    explain: Explain = False,
    top: int = 10,
    chunk_size: int | None = None,
    progress: Callable[[int], None] | None = None,
    context_trades: pd.DataFrame | None = None,
    evidence: bool = True,
) -> MarketScores:
    """Score every account in ``data`` with a market detector.

    Parameters
    ----------
    detector
        A fitted market detector (``market-features`` or ``market-cnn``).
    data
        Validated trades and bars, already cut to the scoring window (see
        :func:`fraudlens.market.data.window`). Every account with a trade is scored.
    threshold
        Flag above this; the model's own threshold (``detector.threshold_``) when None.
        The worker passes the risk-event threshold here.
    explain
        ``True``: the trades that drove each account's score; ``"flagged"``: only for
        flagged accounts (the worker's case: explanations cost more than the score);
        ``False``: none.
    top
        At most this many trades per explained account.
    chunk_size
        Score at most this many accounts per detector call (bounds memory on large
        batches: the CNN renders an image per account); all at once when None.
    progress
        Called with the number of accounts finished after each chunk.
    context_trades
        Trades of other accounts (the trades contract) that may mirror the scored
        accounts' trades, e.g. from :meth:`fraudlens.store.Store.mirror_candidates`.
        They only serve the counterparty evidence; their accounts are not scored. The
        evidence is computed on all of ``data`` at once (not per chunk), so accounts in
        ``data`` are found as each other's counterparties.
    evidence
        Compute the per-account evidence (:func:`market_evidence`). A caller that needs
        it for some accounts only (the worker: for the flagged ones, with their stored
        counterparties) passes False and calls :func:`market_evidence` itself.

    Returns
    -------
    MarketScores

    Raises
    ------
    DataError
        If the detector rejects the data.
    ConfigError
        If ``threshold`` is not a finite number.
    """
    thr = resolve_threshold(detector, threshold)
    ids = _account_ids(data)
    shared = None
    if chunk_size is not None and len(ids) > chunk_size:
        parts = []
        for chunk in market_chunks(data, chunk_size, ids):
            parts.append(_market_scores(detector, chunk))
            if progress is not None:
                progress(len(parts[-1]))
        scores = np.concatenate(parts)
    else:
        shared = _feature_pass(detector, data, ids) if explain and top > 0 else None
        scores = shared[0] if shared is not None else _market_scores(detector, data, ids)
        if progress is not None:
            progress(len(ids))
    flags = flag(scores, thr)
    explanations = None
    if explain:
        wanted = ids[flags] if explain == "flagged" else ids
        if shared is not None and len(wanted):
            from fraudlens.market.explain import explain_analysis

            klines, tr, legs, rt = shared[1]
            explanations = explain_analysis(data.trades, klines, tr, legs, rt, wanted, top=top)
        else:
            explanations = _explain_market(data, wanted, top)
    return MarketScores(
        account_ids=ids,
        scores=scores,
        flagged=flags,
        model=model_id(detector),
        model_threshold=float(detector.threshold_),
        threshold=thr,
        explanations=explanations,
        evidence=market_evidence(data, ids, context_trades=context_trades) if evidence else None,
    )


def _account_ids(data: MarketData) -> np.ndarray:
    """``np.asarray(data.account_ids, dtype=str)``; a column of strings (no missing
    value) is read as Python strings and sorted by Python (code-point order, as numpy
    sorts them), without pandas' fixed costs of ``astype``, ``unique`` and a Series."""
    import pandas as pd

    from fraudlens.market.features import _array

    trades = data.trades
    if "account_id" in trades.columns:
        values = _array(trades, "account_id")
        if isinstance(values.dtype, pd.StringDtype):
            ids = values.tolist()
            if all(type(a) is str for a in ids):
                return np.asarray(sorted(set(ids)), dtype=str)
    return np.asarray(data.account_ids, dtype=str)


def _market_scores(
    detector: Detector, data: MarketData, ids: np.ndarray | None = None
) -> np.ndarray:
    n = len(data.account_ids if ids is None else ids)
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    scores = np.asarray(detector.decision_function(data), dtype=np.float64)
    if scores.shape != (n,):
        raise RuntimeError(f"{model_id(detector)} returned {scores.shape} scores for {n} accounts")
    return scores


def _feature_pass(
    detector: Detector, data: MarketData, ids: np.ndarray
) -> tuple[np.ndarray, tuple[Any, ...]] | None:
    """Scores of the feature detector, and the arrays its features were computed from
    (k-lines, trades, legs, round trips), so an explanation reads the same arrays
    instead of building them again. None for any other detector (or no trades)."""
    from fraudlens.market._gbm import FeatureDetector

    if (
        not isinstance(detector, FeatureDetector)
        or type(detector).decision_function is not FeatureDetector.decision_function
        or len(data.trades) == 0
    ):
        return None
    from fraudlens.market import features

    # what FeatureDetector.decision_function(data) computes, step by step
    klines, tr, legs, rt, pm = features._analyse_bars(data)
    if type(detector).decision_function_features is FeatureDetector.decision_function_features:
        # the feature values straight to the booster: no frame of a few rows to build
        raw = detector._decision_block(features._feature_block(tr, legs, rt, pm))
    else:
        raw = detector.decision_function_features(features._features(tr, legs, rt, pm))
    scores = np.asarray(raw, dtype=np.float64)
    if scores.shape != (len(ids),):
        raise RuntimeError(
            f"{model_id(detector)} returned {scores.shape} scores for {len(ids)} accounts"
        )
    return scores, (klines, tr, legs, rt)


def market_chunks(
    data: MarketData, chunk_size: int, account_ids: np.ndarray | None = None
) -> Iterator[MarketData]:
    """Split ``data`` into consecutive groups of at most ``chunk_size`` accounts.

    Each chunk holds all the trades of its accounts and shares the bars and the book
    (every trade of ``data``, or ``data.book``), so chunks are independent and score the
    same alone as together. Chunks follow the sorted account order, so their scores
    concatenate in ``data.account_ids`` order.

    Raises
    ------
    ConfigError
        If ``chunk_size`` is not positive.
    """
    from fraudlens.market.data import MarketData

    if chunk_size <= 0:
        raise ConfigError(f"chunk_size must be positive, not {chunk_size}")
    ids = np.asarray(data.account_ids if account_ids is None else account_ids, dtype=str)
    # One stable sort, then slices: cheaper than one isin() per chunk.
    trades = data.trades.sort_values("account_id", kind="stable")
    acc = trades["account_id"].to_numpy(dtype=str)
    book = data.the_book()
    for i in range(0, len(ids), chunk_size):
        part = ids[i : i + chunk_size]
        lo = int(np.searchsorted(acc, part[0], side="left"))
        hi = int(np.searchsorted(acc, part[-1], side="right"))
        yield MarketData(data.klines, trades.iloc[lo:hi], None, data.bar, book)


def _explain_market(
    data: MarketData, account_ids: Iterable[str], top: int
) -> dict[str, list[dict[str, Any]]]:
    ids = [str(a) for a in account_ids]
    if not ids or top <= 0:
        return {a: [] for a in ids}
    from fraudlens.market.explain import explain_batch

    return explain_batch(data, ids, top=top)


#: Prefix of the alias under which :func:`market_evidence` reads context trades of a
#: scored account (a control character: never in an account id).
_ALIAS: Final = "\x00"


def _book_context(book: TradeBook, trades: pd.DataFrame) -> pd.DataFrame | None:
    """The trades of ``book`` beyond ``trades`` that mirror one of them (e.g. a file's
    trades before the windows of ``trades``'s accounts)."""
    from fraudlens._isin import isin
    from fraudlens.market._columns import _text
    from fraudlens.market.features import TradeBook as _Book

    if book.fetch is not None:
        # a book that asks a store: what it holds may not be all there is
        return book.candidates(trades)
    held = book.all_trades()
    beyond = ~isin(_text(held, "trade_id"), _text(trades, "trade_id"))
    if not beyond.any():
        return None
    # a book of those trades alone: few beside a file's windows, and none to drop again
    part = _Book(held[beyond], max_gap=book.max_gap, price_tol=book.price_tol, qty_tol=book.qty_tol)
    return part.candidates(trades)


def market_evidence(
    data: MarketData,
    account_ids: np.ndarray | None = None,
    *,
    context_trades: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per-account evidence beside the score: columns :data:`EVIDENCE_COLUMNS`.

    Parameters
    ----------
    data
        The scored trades and their bars.
    account_ids
        The accounts to return, in this order (``data.account_ids`` when None).
    context_trades
        Other accounts' trades that may be the other side of the scored accounts'
        trades (see :func:`score_market`); None: those of ``data.book`` that mirror
        them, when it has a book (a file's windows read against the whole file), else
        none. Trades of a scored account among them (older than its window) count as
        its counterparty's other side only, never as more of its own trades.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``account_id``.
    """
    import pandas as pd

    from fraudlens._isin import isin
    from fraudlens.market import pairs
    from fraudlens.market._columns import _text, indexed_frame
    from fraudlens.market.data import TRADE_COLUMNS

    def columns(frame: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
        # a column selection copies the frame: skip it when the columns are those already
        return frame if frame.columns.tolist() == cols else frame[cols]

    trades = data.trades
    if context_trades is None and data.book is not None and len(trades):
        context_trades = _book_context(data.book, trades)
    aliased = False
    if context_trades is not None and len(context_trades):
        cols = list(TRADE_COLUMNS)
        seen = isin(_text(context_trades, "trade_id"), _text(trades, "trade_id"))
        extra = columns(context_trades if not seen.any() else context_trades[~seen], cols)
        # Context trades of an account scored here (older than its window: the store's
        # candidates may hold them) are another account's other side, not more of its
        # own trades: they are read under an alias (no id has a control character) and
        # named by the account's id again as a counterparty.
        theirs = isin(_text(extra, "account_id"), _text(trades, "account_id"))
        if theirs.any():
            extra = extra.copy()
            extra.loc[theirs, "account_id"] = _ALIAS + extra.loc[theirs, "account_id"].astype(str)
            aliased = True
        trades = pd.concat([columns(trades, cols), extra], ignore_index=True)
    acc, arrays = pairs._evidence_arrays(trades, data.klines, bar=data.bar)
    if aliased:
        cp = arrays["counterparty"]
        arrays["counterparty"] = pd.Series(
            [v[len(_ALIAS) :] if isinstance(v, str) and v.startswith(_ALIAS) else v for v in cp],
            index=cp.index,
            dtype=object,
        )
    ids = data.account_ids if account_ids is None else account_ids
    index = pd.Index(np.asarray(ids, dtype=object), name="account_id")
    pos = _positions(acc, index)
    if pos is not None:
        # Every wanted account has evidence (the worker's case): its rows of the wanted
        # columns, not the whole frame reindexed and then cut (which cost ten times more
        # on a batch of one account).
        return indexed_frame(
            EVIDENCE_COLUMNS,
            [
                np.asarray(arrays[c].to_numpy(), dtype=object)[pos]
                if c == "counterparty"
                else arrays[c][pos]
                for c in EVIDENCE_COLUMNS
            ],
            index,
        )
    ev = pd.DataFrame(arrays, columns=list(pairs.EVIDENCE_COLUMNS))
    ev.index = pd.Index(acc, name="account_id", dtype=object)
    ev = ev.reindex(index)
    return columns(ev, list(EVIDENCE_COLUMNS))


def _positions(sorted_ids: np.ndarray, index: pd.Index) -> np.ndarray | None:
    """Where each id of ``index`` sits in ``sorted_ids``; None unless every one is
    there, once."""
    want = index.to_numpy(dtype=object)
    if not len(sorted_ids) or not len(want):
        return None
    # a few ids: a set tells whether they are distinct for less than pandas' hash table
    if not (len(set(want.tolist())) == len(want) if len(want) <= 512 else index.is_unique):
        return None
    try:
        pos = np.searchsorted(sorted_ids, want)
        found = sorted_ids[np.minimum(pos, len(sorted_ids) - 1)] == want
    except TypeError:  # ids of another type than the evidence's strings
        return None
    return pos if bool(np.all(found)) else None


# ------------------------------------------------------------------------------- cards


@dataclass(frozen=True, eq=False)
class CardScores:
    """Scores of card rows, in input order.

    Attributes
    ----------
    scores
        Classifier scores (P(fraud)), or None when only the anomaly model ran.
    flagged
        Boolean flags from the classifier, or from the anomaly model when it ran alone.
    model
        ``name:version`` of the model the flags come from.
    model_threshold
        That model's own threshold.
    threshold
        The threshold the flags were computed with.
    anomaly_scores
        Anomaly scores (higher = more unusual), or None.
    anomaly_model
        ``name:version`` of the anomaly model, or None.
    anomaly_threshold
        The anomaly model's own threshold, or None.
    explanations
        Per row, the features that pushed the classifier's score up most (``feature,
        value, contribution``), or None when not asked or not available for the model.
    """

    scores: np.ndarray | None
    flagged: np.ndarray
    model: str
    model_threshold: float
    threshold: float
    anomaly_scores: np.ndarray | None = None
    anomaly_model: str | None = None
    anomaly_threshold: float | None = None
    explanations: list[list[dict[str, Any]]] | None = None

    def __len__(self) -> int:
        return len(self.flagged)

    @property
    def n_flagged(self) -> int:
        """How many rows are flagged."""
        return int(np.count_nonzero(self.flagged))

    @property
    def models(self) -> list[str]:
        """Every model that scored, flagging model first."""
        out = [self.model]
        if self.anomaly_model is not None and self.anomaly_model != self.model:
            out.append(self.anomaly_model)
        return out

    def frame(self, ids: Sequence[Any] | None = None, id_column: str = "transaction_id") -> Any:
        """A table: ``[id_column,] score, flagged, model, threshold[, anomaly_score]``.

        ``score`` is the flagging model's score (the anomaly score when it ran alone).
        """
        import pandas as pd

        out = pd.DataFrame()
        if ids is not None:
            out[id_column] = np.asarray(ids)
        flagging = self.scores if self.scores is not None else self.anomaly_scores
        out["score"] = flagging
        out["flagged"] = self.flagged.astype(np.int8)
        out["model"] = self.model
        out["threshold"] = self.threshold
        if self.scores is not None and self.anomaly_scores is not None:
            out["anomaly_score"] = self.anomaly_scores
            out["anomaly_model"] = self.anomaly_model
        return out


def score_cards(
    classifier: Detector | None,
    frame: Any,
    *,
    anomaly: Detector | None = None,
    threshold: float | None = None,
    explain: Explain = False,
    top: int = 5,
) -> CardScores:
    """Score card feature rows with a classifier and/or the anomaly model.

    Parameters
    ----------
    classifier
        A fitted supervised card detector (``cards-xgboost``, ``cards-logistic``), or
        None to flag with ``anomaly`` alone.
    frame
        Feature rows: a DataFrame with the model's feature columns, or a 2-D array in
        the model's feature order.
    anomaly
        The anomaly model (``cards-anomaly``), scored beside the classifier if given.
    threshold
        Flag above this; the flagging model's own threshold when None.
    explain
        ``True`` (every row) or ``"flagged"`` (flagged rows only): the features that
        pushed the classifier's score up most. Tree SHAP for XGBoost, the linear terms
        for logistic regression; not available for the anomaly model.
    top
        At most this many features per explained row.

    Returns
    -------
    CardScores

    Raises
    ------
    DataError
        If a detector rejects the rows (naming the row and column).
    ConfigError
        If neither model is given, or ``threshold`` is not a finite number.
    """
    flagging = classifier if classifier is not None else anomaly
    if flagging is None:
        raise ConfigError("score_cards needs a classifier or an anomaly model")
    thr = resolve_threshold(flagging, threshold)
    scores = a_scores = None
    if classifier is not None:
        scores = np.asarray(classifier.decision_function(frame), dtype=np.float64)
    if anomaly is not None:
        a_scores = np.asarray(anomaly.decision_function(frame), dtype=np.float64)
    flag_on = scores if scores is not None else a_scores
    assert flag_on is not None
    flags = flag(flag_on, thr)
    explanations = None
    if explain and classifier is not None:
        rows = np.flatnonzero(flags) if explain == "flagged" else np.arange(len(flags))
        explanations = _explain_cards(classifier, frame, rows, top)
    return CardScores(
        scores=scores,
        flagged=flags,
        model=model_id(flagging),
        model_threshold=float(flagging.threshold_),
        threshold=thr,
        anomaly_scores=a_scores,
        anomaly_model=model_id(anomaly) if anomaly is not None else None,
        anomaly_threshold=float(anomaly.threshold_) if anomaly is not None else None,
        explanations=explanations,
    )


def _explain_cards(
    det: Detector, frame: Any, rows: np.ndarray, top: int
) -> list[list[dict[str, Any]]] | None:
    """Top positive feature contributions of the given rows (empty lists elsewhere)."""
    from fraudlens.cards.explain import explain, supports

    if not supports(det):
        return None
    return explain(det, frame, rows=rows, top=top)


def _plain(value: Any) -> Any:
    """A numpy/pandas scalar as a plain JSON value (NaN as None)."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
