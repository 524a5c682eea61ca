"""Counterparty evidence in a market detector's score.

A thief moves value from a stolen account to one they control by trading against it:
the receiving account takes the other side of both legs of the victim's round trips.
When that account's trades are in the data, :func:`fraudlens.market.features` measures
it (``mirror_pair_share``: the share of an account's round-trip value that its one
mirroring account takes; ``n_mirror_pair_strong``: how many of its strong round trips
that account mirrors, both legs). A detector adds ``weight x evidence`` to its log-odds,
where the evidence is the mirrored share wherever the mirroring account takes both legs
of at least one strong round trip, and 0 elsewhere, and the weight is estimated on the
training data by :func:`fit_weight`. Accounts without evidence keep their score.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd

from fraudlens.errors import ConfigError

__all__ = ["PAIR_SHARE", "PAIR_STRONG", "evidence", "evidence_of", "fit_weight", "lift"]

#: Feature columns the evidence reads.
PAIR_SHARE: Final = "mirror_pair_share"
PAIR_STRONG: Final = "n_mirror_pair_strong"


def evidence(share: np.ndarray, strong: np.ndarray) -> np.ndarray:
    """Counterparty evidence per account: the mirrored share of its round-trip value,
    in [0, 1], where the mirroring account takes both legs of a strong round trip; 0
    elsewhere (and where either value is not a number)."""
    share = np.nan_to_num(np.asarray(share, dtype=np.float64), nan=0.0)
    strong = np.nan_to_num(np.asarray(strong, dtype=np.float64), nan=0.0)
    return np.where(strong >= 1.0, np.clip(share, 0.0, 1.0), 0.0)


def evidence_of(features: pd.DataFrame) -> np.ndarray | None:
    """:func:`evidence` of a feature frame; None when it lacks either column."""
    if PAIR_SHARE not in features.columns or PAIR_STRONG not in features.columns:
        return None
    return evidence(features[PAIR_SHARE].to_numpy(), features[PAIR_STRONG].to_numpy())


def fit_weight(
    given: float | None,
    features: pd.DataFrame,
    y: np.ndarray,
    sample_weight: np.ndarray | None = None,
) -> float:
    """The weight of the evidence: ``given`` when it is a number, else estimated.

    The estimate is the log of how much more often full evidence (0.5 or more) occurs
    among the takeovers (label 1) than among the normal accounts, each rate with one
    case added to both its counts: ``log((a + 1) / (n1 + 2)) - log((b + 1) / (n0 +
    2))`` for ``a`` of ``n1`` takeovers and ``b`` of ``n0`` normal accounts (weighted
    by ``sample_weight``); never below 0, and 0 when the frame lacks the columns.

    Raises
    ------
    ConfigError
        If ``given`` is not a finite number >= 0 (or None).
    """
    if given is not None:
        try:
            value = float(given)
        except (TypeError, ValueError):
            raise ConfigError(
                f"counterparty_weight must be a number or None, not {given!r}"
            ) from None
        if not np.isfinite(value) or value < 0:
            raise ConfigError(f"counterparty_weight must be finite and >= 0, not {given!r}")
        return value
    ev = evidence_of(features)
    if ev is None:
        return 0.0
    y = np.asarray(y).ravel()
    full = ev >= 0.5
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    pos, neg = y == 1, y != 1
    rate_pos = (w[pos & full].sum() + 1.0) / (w[pos].sum() + 2.0)
    rate_neg = (w[neg & full].sum() + 1.0) / (w[neg].sum() + 2.0)
    return float(max(0.0, np.log(rate_pos / rate_neg)))


def lift(margin: np.ndarray, ev: np.ndarray, weight: float) -> np.ndarray:
    """Probabilities from log-odds ``margin`` plus ``weight x ev``."""
    z = np.asarray(margin, dtype=np.float64) + float(weight) * np.asarray(ev, np.float64)
    return 1.0 / (1.0 + np.exp(-z))
