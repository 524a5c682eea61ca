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


def test_with_the_cnn_the_feature_detector_stays_the_market_default(tmp_path: Path) -> None:
    # The CNN, trained after the feature detector, had become the market default: the
    # real-time pass and the printed `market score` command used it while scores.csv was
    # scored with the feature detector.
    import shlex

    import pandas as pd

    from fraudlens.registry import Registry

    out = tmp_path / "qs"
    result = CliRunner().invoke(
        app,
        ["quickstart", "--out", str(out), "--accounts", "200", "--cnn-epochs", "1", "--no-cards"],
    )
    assert result.exit_code == 0, result.output
    registry = Registry(out / "models")
    assert {"market-features", "market-cnn"} <= set(registry.names())
    assert registry.defaults()["market"] == "market-features"
    with open_store(f"sqlite:///{out / 'fraudlens.db'}") as store:
        items, total = store.list_risk_events(limit=1000)
    assert total > 0 and {e["model_version"] for e in items} == {"market-features:v0001"}
    # The printed batch-scoring command scores as scores.csv was scored.
    line = next(x for x in result.output.splitlines() if " market score " in x)
    argv = shlex.split(line.split("$ ", 1)[1])[1:]
    again = CliRunner().invoke(app, argv)
    assert again.exit_code == 0, again.output
    out_csv = argv[argv.index("--out") + 1]
    first, second = pd.read_csv(out / "market" / "scores.csv"), pd.read_csv(out_csv)
    assert (first["model"] == "market-features:v0001").all()
    pd.testing.assert_frame_equal(first, second)
