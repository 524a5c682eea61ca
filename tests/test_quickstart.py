"""``fraudlens quickstart`` end to end on embedded defaults (feature detector only)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from fraudlens.cli import app
from fraudlens.queues import open_queue
from fraudlens.store import open_store


def test_quickstart_runs_the_whole_market_flow(tmp_path: Path) -> None:
    out = tmp_path / "qs"
    result = CliRunner().invoke(
        app, ["quickstart", "--out", str(out), "--accounts", "300", "--no-cnn", "--no-cards"]
    )
    assert result.exit_code == 0, result.output
    assert (out / "reports" / "market-features" / "report.json").is_file()
    assert (out / "market" / "scores.csv").is_file()
    # The real-time pass: every test account was checked through the queue.
    store = open_store(f"sqlite:///{out / 'fraudlens.db'}")
    items, total = store.list_risk_events(limit=1000)
    n_accounts = len(store.account_ids())
    assert n_accounts == 150
    # Half the simulated test accounts are take-overs; the detector flags most of them
    # and few others.
    assert 0.35 * n_accounts <= total <= 0.6 * n_accounts
    assert all(e["score"] > 0.9 and e["details"]["trades"] for e in items)
    store.close()
    with open_queue(f"sqlite:///{out / 'queue.db'}") as q:
        assert q.depth() == 0 and q.dead_letters() == []
    assert "flagged accounts" in result.output and "/review" in result.output
    # A local analyst exists, and the printed password signs in.
    import re

    from fraudlens.auth import Authenticator

    found = re.search(r"as user (\S+) with password (\S+) ", result.output)
    assert found is not None, result.output
    with open_store(f"sqlite:///{out / 'fraudlens.db'}") as store:
        grant = Authenticator(store).sign_in(found[1], found[2], "127.0.0.1")
        assert grant.user.role == "analyst"
