"""The service's monitoring snapshot: computed on demand, kept for a few minutes, and
exported to Prometheus.

Computing a snapshot reads the store and scores a sample of accounts
(:func:`fraudlens.monitoring.compute_snapshot`), a second or so: it is not done per
request. ``/monitor`` and ``/v1/monitor`` reuse a snapshot younger than ``max_age``
seconds; a ``/metrics`` scrape never waits for one: it exports the newest snapshot and,
when that is stale, starts a refresh in a background thread. One computation runs at a
time.

Metrics (gauges, from the newest snapshot):

- ``fraudlens_risk_events{status}``, ``fraudlens_risk_events_recorded{model_version}``
  (take ``delta(...[1d])`` for alerts per day);
- ``fraudlens_reviewed_events{model_version,status}`` and
  ``fraudlens_reviewed_precision{model_version}`` (confirmed / reviewed);
- ``fraudlens_model_score_quantile{model,quantile}``,
  ``fraudlens_model_flagged_share{model}`` and ``fraudlens_model_score_bucket{model,le}``
  (cumulative counts) over the sample of recently active accounts;
- ``fraudlens_feature_psi{model,feature}`` and ``fraudlens_feature_wasserstein{model,feature}``;
- ``fraudlens_monitor_snapshot_timestamp_seconds`` and ``..._duration_seconds``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fraudlens.monitoring import Snapshot
    from fraudlens.service._state import ServiceState

__all__ = ["DEFAULT_MAX_AGE", "Monitor"]

log = logging.getLogger("fraudlens.service.monitor")

#: Seconds a snapshot is reused.
DEFAULT_MAX_AGE = 300.0
#: Shortest time between two computations, whatever the caller asks.
MIN_AGE = 10.0


class Monitor:
    """The app's monitoring snapshots (see the module docstring).

    Parameters
    ----------
    state
        The service's state: its store and model cache.
    max_age
        Seconds a snapshot is reused.
    sample_accounts
        Accounts scored per snapshot.
    """

    def __init__(
        self, state: ServiceState, *, max_age: float = DEFAULT_MAX_AGE, sample_accounts: int = 500
    ) -> None:
        self.state = state
        self.max_age = float(max_age)
        self.sample_accounts = int(sample_accounts)
        self._lock = threading.Lock()  # one computation at a time
        self._snapshot: Snapshot | None = None
        self._at = 0.0
        self._background: threading.Thread | None = None
        self.last_error: str | None = None

    def latest(self) -> Snapshot | None:
        """The newest snapshot, however old (None before the first)."""
        return self._snapshot

    def age(self) -> float:
        """Seconds since the newest snapshot was computed (inf before the first)."""
        return time.monotonic() - self._at if self._snapshot is not None else float("inf")

    def get(self, max_age: float | None = None) -> Snapshot:
        """A snapshot at most ``max_age`` seconds old (at least :data:`MIN_AGE`),
        computed now if need be. Blocking: call it from a worker thread."""
        limit = max(self.max_age if max_age is None else float(max_age), MIN_AGE)
        if self._snapshot is not None and self.age() <= limit:
            return self._snapshot
        with self._lock:
            # another thread may have computed it while this one waited
            if self._snapshot is not None and self.age() <= limit:
                return self._snapshot
            return self._compute()

    def _compute(self) -> Snapshot:
        from fraudlens.monitoring import compute_snapshot

        try:
            snap = compute_snapshot(
                self.state.store.get(),
                self.state.models.cache,
                sample_accounts=self.sample_accounts,
            )
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            raise
        self.last_error = None
        self._snapshot, self._at = snap, time.monotonic()
        return snap

    def refresh_in_background(self) -> None:
        """Start a computation in a daemon thread unless one is running."""
        if self._background is not None and self._background.is_alive():
            return

        def run() -> None:
            try:
                self.get()
            except Exception as exc:  # reported through last_error and the log
                log.warning("monitoring snapshot failed: %s", exc)

        self._background = threading.Thread(target=run, name="fraudlens-monitor", daemon=True)
        self._background.start()

    # -- Prometheus ----------------------------------------------------------------------
    def collect(self) -> Iterator[Any]:
        """Metric families of the newest snapshot (the registry's collector protocol)."""
        from prometheus_client.core import GaugeMetricFamily

        if self.age() > self.max_age:
            self.refresh_in_background()
        snap = self._snapshot
        if snap is None:
            return
        g = GaugeMetricFamily
        ts = datetime.fromisoformat(snap.computed_at).timestamp()
        stamp = g("fraudlens_monitor_snapshot_timestamp_seconds", "When the snapshot was computed.")
        stamp.add_metric([], ts)
        yield stamp
        took = g("fraudlens_monitor_snapshot_duration_seconds", "Time the snapshot took.")
        took.add_metric([], snap.seconds)
        yield took
        status = g("fraudlens_risk_events", "Risk events by review status.", labels=["status"])
        for s in ("open", "confirmed", "dismissed"):
            status.add_metric([s], snap.status_counts.get(s, 0))
        yield status
        recorded = g(
            "fraudlens_risk_events_recorded",
            "Risk events recorded, by model version (delta over a day: alerts per day).",
            labels=["model_version"],
        )
        for version, n in snap.events_by_version.items():
            recorded.add_metric([version], n)
        yield recorded
        reviewed = g(
            "fraudlens_reviewed_events",
            "Decided risk events by model version and decision.",
            labels=["model_version", "status"],
        )
        precision = g(
            "fraudlens_reviewed_precision",
            "Confirmed / reviewed risk events, by model version.",
            labels=["model_version"],
        )
        for row in snap.precision_by_version:
            reviewed.add_metric([row["model_version"], "confirmed"], row["confirmed"])
            reviewed.add_metric([row["model_version"], "dismissed"], row["dismissed"])
            if row["precision"] is not None:
                precision.add_metric([row["model_version"]], row["precision"])
        yield reviewed
        yield precision
        if snap.model is not None and snap.scores is not None:
            model = snap.model["id"]
            quant = g(
                "fraudlens_model_score_quantile",
                "Score quantiles of the active model over recently active accounts.",
                labels=["model", "quantile"],
            )
            for q, v in snap.scores["quantiles"].items():
                if v is not None:
                    quant.add_metric([model, q], v)
            yield quant
            if snap.scores["flagged_share"] is not None:
                share = g(
                    "fraudlens_model_flagged_share",
                    "Share of recently active accounts the active model flags.",
                    labels=["model"],
                )
                share.add_metric([model], snap.scores["flagged_share"])
                yield share
            bucket = g(
                "fraudlens_model_score_bucket",
                "Recently active accounts scoring at most le (cumulative).",
                labels=["model", "le"],
            )
            total = 0
            for edge, n in zip(snap.scores["edges"][1:], snap.scores["counts"], strict=True):
                total += n
                bucket.add_metric([model, f"{edge:g}"], total)
            yield bucket
        if snap.model is not None and snap.drift:
            model = snap.model["id"]
            psi = g(
                "fraudlens_feature_psi",
                "Population stability index of each feature against the training data.",
                labels=["model", "feature"],
            )
            wd = g(
                "fraudlens_feature_wasserstein",
                "Wasserstein distance of each feature from the training data.",
                labels=["model", "feature"],
            )
            for row in snap.drift:
                if row["psi"] is not None:
                    psi.add_metric([model, row["feature"]], row["psi"])
                if row["wasserstein"] is not None:
                    wd.add_metric([model, row["feature"]], row["wasserstein"])
            yield psi
            yield wd

    def describe(self) -> list[Any]:
        """No fixed description: the families depend on the snapshot."""
        return []
