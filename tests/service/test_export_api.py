"""The analysts' CSV export of the triage list (``GET /v1/risk-events/export``): the
list's filters and every sort, read page by page by key (pages of two here, so every
order's ties and unknown values cross page boundaries); text a spreadsheet would run as a
formula quoted, numbers kept; the row bound flagged; identity required; a large export
sent a page at a time. On SQLite and, each in a schema or database of its own, on
PostgreSQL and MariaDB."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from _services import DATABASES, private_database, risk_event  # type: ignore[import-not-found]
from fraudlens._csvsafe import RISK_EVENT_COLUMNS, safe_cell
from fraudlens.config import Settings
from fraudlens.service import create_app
from fraudlens.service.routes import risk_events as risk_routes

pytest.importorskip("sqlalchemy")

from fraudlens.store import Store, open_store

BASE = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
EXPORT = "/v1/risk-events/export"
PASSWORD = "correct horse battery staple"
HEADER = [name for name, _key in RISK_EVENT_COLUMNS]
NUMBER_COLUMNS = ("id", "score", "threshold", "priority", "value_moved")

# account, score, value moved, counterparty, status, business type. Ties of score, of
# value moved and of priority (0.99 x 1,000 twice, and the zeros), unknown values moved
# and counterparties, a negative score and value: every order has ties and NULLs for the
# pages to cross.
SEED: list[tuple[str, float, float | None, str | None, str, str | None]] = [
    ('=HYPERLINK("http://x")', 0.99, 1000.0, "acct-cp", "open", "brokerage"),
    ("+1", 0.95, None, None, "open", "\tfoo"),
    ("-2+3", 0.95, 1000.0, "=cp", "open", None),
    ("@SUM(A1)", 0.97, 0.0, None, "confirmed", "withdrawal"),
    ("acct-a", -0.25, -3.0, None, "open", None),
    ("acct-b", 0.93, 250.5, "acct-cp", "dismissed", "brokerage"),
    ("acct-c", 0.99, 1000.0, None, "open", "brokerage"),
    ("acct-d", 0.91, None, "acct-cp", "open", None),
    ("zeta", 0.92, 40.0, None, "open", None),
]
HOSTILE_ACCOUNTS = SEED[0][0], SEED[1][0], SEED[2][0], SEED[3][0]


def _event(i: int) -> dict[str, Any]:
    account, score, value, cp, status, business = SEED[i]
    end = BASE + timedelta(hours=i)
    return {
        "account_id": account,
        "score": score,
        "threshold": 0.9,
        "model_version": "market-features:v0001",
        "window_start": end - timedelta(hours=24),
        "window_end": end - timedelta(minutes=7 * i),
        "created_at": end,
        "value_moved": value,
        "counterparty": cp,
        "status": status,
        "business_type": business,
        "details": {"trades": [{"trade_id": f"t{i}", "symbol": "BTCUSDT" if i % 2 else "ETH"}]},
    }


@pytest.fixture(params=DATABASES, scope="module")
def seeded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, Store, dict[str, int]]]:
    """(client, store, account -> event id) on each database; one event decided by
    ``=evil`` with a note that starts with a carriage return."""
    tmp = tmp_path_factory.mktemp(f"export-{request.param}")
    with private_database(request.param, tmp) as url, open_store(url) as store:
        store.upgrade()
        assert store.add_risk_events([_event(i) for i in range(len(SEED))]) == len(SEED)
        ids = {e["account_id"]: e["id"] for e in store.list_risk_events(limit=500)[0]}
        store.review_risk_event(
            ids["acct-b"], status="dismissed", reviewed_by="=evil", note="\rbar"
        )
        app = create_app(Settings(models_dir=tmp / "models"), store=store, preload=False)
        with TestClient(app) as client:
            yield client, store, ids


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exports read the store two events at a time."""
    monkeypatch.setattr(risk_routes, "EXPORT_PAGE", 2)


def _rows(reply: Any) -> list[dict[str, str]]:
    """The export's rows as the csv module reads them back (header checked)."""
    assert reply.status_code == 200, reply.text
    rows = list(csv.reader(io.StringIO(reply.text, newline="")))
    assert rows[0] == HEADER
    assert all(len(r) == len(HEADER) for r in rows)
    return [dict(zip(HEADER, r, strict=True)) for r in rows[1:]]


def _export_ids(client: TestClient, **params: Any) -> list[int]:
    return [int(r["id"]) for r in _rows(client.get(EXPORT, params=params))]


def _list_ids(client: TestClient, **params: Any) -> list[int]:
    r = client.get("/v1/risk-events", params={"limit": 500, **params})
    assert r.status_code == 200, r.text
    return [e["id"] for e in r.json()["items"]]


@pytest.mark.parametrize("key", risk_routes.SORT_KEYS)
def test_every_sort_is_the_lists(seeded: Any, small_pages: None, key: str) -> None:
    client, _store, _ids = seeded
    for sort in (key, f"-{key}"):
        want = _list_ids(client, sort=sort)
        assert len(want) == len(SEED)
        assert _export_ids(client, sort=sort) == want, sort
    # no sort: the list's default, by priority
    assert _export_ids(client) == _list_ids(client, sort="-priority")


