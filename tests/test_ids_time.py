"""One id rule and one UTC rule."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pandas as pd
import pytest

from fraudlens._ids import ID_PATTERN, MAX_ID_LENGTH, check_id, id_problem
from fraudlens._time import utc, utc_series, utcnow
from fraudlens.errors import DataError


@pytest.mark.parametrize("good", ["a", "acct-42", "Ünïcødé", "with space", "x" * MAX_ID_LENGTH])
def test_good_ids(good: str) -> None:
    assert id_problem(good) is None
    assert check_id(good) == good
    assert re.fullmatch(ID_PATTERN, good)


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ("", "empty"),
        ("x" * (MAX_ID_LENGTH + 1), "at most 64"),
        ("a\x00b", "control character (U+0000 at position 2)"),
        ("a\nb", "U+000A"),
        ("a\x7f", "U+007F"),
        ("a\x85", "U+0085"),
        ("a\u202eb", "invisible formatting character (U+202E at position 2)"),
        ("a\u200bb", "U+200B"),
        ("a\ud800", "lone surrogate (U+D800"),
        ("\ufeffa", "U+FEFF at position 1"),
    ],
)
def test_bad_ids(bad: str, words: str) -> None:
    problem = id_problem(bad)
    assert problem is not None and words in problem
    with pytest.raises(DataError) as info:
        check_id(bad, column="trade_id", file="t.csv", row=7)
    assert info.value.file == "t.csv" and info.value.row == 7 and info.value.column == "trade_id"


def test_id_types() -> None:
    assert check_id(123) == "123"
    for bad in (True, 1.5, None, b"x"):
        with pytest.raises(DataError, match="must be a string"):
            check_id(bad)


def test_pattern_is_the_same_rule() -> None:
    # The published pattern and the check agree on every character of the BMP.
    pattern = re.compile(ID_PATTERN)
    for code in range(0x10000):
        if 0xD800 <= code <= 0xDFFF:
            # no URL or UTF-8 JSON carries a lone surrogate; the check refuses them
            assert id_problem(f"a{chr(code)}b") is not None
            continue
        s = f"a{chr(code)}b"
        assert (pattern.fullmatch(s) is None) == (id_problem(s) is not None), hex(code)
    assert pattern.fullmatch("x" * MAX_ID_LENGTH) and not pattern.fullmatch("x" * 65)


def test_utc() -> None:
    naive = datetime(2024, 3, 1, 12, 0)
    assert utc(naive) == datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    plus2 = datetime(2024, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert utc(plus2).tzinfo is UTC and utc(plus2) == utc(naive)
    assert utc(None) is None
    ts = utc(pd.Timestamp("2024-03-01 12:00"))
    assert isinstance(ts, pd.Timestamp) and ts.tzinfo is not None
    assert abs((utcnow() - datetime.now(UTC)).total_seconds()) < 5
    s = utc_series(pd.Series(pd.to_datetime(["2024-03-01 12:00"])))
    assert str(s.dt.tz) == "UTC"
    s2 = utc_series(pd.Series(pd.to_datetime(["2024-03-01 14:00+02:00"])))
    assert s2.iloc[0] == s.iloc[0]
