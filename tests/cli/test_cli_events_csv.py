"""``fraudlens db events --csv FILE``: the listed events as the service's export writes
them, text a spreadsheet would run as a formula quoted, numbers kept."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from _cli import one_line, run_cli

from _services import risk_event  # type: ignore[import-not-found]
from fraudlens._csvsafe import RISK_EVENT_COLUMNS

pytest.importorskip("sqlalchemy")


def test_db_events_csv_is_spreadsheet_safe(tmp_path: Path) -> None:
    from fraudlens.store import open_store

    url = f"sqlite:///{tmp_path / 'store.db'}"
    accounts = ['=HYPERLINK("http://x")', "+1", "-2+3", "@SUM(A1)", "acct-5"]
    with open_store(url) as store:
        store.upgrade()
        events = [risk_event(a, i) for i, a in enumerate(accounts)]
        events[1]["business_type"] = "\tfoo"
        events[2]["value_moved"] = -3.0
        store.add_risk_events(events)
    out = tmp_path / "events.csv"
    proc = run_cli(["db", "events", "--db", url, "--csv", str(out), "--limit", "4"])
    assert proc.returncode == 0, proc.stderr
    assert "wrote 4 risk events (of 5)" in one_line(proc.stderr)
    with out.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == [name for name, _key in RISK_EVENT_COLUMNS]
    got = [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]
    # newest first, as the table lists them: the first account is left out
    assert [r["account_id"] for r in got] == ["acct-5", "'@SUM(A1)", "'-2+3", "'+1"]
    assert got[3]["business_type"] == "'\tfoo"
    assert (got[2]["value_moved"], got[2]["score"]) == ("-3.0", "0.97")