@pytest.mark.parametrize(
    "params",
    [
        {"status": "open"},
        {"status": "confirmed"},
        {"account_id": "acct-a"},
        {"account_prefix": "acct-", "sort": "account_id"},
        {"business_type": "brokerage", "sort": "-score"},
        {"min_score": 0.95},
        {"counterparty": "acct-cp", "sort": "-value_moved"},
        {"min_value_moved": 100},
        {"symbol": "BTCUSDT", "sort": "counterparty"},
        {"since": (BASE + timedelta(hours=2)).isoformat(), "until": "2024-03-01T18:00:00"},
        {"status": "open", "min_score": 0.9, "counterparty": "acct-cp", "sort": "-id"},
    ],
)
def test_filters_are_the_lists(seeded: Any, small_pages: None, params: dict[str, Any]) -> None:
    client, _store, _ids = seeded
    want = _list_ids(client, **params)
    assert 0 < len(want) < len(SEED), params  # each filter keeps some and drops some
    got = client.get(EXPORT, params=params)
    assert [int(r["id"]) for r in _rows(got)] == want
    assert got.headers["x-fraudlens-total"] == str(len(want))
    assert got.headers["x-fraudlens-truncated"] == "false"


def test_formula_text_is_quoted_and_numbers_kept(seeded: Any) -> None:
    client, _store, ids = seeded
    r = client.get(EXPORT)
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    disposition = r.headers["content-disposition"]
    assert re.fullmatch(r'attachment; filename="risk-events-\d{8}T\d{6}Z\.csv"', disposition)
    by_id = {int(row["id"]): row for row in _rows(r)}
    assert set(by_id) == set(ids.values())
    for account in HOSTILE_ACCOUNTS:
        assert by_id[ids[account]]["account_id"] == "'" + account  # read back as written
    assert by_id[ids["+1"]]["business_type"] == "'\tfoo"
    assert by_id[ids["-2+3"]]["counterparty"] == "'=cp"
    decided = by_id[ids["acct-b"]]
    assert (decided["reviewed_by"], decided["note"], decided["status"]) == (
        "'=evil",
        "'\rbar",
        "dismissed",
    )
    assert datetime.fromisoformat(decided["reviewed_at"]).tzinfo is not None
    # plain text and times are left alone
    assert by_id[ids["acct-c"]]["account_id"] == "acct-c"
    assert by_id[ids["acct-c"]]["model_version"] == "market-features:v0001"
    # numbers are numbers, the negative ones too: no quote, the value stored
    negative = by_id[ids["acct-a"]]
    assert (negative["score"], negative["value_moved"]) == ("-0.25", "-3.0")
    for row in by_id.values():
        for col in NUMBER_COLUMNS:
            if row[col] != "":
                float(row[col])
        # nothing else in the file starts as a formula would
        for col, cell in row.items():
            if col not in NUMBER_COLUMNS:
                assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (col, cell)
    assert by_id[ids["+1"]]["value_moved"] == ""  # unknown: an empty cell


def test_safe_cell() -> None:
    for text in ('=HYPERLINK("http://x")', "+1", "-2+3", "@SUM(A1)", "\tfoo", "\rbar"):
        assert safe_cell(text) == "'" + text
    assert safe_cell("acct-1") == "acct-1" and safe_cell("") == "" and safe_cell(None) == ""
    assert safe_cell(-2.5) == -2.5 and safe_cell(-3) == -3 and safe_cell(0.0) == 0.0
    assert safe_cell(True) == "True"  # not a number


@pytest.mark.parametrize(
    "text",
    [
        " =1",  # spreadsheets skip the blanks before a formula
        "   +1",
        "\n-2+3",
        " \t@SUM(A1)",
        "\u00a0=HYPERLINK(1)",  # no-break space
        "\u2003\u3000=1",  # em space, ideographic space
        "\u200b\ufeff=1",  # invisible: zero-width space, byte-order mark
        "\uff1dHYPERLINK(1)",  # the full-width forms of = + - @
        "\uff0b1",
        "\uff0d2\uff0b3",
        "\uff20SUM(A1)",
        "  \uff1d1",
        "\u3000\uff20x",
    ],
)
def test_safe_cell_sees_through_blanks_and_full_width_forms(text: str) -> None:
    assert safe_cell(text) == "'" + text


def test_safe_cell_leaves_other_text_and_numbers_alone() -> None:
    for text in (
        "acct 1",
        "  acct",
        " x=1",
        "a-b",
        "\u00a0",
        "   ",
        "\uff21",
        "\uff10=1",
        "x\uff1d",
    ):
        assert safe_cell(text) == text, repr(text)
    for number in (-1, -0.5, float("-inf"), 3):
        assert safe_cell(number) == number
    assert safe_cell(" -1") == "' -1"  # text, not a number: quoted


