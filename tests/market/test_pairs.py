"""Counterparty linkage: mirrored trades, account pairs, round trips and value moved."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _services import bench_module  # type: ignore[import-not-found]
from fraudlens.market import pairs
from fraudlens.market.pairs import (
    EVIDENCE_COLUMNS,
    MATCH_COLUMNS,
    PAIR_COLUMNS,
    ROUND_TRIP_COLUMNS,
    account_evidence,
    account_pairs,
    find_pairs,
    mirrored_mask,
    round_trips,
)

T0 = pd.Timestamp("2026-03-02T14:30:00Z")
COLS = ["trade_id", "account_id", "symbol", "ts", "side", "price", "quantity"]


def book(rows: list[tuple]) -> pd.DataFrame:
    """Trades from ``(account, symbol, seconds after T0, side, price, quantity)``."""
    return pd.DataFrame(
        [
            (f"t{i}", a, s, T0 + pd.Timedelta(seconds=sec), side, p, q)
            for i, (a, s, sec, side, p, q) in enumerate(rows)
        ],
        columns=COLS,
    )


def matched(frame: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(frame["buy_trade_id"], frame["sell_trade_id"], strict=True))


# --------------------------------------------------------------------------- find_pairs


def test_exact_mirror_found() -> None:
    tr = book([("A", "X", 0, "buy", 10.5, 3.0), ("B", "X", 0, "sell", 10.5, 3.0)])
    m = find_pairs(tr)
    assert list(m.columns) == list(MATCH_COLUMNS)
    assert len(m) == 1
    row = m.iloc[0]
    assert (row["buy_account"], row["sell_account"]) == ("A", "B")
    assert (row["buy_trade_id"], row["sell_trade_id"]) == ("t0", "t1")
    assert (row["buy_row"], row["sell_row"]) == (0, 1)
    assert row["price"] == 10.5 and row["quantity"] == 3.0 and row["gap_seconds"] == 0.0


@pytest.mark.parametrize(
    ("other", "why"),
    [
        (("B", "X", 0, "sell", 10.5, 3.5), "different quantity"),
        (("B", "X", 0, "sell", 10.51, 3.0), "price one tick away"),
        (("B", "X", 61, "sell", 10.5, 3.0), "time beyond the gap"),
        (("B", "X", 0, "buy", 10.5, 3.0), "same side"),
        (("A", "X", 0, "sell", 10.5, 3.0), "same account"),
        (("B", "Y", 0, "sell", 10.5, 3.0), "other symbol"),
    ],
)
def test_near_misses_not_matched(other: tuple, why: str) -> None:
    tr = book([("A", "X", 0, "buy", 10.5, 3.0), other])
    assert len(find_pairs(tr)) == 0, why


def test_gap_is_inclusive_and_configurable() -> None:
    tr = book([("A", "X", 0, "buy", 10.5, 3.0), ("B", "X", 60, "sell", 10.5, 3.0)])
    assert len(find_pairs(tr)) == 1
    assert len(find_pairs(tr, max_gap="59s")) == 0
    assert len(find_pairs(tr, max_gap=pd.Timedelta(minutes=5))) == 1


def test_one_to_one_nearest_in_time() -> None:
    # one buy, three candidate sells: the buy takes the nearest; the others stay single
    tr = book(
        [
            ("B", "X", 0, "sell", 5.0, 1.0),
            ("A", "X", 10, "buy", 5.0, 1.0),
            ("C", "X", 12, "sell", 5.0, 1.0),
            ("D", "X", 30, "sell", 5.0, 1.0),
        ]
    )
    m = find_pairs(tr)
    assert matched(m) == {("t1", "t2")}
    # two buys, two sells: each trade in exactly one match, nearest first
    tr = book(
        [
            ("A", "X", 0, "buy", 5.0, 1.0),
            ("B", "X", 1, "sell", 5.0, 1.0),
            ("C", "X", 3, "buy", 5.0, 1.0),
            ("D", "X", 20, "sell", 5.0, 1.0),
        ]
    )
    m = find_pairs(tr)
    assert matched(m) == {("t0", "t1"), ("t2", "t3")}
    legs = np.r_[m["buy_row"], m["sell_row"]]
    assert len(legs) == len(set(legs.tolist()))


def test_mirrored_mask_marks_both_legs_in_row_order() -> None:
    tr = book(
        [
            ("C", "X", 0, "buy", 5.0, 1.0),
            ("A", "X", 0, "buy", 5.0, 2.0),
            ("B", "X", 1, "sell", 5.0, 2.0),
        ]
    )
    assert mirrored_mask(tr).tolist() == [False, True, True]
    assert mirrored_mask(tr.iloc[::-1].reset_index(drop=True)).tolist() == [True, True, False]
    assert mirrored_mask(tr.iloc[:0]).tolist() == []


def test_same_account_neighbour_is_skipped() -> None:
    # B's own sell sits between A's buy and C's sell: A still finds C
    tr = book(
        [
            ("A", "X", 0, "buy", 5.0, 1.0),
            ("A", "X", 1, "sell", 5.0, 1.0),
            ("A", "X", 2, "sell", 5.0, 1.0),
            ("C", "X", 5, "sell", 5.0, 1.0),
        ]
    )
    assert matched(find_pairs(tr)) == {("t0", "t3")}


@pytest.mark.parametrize("level", [1.2345e-8, 3.7e-3, 1.0, 42.17, 98765.4])
def test_price_tolerance_across_levels(level: float) -> None:
    tick = 10.0 ** (np.floor(np.log10(level)) - 4)
    # float noise (as a database round trip or arithmetic adds) still matches ...
    noisy = level * (1 + 3e-16) + 0.0
    noisy2 = (level / 3.0) * 3.0
    tr = book(
        [
            ("A", "X", 0, "buy", level, 2.0),
            ("B", "X", 0, "sell", noisy, 2.0),
            ("C", "X", 100, "buy", noisy2, 2.0),
            ("D", "X", 100, "sell", level, 2.0),
            # ... one tick away does not, at any price level
            ("E", "X", 200, "buy", level, 2.0),
            ("F", "X", 200, "sell", level + tick, 2.0),
        ]
    )
    assert matched(find_pairs(tr)) == {("t0", "t1"), ("t2", "t3")}


def test_empty_input() -> None:
    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in COLS})
    empty["ts"] = pd.Series(dtype="datetime64[ns, UTC]")
    empty["price"] = empty["quantity"] = pd.Series(dtype=float)
    assert list(find_pairs(empty).columns) == list(MATCH_COLUMNS)
    assert len(find_pairs(empty)) == 0
    assert list(account_pairs(empty).columns) == list(PAIR_COLUMNS)
    assert list(round_trips(empty).columns) == list(ROUND_TRIP_COLUMNS)
    ev = account_evidence(empty)
    assert list(ev.columns) == list(EVIDENCE_COLUMNS) and len(ev) == 0


def test_bad_arguments() -> None:
    tr = book([("A", "X", 0, "buy", 1.0, 1.0)])
    with pytest.raises(ValueError, match="max_gap"):
        find_pairs(tr, max_gap="-1s")
    with pytest.raises(ValueError, match="price_tol"):
        find_pairs(tr, price_tol=-1.0)
    bad = tr.assign(side="hold")
    with pytest.raises(ValueError, match="unknown side"):
        find_pairs(bad)


def test_row_order_does_not_change_matches() -> None:
    rng = np.random.default_rng(3)
    rows = [
        (f"a{rng.integers(6)}", "X", float(rng.integers(0, 100_000)) / 1000, side, 7.0, 1.0)
        for side in rng.choice(["buy", "sell"], 60)
    ]
    tr = book(rows)  # timestamps distinct up to rare ties
    tr = tr.drop_duplicates("ts")
    first = matched(find_pairs(tr))
    shuffled = tr.sample(frac=1.0, random_state=1)
    assert matched(find_pairs(shuffled)) == first
    assert first


# ------------------------------------------------------------------ greedy vs brute force


def _greedy_reference(
    tr: pd.DataFrame, key: list[str], near: np.ndarray, limit: int, distinct: bool
) -> set[tuple[int, int]]:
    """Sequential greedy over every eligible edge: the definition the matcher must meet."""
    ts = tr["ts"].to_numpy("datetime64[ns]").astype(np.int64)
    groups = tr.groupby(key, sort=False).indices
    rank = np.zeros(len(tr), dtype=np.int64)
    for idx in groups.values():
        order = sorted(idx.tolist(), key=lambda i: (ts[i], i))
        for r, i in enumerate(order):
            rank[i] = r
    acct = tr["account_id"].to_numpy()
    buy = (tr["side"] == "buy").to_numpy()
    edges = []
    for idx in groups.values():
        for i, j in itertools.product(idx.tolist(), idx.tolist()):
            if not (buy[i] and not buy[j]):
                continue
            if distinct and acct[i] == acct[j]:
                continue
            if abs(int(near[i]) - int(near[j])) > limit:
                continue
            edges.append((abs(ts[i] - ts[j]), abs(rank[i] - rank[j]), min(rank[i], rank[j]), i, j))
    done: set[int] = set()
    out = set()
    for *_, i, j in sorted(edges):
        if i not in done and j not in done:
            done |= {i, j}
            out.add((i, j))
    return out


_trade = st.tuples(
    st.sampled_from(["a", "b", "c"]),
    st.sampled_from(["X", "Y"]),
    st.integers(0, 12),
    st.sampled_from(["buy", "sell"]),
    st.sampled_from([0.5, 2.0]),
    st.sampled_from([1.0, 3.0]),
)


@pytest.mark.parametrize("fast_rounds", [16, 0])
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(rows=st.lists(_trade, max_size=40))
def test_mirrors_equal_sequential_greedy(
    rows: list[tuple], fast_rounds: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # fast_rounds 0 sends everything through the sequential fallback
    monkeypatch.setattr(pairs, "_FAST_ROUNDS", fast_rounds)
    tr = book(rows)
    got = set(zip(*(find_pairs(tr, max_gap="4s")[c] for c in ("buy_row", "sell_row")), strict=True))
    ts = tr["ts"].to_numpy("datetime64[ns]").astype(np.int64)
    want = _greedy_reference(tr, ["symbol", "price", "quantity"], ts, 4 * 10**9, True)
    assert got == want


@pytest.mark.parametrize("fast_rounds", [16, 0])
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(rows=st.lists(_trade, max_size=40))
def test_round_trips_equal_sequential_greedy(
    rows: list[tuple], fast_rounds: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pairs, "_FAST_ROUNDS", fast_rounds)
    tr = book([(a, s, sec * 100, side, p, q) for a, s, sec, side, p, q in rows])
    rt = round_trips(tr)
    got = set(zip(rt["buy_row"], rt["sell_row"], strict=True))
    bar = tr["ts"].to_numpy("datetime64[ns]").astype(np.int64) // (300 * 10**9)
    want = _greedy_reference(tr, ["account_id", "symbol", "quantity"], bar, 1, False)
    assert got == want


@pytest.mark.parametrize("fast_rounds", [16, 0])
def test_busy_price_level_equals_sequential_greedy(
    fast_rounds: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one price level crowded by a few accounts, one of them most of the fills: long runs
    # of the element's own account to skip, in both the rounds and the sequential path
    monkeypatch.setattr(pairs, "_FAST_ROUNDS", fast_rounds)
    rng = np.random.default_rng(7)
    n = 400
    rows = [
        (str(a), "X", float(s), str(side), 3.0, 1.0)
        for a, s, side in zip(
            rng.choice(["a", "b", "c", "d"], n, p=[0.7, 0.1, 0.1, 0.1]),
            np.sort(rng.integers(0, 200_000, n)) / 1000,
            rng.choice(["buy", "sell"], n),
            strict=True,
        )
    ]
    tr = book(rows)
    got = set(
        zip(*(find_pairs(tr, max_gap="30s")[c] for c in ("buy_row", "sell_row")), strict=True)
    )
    ts = tr["ts"].to_numpy("datetime64[ns]").astype(np.int64)
    want = _greedy_reference(tr, ["symbol", "price", "quantity"], ts, 30 * 10**9, True)
    assert got == want and len(want) > 20


def test_long_chain_settles_quickly() -> None:
    # alternating sides, ever wider gaps: the rounds settle one pair each, the sequential
    # fallback takes over; both give the greedy (nearest pairs: 0-1, 2-3, ...)
    n = 4000
    ts = np.cumsum(np.arange(1, n + 1)) * 1000
    tr = pd.DataFrame(
        {
            "trade_id": [f"t{i}" for i in range(n)],
            "account_id": [f"a{i}" for i in range(n)],
            "symbol": "X",
            "ts": pd.to_datetime(ts, utc=True),
            "side": np.where(np.arange(n) % 2 == 0, "buy", "sell"),
            "price": 1.0,
            "quantity": 1.0,
        }
    )
    m = find_pairs(tr)
    assert len(m) == n // 2
    assert (m["sell_row"] - m["buy_row"] == 1).all()


# ------------------------------------------------------------------ round trips and value


def _klines(symbol: str, n: int, low: float, high: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": symbol,
            "ts": [T0 + pd.Timedelta(minutes=5 * i) for i in range(n)],
            "open": low,
            "high": high,
            "low": low,
            "close": high,
            "volume": 1.0,
        }
    )


def test_round_trips_same_and_adjacent_bars_only() -> None:
    tr = book(
        [
            ("A", "X", 10, "buy", 12.0, 5.0),  # bar 0
            ("A", "X", 320, "sell", 10.0, 5.0),  # bar 1: a round trip with the buy
            ("A", "X", 1000, "buy", 12.0, 7.0),  # bar 3
            ("A", "X", 1700, "sell", 10.0, 7.0),  # bar 5: too far
            ("A", "X", 1900, "sell", 10.0, 2.0),  # no equal-quantity buy
        ]
    )
    k = _klines("X", 8, 9.0, 13.0)
    rt = round_trips(tr, k)
    assert len(rt) == 1
    row = rt.iloc[0]
    assert (row["buy_trade_id"], row["sell_trade_id"]) == ("t0", "t1")
    assert row["value_lost"] == pytest.approx((12.0 - 10.0) * 5.0)
    assert len(round_trips(tr, k, adjacent=2)) == 2
    assert len(round_trips(tr, k, adjacent=0)) == 0


def test_round_trip_bars_come_from_klines() -> None:
    # bars that start at :02 (not on the 5-minute clock): a buy at :04 and a sell at :06
    # are in the same bar by the k-lines, in different slots by the clock
    start = T0 + pd.Timedelta(minutes=2)
    k = _klines("X", 4, 1.0, 2.0).assign(ts=[start + pd.Timedelta(minutes=5 * i) for i in range(4)])
    tr = book([("A", "X", 240, "buy", 2.0, 1.0), ("A", "X", 360, "sell", 1.0, 1.0)])
    assert len(round_trips(tr, k, adjacent=0)) == 1
    assert len(round_trips(tr, None, adjacent=0)) == 0


def _takeover() -> pd.DataFrame:
    """Victim V buys at the high from beneficiary B and sells back at the low, twice."""
    return book(
        [
            ("V", "X", 10, "buy", 13.0, 4.0),
            ("B", "X", 10, "sell", 13.0, 4.0),
            ("V", "X", 320, "sell", 9.0, 4.0),
            ("B", "X", 320, "buy", 9.0, 4.0),
            ("V", "X", 700, "buy", 12.5, 2.0),
            ("B", "X", 700, "sell", 12.5, 2.0),
            ("V", "X", 710, "sell", 9.5, 2.0),
            ("B", "X", 710, "buy", 9.5, 2.0),
            # an ordinary account: one fill at a popular price, mirrored by chance
            ("N", "X", 12, "buy", 13.0, 4.0),
            ("M", "X", 12, "sell", 13.0, 4.0),
        ]
    )


def test_account_pairs_value_sign_and_size() -> None:
    tr = _takeover()
    p = account_pairs(tr)
    assert list(p.columns) == list(PAIR_COLUMNS)
    vb = p[(p["account_id"] == "V") & (p["counterparty"] == "B")].iloc[0]
    bv = p[(p["account_id"] == "B") & (p["counterparty"] == "V")].iloc[0]
    lost = (13.0 - 9.0) * 4.0 + (12.5 - 9.5) * 2.0
    assert vb["value_lost"] == pytest.approx(lost)
    assert bv["value_lost"] == pytest.approx(-lost)
    assert vb["value_moved"] == bv["value_moved"] == pytest.approx(lost)
    assert vb["n_matched"] == 4 and vb["n_round_trips"] == 2
    assert vb["trade_ids"] == "t0;t2;t4;t6"
    assert vb["counterparty_trade_ids"] == "t1;t3;t5;t7"
    assert vb["symbols"] == "X"
    assert vb["first_ts"] == T0 + pd.Timedelta(seconds=10)
    assert vb["last_ts"] == T0 + pd.Timedelta(seconds=710)
    # the chance match is a pair too, with one match and no round trip
    nm = p[(p["account_id"] == "N")].iloc[0]
    assert (nm["counterparty"], nm["n_matched"], nm["n_round_trips"]) == ("M", 1, 0)
    assert nm["value_moved"] == 0.0
    # strongest first
    assert p.iloc[0]["value_moved"] == pytest.approx(lost)


def test_account_evidence_counterparty_and_value() -> None:
    tr = _takeover()
    k = _klines("X", 6, 8.0, 14.0)
    ev = account_evidence(tr, k)
    assert list(ev.columns) == list(EVIDENCE_COLUMNS)
    assert ev.index.tolist() == ["B", "M", "N", "V"]
    lost = (13.0 - 9.0) * 4.0 + (12.5 - 9.5) * 2.0
    v, b = ev.loc["V"], ev.loc["B"]
    assert v["counterparty"] == "B" and b["counterparty"] == "V"
    assert v["value_moved"] == pytest.approx(lost) and v["value_lost"] == pytest.approx(lost)
    assert b["value_moved"] == pytest.approx(lost) and b["value_lost"] == pytest.approx(-lost)
    assert v["n_round_trips"] == 2 and v["round_trip_share"] == 1.0
    assert v["n_mirrored"] == 4 and v["mirrored_share"] == 1.0
    assert v["counterparty_n_matched"] == 4 and v["counterparty_round_trips"] == 2
    assert v["counterparty_value_lost"] == pytest.approx(lost)
    assert b["counterparty_value_moved"] == pytest.approx(lost)
    # one chance match is below MIN_MATCHED: no counterparty named
    n = ev.loc["N"]
    assert n["counterparty"] is None and n["n_mirrored"] == 1 and n["n_counterparties"] == 1
    assert n["value_moved"] == 0.0
    assert ev["n_round_trips"].dtype == np.int64 and ev["value_moved"].dtype == np.float64


def test_value_moved_without_the_counterparty_in_the_data() -> None:
    tr = _takeover()
    alone = tr[tr["account_id"] == "V"].reset_index(drop=True)
    ev = account_evidence(alone, _klines("X", 6, 8.0, 14.0))
    v = ev.loc["V"]
    assert v["value_moved"] == pytest.approx((13.0 - 9.0) * 4.0 + (12.5 - 9.5) * 2.0)
    assert v["counterparty"] is None and v["n_mirrored"] == 0


def test_strongest_counterparty_wins() -> None:
    # V trades with B (small loss) and with C (large loss): C is the counterparty
    tr = book(
        [
            ("V", "X", 0, "buy", 10.1, 1.0),
            ("B", "X", 0, "sell", 10.1, 1.0),
            ("V", "X", 5, "sell", 10.0, 1.0),
            ("B", "X", 5, "buy", 10.0, 1.0),
            ("V", "X", 100, "buy", 20.0, 3.0),
            ("C", "X", 100, "sell", 20.0, 3.0),
            ("V", "X", 105, "sell", 10.0, 3.0),
            ("C", "X", 105, "buy", 10.0, 3.0),
        ]
    )
    ev = account_evidence(tr)
    assert ev.loc["V", "counterparty"] == "C"
    assert ev.loc["V", "n_counterparties"] == 2
    assert ev.loc["V", "counterparty_value_moved"] == pytest.approx(30.0)
    assert ev.loc["V", "value_moved"] == pytest.approx(0.1 + 30.0)


def test_scale_smoke() -> None:
    """A generated book of many accounts links every planted pair (timings: bench/pairs.py)."""
    mod = bench_module("pairs")
    klines, trades, planted = mod.make_book(5000, per_symbol=20, mirrored=0.04, seed=5)
    ev = account_evidence(trades, klines)
    assert len(ev) == trades["account_id"].nunique()
    cp = ev["counterparty"]
    assert (cp.reindex(planted["victim"]).to_numpy() == planted["beneficiary"].to_numpy()).all()
    assert (cp.reindex(planted["beneficiary"]).to_numpy() == planted["victim"].to_numpy()).all()
    # what each planted victim lost to its beneficiary (victims may trade much more on
    # their own, so their total value_lost can have either sign)
    assert (ev.loc[planted["victim"], "counterparty_value_lost"] >= 0).all()
    assert (ev.loc[planted["victim"], "counterparty_value_lost"] > 0).mean() > 0.9
    assert (ev.loc[planted["beneficiary"], "counterparty_value_lost"] <= 0).all()


# --------------------------------------------------------------------------------- CLI


def test_cli_pairs_writes_table_and_matches(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fraudlens.cli import app
    from fraudlens.market.data import MarketData, write_market

    tr = _takeover()
    paths = write_market(MarketData(_klines("X", 6, 8.0, 14.0), tr), tmp_path / "book")
    out, m_out = tmp_path / "out" / "pairs.csv", tmp_path / "out" / "matches.csv"
    res = CliRunner().invoke(
        app,
        [
            "market",
            "pairs",
            "--klines",
            str(paths["klines"]),
            "--trades",
            str(paths["trades"]),
            "--out",
            str(out),
            "--matches",
            str(m_out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "top 2 pairs by value moved" in res.output
    table = pd.read_csv(out)
    assert list(table.columns) == list(PAIR_COLUMNS)
    vb = table[(table["account_id"] == "V") & (table["counterparty"] == "B")].iloc[0]
    assert vb["value_lost"] == pytest.approx(22.0)
    assert vb["trade_ids"] == "t0;t2;t4;t6"
    assert vb["first_ts"] == "2026-03-02T14:30:10Z"
    assert len(pd.read_csv(m_out)) == 5


def test_cli_pairs_bad_input_names_file_row_column(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fraudlens.cli import app
    from fraudlens.market.data import MarketData, write_market

    tr = _takeover()
    tr.loc[3, "quantity"] = -1.0
    paths = write_market(MarketData(_klines("X", 6, 8.0, 14.0), tr), tmp_path / "book")
    res = CliRunner().invoke(
        app,
        [
            "market",
            "pairs",
            "--klines",
            str(paths["klines"]),
            "--trades",
            str(paths["trades"]),
            "--out",
            str(tmp_path / "p.csv"),
        ],
    )
    assert res.exit_code == 2
    text = " ".join(res.output.split())
    assert "trades.csv" in text and "row 4" in text and "'quantity'" in text
    assert not (tmp_path / "p.csv").exists()
