"""The CNN's extreme snap: in some epochs' training images a fill near its bar's high or
low is drawn at it, for every account alike."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudlens.errors import ConfigError, DataError
from fraudlens.market._cnn import CNNDetector, ExtremeSnap, FillDropout
from fraudlens.market.data import MarketData, window
from fraudlens.market.render import STYLES, panels, render_batch
from fraudlens.market.simulate import simulate

T0 = pd.Timestamp("2026-03-02 00:00", tz="UTC")
BAR = pd.Timedelta(minutes=5)
N_BARS = 48
WIDE = 20  # a volatile bar: 10.00 wide (1,000 ticks) where the others are about 1
_STYLE = "fraudlens-gap"
_SPLIT = panels(_STYLE)[1][0]  # first row of the range panel


def _data() -> MarketData:
    """Three accounts with one round trip in bar WIDE: exactly at its low and high, 6-9 %
    of the range inside them, a quarter inside them. No labels."""
    rng = np.random.default_rng(5)
    low = 100.0 + np.round(rng.uniform(-0.5, 0.5, N_BARS), 2)
    high = low + np.round(rng.uniform(0.8, 1.2, N_BARS), 2)
    high[WIDE] = low[WIDE] + 10.0
    k = pd.DataFrame(
        {"symbol": "AAA", "ts": T0 + BAR * np.arange(N_BARS), "open": low, "high": high,
         "low": low, "close": high, "volume": 100.0}
    )  # fmt: skip
    lo, hi = low[WIDE], high[WIDE]

    def trade(tid: str, acc: str, side: str, price: float) -> dict:
        return {"trade_id": tid, "account_id": acc, "symbol": "AAA",
                "ts": T0 + BAR * WIDE + pd.Timedelta(seconds=60), "side": side,
                "price": round(price, 2), "quantity": 2.0}  # fmt: skip

    t = pd.DataFrame(
        [
            trade("t1", "exact", "buy", lo),
            trade("t2", "exact", "sell", hi),
            trade("t3", "near", "buy", lo + 0.6),
            trade("t4", "near", "sell", hi - 0.9),
            trade("t5", "inside", "buy", lo + 2.5),
            trade("t6", "inside", "sell", hi - 2.5),
        ]
    )
    t["ts"] = t["ts"].astype("datetime64[ns, UTC]")
    return MarketData(k, t)


def test_render_draws_fills_near_an_extreme_at_it() -> None:
    data = _data()
    ids = ["exact", "near", "inside"]
    plain = render_batch(data, ids, style=_STYLE)
    snap = render_batch(data, ids, style=_STYLE, extreme_snap=0.1)
    # the price panel and the bars are drawn as they are
    assert np.array_equal(plain[:, :_SPLIT], snap[:, :_SPLIT])
    assert np.array_equal(plain[..., 2], snap[..., 2])
    # plainly drawn, the near round trip is not the exact one; snapped, it is
    assert not np.array_equal(plain[0, _SPLIT:], plain[1, _SPLIT:])
    assert np.array_equal(snap[1, _SPLIT:], plain[0, _SPLIT:])
    assert np.array_equal(snap[0], plain[0])
    # a quarter of the range inside is drawn where it is
    assert np.array_equal(snap[2], plain[2])
    assert not np.array_equal(snap[2, _SPLIT:], snap[0, _SPLIT:])


@pytest.mark.parametrize("near", [-0.1, 0.5, float("nan")])
def test_render_refuses_a_snap_outside_its_range(near: float) -> None:
    with pytest.raises(ConfigError, match="extreme_snap"):
        render_batch(_data(), style=_STYLE, extreme_snap=near)


def test_each_epoch_draws_a_share_of_the_accounts_snapped() -> None:
    data = window(simulate(300, seed=21))
    size = STYLES[_STYLE]
    images = render_batch(data, style=_STYLE)
    snapped = render_batch(data, style=_STYLE, extreme_snap=0.1)
    differs = (images != snapped).any(axis=(1, 2, 3))
    assert differs.sum() > 30  # many accounts have a fill near an extreme
    es = ExtremeSnap(images, data, style=_STYLE, size=size, rate=0.5, seed=3)
    picked = []
    for epoch in (1, 2):
        out = es(epoch)
        assert out.shape == images.shape and out.dtype == np.uint8
        # every image is either the account's own or its snapped one
        own = (out == images).all(axis=(1, 2, 3))
        snap = (out == snapped).all(axis=(1, 2, 3))
        assert (own | snap).all()
        picked.append(snap & differs)
        # about half of the accounts that differ are drawn snapped, takeovers or not
        share = picked[-1][differs].mean()
        assert 0.3 < share < 0.7
        y = data.y()[differs]
        assert picked[-1][differs][y == 1].any() and picked[-1][differs][y == 0].any()
    assert not np.array_equal(picked[0], picked[1])  # drawn anew each epoch
    assert np.array_equal(es(2), ExtremeSnap(images, data, style=_STYLE, size=size,
                                             rate=0.5, seed=3)(2))  # fmt: skip
    # the reused output follows any order of epochs
    fresh = ExtremeSnap(images, data, style=_STYLE, size=size, rate=0.5, seed=3)
    for epoch in (1, 3, 1, 2, 2):
        own = es(epoch)
        drawn = np.random.default_rng([3, epoch, 1]).random(len(images)) < 0.5
        assert np.array_equal(own, np.where(drawn[:, None, None, None], snapped, images))
        assert np.array_equal(own, fresh(epoch))
    assert np.array_equal(ExtremeSnap(images, data, style=_STYLE, size=size, rate=0.0)(1), images)
    assert np.array_equal(ExtremeSnap(images, data, style=_STYLE, size=size, rate=1.0)(1), snapped)
    with pytest.raises(DataError, match="extreme snap rate"):
        ExtremeSnap(images, data, style=_STYLE, size=size, rate=1.5)


def test_the_cnn_trains_with_it_by_default_and_fill_dropout_replaces_it() -> None:
    data = window(simulate(60, seed=2))
    size = STYLES[_STYLE]
    images = render_batch(data, style=_STYLE)
    aug = CNNDetector()._augmentation(data, images, size)
    assert isinstance(aug, ExtremeSnap) and aug.rate == 0.5
    assert CNNDetector(extreme_snap=0.0)._augmentation(data, images, size) is None
    assert isinstance(CNNDetector(fill_dropout=0.5)._augmentation(data, images, size), FillDropout)
    # the reference look has no range panel to snap
    ref = render_batch(data, style="reference")
    assert CNNDetector(style="reference")._augmentation(data, ref, STYLES["reference"]) is None
