"""The CNN's fill dropout: training images re-rendered from part of each account's legs."""

from __future__ import annotations

import numpy as np
import pytest

from fraudlens.errors import DataError
from fraudlens.market._cnn import FillDropout
from fraudlens.market.data import MarketData, window
from fraudlens.market.render import STYLES, fill_legs, render_batch
from fraudlens.market.simulate import simulate

_STYLE = "fraudlens-gap"


@pytest.fixture(scope="module")
def data() -> MarketData:
    return window(simulate(300, seed=21))


def _dropout(data: MarketData, rate: float = 0.9, seed: int = 3) -> FillDropout:
    return FillDropout(data, style=_STYLE, size=STYLES[_STYLE], rate=rate, seed=seed)


def test_round_trip_legs_are_never_dropped(data: MarketData) -> None:
    legs, matched = fill_legs(data)
    assert len(legs) == len(matched) == len(data.trades)
    assert matched.any() and (~matched).any()
    fd = _dropout(data)
    dropped = 0
    for epoch in range(1, 6):
        keep = fd.keep(epoch)
        assert keep[matched].all()  # every fill of a paired leg stays
        assert keep[legs < 0].all()  # fills without a bar stay
        dropped += int((~keep).sum())
        # a leg is kept or dropped whole
        for leg in np.unique(legs[~keep])[:50]:
            assert not keep[legs == leg].any()
        # what is kept pairs exactly as before: no leg lost its partner, none gained one
        sub = MarketData(data.klines, data.trades.loc[keep].reset_index(drop=True), data.labels)
        assert np.array_equal(fill_legs(sub)[1], matched[keep])
    assert dropped > 0


def test_every_account_keeps_its_label_and_a_trade(data: MarketData) -> None:
    fd = _dropout(data, rate=1.0)
    ids = data.trades["account_id"].astype(str).to_numpy()
    keep = fd.keep(1)
    assert set(ids[keep]) == set(data.account_ids)
    images = fd(1)
    assert images.shape == (len(data.account_ids), *STYLES[_STYLE], 3)
    assert images.dtype == np.uint8
    # the accounts' order and labels are the data's: nothing to relabel
    sub = MarketData(data.klines, data.trades.loc[keep].reset_index(drop=True), data.labels)
    assert np.array_equal(sub.account_ids, data.account_ids)
    assert np.array_equal(sub.y(), data.y())


def test_half_of_the_accounts_are_drawn_whole(data: MarketData) -> None:
    fd = _dropout(data, rate=1.0)
    full = render_batch(data, style=_STYLE)
    images = fd(2)
    same = (images == full).all(axis=(1, 2, 3))
    assert 0.2 < same.mean() < 1.0
    # an account whose trades are all kept is drawn exactly as without dropout
    ids = data.trades["account_id"].astype(str).to_numpy()
    lost = np.unique(ids[~fd.keep(2)])
    whole = ~np.isin(data.account_ids, lost)
    assert same[whole].all()


def test_deterministic_for_a_seed_and_epoch(data: MarketData) -> None:
    a, b = _dropout(data, seed=5), _dropout(data, seed=5)
    assert np.array_equal(a.keep(4), b.keep(4))
    assert np.array_equal(a(4), b(4))
    assert not np.array_equal(a.keep(4), a.keep(5))
    assert not np.array_equal(a.keep(4), _dropout(data, seed=6).keep(4))


def test_rate_zero_draws_the_data_as_it_is(data: MarketData) -> None:
    fd = _dropout(data, rate=0.0)
    assert fd.keep(1).all()
    assert np.array_equal(fd(1), render_batch(data, style=_STYLE))
    with pytest.raises(DataError, match="fill dropout"):
        _dropout(data, rate=1.5)


def test_train_network_reads_rerendered_images_for_training_only() -> None:
    torch = pytest.importorskip("torch")
    from fraudlens.market._cnn_torch import train_network

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (24, 64, 32, 3), dtype=np.uint8)
    y = np.array([0, 1] * 12)
    calls: list[int] = []

    def rerender(epoch: int) -> np.ndarray:
        calls.append(epoch)
        return np.zeros_like(images)

    res = train_network(
        images, y, arch="bar", epochs=5, batch_size=8, seed=0, num_threads=1,
        val_share=0.25, rerender=rerender, rerender_every=2,
    )  # fmt: skip
    assert calls == [1, 3, 5]
    # the validation scores are of the images given (blank training images score alike)
    net = res.net.eval()
    with torch.inference_mode():
        x_val = torch.from_numpy(images[res.val_index])
        p = torch.softmax(net(x_val), dim=1)[:, 0].numpy()
    assert np.allclose(p, res.val_scores, atol=1e-6)
    with pytest.raises(ValueError, match="rerender gave images"):
        train_network(
            images, y, arch="bar", epochs=1, batch_size=8, num_threads=1,
            rerender=lambda epoch: images[:, :32],
        )  # fmt: skip
