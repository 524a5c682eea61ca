"""A risk event's details as the store writes them: orjson's text for plain JSON values,
json.dumps' for anything else, the same values read back on every database."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from enum import IntEnum

import numpy as np
import pytest

from fraudlens.store import RiskEvent, Store

pytest.importorskip("sqlalchemy")
pytest.importorskip("orjson")

from fraudlens.store.db import _json_text

END = datetime(2026, 3, 2, 17, 24, 5, 369000, tzinfo=UTC)


def _details() -> dict[str, object]:
    """Details as the worker writes them: explained trades and evidence, with the values
    whose text differs most between writers (floats' digits, None, bools, big ints)."""
    trade = {
        "trade_id": "T-1",
        "symbol": "JNPN-USD",
        "ts": "2026-03-02T16:55:01.125000+00:00",
        "side": "buy",
        "price": 482.535,
        "quantity": 0.1 + 0.2,
        "bar_high": 484.96,
        "bar_low": None,
        "pos": 0.0,
        "wick": True,
        "amp_rank": 7,
        "weight": 5.9648,
        "reason": 'buy at 0% of bar range; "quoted" \\ and a tab\t',
        "tiny": 5e-324,
        "huge": 1.7976931348623157e308,
        "negative_zero": -0.0,
        "big": 2**63 - 1,
    }
    return {
        "trades": [trade, {**trade, "trade_id": "T-2", "side": "sell", "pos": 1.0}],
        "counterparty": None,
        "value_moved": 10.843187000000029,
        "n_round_trips": 6,
        "nested": {"a": [1, [2, [3]]], "empty": {}, "list": []},
    }


def _event(details: dict[str, object], account: str = "acct-1") -> RiskEvent:
    return RiskEvent(
        account_id=account,
        score=0.9999918937683105,
        event_threshold=0.9,
        model_version="market-features:v0001",
        window_start=END - timedelta(hours=24),
        window_end=END,
        details=details,
    )


def _stored_text(store: Store) -> list[str]:
    """The details' text as the database keeps it (PostgreSQL's json type keeps it
    verbatim; psycopg would parse it, so it is read as text)."""
    column = "CAST(details AS TEXT)" if store.dialect == "postgresql" else "details"
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql(f"SELECT {column} FROM risk_events ORDER BY id").all()
    return [r[0] for r in rows]


def test_plain_details_are_written_by_orjson_and_read_back_as_the_same_values(
    store: Store,
) -> None:
    details = _details()
    assert store.add_risk_events([_event(details)]) == 1
    (text,) = _stored_text(store)
    # orjson's compact text (json.dumps writes ", " and ": "), on every database
    assert text == _json_text(details)
    assert text != json.dumps(details)
    assert json.loads(text) == json.loads(json.dumps(details))
    (event,), _ = store.list_risk_events()
    assert event["details"] == json.loads(json.dumps(details))
    got = event["details"]["trades"][0]
    assert math.copysign(1.0, got["negative_zero"]) == -1.0
    assert got["tiny"] == 5e-324 and got["big"] == 2**63 - 1


def test_values_orjson_would_write_by_other_rules_are_written_by_json_dumps() -> None:
    class Level(IntEnum):
        HIGH = 3

    cases = [
        {"price": np.float64(1.25)},  # a float subclass
        {"account": "compte-é", "sym": "€"},  # non-ASCII text: escaped as before
        {1: "an int key"},  # a key json.dumps turns into "1"
        {"big": 2**70},  # beyond 64 bits
        {"surrogate": "\ud800"},  # not encodable as UTF-8
    ]
    for value in cases:
        assert _json_text(value) == json.dumps(value), value
    # an IntEnum: orjson writes its value, as json.dumps does
    assert json.loads(_json_text({"level": Level.HIGH})) == {"level": 3}
    # and what json.dumps refuses is still refused, with its TypeError
    for value in ({"when": END}, {"set": {1, 2}}, {"array": np.arange(3)}):
        with pytest.raises(TypeError):
            _json_text(value)


def test_non_ascii_details_keep_their_escaped_text(store: Store) -> None:
    details = {"trades": [{"trade_id": "T-é", "reason": "achat à 0 %"}]}
    assert store.add_risk_events([_event(details)]) == 1
    (text,) = _stored_text(store)
    assert text == json.dumps(details)
    (event,), _ = store.list_risk_events()
    assert event["details"] == details


def test_a_non_finite_float_in_details_is_stored_as_null_on_every_database(
    store: Store,
) -> None:
    # JSON has no NaN: before, SQLite stored the token NaN (which no JSON reader takes)
    # and PostgreSQL and MariaDB refused the whole batch
    details = {"trades": [{"trade_id": "T1", "pos": float("nan"), "gap": float("inf")}]}
    assert store.add_risk_events([_event(details)]) == 1
    (event,), _ = store.list_risk_events()
    assert event["details"] == {"trades": [{"trade_id": "T1", "pos": None, "gap": None}]}
    (text,) = _stored_text(store)
    assert "NaN" not in text and "Infinity" not in text


def test_a_missing_orjson_is_reported_when_the_store_opens(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    import sys

    from fraudlens.errors import MissingDependencyError
    from fraudlens.store import db

    db._orjson.cache_clear()
    monkeypatch.setitem(sys.modules, "orjson", None)
    try:
        with pytest.raises(MissingDependencyError, match=r"orjson.*'store' extra"):
            Store(f"sqlite:///{tmp_path / 'x.db'}")
    finally:
        monkeypatch.delitem(sys.modules, "orjson")
        db._orjson.cache_clear()


def test_event_symbols_of_plain_dicts_and_other_mappings() -> None:
    from collections import UserDict

    from fraudlens.store._triage import event_symbols

    details = {
        "trades": [
            {"symbol": "BTC-USD"},
            {"symbol": "ETH-USD", "price": 1.0},
            {"symbol": "BTC-USD"},
            UserDict({"symbol": "SOL-USD"}),  # a Mapping that is not a dict
            {"symbol": ""},  # empty
            {"symbol": "X" * 33},  # too long
            {"symbol": 5},  # not text
            {"price": 2.0},  # no symbol
            "not a trade",
        ]
    }
    assert event_symbols(details) == ["BTC-USD", "ETH-USD", "SOL-USD"]
    assert event_symbols(json.dumps({"trades": [{"symbol": "A"}]})) == ["A"]
    assert event_symbols("not json") == []
    assert event_symbols({"trades": "BTC-USD"}) == []
    assert event_symbols(None) == []
