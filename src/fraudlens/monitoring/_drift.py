"""Reference profiles of training features and drift against them (PSI, Wasserstein).

A model's training data is not kept beside the model, so drift is measured against a
*profile* saved in its metadata at train time (:func:`reference_profile`): per feature,
100 quantiles at the midpoints of 100 equal-mass slices, 10 quantile bins with the share
of training rows in each, and the share of missing values. From it:

PSI (population stability index)
    ``sum((now - ref) * ln(now / ref))`` over the reference's bins, shares floored at
    1e-4 so an empty bin counts but does not explode. The usual reading: below 0.1 no
    drift, 0.1-0.25 moderate, above 0.25 major (:data:`PSI_MODERATE`, :data:`PSI_MAJOR`).
Wasserstein-1 distance
    between the current values and the reference quantiles (an equal-weight sample of the
    reference distribution), from :func:`scipy.stats.wasserstein_distance`; also divided
    by the reference's interquartile range (its standard deviation if that is 0), so
    features on different scales compare.

Evidently computes the same statistics, but it needs the reference rows themselves, not
a profile, and brings a web framework and telemetry with it; the few lines here need only
numpy and scipy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "PSI_MAJOR",
    "PSI_MODERATE",
    "drift_level",
    "feature_drift",
    "psi",
    "reference_profile",
]

#: PSI at or above which a feature has drifted moderately.
PSI_MODERATE = 0.1
#: PSI at or above which a feature has drifted a lot.
PSI_MAJOR = 0.25
#: Quantiles kept per feature (midpoints of equal-mass slices).
LEVELS = 100
#: Bins PSI is computed on (quantile bins of the reference).
BINS = 10
_FLOOR = 1e-4
_PROFILE_KIND = "fraudlens-reference-profile"


def _matrix(X: Any, names: Sequence[str] | None) -> tuple[np.ndarray, list[str]]:
    columns = getattr(X, "columns", None)
    if columns is not None:
        cols = [str(c) for c in columns]
        arr = np.asarray(X.to_numpy(dtype=np.float64))
        if names is not None:
            idx = [cols.index(n) for n in names]
            return arr[:, idx], list(names)
        return arr, cols
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D table of features, not shape {arr.shape}")
    if names is None:
        names = [f"x{i}" for i in range(arr.shape[1])]
    if len(names) != arr.shape[1]:
        raise ValueError(f"{len(names)} names for {arr.shape[1]} columns")
    return arr, list(names)


def _sig(value: float) -> float:
    return float(f"{float(value):.7g}")


def _bin_index(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    # bin 0 is (-inf, e0], bin i is (e(i-1), e(i)], the last is (e(-1), inf)
    return np.searchsorted(edges, values, side="left")


def reference_profile(
    X: Any, names: Sequence[str] | None = None, *, levels: int = LEVELS, bins: int = BINS
) -> dict[str, Any]:
    """The distribution of each feature of a training table, small enough for metadata.

    Parameters
    ----------
    X
        Training features: a DataFrame (its columns name the features) or a 2-D array.
    names
        Feature names (for an array), or the columns to keep (for a DataFrame).
    levels
        Quantiles kept per feature.
    bins
        Quantile bins for PSI.

    Returns
    -------
    dict
        JSON-ready: ``kind``, ``n`` (rows) and ``features``: name -> ``quantiles``,
        ``edges`` (inner bin edges), ``shares`` (training share per bin), ``missing``
        (share of NaN or infinite values), ``mean``, ``std``, ``iqr``.
    """
    arr, cols = _matrix(X, names)
    n = arr.shape[0]
    feats: dict[str, Any] = {}
    mids = (np.arange(levels) + 0.5) / levels
    for j, name in enumerate(cols):
        col = arr[:, j]
        finite = col[np.isfinite(col)]
        missing = 1.0 - len(finite) / n if n else 1.0
        if len(finite) == 0:
            feats[name] = {"quantiles": [], "edges": [], "shares": [], "missing": missing}
            continue
        edges = np.unique(np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
        counts = np.bincount(_bin_index(edges, finite), minlength=len(edges) + 1)
        q25, q75 = np.quantile(finite, [0.25, 0.75])
        feats[name] = {
            # 7 significant digits: the profile is metadata, and float32 features hold no more
            "quantiles": [_sig(v) for v in np.quantile(finite, mids)],
            "edges": [float(v) for v in edges],
            "shares": [_sig(c / len(finite)) for c in counts],
            "missing": float(missing),
            "mean": float(finite.mean()),
            "std": float(finite.std()),
            "iqr": float(q75 - q25),
        }
    return {"kind": _PROFILE_KIND, "version": 1, "n": int(n), "features": feats}


def psi(reference: Sequence[float] | np.ndarray, current: Sequence[float] | np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins."""
    ref = np.maximum(np.asarray(reference, dtype=np.float64), _FLOOR)
    now = np.maximum(np.asarray(current, dtype=np.float64), _FLOOR)
    return float(np.sum((now - ref) * np.log(now / ref)))


def drift_level(value: float | None) -> str:
    """``none``, ``moderate`` or ``major`` for a PSI (``unknown`` for None)."""
    if value is None or not np.isfinite(value):
        return "unknown"
    if value >= PSI_MAJOR:
        return "major"
    return "moderate" if value >= PSI_MODERATE else "none"


def feature_drift(
    profile: Mapping[str, Any], X: Any, names: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Drift of each profiled feature in ``X`` against the training profile.

    Parameters
    ----------
    profile
        From :func:`reference_profile`.
    X
        Current features (DataFrame or array with ``names``).

    Returns
    -------
    list of dict
        One per feature of the profile, most drifted first: ``feature``, ``psi``,
        ``wasserstein``, ``wasserstein_iqr`` (over the reference's spread), ``level``,
        ``n`` (current finite values), ``missing`` and ``missing_ref``. A feature absent
        from ``X`` or without values has ``psi`` None and level ``unknown``.
    """
    from scipy.stats import wasserstein_distance

    if profile.get("kind") != _PROFILE_KIND:
        raise ValueError("not a reference profile (see fraudlens.monitoring.reference_profile)")
    arr, cols = _matrix(X, names)
    out: list[dict[str, Any]] = []
    for name, ref in profile["features"].items():
        row: dict[str, Any] = {
            "feature": name,
            "psi": None,
            "wasserstein": None,
            "wasserstein_iqr": None,
            "level": "unknown",
            "n": 0,
            "missing": None,
            "missing_ref": ref.get("missing"),
        }
        if name in cols and ref.get("quantiles"):
            col = arr[:, cols.index(name)]
            finite = col[np.isfinite(col)]
            row["missing"] = 1.0 - len(finite) / len(col) if len(col) else None
            row["n"] = len(finite)
            if len(finite):
                edges = np.asarray(ref["edges"], dtype=np.float64)
                counts = np.bincount(_bin_index(edges, finite), minlength=len(edges) + 1)
                row["psi"] = psi(ref["shares"], counts / len(finite))
                w = float(wasserstein_distance(ref["quantiles"], finite))
                spread = ref.get("iqr") or ref.get("std") or 0.0
                row["wasserstein"] = w
                row["wasserstein_iqr"] = w / spread if spread > 0 else None
                row["level"] = drift_level(row["psi"])
        out.append(row)
    out.sort(key=lambda r: -1.0 if r["psi"] is None else r["psi"], reverse=True)
    return out
