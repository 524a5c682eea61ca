"""The card processor's queue message contract: every field bounded in type and length,
a bad message refused with a short reason that repeats little of what it held."""

from __future__ import annotations

from typing import Any

import pytest

from fraudlens.processor import _problem, _queue_meta, _record_of

FEATURES = ["Time", "V1", "Amount"]
RAW = {
    "transaction_id": "t1",
    "ts": "2024-04-01T10:00:00Z",
    "customer_id": "c1",
    "terminal_id": 7,
    "amount": 12.5,
}
MEGA = "x" * 1_000_000


def reason_of(body: dict[str, Any]) -> str | None:
    record, outer = _record_of(body)
    problem, _ = _problem(record, outer, FEATURES)
    return problem


def test_good_messages_pass_with_their_values() -> None:
    feat = {"Time": 1, "V1": "0.5", "Amount": 3.0, "transaction_id": "f1"}
    assert reason_of({"record": feat, "source": "Mobile"}) is None
    assert reason_of(RAW) is None
    assert reason_of({"transaction": RAW, "source": "Web"}) is None
    meta = _queue_meta(*_record_of({"record": RAW, "source": "Store"}))
    assert meta["transaction_id"] == "t1" and meta["source"] == "Store"
    assert meta["terminal_id"] == "7"  # an integer id, as the reference's
    assert _queue_meta(*_record_of({"Time": 1, "V1": 0, "Amount": 1}))["source"] == "queue"


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"record": RAW, "source": MEGA}, "source", "at most 64"),
        ({**RAW, "source": MEGA}, "source", "at most 64"),
        ({"record": RAW, "source": {"a": 1}}, "source", "must be a string, not a dict"),
        ({"record": RAW, "source": "Mob\x00ile"}, "source", "control character"),
        ({**RAW, "transaction_id": {"id": "t1"}}, "transaction_id", "not a dict"),
        ({**RAW, "transaction_id": ["t1"]}, "transaction_id", "not a list"),
        ({**RAW, "transaction_id": True}, "transaction_id", "not True"),
        ({**RAW, "transaction_id": MEGA}, "transaction_id", "at most 64"),
        ({**RAW, "customer_id": 10**5000}, "customer_id", "more than 64 digits"),
        ({**RAW, "terminal_id": {"x": MEGA}}, "terminal_id", "not a dict"),
        ({**RAW, "ts": MEGA}, "ts", "not an ISO-8601"),
        # pandas reads these as the time of reading, or they are past what it holds
        ({**RAW, "ts": "now"}, "ts", "not an ISO-8601"),
        ({**RAW, "ts": "today"}, "ts", "not an ISO-8601"),
        ({**RAW, "ts": "9999-12-31T00:00:00Z"}, "ts", "not an ISO-8601"),
        ({**RAW, "ts": "0001-01-01"}, "ts", "not an ISO-8601"),
        ({"Time": 1, "V1": 0, "Amount": 1, "ts": "now"}, "ts", "not an ISO-8601"),
        ({**RAW, "amount": 10**400}, "amount", "a huge integer"),
        ({**RAW, "amount": MEGA}, "amount", "is not a number"),
        ({**RAW, "amount": [1.0] * 100_000}, "amount", "a list is not a number"),
        (
            {"Time": 1, "V1": 0, "Amount": 1, "transaction_id": {"a": 1}},
            "transaction_id",
            "not a dict",
        ),
        ({"Time": 1, "V1": MEGA, "Amount": 1}, "V1", "not a finite number"),
        ({"Time": 1, "V1": 0, "Amount": 1, "ts": MEGA}, "ts", "not an ISO-8601"),
        (
            {"record": {"Time": 1, "V1": 0, "Amount": 1}, "transaction_id": MEGA},
            "transaction_id",
            "at most 64",
        ),
    ],
)
def test_a_bad_field_is_named_in_a_short_reason(body: dict[str, Any], field: str, words: str):
    reason = reason_of(body)
    assert reason is not None and f"'{field}'" in reason and words in reason, reason
    assert len(reason) < 300, reason
    assert "x" * 81 not in reason


def test_the_reason_quotes_a_long_value_cut_to_80_characters() -> None:
    reason = reason_of({"Time": 1, "V1": "7" * 60 + "y" * 40, "Amount": 1})
    assert reason is not None and "7" * 60 + "y" * 17 + "\u2026'" in reason, reason
