"""Batch scoring of market accounts: in-process in chunks, or on a Ray cluster.

Both engines score through :func:`fraudlens.scoring.score_market`, the one scoring path,
and return the public ``scores`` table: ``account_id, score, flagged, model, threshold``
(plus any per-account evidence columns). The unit of work is a chunk of accounts; every
chunk carries all of its accounts' trades and reads their mirror evidence against the
same book (every trade of the input, before windowing), so chunks are independent and can
be scored anywhere the model, the k-lines and the book are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pandas as pd

from fraudlens.market.data import MarketData, window
from fraudlens.scoring import EVIDENCE_COLUMNS, market_chunks, market_evidence, score_market

if TYPE_CHECKING:
    from fraudlens._detector import Detector

__all__ = ["score_accounts", "score_accounts_ray"]


def score_accounts(
    data: MarketData,
    detector: Detector,
    *,
    window_hours: float | None = 24.0,
    threshold: float | None = None,
    chunk_size: int = 4096,
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Score every account in-process, ``chunk_size`` accounts at a time.

    Parameters
    ----------
    data
        Validated trades and bars.
    detector
        A fitted market detector.
    window_hours
        Cut each account to the window that ends at its latest trade first (None: the
        data is already windowed).
    threshold
        Flag above this; the model's own threshold when None.
    chunk_size
        Accounts per detector call.
    progress
        Called with the number of accounts finished after each chunk.

    Returns
    -------
    pandas.DataFrame
        The ``scores`` table, sorted by account id.
    """
    if window_hours is not None:
        data = window(data, window_hours)
    result = score_market(
        detector, data, threshold=threshold, chunk_size=chunk_size, progress=progress
    )
    return result.frame()


class _RayScorer:
    """Ray actor: loads the model once, then scores chunks of trades."""

    def __init__(
        self,
        models_dir: str,
        model: str,
        klines_ref: Any,
        threshold: float | None,
        book_ref: Any = None,
    ) -> None:
        import ray

        from fraudlens.registry import Registry

        self.detector = Registry(models_dir).load(model)
        self.klines = ray.get(klines_ref) if isinstance(klines_ref, ray.ObjectRef) else klines_ref
        self.book = ray.get(book_ref) if isinstance(book_ref, ray.ObjectRef) else book_ref
        self.threshold = threshold

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        data = MarketData(self.klines, batch.drop(columns=["_chunk"]), None, book=self.book)
        return score_market(self.detector, data, threshold=self.threshold).frame()


#: Seconds to wait for a Ray cluster's address to answer before giving up on it.
RAY_CONNECT_SECONDS = 10.0


def _check_reachable(address: str, timeout: float = RAY_CONNECT_SECONDS) -> None:
    """Refuse a Ray cluster address (``host:port`` or ``ray://host:port``) that nothing
    answers at: ``ray.init`` retries such an address for minutes on end (``bogus:1`` was
    still "waiting for GCS" after 5 minutes). ``auto`` and other forms are left to Ray.

    Raises
    ------
    UnavailableError
        Naming the address and why it cannot be reached.
    """
    import socket

    from fraudlens.errors import UnavailableError

    host, sep, port = address.split("://", 1)[-1].rstrip("/").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise UnavailableError(
            f"cannot reach the Ray cluster at {address!r}: {reason}", what="ray"
        ) from None


def _quiet_ray_init(address: str | None) -> None:
    """``ray.init`` without the lines Ray Client prints on its own before its error (an
    INFO line listing the options passed on to the server, and a UserWarning about ports
    when the address answers but no Ray Client server does): fraudlens says the error in
    one line."""
    import logging
    import warnings

    import ray

    client_log = logging.getLogger("ray.client_builder")
    level = client_log.level
    client_log.setLevel(max(level, logging.WARNING))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message="Ray Client connection timed out", category=UserWarning
            )
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
    finally:
        client_log.setLevel(level)


def score_accounts_ray(
    data: MarketData,
    models_dir: str,
    model: str = "market",
    *,
    window_hours: float | None = 24.0,
    threshold: float | None = None,
    chunk_size: int = 4096,
    num_actors: int = 2,
    address: str | None = None,
) -> pd.DataFrame:
    """Score every account on Ray: Ray Data ``map_batches`` over an actor pool.

    Each actor loads the model from ``models_dir`` once (the registry must be reachable
    from every node, e.g. a shared volume) and gets the k-lines through the object store.
    Batches are whole account chunks, so no account is split across actors.
    ``address=None`` starts a local Ray runtime; pass ``"auto"`` or ``ray://...`` for a
    cluster. Returns the same table as :func:`score_accounts`.
    """
    import ray

    if not ray.is_initialized():
        if address is not None and address.strip().lower().startswith("ray://"):
            # Ray Client (grpcio): without it ray.init raised a ValueError (a traceback)
            from fraudlens._optional import require

            require("grpc", feature=f"the Ray address {address!r} (Ray Client)")
        if address is not None:
            _check_reachable(address)
        try:
            _quiet_ray_init(address)
        except ConnectionError as exc:  # answered, but no Ray cluster there
            from fraudlens.errors import UnavailableError

            raise UnavailableError(
                f"cannot reach the Ray cluster at {address!r}: {exc}", what="ray"
            ) from None
    if window_hours is not None:
        data = window(data, window_hours)
    pieces = [
        chunk.trades.assign(_chunk=i) for i, chunk in enumerate(market_chunks(data, chunk_size))
    ]
    klines_ref = ray.put(data.klines)
    # every chunk reads its accounts' mirror evidence against the same book
    book_ref = ray.put(data.the_book())
    ds = ray.data.from_pandas(pieces)
    out = ds.map_batches(
        _RayScorer,
        fn_constructor_args=(str(models_dir), model, klines_ref, threshold, book_ref),
        batch_format="pandas",
        batch_size=None,
        compute=ray.data.ActorPoolStrategy(size=num_actors),
    ).to_pandas()
    out = out.sort_values("account_id", kind="stable").reset_index(drop=True)
    # A counterparty can sit in another chunk: the evidence comes from the whole data.
    ev = market_evidence(data, out["account_id"].to_numpy())
    for col in EVIDENCE_COLUMNS:
        out[col] = ev[col].to_numpy()
    return out
