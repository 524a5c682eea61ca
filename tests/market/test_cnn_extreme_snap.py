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
        choice = es(epoch)
        # the choice is between the account's own image and its snapped one
        assert choice.alt is es.snapped and np.array_equal(es.snapped, snapped)
        assert choice.use_alt.shape == (len(images),) and choice.use_alt.dtype == np.bool_
        out = es.images_of(epoch)
        assert out.shape == images.shape and out.dtype == np.uint8
        snap = (out == snapped).all(axis=(1, 2, 3))
        assert ((out == images).all(axis=(1, 2, 3)) | snap).all()
        picked.append(snap & differs)
        # about half of the accounts that differ are drawn snapped, takeovers or not
        share = picked[-1][differs].mean()
        assert 0.3 < share < 0.7
        y = data.y()[differs]
        assert picked[-1][differs][y == 1].any() and picked[-1][differs][y == 0].any()
    assert not np.array_equal(picked[0], picked[1])  # drawn anew each epoch
    # the same seed and epoch give the same draw, in any order of epochs
    fresh = ExtremeSnap(images, data, style=_STYLE, size=size, rate=0.5, seed=3)
    for epoch in (1, 3, 1, 2, 2):
        drawn = np.random.default_rng([3, epoch, 1]).random(len(images)) < 0.5
        assert np.array_equal(es(epoch).use_alt, drawn)
        assert np.array_equal(es.images_of(epoch), fresh.images_of(epoch))
        assert np.array_equal(
            es.images_of(epoch), np.where(drawn[:, None, None, None], snapped, images)
        )
    none = ExtremeSnap(images, data, style=_STYLE, size=size, rate=0.0)
    every = ExtremeSnap(images, data, style=_STYLE, size=size, rate=1.0)
    assert np.array_equal(none.images_of(1), images) and not none(1).use_alt.any()
    assert np.array_equal(every.images_of(1), snapped) and every(1).use_alt.all()
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


def test_training_from_the_choice_is_training_from_its_images() -> None:
    """Batches gathered from the choice are the images the choice stands for: the same
    draws give the same trained network, bit for bit."""
    torch = pytest.importorskip("torch")
    from fraudlens.market._cnn_torch import ImageChoice, train_network

    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (40, 64, 32, 3), dtype=np.uint8)
    alt = rng.integers(0, 255, images.shape, dtype=np.uint8)
    y = np.array([0, 1] * 20)

    def which(epoch: int) -> np.ndarray:
        return np.random.default_rng(epoch).random(len(images)) < 0.5

    def as_choice(epoch: int) -> ImageChoice:
        return ImageChoice(alt, which(epoch))

    def as_images(epoch: int) -> np.ndarray:
        return np.where(which(epoch)[:, None, None, None], alt, images)

    kw = {"arch": "bars", "epochs": 3, "batch_size": 8, "seed": 0, "num_threads": 1}
    a = train_network(images, y, rerender=as_choice, **kw)
    b = train_network(images, y, rerender=as_images, **kw)
    for key, value in a.net.state_dict().items():
        assert torch.equal(value, b.net.state_dict()[key]), key
    plain = train_network(images, y, **kw)  # the choice was read: it differs from none
    assert not torch.equal(
        plain.net.state_dict()["members.0.rows"], a.net.state_dict()["members.0.rows"]
    )
    with pytest.raises(ValueError, match="rerender chose with"):
        train_network(images, y, rerender=lambda e: ImageChoice(alt, which(e)[:5]), **kw)
    with pytest.raises(ValueError, match="rerender gave images"):
        train_network(images, y, rerender=lambda e: ImageChoice(alt[:, :32], which(e)), **kw)
