"""What the monitoring page and metrics show, computed in one pass over the store.

- **Alerts per day**: risk events recorded per UTC day and model version.
- **Reviewed precision**: confirmed / (confirmed + dismissed) per model version, and per
  ISO week the events were recorded in and model version. Open events are not counted:
  precision is of the decisions analysts have taken.
- **The active market model's scores** on a sample of recently active accounts: every
  account with a trade in the ``hours`` before the newest stored trade (at most
  ``sample_accounts`` of them, drawn at random with a fixed seed), each scored on its
  own latest window through :func:`fraudlens.scoring.score_market`, as the worker would.
  Risk events only hold the scores above the event threshold; the sample shows the
  whole distribution.
- **Feature drift** of the same sample against the model's training data: the account
  features (:func:`fraudlens.market.features.account_features`) compared with the
  reference profile saved in the model's metadata at train time
  (:mod:`fraudlens.monitoring._drift`). Models trained before profiles were saved have
  none; the snapshot says so.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from fraudlens._time import utcnow
from fraudlens.monitoring._drift import feature_drift

if TYPE_CHECKING:
    from fraudlens.model_cache import ModelCache
    from fraudlens.store import Store

__all__ = ["Snapshot", "compute_snapshot", "precision_tables"]

#: Score histogram bins over 0..1.
SCORE_BINS = 20


@dataclass(frozen=True)
class Snapshot:
    """One computation of the monitoring figures (see the module docstring)."""

    computed_at: str
    seconds: float
    days: int
    events_per_day: list[dict[str, Any]]
    status_counts: dict[str, int]
    events_by_version: dict[str, int]
    precision_by_version: list[dict[str, Any]]
    precision_by_week: list[dict[str, Any]]
    model: dict[str, Any] | None = None
    scores: dict[str, Any] | None = None
    drift: list[dict[str, Any]] | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        return asdict(self)


def _week(day: str) -> str:
    y, w, _ = date.fromisoformat(day).isocalendar()
    return f"{y}-W{w:02d}"


def precision_tables(
    reviewed: list[tuple[str, str, str, int]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Reviewed precision per model version and per (ISO week, model version).

    Parameters
    ----------
    reviewed
        ``(day, model_version, status, count)`` of decided events
        (:meth:`fraudlens.store.Store.reviewed_per_day`).
    """
    by_version: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_week: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for day, version, status, n in reviewed:
        i = 0 if status == "confirmed" else 1
        by_version[version][i] += n
        by_week[(_week(day), version)][i] += n

    from fraudlens.feedback import reviewed_precision

    def row(confirmed: int, dismissed: int) -> dict[str, Any]:
        return {
            "confirmed": confirmed,
            "dismissed": dismissed,
            "reviewed": confirmed + dismissed,
            "precision": reviewed_precision(confirmed, dismissed),
        }

    versions = [{"model_version": v, **row(*c)} for v, c in sorted(by_version.items())]
    weeks = [{"week": w, "model_version": v, **row(*c)} for (w, v), c in sorted(by_week.items())]
    return versions, weeks


def compute_snapshot(
    store: Store,
    models: ModelCache | None = None,
    *,
    days: int = 60,
    sample_accounts: int = 500,
    hours: float = 24.0,
    seed: int = 0,
    now: datetime | None = None,
) -> Snapshot:
    """Compute the monitoring figures (see the module docstring).

    Parameters
    ----------
    store
        The store with the risk events, trades and bars.
    models
        The model cache; without one, or without a market model, the score and drift
        parts are left out (with a note).
    days
        Days of alerts per day shown, ending today.
    sample_accounts
        Most recently active accounts scored for the score distribution and drift.
    hours
        What "recently active" means, before the newest stored trade; also each
        account's scoring window.
    seed
        Seed of the sample.
    now
        The current time (tests).
    """
    t0 = time.perf_counter()
    now = now or utcnow()
    since = datetime.combine((now - timedelta(days=days - 1)).date(), datetime.min.time(), UTC)
    per_day = store.risk_events_per_day(since=since)
    by_version: dict[str, int] = defaultdict(int)
    for _day, version, n in store.risk_events_per_day():
        by_version[version] += n
    versions, weeks = precision_tables(store.reviewed_per_day())
    notes: list[str] = []
    model = scores = drift = None
    if models is None:
        notes.append("no model registry: scores and drift are not computed")
    else:
        model, scores, drift = _model_part(store, models, sample_accounts, hours, seed, notes)
    return Snapshot(
        computed_at=now.isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - t0, 3),
        days=days,
        events_per_day=[{"day": d, "model_version": v, "count": n} for d, v, n in per_day],
        status_counts=store.risk_event_status_counts(),
        events_by_version=dict(sorted(by_version.items())),
        precision_by_version=versions,
        precision_by_week=weeks,
        model=model,
        scores=scores,
        drift=drift,
        notes=notes,
    )


def _model_part(
    store: Store,
    models: ModelCache,
    sample_accounts: int,
    hours: float,
    seed: int,
    notes: list[str],
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, list[dict[str, Any]] | None]:
    from fraudlens.errors import FraudlensError
    from fraudlens.scoring import model_id, score_market

    try:
        detector = models.get("market")
    except FraudlensError as exc:
        notes.append(f"no market model to monitor: {exc}")
        return None, None, None
    ident = model_id(detector)
    name, _, version = ident.partition(":")
    meta: dict[str, Any] = {}
    try:
        meta = models.registry.get(name, version or None).metadata
    except FraudlensError as exc:
        notes.append(f"cannot read the metadata of {ident}: {exc}")
    model = {
        "id": ident,
        "name": name,
        "version": version,
        "threshold": float(detector.threshold_),
        "trained_at": meta.get("created_at"),
        "has_profile": isinstance(meta.get("reference_profile"), dict),
    }
    ids, latest = store.recent_accounts(hours=hours)
    if not ids:
        notes.append("no stored trades: nothing to score")
        return model, None, None
    rng = np.random.default_rng(seed)
    sample = (
        ids
        if len(ids) <= sample_accounts
        else sorted(rng.choice(ids, sample_accounts, replace=False))
    )
    data = store.account_windows(sample, hours=hours)
    result = score_market(detector, data)
    values = np.asarray(result.scores, dtype=np.float64)
    counts, edges = np.histogram(values, bins=SCORE_BINS, range=(0.0, 1.0))
    scores = {
        "accounts": len(values),
        "active_accounts": len(ids),
        "hours": hours,
        "latest_trade": latest.isoformat() if latest is not None else None,
        "edges": [float(e) for e in edges],
        "counts": [int(c) for c in counts],
        "quantiles": {
            str(q): float(np.quantile(values, q)) if len(values) else None for q in (0.5, 0.9, 0.99)
        },
        "flagged_share": float(np.mean(result.flagged)) if len(values) else None,
        "mean": float(values.mean()) if len(values) else None,
    }
    drift = None
    profile = meta.get("reference_profile")
    if isinstance(profile, dict):
        from fraudlens.market.features import account_features

        drift = feature_drift(profile, account_features(data))
    else:
        notes.append(
            f"{ident} was trained without a reference profile of its features: retrain it "
            "to monitor drift"
        )
    return model, scores, drift
