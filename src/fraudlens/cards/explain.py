"""Why a card transaction scored high: per-feature contributions and top reasons.

- XGBoost (``cards-xgboost``): exact tree SHAP values from XGBoost itself
  (``Booster.predict(..., pred_contribs=True)``). Each row's contributions plus the bias
  add up to the model's log-odds (its margin) for that row.
- Logistic regression (``cards-logistic``): coefficient x standardised value, the
  linear model's own decomposition. The contributions plus the intercept add up to the
  log-odds; a feature at its training mean contributes 0.

Both are in log-odds units. A *reason* is a feature whose contribution pushed the score
up (positive contribution); :func:`explain` lists a row's largest ones first. Features
are named as the model sees them: with ``time_of_day="Time"`` the seconds column reads
``"Time (hour of day)"`` and its value is the hour; a column the model ignores (ULB's
``Time`` by default) reads ``"Time (ignored)"`` and contributes nothing.

The Isolation Forest (``cards-anomaly``) has no such decomposition here;
:func:`contributions` refuses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fraudlens.errors import ConfigError

__all__ = ["Contributions", "contributions", "explain", "supports"]


@dataclass(frozen=True)
class Contributions:
    """Per-row, per-feature contributions to a card model's log-odds.

    Attributes
    ----------
    names
        Feature names as the model sees them.
    values
        The model's input matrix (rows x features), as the model sees it.
    matrix
        Contributions (rows x features), log-odds.
    bias
        Per row, what is not attributed to a feature (XGBoost's expected margin, the
        logistic intercept). ``matrix`` rows plus ``bias`` give the model's log-odds.
    """

    names: list[str]
    values: np.ndarray
    matrix: np.ndarray
    bias: np.ndarray


def supports(detector: Any) -> bool:
    """Whether :func:`contributions` can explain this detector."""
    return hasattr(detector, "booster_") or (
        hasattr(detector, "coef_") and hasattr(detector, "mean_") and hasattr(detector, "scale_")
    )


def contributions(detector: Any, X: Any) -> Contributions:
    """Feature contributions of every row of ``X``.

    Parameters
    ----------
    detector
        A fitted ``cards-xgboost`` or ``cards-logistic`` detector.
    X
        Rows as the detector takes them (DataFrame with its feature columns, or an
        array in its feature order).

    Returns
    -------
    Contributions

    Raises
    ------
    ConfigError
        For a detector without a decomposition (the anomaly model).
    DataError
        When the rows are not valid input for the detector.
    """
    if not supports(detector):
        raise ConfigError(
            f"{getattr(detector, 'name', type(detector).__name__)} has no per-feature "
            "explanation; use cards-xgboost or cards-logistic"
        )
    values = detector._matrix(X)
    names = list(detector.model_feature_names_)
    booster = getattr(detector, "booster_", None)
    if booster is not None:
        import xgboost as xgb

        # The detector's own thread rule (one thread for small inputs): a second thread
        # that busy-waits on a shared machine makes one row's SHAP ~40x slower.
        threads = detector._threads(len(values)) if hasattr(detector, "_threads") else 1
        if threads != getattr(detector, "_predict_threads", None):
            booster.set_param({"nthread": threads})
            detector._predict_threads = threads
        matrix_in = xgb.DMatrix(values, nthread=threads)
        out = np.asarray(booster.predict(matrix_in, pred_contribs=True))
        matrix, bias = out[:, : len(names)], out[:, len(names)]
    else:
        coef = np.asarray(detector.coef_, dtype=np.float64)
        matrix = (values - detector.mean_) / detector.scale_ * coef
        bias = np.full(len(values), float(detector.intercept_))
    return Contributions(names=names, values=values, matrix=matrix, bias=bias)


def explain(detector: Any, X: Any, *, rows: Any = None, top: int = 3) -> list[list[dict[str, Any]]]:
    """Top reasons of each row: the features that pushed its score up most.

    Parameters
    ----------
    detector
        A fitted ``cards-xgboost`` or ``cards-logistic`` detector.
    X
        Rows as the detector takes them.
    rows
        Positions of the rows to explain (default all); other rows get an empty list.
    top
        At most this many reasons per row.

    Returns
    -------
    list of list of dict
        Per row of ``X``: ``[{"feature", "value", "contribution"}, ...]``, largest
        positive contribution first (log-odds; only positive ones are reasons).

    Raises
    ------
    ConfigError
        For a detector without a decomposition (the anomaly model).
    """
    n = len(X)
    out: list[list[dict[str, Any]]] = [[] for _ in range(n)]
    idx = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    if not supports(detector):
        contributions(detector, X)  # raises the explanatory ConfigError
    if top <= 0 or len(idx) == 0:
        return out
    part = X.iloc[idx] if hasattr(X, "iloc") else np.asarray(X)[idx]
    c = contributions(detector, part)
    k = min(top, len(c.names))
    # The k largest per row without sorting every column.
    best = np.argpartition(-c.matrix, k - 1, axis=1)[:, :k] if k < len(c.names) else None
    for i, r in enumerate(idx.tolist()):
        row = c.matrix[i]
        cols = best[i] if best is not None else np.arange(len(c.names))
        cols = cols[np.argsort(-row[cols], kind="stable")]
        out[r] = [
            {
                "feature": c.names[j],
                "value": float(c.values[i, j]),
                "contribution": float(row[j]),
            }
            for j in cols[:k]
            if row[j] > 0
        ]
    return out
