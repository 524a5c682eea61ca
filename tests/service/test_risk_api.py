"""Risk-event and account-check routes against a real store and a real queue.

SQLite for the full set; the list/review round trip again on PostgreSQL and MariaDB, each
run in a schema (PostgreSQL) or database (MariaDB) of its own, so it never touches tables
another test is using.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from _services import private_database  # type: ignore[import-not-found]
from fraudlens.config import Settings
from fraudlens.queues import SQLiteQueue
from fraudlens.service import create_app

pytest.importorskip("sqlalchemy")

from fraudlens.store import Store, open_store

BASE = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def _trades(account: str, n: int = 3) -> list[dict[str, Any]]:
    return [
        {
            "trade_id": f"{account}-t{i}",
            "ts": (BASE - timedelta(minutes=5 * i)).isoformat(),
            "symbol": "COIN",
            "side": "buy" if i % 2 == 0 else "sell",
            "price": 10.0 + i,
            "quantity": 100.0,
            "pos": 0.0 if i % 2 == 0 else 1.0,
            "bar_low": 10.0,
            "bar_high": 11.0,
            "reason": f"{'buy' if i % 2 == 0 else 'sell'} at the bar's extreme (trade {i})",
        }
        for i in range(n)
    ]


def _event(
    account: str,
    hours: int,
    score: float,
    business_type: str | None = "brokerage",
    **extra: Any,
) -> dict[str, Any]:
    end = BASE + timedelta(hours=hours)
    return {
        "account_id": account,
        "score": score,
        "threshold": 0.9,
        "model_version": "market-features:v0001",
        "business_type": business_type,
        "window_start": end - timedelta(hours=24),
        "window_end": end,
        "created_at": end + timedelta(minutes=1),
        "details": {"trades": _trades(account)},
        **extra,
    }


#: Newest first (created_at descending): ids 5, 4, 3, 2, 1.
EVENTS = [
    _event("acct-01", 1, 0.97),
    _event("acct-02", 2, 0.91),
    _event("acct-03", 3, 0.99, "crypto"),
    _event("acct-01", 4, 0.93),
    _event("acct-04", 5, 0.95, None, status="dismissed"),
]


def _seed(store: Store) -> list[int]:
    assert store.add_risk_events(EVENTS) == len(EVENTS)
    items, total = store.list_risk_events(limit=500)
    assert total == len(EVENTS)
    return sorted(e["id"] for e in items)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = open_store(db_url)
    s.upgrade()
    _seed(s)
    yield s
    s.close()


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[SQLiteQueue]:
    with SQLiteQueue(tmp_path / "q.db") as q:
        yield q


def _client(
    tmp_path: Path, store: Store | None, queue: SQLiteQueue | None, **settings: Any
) -> TestClient:
    cfg = Settings(models_dir=tmp_path / "models", **settings)
    app = create_app(cfg, store=store, queue=queue, preload=False)
    return TestClient(app)


@pytest.fixture
def client(tmp_path: Path, store: Store, queue: SQLiteQueue) -> Iterator[TestClient]:
    with _client(tmp_path, store, queue) as c:
        yield c


def _ids(reply: dict[str, Any]) -> list[int]:
    return [e["id"] for e in reply["items"]]


def _assert_error(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "detail"}
    assert isinstance(body["error"], str) and body["error"]
    return body


# ------------------------------------------------------------------------- listing


def test_list_default_is_everything_by_priority(client: TestClient) -> None:
    # No event here moved value (priority 0): the priority order falls back to the score.
    r = client.get("/v1/risk-events")
    assert r.status_code == 200
    assert _ids(r.json()) == [3, 1, 5, 4, 2]
    r = client.get("/v1/risk-events", params={"sort": "-created_at"})
    assert r.status_code == 200
    body = r.json()
    assert body["total"] == 5 and body["limit"] == 50 and body["offset"] == 0
    assert _ids(body) == [5, 4, 3, 2, 1]
    first = body["items"][0]
    assert first["account_id"] == "acct-04" and first["status"] == "dismissed"
    assert first["business_type"] is None
    assert first["model_version"] == "market-features:v0001"
    assert first["details"]["trades"][0]["trade_id"] == "acct-04-t0"
    assert first["window_end"].startswith("2024-03-01T17:00:00")


def test_list_filters(client: TestClient) -> None:
    def ids(**params: Any) -> list[int]:
        r = client.get("/v1/risk-events", params={"sort": "-created_at", **params})
        assert r.status_code == 200, r.text
        assert r.json()["total"] == len(r.json()["items"])
        return _ids(r.json())

    assert ids(status="open") == [4, 3, 2, 1]
    assert ids(status="dismissed") == [5]
    assert ids(status="confirmed") == []
    assert ids(account_id="acct-01") == [4, 1]
    assert ids(account_id="nobody") == []
    assert ids(business_type="crypto") == [3]
    assert ids(business_type="brokerage", status="open") == [4, 2, 1]
    assert ids(min_score=0.95) == [5, 3, 1]
    assert ids(fraud_type="suspicious_transaction") == [5, 4, 3, 2, 1]
    # since/until bound the time the event was recorded; a naive time means UTC.
    assert ids(since="2024-03-01T15:00:00Z") == [5, 4, 3]
    assert ids(until="2024-03-01T15:00:00") == [2, 1]
    assert ids(since="2024-03-01T14:00:00+00:00", until="2024-03-01T16:00:00+00:00") == [3, 2]
    assert ids(since="2024-03-01T16:00:00+02:00") == [5, 4, 3, 2]


def test_list_pagination(client: TestClient) -> None:
    pages = []
    for offset in (0, 2, 4, 6):
        r = client.get(
            "/v1/risk-events", params={"limit": 2, "offset": offset, "sort": "-created_at"}
        )
        assert r.status_code == 200
        body = r.json()
        assert (body["total"], body["limit"], body["offset"]) == (5, 2, offset)
        pages.append(_ids(body))
    assert pages == [[5, 4], [3, 2], [1], []]
    r = client.get(
        "/v1/risk-events", params={"limit": 500, "status": "open", "offset": 1, "sort": "-id"}
    )
    assert _ids(r.json()) == [3, 2, 1] and r.json()["total"] == 4


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"status": "closed"}, "status"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"offset": -1}, "offset"),
        ({"min_score": "high"}, "min_score"),
        ({"min_score": "nan"}, "min_score"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2024-13-01"}, "until"),
        ({"account_id": "x" * 65}, "account_id"),
    ],
)
def test_list_bad_filters_are_422(client: TestClient, params: dict[str, Any], where: str) -> None:
    body = _assert_error(client.get("/v1/risk-events", params=params), 422)
    assert where in body["error"]


def test_list_since_after_until_is_422(client: TestClient) -> None:
    r = client.get(
        "/v1/risk-events", params={"since": "2024-03-02T00:00:00Z", "until": "2024-03-01T00:00:00Z"}
    )
    body = _assert_error(r, 422)
    assert "after until" in body["error"]


# ------------------------------------------------------------------------- one event


def test_get_event(client: TestClient) -> None:
    r = client.get("/v1/risk-events/3")
    assert r.status_code == 200
    event = r.json()
    assert event["id"] == 3 and event["account_id"] == "acct-03"
    assert event["business_type"] == "crypto"
    assert event["score"] == pytest.approx(0.99) and event["threshold"] == pytest.approx(0.9)
    assert event["status"] == "open" and event["reviewed_by"] is None
    assert [t["trade_id"] for t in event["details"]["trades"]] == [
        "acct-03-t0",
        "acct-03-t1",
        "acct-03-t2",
    ]
    assert event["details"]["trades"][1]["reason"].startswith("sell at the bar's extreme")


def test_get_missing_event(client: TestClient) -> None:
    for path in ("/v1/risk-events/999", "/v1/risk-events/99999999999999"):
        body = _assert_error(client.get(path), 404)
        assert "no risk event" in body["error"]
    _assert_error(client.get("/v1/risk-events/abc"), 422)
    _assert_error(client.get("/v1/risk-events/0"), 422)


# ------------------------------------------------------------------------- reviews


def test_review_persists(client: TestClient, db_url: str) -> None:
    r = client.post(
        "/v1/risk-events/2/review",
        json={"status": "confirmed", "reviewed_by": "  ana  ", "note": "same-bar round trips"},
    )
    assert r.status_code == 200, r.text
    event = r.json()
    assert (event["id"], event["status"], event["reviewed_by"]) == (2, "confirmed", "ana")
    assert event["note"] == "same-bar round trips"
    assert event["reviewed_at"] is not None
    assert event["details"]["trades"][0]["trade_id"] == "acct-02-t0"

    r = client.post("/v1/risk-events/4/review", json={"status": "dismissed", "reviewed_by": "bo"})
    assert r.status_code == 200 and r.json()["status"] == "dismissed"
    assert r.json()["note"] is None

    with open_store(db_url) as fresh:
        two = fresh.get_risk_event(2)
        assert two is not None
        assert (two["status"], two["reviewed_by"], two["note"]) == (
            "confirmed",
            "ana",
            "same-bar round trips",
        )
        four = fresh.get_risk_event(4)
        assert four is not None and (four["status"], four["reviewed_by"]) == ("dismissed", "bo")
        untouched = fresh.get_risk_event(3)
        assert untouched is not None and untouched["status"] == "open"

    # The list sees the decisions; reopening puts the event back in the open queue.
    assert _ids(client.get("/v1/risk-events", params={"status": "open", "sort": "-id"}).json()) == [
        3,
        1,
    ]
    r = client.post("/v1/risk-events/2/review", json={"status": "open", "reviewed_by": "cy"})
    assert r.status_code == 200 and r.json()["status"] == "open"
    assert r.json()["note"] == "same-bar round trips"  # no note given: the old one stays
    assert _ids(client.get("/v1/risk-events", params={"status": "open", "sort": "-id"}).json()) == [
        3,
        2,
        1,
    ]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"status": "fraud", "reviewed_by": "ana"}, "status"),
        ({"status": "confirmed"}, "reviewed_by"),
        ({"status": "confirmed", "reviewed_by": ""}, "reviewed_by"),
        ({"status": "confirmed", "reviewed_by": "   "}, "reviewed_by"),
        ({"status": "confirmed", "reviewed_by": "x" * 129}, "reviewed_by"),
        ({"reviewed_by": "ana"}, "status"),
        ({"status": "confirmed", "reviewed_by": "ana", "note": "n" * 4001}, "note"),
    ],
)
def test_review_bad_body_is_422(
    client: TestClient, db_url: str, body: dict[str, Any], where: str
) -> None:
    err = _assert_error(client.post("/v1/risk-events/1/review", json=body), 422)
    assert where in err["error"]
    with open_store(db_url) as fresh:
        event = fresh.get_risk_event(1)
        assert event is not None and event["status"] == "open" and event["reviewed_by"] is None


def test_review_missing_event_is_404(client: TestClient) -> None:
    for event_id in (999, 2**40):
        r = client.post(
            f"/v1/risk-events/{event_id}/review", json={"status": "confirmed", "reviewed_by": "a"}
        )
        assert "no risk event" in _assert_error(r, 404)["error"]
    bad_json = client.post(
        "/v1/risk-events/1/review",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    _assert_error(bad_json, 400)


# ------------------------------------------------------------------------- checks


def test_check_puts_a_message_on_the_queue(client: TestClient, queue: SQLiteQueue) -> None:
    before = datetime.now(UTC)
    r = client.post("/v1/accounts/acct-09/check", json={"business_type": "crypto"})
    assert r.status_code == 202, r.text
    reply = r.json()
    assert reply["queued"] is True and reply["account_id"] == "acct-09"
    r2 = client.post("/v1/accounts/acct-10/check")
    assert r2.status_code == 202
    after = datetime.now(UTC)

    msgs = queue.receive(10, visibility_timeout=30)
    assert [m.id for m in msgs] == [reply["message_id"], r2.json()["message_id"]]
    first, second = (m.body for m in msgs)
    assert set(first) == {"account_id", "business_type", "requested_at"}
    assert (first["account_id"], first["business_type"]) == ("acct-09", "crypto")
    assert (second["account_id"], second["business_type"]) == ("acct-10", None)
    requested = datetime.fromisoformat(first["requested_at"])
    assert requested.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= requested <= after + timedelta(seconds=1)
    queue.ack_many(msgs)
    assert queue.depth() == 0


def test_check_replies_with_the_account_as_queued(client: TestClient, queue: SQLiteQueue):
    """Blanks around a path's id are stripped from the message; the reply had repeated
    them (``"acct-09 "``), naming an account no risk event would carry."""
    r = client.post("/v1/accounts/%20acct-09%20/check")
    assert r.status_code == 202, r.text
    (msg,) = queue.receive(10, visibility_timeout=30)
    assert msg.body["account_id"] == r.json()["account_id"] == "acct-09"
    queue.ack_many([msg])


def test_check_bad_input(client: TestClient, queue: SQLiteQueue) -> None:
    _assert_error(client.post(f"/v1/accounts/{'a' * 65}/check"), 422)
    _assert_error(client.post("/v1/accounts/a1/check", json={"business_type": 3}), 422)
    _assert_error(client.post("/v1/accounts/a1/check", json={"business_type": "x" * 65}), 422)
    _assert_error(
        client.post(
            "/v1/accounts/a1/check", content=b"{", headers={"Content-Type": "application/json"}
        ),
        400,
    )
    assert queue.depth() == 0


# ------------------------------------------------------------------------- wiring


def test_store_and_queue_opened_from_settings(tmp_path: Path, store: Store, db_url: str) -> None:
    queue_url = f"sqlite:///{tmp_path / 'settings-q.db'}"
    with _client(tmp_path, None, None, database_url=db_url, queue_url=queue_url) as c:
        assert c.get("/v1/risk-events").json()["total"] == 5
        assert c.post("/v1/accounts/acct-01/check").status_code == 202
        state = c.app.state.fraudlens  # type: ignore[attr-defined]
        assert state.store.opened and state.queue.opened
    # Shutdown closed what the app opened itself.
    assert not state.store.opened and not state.queue.opened
    with SQLiteQueue(tmp_path / "settings-q.db") as q:
        (msg,) = q.receive(1)
        assert msg.body["account_id"] == "acct-01"


def test_given_store_and_queue_stay_open(tmp_path: Path, store: Store, queue: SQLiteQueue) -> None:
    with _client(tmp_path, store, queue) as c:
        assert c.get("/v1/risk-events/1").status_code == 200
    # The caller still owns them after the app stopped.
    assert store.get_risk_event(1) is not None
    queue.send({"account_id": "still-open"})
    assert queue.depth() == 1


def test_store_without_tables_is_503(tmp_path: Path, queue: SQLiteQueue) -> None:
    empty = open_store(f"sqlite:///{tmp_path / 'empty.db'}")
    with empty, _client(tmp_path, empty, queue) as c:
        r = c.get("/v1/risk-events")
        body = _assert_error(r, 503)
        assert "store is unavailable" in body["error"]
        assert "fraudlens db upgrade" in body["detail"]["hint"]
        assert r.headers["retry-after"] == "5"
        _assert_error(c.get("/v1/risk-events/1"), 503)


def test_review_page_is_served(client: TestClient) -> None:
    r = client.get("/", follow_redirects=False)
    assert r.status_code in (302, 307) and r.headers["location"] == "/review"
    page = client.get("/review")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    html = page.text
    assert '<script src="/review/review.js"' in html and "/review/review.css" in html
    # Self-contained: nothing is loaded from another host.
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html
    js = client.get("/review/review.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert "/v1/risk-events" in js.text
    css = client.get("/review/review.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    spec = client.get("/openapi.json").json()
    for path in (
        "/v1/accounts/{account_id}/check",
        "/v1/risk-events",
        "/v1/risk-events/{event_id}",
        "/v1/risk-events/{event_id}/review",
    ):
        assert path in spec["paths"]
    assert "/review" not in spec["paths"]


# ------------------------------------------------------------------------- servers


@pytest.mark.services
@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_list_and_review_round_trip_on_server(
    kind: str, tmp_path: Path, queue: SQLiteQueue
) -> None:
    with private_database(kind, tmp_path) as url, open_store(url) as server_store:
        assert server_store.dialect == ("postgresql" if kind == "postgresql" else "mysql")
        server_store.upgrade()
        ids = _seed(server_store)
        with _client(tmp_path, server_store, queue) as c:
            body = c.get(
                "/v1/risk-events", params={"status": "open", "limit": 2, "sort": "-created_at"}
            ).json()
            assert body["total"] == 4 and len(body["items"]) == 2
            newest = body["items"][0]
            assert newest["account_id"] == "acct-01" and newest["details"]["trades"]
            assert _ids(
                c.get("/v1/risk-events", params={"account_id": "acct-01", "sort": "-id"}).json()
            ) == [
                ids[3],
                ids[0],
            ]
            r = c.post(
                f"/v1/risk-events/{newest['id']}/review",
                json={"status": "confirmed", "reviewed_by": "ana", "note": "wash trades"},
            )
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "confirmed"
            assert c.get("/v1/risk-events", params={"status": "open"}).json()["total"] == 3
            _assert_error(
                c.post(
                    f"/v1/risk-events/{max(ids) + 100}/review",
                    json={"status": "confirmed", "reviewed_by": "ana"},
                ),
                404,
            )
        with open_store(url) as fresh:
            event = fresh.get_risk_event(newest["id"])
            assert event is not None
            assert (event["status"], event["reviewed_by"], event["note"]) == (
                "confirmed",
                "ana",
                "wash trades",
            )
