"""The account-check message contract shared by the service, the CLI and the worker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from fraudlens.checks import AccountCheck, check_message, parse_check
from fraudlens.errors import DataError


def test_parse_check_accepts_both_shapes() -> None:
    c = parse_check(
        {"account_id": "A1", "business_type": "withdrawal", "requested_at": "2026-03-02T10:00:00Z"}
    )
    assert c == AccountCheck("A1", "withdrawal", datetime(2026, 3, 2, 10, tzinfo=UTC))
    ref = parse_check({"userid": 123, "businessType": "login"})
    assert ref == AccountCheck("123", "login", None)
    assert parse_check({"account_id": "x", "requested_at": 0}).requested_at == datetime(
        1970, 1, 1, tzinfo=UTC
    )
    # No zone means UTC; another zone is converted.
    naive = parse_check({"account_id": "x", "requested_at": "2026-03-02T10:00:00"})
    assert naive.requested_at == datetime(2026, 3, 2, 10, tzinfo=UTC)
    paris = parse_check({"account_id": "x", "requested_at": "2026-03-02T11:00:00+01:00"})
    assert paris.requested_at == datetime(2026, 3, 2, 10, tzinfo=UTC)
    # Blanks around an id are not part of it; an empty business type is none.
    assert parse_check({"account_id": "  A7 ", "business_type": " "}) == AccountCheck("A7")
    # Unknown keys are ignored.
    assert parse_check({"account_id": "A1", "extra": [1, 2]}).account_id == "A1"


def test_check_message_round_trips() -> None:
    when = datetime(2026, 3, 2, 11, 0, 0, 5, tzinfo=timezone(timedelta(hours=1)))
    body = check_message("A9", "withdrawal", when)
    assert body == {
        "account_id": "A9",
        "business_type": "withdrawal",
        "requested_at": "2026-03-02T10:00:00.000005+00:00",
    }
    assert parse_check(body) == AccountCheck("A9", "withdrawal", when.astimezone(UTC))
    assert parse_check(AccountCheck("A9", None, when).message()).requested_at == when
    # requested_at defaults to now.
    now = parse_check(check_message(17)).requested_at
    assert now is not None and abs((datetime.now(UTC) - now).total_seconds()) < 5


@pytest.mark.parametrize(
    ("body", "column", "words"),
    [
        ({}, "account_id", "missing account_id"),
        ({"account_id": ""}, "account_id", "empty"),
        ({"account_id": "   "}, "account_id", "empty"),
        ({"account_id": ["A1"]}, "account_id", "must be a string"),
        ({"account_id": True}, "account_id", "must be a string"),
        ({"account_id": "x" * 65}, "account_id", "65 characters"),
        ({"account_id": "a\x00b"}, "account_id", "U+0000"),
        ({"userid": "a\nb"}, "account_id", "control character"),
        ({"account_id": "a\u202eb"}, "account_id", "U+202E"),
        ({"account_id": "A1", "business_type": 5}, "business_type", "must be a string"),
        ({"account_id": "A1", "business_type": "w" * 65}, "business_type", "65 characters"),
        ({"account_id": "A1", "businessType": "a\tb"}, "business_type", "control character"),
        ({"account_id": "A1", "requested_at": "yesterday"}, "requested_at", "ISO-8601"),
        ({"account_id": "A1", "requested_at": 1e300}, "requested_at", "Unix time"),
        ({"account_id": "A1", "requested_at": float("nan")}, "requested_at", "Unix time"),
        ({"account_id": "A1", "requested_at": False}, "requested_at", "ISO-8601"),
        ({"account_id": "A1", "requested_at": "0001-01-01T00:00:00+01:00"}, "requested_at", ""),
        ({"account_id": "A1", "requested_at": "2" * 100}, "requested_at", "too long"),
        ({"account_id": "A1", "requested_at": {"t": 1}}, "requested_at", ""),
    ],
)
def test_parse_check_names_the_bad_field(body: dict[str, Any], column: str, words: str) -> None:
    with pytest.raises(DataError) as err:
        parse_check(body)
    assert err.value.column == column
    assert words in str(err.value)


def test_check_message_refuses_what_parse_would() -> None:
    for bad in ("a\x00b", "", "x" * 65, "tab\there"):
        with pytest.raises(DataError) as err:
            check_message(bad)
        assert err.value.column == "account_id"
    with pytest.raises(DataError):
        check_message("A1", "bad\x7ftype")
    with pytest.raises(DataError):
        parse_check("not a dict")  # type: ignore[arg-type]