def test_max_rows_bounds_the_file_and_says_so(seeded: Any, small_pages: None) -> None:
    client, _store, _ids = seeded
    everything = _list_ids(client)
    for max_rows in (1, 3, len(SEED) - 1):
        r = client.get(EXPORT, params={"max_rows": max_rows})
        assert [int(row["id"]) for row in _rows(r)] == everything[:max_rows]
        assert r.headers["x-fraudlens-truncated"] == "true"
        assert r.headers["x-fraudlens-total"] == str(len(SEED))
    for max_rows in (len(SEED), len(SEED) + 1, risk_routes.MAX_EXPORT_ROWS):
        r = client.get(EXPORT, params={"max_rows": max_rows})
        assert [int(row["id"]) for row in _rows(r)] == everything
        assert r.headers["x-fraudlens-truncated"] == "false"
    # nothing matches: the header row alone
    r = client.get(EXPORT, params={"account_id": "nobody"})
    assert _rows(r) == [] and r.headers["x-fraudlens-total"] == "0"


@pytest.mark.parametrize(
    "params",
    [
        {"sort": "-unknown"},
        {"status": "closed"},
        {"min_score": "NaN"},
        {"min_value_moved": "1e400"},
        {"since": "2024-03-02T00:00:00Z", "until": "2024-03-01T00:00:00Z"},
        {"since": "9999-99-99"},
        {"account_id": "a\x00b"},
        {"account_prefix": "x" * 65},
        {"max_rows": 0},
        {"max_rows": risk_routes.MAX_EXPORT_ROWS + 1},
        {"max_rows": "9" * 400},
    ],
)
def test_bad_filters_are_422_as_in_the_list(seeded: Any, params: dict[str, Any]) -> None:
    client, _store, _ids = seeded
    r = client.get(EXPORT, params=params)
    assert r.status_code == 422, r.text
    assert r.json()["error"]
    if "max_rows" not in params:
        assert client.get("/v1/risk-events", params=params).status_code == 422


def test_export_needs_an_identity(tmp_path: Path) -> None:
    argon2 = pytest.importorskip("argon2")
    from fraudlens.auth import Authenticator, Passwords

    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        store.upgrade()
        store.add_risk_events([risk_event("=1+1", 1), risk_event("acct-2", 2)])
        fast = Passwords(argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))
        auth = Authenticator(store, passwords=fast)
        tokens = {}
        for role in ("analyst", "admin", "service"):
            auth.create_user(f"{role}-user", role, None if role == "service" else PASSWORD)
            tokens[role], _ = auth.create_token(f"{role}-user")
        settings = Settings(
            models_dir=tmp_path / "models",
            database_url=store.url,
            queue_url=f"sqlite:///{tmp_path / 'q.db'}",
            auth="on",
        )
        app = create_app(settings, store=store, preload=False)
        with TestClient(app) as client:
            for headers in (
                {},
                {"Authorization": "Bearer flk_" + "A" * 64},
                {"Cookie": "fraudlens_session=x"},
            ):
                r = client.get(EXPORT, headers=headers)
                assert r.status_code in (401, 403), (headers, r.status_code)
                assert "text/csv" not in r.headers.get("content-type", "")
            for role, token in tokens.items():
                r = client.get(EXPORT, headers={"Authorization": f"Bearer {token}"})
                rows = _rows(r)
                assert [row["account_id"] for row in rows] == ["acct-2", "'=1+1"], role


class BodyMessages:
    """ASGI middleware that notes the size of every body message of a reply: how the
    server sent it (not how the client put it back together)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.sizes: list[int] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def noted(message: Any) -> None:
            if message["type"] == "http.response.body":
                self.sizes.append(len(message.get("body", b"")))
            await send(message)

        await self.app(scope, receive, noted)


def test_a_large_export_is_sent_a_page_at_a_time(tmp_path: Path) -> None:
    n = 20_000
    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        store.upgrade()
        for start in range(0, n, 2000):
            batch = [risk_event(f"acct-{i:05d}", i) for i in range(start, start + 2000)]
            for i, e in enumerate(batch, start):
                e["value_moved"] = float(i % 97)
                e["account_id"] = ("=" if i % 1000 == 0 else "") + e["account_id"]
            assert store.add_risk_events(batch) == len(batch)
        app = create_app(Settings(models_dir=tmp_path / "models"), store=store, preload=False)
        watched = BodyMessages(app)
        with TestClient(watched) as client:
            r = client.get(EXPORT, params={"max_rows": n})
            rows = _rows(r)
            assert r.headers["x-fraudlens-truncated"] == "false"
            assert len(rows) == n and len({row["id"] for row in rows}) == n
            values = [float(row["priority"]) for row in rows]
            assert values == sorted(values, reverse=True)
            assert sum(row["account_id"].startswith("'=") for row in rows) == n // 1000
            # the header, then one message a page of 1,000 events, then the end
            body = [s for s in watched.sizes if s]
            assert len(body) == 1 + n // risk_routes.EXPORT_PAGE
            assert max(body) < len(r.content) / 10
            # a bound below the matches cuts the file there, and says so
            r = client.get(EXPORT, params={"max_rows": 12_345})
            assert len(_rows(r)) == 12_345 and r.headers["x-fraudlens-truncated"] == "true"
