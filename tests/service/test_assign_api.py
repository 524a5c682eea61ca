"""Case assignment through the API with authentication on: POST /v1/assignments
(taking, handing over, unassigning, 409 on another analyst's event, 404 and 422 that
change nothing, roles, identity and CSRF), the history entries it appends, and the
assignee filters of the list, the count and the export, on SQLite and, each in a private
schema or database, on PostgreSQL and MariaDB."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from _services import DATABASES, private_database, risk_event  # type: ignore[import-not-found]
from fraudlens.config import Settings
from fraudlens.service import create_app
from fraudlens.service._auth import CSRF_HEADER

pytest.importorskip("sqlalchemy")
argon2 = pytest.importorskip("argon2")

from fraudlens.store import Store, open_store  # noqa: E402

PASSWORD = "correct horse battery staple"
ASSIGN = "/v1/assignments"


@dataclass
class Desk:
    client: TestClient
    store: Store
    auth: Any
    tokens: dict[str, str]

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def assign(self, who: str, ids: list[int], assignee: str | None, **extra: Any) -> Any:
        body = {"ids": ids, "assignee": assignee, **extra}
        return self.client.post(ASSIGN, json=body, headers=self.as_(who))

    def event(self, event_id: int) -> dict[str, Any]:
        reply = self.client.get(f"/v1/risk-events/{event_id}", headers=self.as_("ana"))
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        return body

    def ids(self, **params: Any) -> list[int]:
        reply = self.client.get(
            "/v1/risk-events", params={"limit": 500, **params}, headers=self.as_("ana")
        )
        assert reply.status_code == 200, reply.text
        return sorted(e["id"] for e in reply.json()["items"])


@pytest.fixture(params=DATABASES, scope="module")
def desk(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Desk]:
    from fraudlens.auth import Authenticator, Passwords

    tmp = tmp_path_factory.mktemp(f"assign-{request.param}")
    with private_database(request.param, tmp) as url, open_store(url) as store:
        store.upgrade()
        assert store.add_risk_events([risk_event(f"acct-{i:02d}", i) for i in range(1, 21)]) == 20
        fast = Passwords(argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))
        auth = Authenticator(store, passwords=fast)
        tokens = {}
        for name, role in (
            ("ana", "analyst"),
            ("bo", "analyst"),
            ("root", "admin"),
            ("svc", "service"),
        ):
            auth.create_user(name, role, None if role == "service" else PASSWORD)
            tokens[name], _ = auth.create_token(name)
        auth.create_user("gone", "analyst", PASSWORD)
        store.set_user_disabled("gone", True)
        settings = Settings(models_dir=tmp / "models", auth="on", host="127.0.0.1")
        app = create_app(settings, store=store, preload=False)
        with TestClient(app) as client:
            yield Desk(client, store, auth, tokens)


def test_take_hand_over_and_unassign_with_history(desk: Desk) -> None:
    r = desk.assign("ana", [2, 1], "ana", note="on it")
    assert r.status_code == 200, r.text
    assert r.json() == {"ids": [2, 1], "changed": [2, 1], "assignee": "ana", "assigned_by": "ana"}
    event = desk.event(1)
    assert event["assignee"] == "ana" and event["assigned_at"]
    entry = event["history"][-1]
    assert (entry["action"], entry["actor"], entry["from_assignee"], entry["to_assignee"]) == (
        "assign",
        "ana",
        None,
        "ana",
    )
    assert (entry["from_status"], entry["to_status"], entry["note"]) == ("open", "open", "on it")
    assert entry["user_id"] is not None

    # bo cannot take ana's event without force: 409 naming her, and nothing changes
    r = desk.assign("bo", [3, 2], "bo")
    assert r.status_code == 409, r.text
    assert "#2 to ana" in r.json()["error"] and "force" in r.json()["error"]
    assert desk.event(3)["assignee"] is None and desk.event(3)["history"] == []
    assert len(desk.event(2)["history"]) == 1
    # nor unassign it
    assert desk.assign("bo", [2], None).status_code == 409
    # with force he takes it
    r = desk.assign("bo", [3, 2], "bo", force=True)
    assert r.status_code == 200 and r.json()["changed"] == [3, 2]
    history = desk.event(2)["history"]
    assert [(h["actor"], h["from_assignee"], h["to_assignee"]) for h in history] == [
        ("ana", None, "ana"),
        ("bo", "ana", "bo"),
    ]
    # ana hands her event 1 to bo (hers: no force); the same again changes nothing
    assert desk.assign("ana", [1], "bo").json()["changed"] == [1]
    again = desk.assign("ana", [1], "bo")
    assert again.status_code == 200 and again.json()["changed"] == []
    assert len(desk.event(1)["history"]) == 2
    # an admin assigns to an analyst; null unassigns
    assert desk.assign("root", [4], "ana").json()["changed"] == [4]
    r = desk.assign("ana", [4], None)
    assert r.status_code == 200 and r.json()["assignee"] is None
    event = desk.event(4)
    assert (event["assignee"], event["assigned_at"]) == (None, None)
    assert event["history"][-1]["to_assignee"] is None


def test_reviewing_keeps_the_assignee(desk: Desk) -> None:
    assert desk.assign("ana", [5, 6], "ana").status_code == 200
    r = desk.client.post(
        "/v1/risk-events/5/review", json={"status": "confirmed"}, headers=desk.as_("ana")
    )
    assert r.status_code == 200 and r.json()["assignee"] == "ana"
    r = desk.client.post(
        "/v1/reviews", json={"ids": [6], "status": "dismissed"}, headers=desk.as_("ana")
    )
    assert r.status_code == 200
    for event_id, status in ((5, "confirmed"), (6, "dismissed")):
        event = desk.event(event_id)
        assert (event["status"], event["assignee"]) == (status, "ana")
        assert [h["action"] for h in event["history"]] == ["assign", "review"]


@pytest.mark.parametrize(
    ("body", "status", "where"),
    [
        ({"ids": [7, 9999], "assignee": "ana"}, 404, "9999"),
        ({"ids": [7, 2**31], "assignee": "ana"}, 404, str(2**31)),
        ({"ids": [7], "assignee": "zed"}, 422, "no user named 'zed'"),
        ({"ids": [7], "assignee": "gone"}, 422, "disabled"),
        ({"ids": [7], "assignee": "svc"}, 422, "service account"),
        ({"ids": [7]}, 422, "assignee"),
        ({"ids": [], "assignee": "ana"}, 422, "ids"),
        ({"ids": [0], "assignee": "ana"}, 422, "ids"),
        ({"ids": ["7"], "assignee": "ana"}, 422, "ids"),
        ({"ids": [7], "assignee": "ana", "force": "yes"}, 422, "force"),
        ({"ids": [7], "assignee": " "}, 422, "assignee"),
        ({"ids": list(range(1, 502)), "assignee": "ana"}, 422, "ids"),
    ],
)
def test_refused_bodies_change_nothing(
    desk: Desk, body: dict[str, Any], status: int, where: str
) -> None:
    r = desk.client.post(ASSIGN, json=body, headers=desk.as_("ana"))
    assert r.status_code == status, r.text
    assert where in r.text
    event = desk.event(7)
    assert event["assignee"] is None and event["history"] == []


def test_roles_identity_and_csrf(desk: Desk) -> None:
    body = {"ids": [8], "assignee": "ana"}
    # no identity, a service token, a session without (or with a wrong) CSRF token
    assert desk.client.post(ASSIGN, json=body).status_code == 401
    assert desk.client.post(ASSIGN, json=body, headers=desk.as_("svc")).status_code == 403
    grant = desk.auth.sign_in("ana", PASSWORD, "198.51.100.7")
    cookie = f"fraudlens_session={grant.cookie}"
    for headers in ({"Cookie": cookie}, {"Cookie": cookie, CSRF_HEADER: "x" * 43}):
        assert desk.client.post(ASSIGN, json=body, headers=headers).status_code == 403
    assert desk.event(8)["assignee"] is None and desk.event(8)["history"] == []
    # the session with its CSRF token; the name in the body is not who is recorded
    r = desk.client.post(
        ASSIGN,
        json={**body, "assigned_by": "mallory"},
        headers={"Cookie": cookie, CSRF_HEADER: grant.csrf_token},
    )
    assert r.status_code == 200, r.text
    assert r.json()["assigned_by"] == "ana"
    assert desk.event(8)["history"][-1]["actor"] == "ana"
    # a service account may read assignments but not filter by "me" into someone
    r = desk.client.get("/v1/risk-events", params={"assignee": "me"}, headers=desk.as_("svc"))
    assert r.status_code == 200 and r.json()["total"] == 0


def test_filters_list_count_and_export(desk: Desk) -> None:
    assert desk.assign("bo", [10, 11], "bo", force=True).status_code == 200
    assert desk.assign("ana", [12], "ana", force=True).status_code == 200
    stored = desk.store.list_risk_events(limit=500)[0]
    by = {
        who: sorted(e["id"] for e in stored if e["assignee"] == who) for who in ("ana", "bo", None)
    }
    assert {10, 11} <= set(by["bo"]) and 12 in by["ana"]
    assert desk.ids(assignee="ana") == by["ana"]
    assert desk.ids(assignee="bo") == by["bo"]
    assert desk.ids(unassigned="true") == by[None]
    assert len(by["ana"]) + len(by["bo"]) + len(by[None]) == 20
    mine = desk.client.get("/v1/risk-events", params={"assignee": "me"}, headers=desk.as_("bo"))
    assert sorted(e["id"] for e in mine.json()["items"]) == by["bo"]
    assert mine.json()["total"] == len(by["bo"])
    open_ana = sorted(e["id"] for e in stored if e["assignee"] == "ana" and e["status"] == "open")
    assert desk.ids(assignee="ana", status="open") == open_ana
    assert desk.ids(assignee="nobody-here") == []
    for bad in ({"assignee": "ana", "unassigned": "true"}, {"unassigned": "maybe"}):
        r = desk.client.get("/v1/risk-events", params=bad, headers=desk.as_("ana"))
        assert r.status_code == 422, r.text

    # the export: the same filter, and the assignee columns
    r = desk.client.get("/v1/risk-events/export", params={"assignee": "me"}, headers=desk.as_("bo"))
    assert r.status_code == 200, r.text
    assert r.headers["x-fraudlens-total"] == str(len(by["bo"]))
    table = list(csv.DictReader(io.StringIO(r.text)))
    assert sorted(int(row["id"]) for row in table) == by["bo"]
    assert {row["assignee"] for row in table} == {"bo"}
    assert all(row["assigned_at"] for row in table)
    r = desk.client.get(
        "/v1/risk-events/export", params={"unassigned": "true"}, headers=desk.as_("bo")
    )
    table = list(csv.DictReader(io.StringIO(r.text)))
    assert sorted(int(row["id"]) for row in table) == by[None]
    assert {row["assignee"] for row in table} == {""}


def test_assignment_needs_a_name_with_authentication_off(tmp_path: Path) -> None:
    """Authentication off (loopback): the body names who assigns, and ``me`` in a filter
    names nobody (422 saying so)."""
    with open_store(f"sqlite:///{tmp_path / 's.db'}") as store:
        store.upgrade()
        store.add_risk_events([risk_event("acct-1", 1)])
        store.add_user("ana", "analyst", None)
        app = create_app(Settings(models_dir=tmp_path / "m"), store=store, preload=False)
        with TestClient(app) as client:
            r = client.post(ASSIGN, json={"ids": [1], "assignee": "ana"})
            assert r.status_code == 422 and "assigned_by" in r.text
            r = client.post(ASSIGN, json={"ids": [1], "assignee": "ana", "assigned_by": "ana"})
            assert r.status_code == 200, r.text
            assert store.review_history(1)[-1].actor == "ana"
            r = client.get("/v1/risk-events", params={"assignee": "me"})
            assert r.status_code == 422 and "signed-in" in r.text
            r = client.get("/v1/risk-events", params={"assignee": "ana"})
            assert [e["id"] for e in r.json()["items"]] == [1]
