"""Quantities around 1e300 whose price x quantity is still finite (the loaders take
them): the account features stay finite and quiet (no numpy overflow warning), the
scores finite in [0, 1], and the service answers them."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from fraudlens.market.data import MarketData, validate_trades, window
from fraudlens.market.features import account_features
from fraudlens.market.simulate import simulate
from fraudlens.registry import Registry
from fraudlens.service import create_app

pytestmark = pytest.mark.slow

SCALE = 1e298
#: The features that read a fill's share of its bar's volume: a quantity of 1e300 takes
#: far more than its bar, counted as _MAX_SHARE (1e30, held by float32).
SHARES = ["vol_share_mean", "vol_share_max", "strong_vol_share_max"]


@pytest.fixture(scope="module")
def data() -> MarketData:
    return window(simulate(60, seed=3))


def _scaled(data: MarketData, scale: float) -> tuple[MarketData, str]:
    """``data`` with every quantity of its busiest account times ``scale`` (of the
    accounts with a fill worth 10 or more, so that price x quantity reaches 10 x scale)."""
    trades = data.trades.copy()
    ids = trades["account_id"].astype(str)
    worth = (trades["price"] * trades["quantity"]).groupby(ids).max()
    acc = str(ids[ids.isin(worth.index[worth >= 10])].value_counts().index[0])
    mine = trades["account_id"].astype(str) == acc
    trades.loc[mine, "quantity"] = trades.loc[mine, "quantity"] * scale
    validate_trades(trades, "trades", data.klines, data.bar)  # the loaders take it
    return MarketData(klines=data.klines, trades=trades, labels=data.labels, bar=data.bar), acc


def _quiet(fn: Any) -> Any:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn()
    assert not [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    return out


def test_features_of_huge_quantities_are_finite_and_quiet(data: MarketData) -> None:
    """The old code warned (overflow in square, in the float32 cast), gave the account
    a NaN size_cv and infinite vol_share_* features."""
    big, acc = _scaled(data, SCALE)
    assert (big.trades["price"] * big.trades["quantity"]).max() > 1e299
    before = account_features(data)
    after = _quiet(lambda: account_features(big))
    row = after.loc[acc]
    assert not np.isinf(after.to_numpy(dtype=float)).any()
    # NaN only where the scale-1 features have it (a share with no strong round trip).
    pd.testing.assert_frame_equal(after.isna(), before.isna())
    # size_cv does not depend on the unit of the sizes (an account of equal sizes: 0,
    # give or take the rounding of the sums).
    assert row["size_cv"] == pytest.approx(before.loc[acc, "size_cv"], rel=1e-5, abs=1e-6)
    assert row[["vol_share_mean", "vol_share_max"]].tolist() == [np.float32(1e30)] * 2
    # Nothing else of the account reads its sizes' unit, but the pair evidence (the
    # other accounts' sizes no longer equal its own); the other accounts are untouched.
    keep = [c for c in after.columns if c not in SHARES and not c.startswith("mirror")]
    keep = [c for c in keep if c not in ("n_mirror_accounts", "n_mirror_pair_strong")]
    pd.testing.assert_series_equal(row[keep], before.loc[acc, keep], atol=1e-6)
    others = after.index != acc
    pd.testing.assert_frame_equal(
        after.loc[others, keep], before.loc[others, keep], check_exact=True
    )


def test_scores_and_service_reply_for_huge_quantities(data: MarketData, tmp_path: Path) -> None:
    from fraudlens.market.detectors import FeatureDetector

    train = window(simulate(200, seed=11))
    reg = Registry(tmp_path / "models")
    det = FeatureDetector(n_estimators=40, n_jobs=1).fit(train, train.y())
    reg.save(det)
    big, acc = _scaled(data, SCALE)
    scores = _quiet(lambda: det.decision_function(big))
    assert np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()

    def records(df: pd.DataFrame) -> list[dict[str, Any]]:
        return df.assign(ts=df["ts"].map(pd.Timestamp.isoformat)).to_dict(orient="records")

    cols = ["trade_id", "account_id", "symbol", "ts", "side", "price", "quantity"]
    payload = {"klines": records(big.klines), "trades": records(big.trades[cols])}
    with TestClient(create_app(models_dir=tmp_path / "models")) as c:
        r = _quiet(lambda: c.post("/v1/market/score", json=payload))
    assert r.status_code == 200, r.text
    got = {s["account_id"]: s["score"] for s in r.json()["scores"]}
    assert 0.0 <= got[acc] <= 1.0
    np.testing.assert_allclose([got[str(a)] for a in big.account_ids], scores, rtol=1e-6)
