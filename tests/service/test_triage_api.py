"""Triage through the API: every sort, the filters (account prefix with its escaping,
symbol, counterparty, value moved), pagination in priority order and bulk decisions, on
SQLite and, each in a private schema or database, on PostgreSQL and MariaDB."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from _services import DATABASES, private_database  # type: ignore[import-not-found]
from fraudlens.config import Settings
from fraudlens.service import create_app

pytest.importorskip("sqlalchemy")

from fraudlens.store import Store, open_store

BASE = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)

# account, score, value moved, counterparty, symbols, status. Account ids hold the LIKE
# wildcards and the escape character, and differ in case, to test the prefix search.
SEED: list[tuple[str, float, float | None, str | None, tuple[str, ...], str]] = [
    ("acct-001", 0.999, 5_000.0, "acct-900", ("BTCUSDT",), "open"),
    ("acct-0019", 0.95, 20_000.0, "acct-900", ("BTCUSDT", "ETHUSDT"), "open"),
    ("acct_1", 0.999, None, None, ("ETHUSDT",), "open"),
    ("acctX1", 0.97, 0.0, None, ("SOLUSDT",), "open"),
    ("acct%1", 0.92, 300.0, "acct-901", ("SOLUSDT",), "open"),
    ("acct/1", 0.991, 300.0, None, (), "open"),
    ("ACCT-001", 0.94, 12_000.0, "acct-901", ("BTCUSDT",), "open"),
    ("acct-002", 0.999, 5_000.0, None, ("ETHUSDT",), "dismissed"),
    ("acct-003", 0.96, None, "acct-900", ("BTCUSDT",), "confirmed"),
    ("zeta", 0.999, 1.0, None, ("BTCUSDT",), "open"),
]


def _event(i: int) -> dict[str, Any]:
    account, score, value, cp, symbols, status = SEED[i]
    end = BASE + timedelta(hours=i)
    return {
        "account_id": account,
        "score": score,
        "threshold": 0.9,
        "model_version": "market-features:v0001",
        "window_start": end - timedelta(hours=24),
        "window_end": end - timedelta(minutes=7 * i),  # another order than created_at
        "created_at": end,
        "value_moved": value,
        "counterparty": cp,
        "status": status,
        "details": {
            "trades": [{"trade_id": f"{account}-t{j}", "symbol": s} for j, s in enumerate(symbols)]
        },
    }


def _expected(ids: dict[int, int], key: str, desc: bool, dialect: str = "sqlite") -> list[int]:
    """The order the API promises, computed here from the seed (id = position + 1)."""
    rows = []
    for pos, (account, score, value, cp, _sym, _st) in enumerate(SEED):
        event_id = ids[pos]
        end = BASE + timedelta(hours=pos)
        rows.append(
            {
                "id": event_id,
                "priority": score * value if value is not None else 0.0,
                "score": score,
                "value_moved": value,
                "created_at": end,
                "window_end": end - timedelta(minutes=7 * pos),
                "account_id": account,
                "counterparty": cp,
            }
        )

    def sort_key(r: dict[str, Any]) -> tuple[Any, ...]:
        v = r[key]
        # unknown values sort where the database puts NULL: the largest on PostgreSQL,
        # the smallest elsewhere
        null_rank = 2 if dialect == "postgresql" else 0
        head = (null_rank, 0) if v is None else (1, v)
        tail = (r["score"],) if key == "priority" else ()
        return (head, *tail, r["id"])

    return [r["id"] for r in sorted(rows, key=sort_key, reverse=desc)]


def _ids(reply: Any) -> list[int]:
    assert reply.status_code == 200, reply.text
    return [e["id"] for e in reply.json()["items"]]


@pytest.fixture(
    params=DATABASES,
    scope="module",
)
def seeded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, Store, dict[int, int]]]:
    """(client, store, seed position -> event id) on each database."""
    tmp = tmp_path_factory.mktemp(f"triage-{request.param}")
    with private_database(request.param, tmp) as url, open_store(url) as store:
        store.upgrade()
        ids = {}
        for pos in range(len(SEED)):  # one at a time: ids follow the seed's order
            assert store.add_risk_events([_event(pos)]) == 1
            ids[pos] = max(e["id"] for e in store.list_risk_events(limit=500)[0])
        app = create_app(Settings(models_dir=tmp / "models"), store=store, preload=False)
        with TestClient(app) as client:
            yield client, store, ids


def test_default_order_is_priority(seeded: Any) -> None:
    client, _store, ids = seeded
    everything = _expected(ids, "priority", desc=True)
    assert _ids(client.get("/v1/risk-events", params={"limit": 500})) == everything
    # score x value moved: 0.95 x 20,000 beats 0.94 x 12,000 beats 0.999 x 5,000 (twice:
    # the newer first); events that moved nothing follow, highest score first
    assert everything[:4] == [ids[1], ids[6], ids[7], ids[0]]
    pos = {v: k for k, v in ids.items()}
    open_ids = [i for i in everything if SEED[pos[i]][5] == "open"]
    assert _ids(client.get("/v1/risk-events", params={"status": "open"})) == open_ids
    body = client.get("/v1/risk-events", params={"limit": 2}).json()
    assert body["items"][0]["priority"] == pytest.approx(0.95 * 20_000.0)
    assert body["items"][0]["value_moved"] == 20_000.0
    assert body["items"][0]["counterparty"] == "acct-900"


@pytest.mark.parametrize(
    "key",
    [
        "priority",
        "score",
        "value_moved",
        "created_at",
        "window_end",
        "account_id",
        "counterparty",
        "id",
    ],
)
def test_every_sort_both_ways(seeded: Any, key: str) -> None:
    client, store, ids = seeded
    for desc in (False, True):
        sort = f"-{key}" if desc else key
        got = _ids(client.get("/v1/risk-events", params={"sort": sort, "limit": 500}))
        want = _expected(ids, key, desc, store.dialect)
        if key in ("account_id", "counterparty") and store.dialect == "mysql":
            # MariaDB compares text by its collation, case-insensitively: compare the
            # order of the keys rather than of the ids of equal keys
            got_keys = [_key_of(ids, i, key) for i in got]
            assert got_keys == sorted(got_keys, key=_ci(desc), reverse=desc), sort
            continue
        assert got == want, sort


def _key_of(ids: dict[int, int], event_id: int, key: str) -> str | None:
    pos = {v: k for k, v in ids.items()}[event_id]
    return SEED[pos][0] if key == "account_id" else SEED[pos][3]


def _ci(desc: bool) -> Any:
    def key(v: str | None) -> tuple[int, str]:
        return (0, "") if v is None else (1, v.upper())  # utf8mb4_general_ci on ASCII

    return key


def test_pages_in_priority_order_neither_overlap_nor_skip(seeded: Any) -> None:
    client, _store, ids = seeded
    pages: list[int] = []
    for offset in range(0, len(SEED) + 3, 3):
        pages += _ids(client.get("/v1/risk-events", params={"limit": 3, "offset": offset}))
    assert pages == _expected(ids, "priority", desc=True)


def test_account_prefix_escapes_wildcards(seeded: Any) -> None:
    client, store, _ = seeded

    def accounts(prefix: str) -> set[str]:
        r = client.get("/v1/risk-events", params={"account_prefix": prefix, "limit": 500})
        assert r.status_code == 200, r.text
        assert r.json()["total"] == len(r.json()["items"])
        return {e["account_id"] for e in r.json()["items"]}

    mysql = store.dialect == "mysql"
    upper = {"ACCT-001"} if mysql else set()  # case-insensitive collation
    assert accounts("acct-00") == {"acct-001", "acct-0019", "acct-002", "acct-003"} | upper
    assert accounts("acct-001") == {"acct-001", "acct-0019"} | upper
    assert accounts("acct-0019") == {"acct-0019"}
    # _ and % match only themselves, and so does the escape character
    assert accounts("acct_") == {"acct_1"}
    assert accounts("acct%") == {"acct%1"}
    assert accounts("acct/") == {"acct/1"}
    assert accounts("acct_1") == {"acct_1"}
    assert accounts("nobody") == set()
    # case: exact on SQLite and PostgreSQL; MariaDB's collation ignores it
    if mysql:
        assert "ACCT-001" in accounts("ACCT")
        assert accounts("ACCT") >= {"acct-001", "acct_1"}
    else:
        assert accounts("ACCT") == {"ACCT-001"}
    assert accounts("z") == {"zeta"}


def test_filters_by_symbol_counterparty_value_and_together(seeded: Any) -> None:
    client, _store, _ = seeded

    def accounts(**params: Any) -> list[str]:
        r = client.get("/v1/risk-events", params={"limit": 500, "sort": "id", **params})
        assert r.status_code == 200, r.text
        return [e["account_id"] for e in r.json()["items"]]

    assert accounts(symbol="BTCUSDT") == ["acct-001", "acct-0019", "ACCT-001", "acct-003", "zeta"]
    assert accounts(symbol="SOLUSDT") == ["acctX1", "acct%1"]
    assert accounts(symbol="DOGEUSDT") == []
    assert accounts(counterparty="acct-900") == ["acct-001", "acct-0019", "acct-003"]
    assert accounts(counterparty="acct-901", symbol="BTCUSDT") == ["ACCT-001"]
    assert accounts(min_value_moved=5000) == ["acct-001", "acct-0019", "ACCT-001", "acct-002"]
    assert accounts(min_value_moved=5000, status="open", symbol="BTCUSDT") == [
        "acct-001",
        "acct-0019",
        "ACCT-001",
    ]
    assert accounts(account_prefix="acct-00", min_score=0.99, symbol="ETHUSDT") == ["acct-002"]


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"sort": "value"}, "sort"),
        ({"sort": "--score"}, "sort"),
        ({"sort": "score;drop table risk_events"}, "sort"),
        ({"account_prefix": ""}, "account_prefix"),
        ({"account_prefix": "x" * 65}, "account_prefix"),
        ({"account_prefix": "a\x00"}, "account_prefix"),
        ({"symbol": "x" * 33}, "symbol"),
        ({"counterparty": "b\x07"}, "counterparty"),
        ({"min_value_moved": "lots"}, "min_value_moved"),
        ({"min_value_moved": "inf"}, "min_value_moved"),
        # past year 9999 once in UTC (it had been a 500)
        ({"until": "9999-12-31T23:59:59-01:00"}, "years 1-9999"),
        ({"since": "0001-01-01T00:00:00+01:00"}, "years 1-9999"),
        ({"assignee": "ana", "unassigned": "true"}, "exclude each other"),
    ],
)
def test_bad_triage_parameters_are_422(seeded: Any, params: dict[str, Any], where: str) -> None:
    client, _store, _ = seeded
    r = client.get("/v1/risk-events", params=params)
    assert r.status_code == 422, r.text
    assert where in r.text


def test_bulk_decision_is_all_or_nothing_and_audited(seeded: Any) -> None:
    client, store, ids = seeded
    chosen = [ids[3], ids[4], ids[5]]
    before = {i: store.get_risk_event(i) for i in chosen}
    assert all(e is not None and e["status"] == "open" for e in before.values())

    # one unknown id: nothing changes
    r = client.post(
        "/v1/reviews",
        json={"ids": [*chosen, 999_999], "status": "dismissed", "reviewed_by": "ana"},
    )
    assert r.status_code == 404, r.text
    assert "999999" in r.json()["error"]
    assert all(store.get_risk_event(i)["status"] == "open" for i in chosen)  # type: ignore[index]
    assert all(store.review_history(i) == [] for i in chosen)

    r = client.post(
        "/v1/reviews",
        json={"ids": chosen, "status": "dismissed", "reviewed_by": "ana", "note": "same desk"},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "dismissed", "ids": chosen, "reviewed_by": "ana"}
    for i in chosen:
        event = store.get_risk_event(i)
        assert event is not None
        assert (event["status"], event["reviewed_by"], event["note"]) == (
            "dismissed",
            "ana",
            "same desk",
        )
        history = store.review_history(i)
        assert [(h.actor, h.from_status, h.to_status, h.note) for h in history] == [
            ("ana", "open", "dismissed", "same desk")
        ]
    listed = _ids(client.get("/v1/risk-events", params={"status": "dismissed", "limit": 500}))
    assert set(chosen) <= set(listed)
    # back to open in one go, so the other tests see the seed as it was
    r = client.post("/v1/reviews", json={"ids": chosen, "status": "open", "reviewed_by": "ana"})
    assert r.status_code == 200, r.text
    assert [len(store.review_history(i)) for i in chosen] == [2, 2, 2]


@pytest.mark.parametrize(
    ("body", "status", "where"),
    [
        ({"ids": [], "status": "confirmed", "reviewed_by": "a"}, 422, "ids"),
        ({"ids": list(range(1, 502)), "status": "confirmed", "reviewed_by": "a"}, 422, "ids"),
        ({"ids": [0], "status": "confirmed", "reviewed_by": "a"}, 422, "ids"),
        ({"ids": ["1"], "status": "confirmed", "reviewed_by": "a"}, 422, "ids"),
        ({"ids": [1], "status": "closed", "reviewed_by": "a"}, 422, "status"),
        ({"ids": [1], "status": "confirmed", "reviewed_by": " "}, 422, "reviewed_by"),
        ({"ids": [1], "status": "confirmed", "reviewed_by": "a", "note": "x\x00"}, 422, "note"),
        ({"ids": [2**40], "status": "confirmed", "reviewed_by": "a"}, 404, "no risk event"),
    ],
)
def test_bad_bulk_bodies(seeded: Any, body: dict[str, Any], status: int, where: str) -> None:
    client, _store, _ = seeded
    r = client.post("/v1/reviews", json=body)
    assert r.status_code == status, r.text
    assert where in r.text


def test_an_id_given_twice_is_decided_once(seeded: Any) -> None:
    client, store, ids = seeded
    twice = [ids[9], ids[9]]
    r = client.post("/v1/reviews", json={"ids": twice, "status": "confirmed", "reviewed_by": "bo"})
    assert r.status_code == 200, r.text
    assert r.json()["ids"] == [ids[9]]
    assert len(store.review_history(ids[9])) == 1
    r = client.post("/v1/reviews", json={"ids": twice, "status": "open", "reviewed_by": "bo"})
    assert r.status_code == 200, r.text


def test_route_and_store_agree_on_sort_keys() -> None:
    from fraudlens.service.routes.risk_events import SORT_KEYS as ROUTE_KEYS
    from fraudlens.store._triage import SORT_KEYS

    assert ROUTE_KEYS == SORT_KEYS


def test_priority_is_score_times_value_moved() -> None:
    from fraudlens.store._triage import event_priority

    assert event_priority(0.5, 100.0) == 50.0
    assert event_priority(0.99, None) == 0.0
    assert math.isclose(event_priority(0.95, 20_000.0), 19_000.0)
