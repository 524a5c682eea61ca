"""Pixel-level tests of the numpy trade-image rasteriser (both styles)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from _services import bench_module  # type: ignore[import-not-found]
from fraudlens.errors import ConfigError, DataError
from fraudlens.market import render
from fraudlens.market.data import MarketData
from fraudlens.market.render import STYLES, render_account, render_batch, render_chunks, save_png

T0 = pd.Timestamp("2026-03-02 14:30", tz="UTC")
BAR = pd.Timedelta(minutes=5)
N_BARS = 60
WIDE = 30  # the one wide bar: lowest low and highest high of the symbol
RED = (255, 0, 0)
GREEN = (0, 128, 0)


def _bars(symbol: str, base: float) -> pd.DataFrame:
    rng = np.random.default_rng(len(symbol) + int(base))
    low = base + rng.uniform(-4.0, 3.0, N_BARS)
    high = low + rng.uniform(0.5, 2.0, N_BARS)
    low[WIDE], high[WIDE] = base - 10.0, base + 10.0
    return pd.DataFrame(
        {
            "symbol": symbol,
            "ts": T0 + BAR * np.arange(N_BARS),
            "open": low,
            "high": high,
            "low": low,
            "close": high,
            "volume": 100.0,
        }
    )


def _trade(tid: str, acc: str, sym: str, bar: int, side: str, price: float) -> dict:
    return {
        "trade_id": tid,
        "account_id": acc,
        "symbol": sym,
        "ts": T0 + BAR * bar + pd.Timedelta(seconds=90),
        "side": side,
        "price": price,
        "quantity": 1.0,
    }


@pytest.fixture()
def data() -> MarketData:
    k = pd.concat([_bars("AAA", 100.0), _bars("BBB", 50.0)], ignore_index=True)
    t = pd.DataFrame(
        [
            # acct-1: a matched round trip at the extremes of the wide bar.
            _trade("t1", "acct-1", "AAA", WIDE, "buy", 90.0),
            _trade("t2", "acct-1", "AAA", WIDE, "sell", 110.0),
            # acct-2: ordinary trades in two symbols.
            _trade("t3", "acct-2", "AAA", 20, "buy", float(k["low"][20] + 0.2)),
            _trade("t4", "acct-2", "BBB", 25, "sell", float(k["high"][N_BARS + 25] - 0.1)),
            _trade("t5", "acct-2", "BBB", 40, "buy", float(k["low"][N_BARS + 40])),
            # acct-3: one sell at the wide bar's low.
            _trade("t6", "acct-3", "AAA", WIDE, "sell", 90.0),
        ]
    )
    t["ts"] = t["ts"].astype("datetime64[ns, UTC]")
    return MarketData(k, t)


def _reference_module() -> ModuleType:
    return bench_module("_reference")


# ------------------------------------------------------------------ shapes and API


@pytest.mark.parametrize("style", sorted(STYLES))
def test_batch_shape_dtype_and_order(data: MarketData, style: str) -> None:
    imgs = render_batch(data, style=style)
    h, w = STYLES[style]
    assert imgs.shape == (3, h, w, 3)
    assert imgs.dtype == np.uint8
    # A custom order (with a repeat) gives the same images, rearranged.
    again = render_batch(data, ["acct-3", "acct-1", "acct-3"], style=style)
    np.testing.assert_array_equal(again[0], imgs[2])
    np.testing.assert_array_equal(again[1], imgs[0])
    np.testing.assert_array_equal(again[2], imgs[2])


@pytest.mark.parametrize("style", sorted(STYLES))
def test_batch_equals_single(data: MarketData, style: str) -> None:
    imgs = render_batch(data, style=style)
    for i, acc in enumerate(data.account_ids):
        np.testing.assert_array_equal(imgs[i], render_account(data, acc, style=style))


@pytest.mark.parametrize("style", sorted(STYLES))
def test_chunking_does_not_change_pixels(
    data: MarketData, style: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = render_batch(data, style=style)
    monkeypatch.setattr(render, "_CHUNK", 2)
    done: list[int] = []
    chunked = render_batch(data, style=style, progress=done.append)
    np.testing.assert_array_equal(whole, chunked)
    assert done == [2, 1]


@pytest.mark.parametrize("style", sorted(STYLES))
def test_render_chunks_hands_out_the_batch_pixels(data: MarketData, style: str) -> None:
    whole = render_batch(data, style=style)
    for size in (1, 2, 3, 10):
        parts = list(render_chunks(data, style=style, chunk=size))
        assert [start for start, _ in parts] == list(range(0, 3, size))
        np.testing.assert_array_equal(np.concatenate([imgs for _, imgs in parts]), whole)
    # Unsorted ids with a repeat: rendered whole, then handed out in that order.
    ids = ["acct-3", "acct-1", "acct-3", "acct-2"]
    parts = list(render_chunks(data, ids, style=style, chunk=3))
    assert [start for start, _ in parts] == [0, 3]
    np.testing.assert_array_equal(
        np.concatenate([imgs for _, imgs in parts]), render_batch(data, ids, style=style)
    )
    with pytest.raises(ConfigError):
        next(render_chunks(data, style="nope"))


def test_unknown_account_and_style(data: MarketData) -> None:
    blank = render_batch(data, ["nobody"], style="reference")
    assert (blank == 255).all()
    assert (render_batch(data, ["nobody"]) == 0).all()
    with pytest.raises(DataError, match="nobody"):
        render_account(data, "nobody")
    with pytest.raises(ConfigError, match="unknown image style"):
        render_batch(data, style="plotly")


def test_save_png_round_trip(data: MarketData, tmp_path: Path) -> None:
    img = render_account(data, "acct-2")
    path = save_png(img, tmp_path / "a.png")
    with Image.open(path) as im:
        assert im.format == "PNG"
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), img)


# ------------------------------------------------------------------ "fraudlens" pixels


def _mark_centres(channel: np.ndarray) -> list[tuple[int, int]]:
    """Centres of the 3 x 3 marks in one channel (pixels lit)."""
    rows, cols = np.nonzero(channel > 0)
    return sorted({(int(r), int(c)) for r, c in zip(rows, cols, strict=True)
                   if (channel[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2] > 0).sum()
                   == channel[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2].size})  # fmt: skip


def test_fraudlens_round_trip_at_the_extremes(data: MarketData) -> None:
    img = render_account(data, "acct-1")
    top_h = render._FL.price_rows
    red, green, blue = img[..., 0], img[..., 1], img[..., 2]
    # 48 bars are drawn (the minimum) centred on the trade's bar; red and green share
    # its slot, on the middle 3 of its 5 line columns.
    red_cols = np.flatnonzero(red.any(axis=0))
    green_cols = np.flatnonzero(green.any(axis=0))
    np.testing.assert_array_equal(red_cols, green_cols)
    assert len(red_cols) == 3
    col = int(red_cols[1])
    # Price panel: the buy at the window's lowest low sits on the panel's bottom row, the
    # sell at the highest high on the top row; both 255 and clipped to 2 rows.
    assert red[top_h - 1, col] == 255 and red[top_h - 2, col] == 255
    assert red[: top_h - 2, col].max() == 0
    assert green[0, col] == 255 and green[1, col] == 255
    assert green[2:top_h, col].max() == 0
    # Range panel: the buy at its bar's low on the last row, the sell at the high on the
    # panel's first row.
    assert red[-1, col] == 255 and red[top_h:-2, col].max() == 0
    assert green[top_h, col] == 255 and green[top_h + 2 :, col].max() == 0
    # The wide bar spans the whole price panel in blue, at the bar intensity; it is the
    # widest bar, so its range-panel column is at full intensity.
    assert (blue[:top_h, col] == render._FL.bar_value).all()
    assert (blue[top_h:, col] == 255).all()
    # Nothing else is red or green.
    assert red.astype(bool).sum() == 3 * 2 * 2  # two 3 x 2 marks (clipped)
    assert green.astype(bool).sum() == 3 * 2 * 2


def test_fraudlens_sell_is_green_and_buy_is_red(data: MarketData) -> None:
    img = render_account(data, "acct-3")
    top_h = render._FL.price_rows
    # A sell at the bar's low: green, at the bottom of both panels, no red anywhere;
    # not a leg of an equal-size round trip, so at the dimmer mark value.
    assert img[..., 0].max() == 0
    assert img[..., 1].max() == render._FL.unmatched_value
    rows, _ = np.nonzero(img[:top_h, :, 1] > 0)
    assert set(rows.tolist()) == {top_h - 2, top_h - 1}
    rows, _ = np.nonzero(img[top_h:, :, 1] > 0)
    assert set((rows + top_h).tolist()) == {img.shape[0] - 2, img.shape[0] - 1}


def test_fraudlens_two_symbols_use_their_own_scale(data: MarketData) -> None:
    img = render_account(data, "acct-2")
    top_h = render._FL.price_rows
    # The BBB buy at its bar's low, BBB's prices are ~50 and AAA's ~100: per-symbol
    # scaling keeps every mark inside the price panel, not squashed to one edge.
    reds = _mark_centres(img[:top_h, :, 0])
    greens = _mark_centres(img[:top_h, :, 1])
    assert len(reds) == 2 and len(greens) == 1
    assert all(3 <= r <= top_h - 4 for r, _ in reds + greens)
    # In the range panel the BBB buy at its bar's low is on the last row.
    assert img[-1, :, 0].max() > 0


def test_fraudlens_bar_line_matches_the_bar(data: MarketData) -> None:
    img = render_account(data, "acct-3")
    top_h = render._FL.price_rows
    blue = img[:top_h, :, 2]
    cols = np.flatnonzero((blue == render._FL.bar_value).any(axis=0))
    # 48 bars drawn over 288 columns: slots of 6 px, lines of 5 px with a 1 px gap.
    assert len(cols) == 48 * 5
    # Every drawn column is one contiguous run of rows (a bar from high to low).
    for c in cols:
        rows = np.flatnonzero(blue[:, c])
        assert rows.max() - rows.min() + 1 == len(rows)


# ------------------------------------------------------------------ "reference" pixels


def _colour_class(img: np.ndarray) -> np.ndarray:
    """0 white, 1 red, 2 green, by the nearest of the three colours."""
    palette = np.array([(255, 255, 255), RED, GREEN], dtype=np.float64)
    d = ((img[..., None, :].astype(np.float64) - palette) ** 2).sum(-1)
    return d.argmin(-1)


def test_reference_disc_positions(data: MarketData) -> None:
    img = render_account(data, "acct-1", style="reference")
    # The buy at the lowest low: the axes' bottom has no margin (bar bottoms are sticky),
    # so the disc centre is at 150 - 16.5 = 133.5 -> row 134, clipped below row 134.
    red_rows, red_cols = np.nonzero((img == RED).all(-1))
    assert red_rows.max() == 134
    assert red_rows.min() == 134 - 6
    # The sell at the highest high: 5 % top margin -> display y 126.5 -> row 24.
    green_rows, green_cols = np.nonzero((img == GREEN).all(-1))
    assert green_rows.min() == 24 - 6 and green_rows.max() == 24 + 6
    assert len(green_rows) == 145  # a whole disc
    assert red_cols.mean() == pytest.approx(green_cols.mean())
    # White elsewhere.
    assert ((img == 255).all(-1) | (img == RED).all(-1) | (img == GREEN).all(-1)).all()


def test_reference_matches_matplotlib(data: MarketData) -> None:
    ref = _reference_module()
    from fraudlens.market.data import attach_bars

    imgs = render_batch(data, style="reference")
    for i, acc in enumerate(data.account_ids):
        t = data.trades[data.trades["account_id"] == acc]
        if t["symbol"].nunique() != 1:
            continue  # the reference draws one symbol
        last = t["ts"].max()
        k = data.klines[
            (data.klines["symbol"] == t["symbol"].iloc[0])
            & (data.klines["ts"] >= last - pd.Timedelta(hours=23))
            & (data.klines["ts"] <= last + pd.Timedelta(hours=1))
        ]
        tb = attach_bars(t, data.klines)
        buys = tb.loc[tb["side"] == "buy", ["bar_ts", "price"]]
        sells = tb.loc[tb["side"] == "sell", ["bar_ts", "price"]]
        mpl = ref.render_matplotlib(k, buys, sells, image_format="png")
        assert mpl.shape == imgs[i].shape
        ours, theirs = _colour_class(imgs[i]), _colour_class(mpl)
        marked = (ours > 0) | (theirs > 0)
        # Only anti-aliased edge pixels may fall on the other side of the halfway mark.
        assert marked.sum() >= 60
        assert (ours != theirs).sum() <= 0.03 * marked.sum()


@pytest.mark.parametrize("style", sorted(STYLES))
def test_no_trades_and_no_bars(data: MarketData, style: str) -> None:
    h, w = STYLES[style]
    empty = MarketData(data.klines, data.trades.iloc[:0])
    assert render_batch(empty, style=style).shape == (0, h, w, 3)
    # Without any k-lines the fills are still drawn (in their own price range).
    bare = MarketData(data.klines.iloc[:0], data.trades)
    imgs = render_batch(bare, style=style)
    background = 0 if style == "fraudlens" else 255
    assert all((img != background).any() for img in imgs)


def test_fraudlens_long_window_keeps_neighbouring_bars_apart() -> None:
    n = 300
    low = 100.0 + np.sin(np.arange(n) / 7.0)
    k = pd.DataFrame(
        {
            "symbol": "AAA",
            "ts": T0 + BAR * np.arange(n),
            "open": low,
            "high": low + 1.0,
            "low": low,
            "close": low + 0.5,
            "volume": 1.0,
        }
    )
    t = pd.DataFrame(
        [
            _trade("t1", "a", "AAA", 10, "buy", float(low[10])),
            _trade("t2", "a", "AAA", 150, "buy", float(low[150])),
            _trade("t3", "a", "AAA", 151, "sell", float(low[151] + 1.0)),
            _trade("t4", "a", "AAA", 280, "sell", float(low[280] + 1.0)),
        ]
    )
    t["ts"] = t["ts"].astype("datetime64[ns, UTC]")
    img = render_account(MarketData(k, t), "a")
    top_h = render._FL.price_rows
    # 271 bars + margins over 288 columns: 1 px per bar, so each fill is a mark one
    # column wide, and the buy in bar 150 and the sell in bar 151 sit side by side.
    red_cols = np.flatnonzero(img[top_h:, :, 0].any(axis=0))
    green_cols = np.flatnonzero(img[top_h:, :, 1].any(axis=0))
    assert len(red_cols) == 2 and len(green_cols) == 2
    assert not set(red_cols) & set(green_cols)
    assert green_cols[0] - red_cols[1] == 1
    # In the range panel the buys are on the bottom rows and the sells on the top rows.
    assert set(np.flatnonzero(img[top_h:, red_cols[1], 0])) == {30, 31}
    assert set(np.flatnonzero(img[top_h:, green_cols[0], 1])) == {0, 1}


@pytest.mark.parametrize("style", sorted(STYLES))
def test_unsorted_klines_and_trades_give_the_same_images(data: MarketData, style: str) -> None:
    rng = np.random.default_rng(0)
    shuffled = MarketData(
        data.klines.iloc[rng.permutation(len(data.klines))].reset_index(drop=True),
        data.trades.iloc[rng.permutation(len(data.trades))].reset_index(drop=True),
    )
    np.testing.assert_array_equal(
        render_batch(shuffled, style=style), render_batch(data, style=style)
    )


def test_range_panel_reads_the_bar_against_its_day() -> None:
    """Intensity follows range / the day's median range, the same at any price level;
    legs of an equal-size round trip are bright, other fills dim."""
    t0 = pd.Timestamp("2024-03-04 14:00", tz="UTC")

    def book(scale: float) -> MarketData:
        rows = []
        for i in range(48):
            low = (100.0 + 0.37 * i) * scale
            amp = (8.0 if i == 20 else 0.5 if i == 10 else 1.0) * scale
            rows.append(
                ("AAA", t0 + pd.Timedelta(minutes=5 * i), low, low + amp, low, low + amp, 1e3)
            )
        k = pd.DataFrame(rows, columns=["symbol", "ts", "open", "high", "low", "close", "volume"])
        lo20, hi20 = k.loc[20, "low"], k.loc[20, "high"]
        trades = pd.DataFrame(
            [
                ("a", "x", "AAA", t0 + pd.Timedelta(minutes=100, seconds=5), "buy", lo20, 3.0),
                ("b", "x", "AAA", t0 + pd.Timedelta(minutes=100, seconds=9), "sell", hi20, 3.0),
                (
                    "c",
                    "x",
                    "AAA",
                    t0 + pd.Timedelta(minutes=50, seconds=9),
                    "sell",
                    k.loc[10, "low"],
                    1.0,
                ),
            ],
            columns=["trade_id", "account_id", "symbol", "ts", "side", "price", "quantity"],
        )
        return MarketData(k, trades)

    img = render_account(book(1.0), "x")
    top_h = render._FL.price_rows
    blue = img[top_h:, :, 2].max(axis=0)
    red, green = img[..., 0], img[..., 1]
    wide_col = int(np.flatnonzero(red[top_h:].any(axis=0))[1])
    assert blue[wide_col] == 255  # 8x the median
    levels = sorted(set(blue[blue > 0].tolist()))
    # a bar half the median is at the floor, an ordinary bar a third of the way up
    assert levels[0] == render._FL.range_floor
    assert 90 <= levels[1] <= 110
    assert red.max() == 255 and green[:, wide_col].max() == 255  # the matched legs
    assert render._FL.unmatched_value in set(green.ravel().tolist())  # the lone sell
    np.testing.assert_array_equal(render_account(book(1e-6), "x"), img)


def test_column_slots_follow_each_bars_line() -> None:
    # For every number of bars: bar k's line covers its slot's columns but the last one
    # (its own column when the slot is 1 px); the gap columns read the empty slot.
    width = STYLES["fraudlens"][1]
    empty = render._FL.max_bars
    for nb in range(render._FL.min_bars, render._FL.max_bars + 1):
        want = np.full(width, empty)
        for k in range(nb):
            col0 = k * width // nb
            slot = (k + 1) * width // nb - col0
            want[col0 : col0 + max(slot - 1, 1)] = k
        assert np.array_equal(render._COLUMN_SLOTS[nb], want), nb


def test_equal_size_legs_pair_within_neighbouring_bars_only() -> None:
    ts = np.arange(4, dtype=np.int64) * BAR.value
    k_sym = np.array([0, 0, 0, 1])
    low, high = np.full(4, 10.0), np.full(4, 12.0)

    def legs(bar_row, buy, price, qty, acc=None):
        acc = np.zeros(len(bar_row), dtype=np.int64) if acc is None else np.asarray(acc)
        return render._equal_size_legs(
            acc, np.asarray(bar_row), np.asarray(buy), np.asarray(price, dtype=float),
            np.asarray(qty, dtype=float), k_sym, ts, low, high, BAR,
        )  # fmt: skip

    # a buy at one bar's low and a sell of the same size at the next bar's high
    assert legs([0, 1], [True, False], [10, 12], [2, 2]).tolist() == [True, True]
    # two bars apart, another size, the same side, another account, another symbol
    assert not legs([0, 2], [True, False], [10, 12], [2, 2]).any()
    assert not legs([0, 1], [True, False], [10, 12], [2, 3]).any()
    assert not legs([0, 1], [True, True], [10, 12], [2, 2]).any()
    assert not legs([0, 1], [True, False], [10, 12], [2, 2], acc=[0, 1]).any()
    assert not legs([2, 3], [True, False], [10, 12], [2, 2]).any()
    # an order cut into pieces is one leg; a fill with no bar has no partner
    pieces = legs([1, 1, 1, -1], [True, True, False, False], [10, 10, 12, 12], [1, 1, 2, 2])
    assert pieces.tolist() == [True, True, True, False]
    # a leg whose position is nan pairs with nothing, and no leg pairs with its
    # (bar, size); the other legs there still find partners of their own
    assert not legs([0, 1], [True, False], [np.nan, 12], [2, 2]).any()
    got = legs([0, 0, 1], [False, False, True], [np.nan, 12, 10], [2, 2, 2])
    assert got.tolist() == [False, True, False]


def test_account_positions_match_pandas() -> None:
    ids = np.unique(np.array(["a", "b", "nan", "1"]))
    for values in (
        pd.Series(["a", "x", "b", "a"], dtype="string[pyarrow]"),
        pd.Series(["a", None, "nan"], dtype="string[pyarrow]"),
        pd.Series(["a", "x", None], dtype=object),
        pd.Series([1, 2, 1]),
    ):
        want = pd.Index(ids).get_indexer(values.astype(str))
        assert np.array_equal(render._positions(values, ids), want)
