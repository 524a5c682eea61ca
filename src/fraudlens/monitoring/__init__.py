"""Monitoring: alerts per day, the active model's scores, feature drift against its
training data, and the precision of its alerts as analysts reviewed them.

>>> from fraudlens.monitoring import reference_profile, feature_drift
>>> profile = reference_profile(train_features)          # doctest: +SKIP
>>> feature_drift(profile, current_features)[0]["psi"]    # doctest: +SKIP

Train paths save ``reference_profile`` of the training features in the model's metadata
(key ``reference_profile``); :func:`compute_snapshot` compares recent accounts with it.
The service shows the result at ``/monitor`` and in ``/metrics``.
"""

from __future__ import annotations

from fraudlens.monitoring._drift import (
    PSI_MAJOR,
    PSI_MODERATE,
    drift_level,
    feature_drift,
    psi,
    reference_profile,
)
from fraudlens.monitoring._snapshot import Snapshot, compute_snapshot, precision_tables

__all__ = [
    "PSI_MAJOR",
    "PSI_MODERATE",
    "Snapshot",
    "compute_snapshot",
    "drift_level",
    "feature_drift",
    "market_reference_profile",
    "precision_tables",
    "psi",
    "reference_profile",
]


def market_reference_profile(data: object) -> dict[str, object]:
    """The reference profile of a market training set: its account features.

    Parameters
    ----------
    data
        The training :class:`~fraudlens.market.data.MarketData` (windowed as trained on).
    """
    from fraudlens.market.features import account_features

    return reference_profile(account_features(data))  # type: ignore[arg-type]
