"""The worker names the suspected counterparty and the value moved on risk events.

The counterparty is not among the checked accounts: the worker finds it in the store
(``Store.mirror_candidates``) and scores through ``scoring.score_market`` with it as
context.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from fraudlens.checks import check_message
from fraudlens.market.data import MarketData, window
from fraudlens.market.detectors import FeatureDetector
from fraudlens.market.pairs import account_evidence
from fraudlens.market.simulate import simulate
from fraudlens.queues import SQLiteQueue
from fraudlens.registry import Registry
from fraudlens.store import open_store
from fraudlens.worker import Worker

pytest.importorskip("sqlalchemy")


def _with_beneficiary(market: MarketData, victim: str, beneficiary: str) -> MarketData:
    """The market plus an account that takes the other side of every trade of ``victim``."""
    t = market.trades
    mirror = t[t["account_id"] == victim].copy()
    mirror["account_id"] = beneficiary
    mirror["trade_id"] = "m-" + mirror["trade_id"].astype(str)
    mirror["side"] = mirror["side"].map({"buy": "sell", "sell": "buy"})
    trades = pd.concat([t, mirror], ignore_index=True)
    return MarketData(market.klines, trades, None, market.bar)


def test_risk_event_names_counterparty_and_value_moved(tmp_path: Path) -> None:
    market = simulate(200, seed=21, days=2)
    root = tmp_path / "models"
    Registry(root).save(FeatureDetector(n_estimators=60).fit(window(simulate(500, seed=22))))
    det = Registry(root).load("market")
    scores = dict(zip(market.account_ids, det.decision_function(window(market)), strict=True))
    assert market.labels is not None
    takeovers = market.labels.loc[market.labels["label"] == 1, "account_id"]
    victim = next(a for a in takeovers if scores[a] > 0.9)
    data = _with_beneficiary(market, victim, "beneficiary-1")

    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    store.upgrade()
    store.load_klines(data.klines)
    store.load_trades(data.trades)
    q = SQLiteQueue(tmp_path / "q.db")
    q.send(check_message(victim, "withdrawal"))
    stats = Worker(q, store, root, batch_size=10).run(idle_exit=0.3)
    assert stats.processed == 1 and stats.written == 1

    events, total = store.list_risk_events(limit=10)
    assert total == 1
    e = events[0]
    assert e["account_id"] == victim
    assert e["counterparty"] == "beneficiary-1"
    assert e["details"]["counterparty"] == "beneficiary-1"
    # the value equals the batch evidence of the same window
    expected = account_evidence(window(data).trades, data.klines).loc[victim]
    assert e["value_moved"] == pytest.approx(expected["value_moved"])
    assert e["details"]["value_moved"] == pytest.approx(expected["value_moved"])
    assert e["details"]["n_mirrored"] == expected["n_mirrored"] > 0
    assert e["value_moved"] > 0
    store.close()
    q.close()
