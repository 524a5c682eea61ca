"""Bulk loads store exactly the rows they are given, on every database.

MariaDB's load builds its multi-row INSERT statements itself (the values quoted a column
at a time, statements cut to a byte budget): ids with quotes, backslashes, percent signs
and characters beyond the BMP, times with and without microseconds and floats of every
magnitude must come back as SQLite stores them, however the rows are cut into
statements, and a second load must insert nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from _services import fresh_store  # type: ignore[import-not-found]
from fraudlens.market.data import MarketData
from fraudlens.market.simulate import simulate
from fraudlens.store import Store
from fraudlens.store import db as store_db

HOSTILE = [
    "it's",
    'say "hi"',
    "back\\slash",
    "100%s",
    "%(x)s %%",
    "caf\u00e9 \u65e5\u672c",
    "\U0001f600 emoji",
    "a),(b",
    "trailing\\",
]


@pytest.fixture(scope="module")
def market() -> MarketData:
    data = simulate(40, seed=5, days=2)
    trades = data.trades.copy()
    # hostile ids on some accounts and trades
    accounts = sorted(trades["account_id"].unique())
    rename = {a: f"{HOSTILE[i % len(HOSTILE)]} {i}" for i, a in enumerate(accounts[:18])}
    trades["account_id"] = trades["account_id"].map(lambda a: rename.get(a, a))
    trade_ids = trades["trade_id"].to_numpy(dtype=object).copy()
    for i in range(0, len(trade_ids), 7):
        trade_ids[i] = f"{HOSTILE[i % len(HOSTILE)]}#{i}"
    trades["trade_id"] = trade_ids
    # whole seconds, microseconds, and floats of every magnitude
    ts = pd.to_datetime(trades["ts"], utc=True).dt.tz_localize(None).to_numpy("datetime64[us]")
    ts = ts.copy()
    ts[::3] = ts[::3].astype("datetime64[s]").astype("datetime64[us]")
    ts[1::3] = ts[1::3] + np.timedelta64(123457, "us")
    trades["ts"] = pd.Series(ts, index=trades.index).dt.tz_localize("UTC")
    odd = [0.1, 1e-7, 1.5e20, 123456789.12345679, 5e-324, 1.7976931348623157e308, 2.0**-40]
    trades.loc[trades.index[: len(odd)], "price"] = odd
    trades.loc[trades.index[: len(odd)], "quantity"] = odd[::-1]
    return MarketData(klines=data.klines, trades=trades)


def _rows(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    with store.engine.connect() as conn:
        for model in (store_db.Kline, store_db.Trade):
            table = store_db._table(model)
            out[table.name] = sorted(tuple(r) for r in conn.execute(sa.select(table)))
    return out


def _load(store: Store, market: MarketData) -> tuple[int, int]:
    return store.load_klines(market.klines), store.load_trades(market.trades)


@pytest.mark.services
@pytest.mark.parametrize("statement_bytes", [None, 3_000], ids=["default", "3kB-statements"])
def test_mariadb_load_stores_what_sqlite_stores(
    market: MarketData,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    statement_bytes: int | None,
) -> None:
    if statement_bytes is not None:
        # many statements per chunk, and chunks of several statements
        monkeypatch.setattr(store_db, "_MYSQL_STATEMENT_BYTES", statement_bytes)
        monkeypatch.setattr(store_db, "_LOAD_CHUNK", 500)
    lite = fresh_store("sqlite", tmp_path)
    maria = fresh_store("mariadb", tmp_path)
    try:
        want = _load(lite, market)
        assert want == (len(market.klines), len(market.trades))
        assert _load(maria, market) == want
        expected, got = _rows(lite), _rows(maria)
        assert len(got["trades"]) == len(market.trades)
        assert got == expected
        # the hostile values really are there, as given
        ids = {r[0] for r in got["trades"]}
        assert {t for t in market.trades["trade_id"] if "#" in t} <= ids
        assert any(isinstance(r[3], datetime) and r[3].microsecond == 123457 for r in got["trades"])
        # loaded again, or half of it with new rows: only the new rows are inserted
        assert _load(maria, market) == (0, 0)
        extra = market.trades.iloc[:5].copy()
        extra["trade_id"] = [f"new'{i}\\" for i in range(5)]
        more = pd.concat([market.trades.iloc[::2], extra], ignore_index=True)
        assert maria.load_trades(more) == 5
        assert maria.counts()["trades"] == len(market.trades) + 5
    finally:
        maria.drop_all()
        maria.close()
        lite.close()
