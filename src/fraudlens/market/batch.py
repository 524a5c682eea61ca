"""Batch scoring of market accounts: in-process in chunks, or on a Ray cluster.

The unit of work is a chunk of accounts. Every chunk carries all of its accounts' trades,
so chunks are independent and can be scored anywhere the model and the k-lines are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fraudlens.market.data import MarketData, window

if TYPE_CHECKING:
    from fraudlens._detector import Detector

__all__ = ["chunk_accounts", "score_market", "score_market_ray", "scores_frame"]


def chunk_accounts(account_ids: np.ndarray, chunk_size: int) -> list[np.ndarray]:
    """Split sorted account ids into consecutive chunks of at most ``chunk_size``."""
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    return [account_ids[i : i + chunk_size] for i in range(0, len(account_ids), chunk_size)]


def scores_frame(
    account_ids: np.ndarray, scores: np.ndarray, threshold: float, model: str
) -> pd.DataFrame:
    """The public ``scores`` contract: ``account_id, score, flagged, model``."""
    return pd.DataFrame(
        {
            "account_id": account_ids,
            "score": np.asarray(scores, dtype=np.float64),
            "flagged": (np.asarray(scores) > threshold).astype(np.int8),
            "model": model,
        }
    )


def _split_by_account(trades: pd.DataFrame, chunks: list[np.ndarray]) -> list[pd.DataFrame]:
    # One stable sort, then slices: cheaper than one isin() per chunk.
    t = trades.sort_values("account_id", kind="stable")
    acc = t["account_id"].to_numpy(dtype=str)
    out = []
    for ids in chunks:
        lo = np.searchsorted(acc, ids[0], side="left")
        hi = np.searchsorted(acc, ids[-1], side="right")
        out.append(t.iloc[lo:hi])
    return out


def score_market(
    data: MarketData,
    detector: Detector,
    *,
    window_hours: float | None = 24.0,
    chunk_size: int = 4096,
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Score every account in-process, ``chunk_size`` accounts at a time.

    Returns the ``scores`` frame (sorted by account id). ``progress`` is called with the
    number of accounts finished after each chunk.
    """
    if window_hours is not None:
        data = window(data, window_hours)
    ids = data.account_ids
    chunks = chunk_accounts(ids, chunk_size)
    parts = []
    for ids_c, trades_c in zip(chunks, _split_by_account(data.trades, chunks), strict=True):
        parts.append(detector.decision_function(MarketData(data.klines, trades_c, None, data.bar)))
        if progress is not None:
            progress(len(ids_c))
    scores = np.concatenate(parts) if parts else np.zeros(0)
    model = getattr(detector, "model_version_", detector.name)
    return scores_frame(ids, scores, detector.threshold_, model)


class _RayScorer:
    """Ray actor: loads the model once, then scores chunks of trades."""

    def __init__(self, models_dir: str, model: str, klines_ref: Any) -> None:
        import ray

        from fraudlens.registry import Registry

        self.detector = Registry(models_dir).load(model)
        self.klines = ray.get(klines_ref) if isinstance(klines_ref, ray.ObjectRef) else klines_ref

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        data = MarketData(self.klines, batch.drop(columns=["_chunk"]), None)
        scores = self.detector.decision_function(data)
        return scores_frame(
            data.account_ids,
            scores,
            self.detector.threshold_,
            getattr(self.detector, "model_version_", self.detector.name),
        )


def score_market_ray(
    data: MarketData,
    models_dir: str,
    model: str = "market",
    *,
    window_hours: float | None = 24.0,
    chunk_size: int = 4096,
    num_actors: int = 2,
    address: str | None = None,
) -> pd.DataFrame:
    """Score every account on Ray: Ray Data ``map_batches`` over an actor pool.

    Each actor loads the model from ``models_dir`` once (the registry must be reachable
    from every node, e.g. a shared volume) and gets the k-lines through the object store.
    Batches are whole account chunks, so no account is split across actors.
    ``address=None`` starts a local Ray runtime; pass ``"auto"`` or ``ray://...`` for a
    cluster.
    """
    import ray

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    if window_hours is not None:
        data = window(data, window_hours)
    ids = data.account_ids
    chunks = chunk_accounts(ids, chunk_size)
    pieces = _split_by_account(data.trades, chunks)
    for i, p in enumerate(pieces):
        pieces[i] = p.assign(_chunk=i)
    klines_ref = ray.put(data.klines)
    ds = ray.data.from_pandas(pieces)
    out = ds.map_batches(
        _RayScorer,
        fn_constructor_args=(str(models_dir), model, klines_ref),
        batch_format="pandas",
        batch_size=None,
        compute=ray.data.ActorPoolStrategy(size=num_actors),
    ).to_pandas()
    return out.sort_values("account_id", kind="stable").reset_index(drop=True)
