"""Analysts' decisions back into training (fraudlens.feedback, market train
--reviewed-from, models compare), on real stores.

The round trip: simulated accounts are loaded into a SQLite store, the worker raises risk
events with the active model, an analyst signed in to the service reviews 200 of them
through the HTTP API (deciding by the simulator's ground truth), ``market train
--reviewed-from`` trains a candidate on half of them, ``models compare`` measures it
against the active version on the other half, and ``models activate`` puts it in service.

The training data lacks some kinds of normal trader that the store's accounts have
(market makers, traders filled at bar edges, small fills), so the first model raises
false alerts on them: the analysts' dismissals are what can teach the next version.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from _services import POSTGRES_URL, unavailable  # type: ignore[import-not-found]
from fraudlens.cli import app as cli
from fraudlens.errors import DataError
from fraudlens.feedback import (
    REVIEW_WEIGHT,
    HoldoutSplit,
    id_ranges,
    ids_from_ranges,
    load_reviewed,
    merge_training,
    redact_url,
    reviewed_precision,
    trained_event_ids,
)
from fraudlens.market.data import window, write_market
from fraudlens.market.detectors import FeatureDetector
from fraudlens.market.simulate import DEFAULT_KIND_WEIGHTS, simulate
from fraudlens.registry import Registry
from fraudlens.store import RiskEvent, open_store

sa = pytest.importorskip("sqlalchemy")

runner = CliRunner()
#: Normal kinds left out of the first model's training data.
UNSEEN = ("normal_market_maker", "normal_edge", "normal_small_fills")
REVIEWED = 200


def _cli(*args: str) -> str:
    res = runner.invoke(cli, list(args), env={"COLUMNS": "120", "TERM": "dumb"})
    assert res.exit_code == 0, (args, res.output)
    return res.output


# ---------------------------------------------------------------------------- units


def test_reviewed_precision_is_confirmed_over_reviewed() -> None:
    assert reviewed_precision(3, 1) == 0.75
    assert reviewed_precision(0, 4) == 0.0
    assert reviewed_precision(0, 0) is None
    with pytest.raises(ValueError):
        reviewed_precision(-1, 2)


def test_event_id_ranges_round_trip_and_tampering_is_caught() -> None:
    ids = {1, 2, 3, 7, 9, 10, 42}
    assert id_ranges(ids) == [[1, 3], [7, 7], [9, 10], [42, 42]]
    assert ids_from_ranges(id_ranges(ids)) == ids
    meta = {
        "labels": {
            "sources": ["simulated", "reviewed"],
            "reviewed": {
                "database": "sqlite:////x.db",
                "event_ids": id_ranges(ids),
                "event_ids_sha256": __import__("hashlib")
                .sha256(",".join(map(str, sorted(ids))).encode())
                .hexdigest(),
            },
        }
    }
    assert trained_event_ids(meta) == (ids, "sqlite:////x.db")
    meta["labels"]["reviewed"]["event_ids"] = id_ranges(ids | {43})  # edited by hand
    with pytest.raises(DataError, match="SHA-256"):
        trained_event_ids(meta)
    assert trained_event_ids({"labels": {"sources": ["simulated"], "reviewed": None}}) == (
        set(),
        None,
    )


def test_holdout_split_is_fixed_per_event_and_near_its_share() -> None:
    ids = np.arange(1, 20_001)
    ends = pd.Series(pd.date_range("2024-03-01", periods=len(ids), freq="min", tz="UTC"))
    split = HoldoutSplit(fraction=0.3)
    held = split.held_out(ids, ends)
    assert 0.28 < held.mean() < 0.32
    # the same event is on the same side whatever else is asked about
    again = split.held_out(ids[::7], ends[::7])
    assert np.array_equal(again, held[::7])
    after = HoldoutSplit.parse("2024-03-10T00:00")
    assert after.after == datetime(2024, 3, 10, tzinfo=UTC)
    assert np.array_equal(after.held_out(ids, ends), (ends > "2024-03-10").to_numpy())
    assert HoldoutSplit.from_dict(split.to_dict()) == split
    assert not HoldoutSplit().active and split.active
    with pytest.raises(DataError, match="ISO-8601"):
        HoldoutSplit.parse("next tuesday")
    with pytest.raises(DataError, match="between 0 and 1"):
        HoldoutSplit(fraction=1.0)


def test_redacted_url_hides_the_password_and_anchors_sqlite_files(tmp_path: Path) -> None:
    out = redact_url("postgresql://ana:s3cret@db.example:5432/risk")
    assert "s3cret" not in out and "***" in out and out.startswith("postgresql+psycopg://")
    assert redact_url("sqlite:///rel/f.db") == f"sqlite:///{Path.cwd() / 'rel' / 'f.db'}"


def test_feature_detector_sample_weights_shift_its_probabilities() -> None:
    # one point with both labels: its probability follows the labels' weights
    x = pd.DataFrame({"a": [0.0, 0.0, 1.0, 1.0], "b": [1.0, 1.0, 0.0, 0.0]})
    y = np.array([1, 0, 1, 0])
    params = {"n_estimators": 50, "subsample": 1.0, "colsample_bytree": 1.0, "seed": 0}
    even = FeatureDetector(**params).fit_features(x, y)
    tilted = FeatureDetector(**params).fit_features(x, y, sample_weight=[1, 9, 9, 1])
    p_even = even.decision_function_features(x)
    p_tilt = tilted.decision_function_features(x)
    assert abs(p_even[0] - 0.5) < 0.05
    assert p_tilt[0] < 0.2 and p_tilt[2] > 0.8
    with pytest.raises(DataError, match="sample weights"):
        FeatureDetector(**params).fit_features(x, y, sample_weight=[1, -1, 1, 1])


# ------------------------------------------------------- the store part (SQLite + PG)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, or a private schema on the PostgreSQL server
    (reached with a password in the URL, which the server's trust setting ignores)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fb.db'}"
        return
    name = f"fl_feedback_{uuid.uuid4().hex[:12]}"
    base = sa.engine.make_url(POSTGRES_URL)
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        unavailable(f"postgresql is unreachable: {exc.orig}")
    url = base.set(password="s3cret").update_query_dict({"options": f"-csearch_path={name}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        admin.dispose()


def _event(account: str, start: datetime, end: datetime, **kw: Any) -> RiskEvent:
    return RiskEvent(
        account_id=account,
        score=kw.pop("score", 0.95),
        event_threshold=0.9,
        model_version="market-features:v0001",
        window_start=start,
        window_end=end,
        **kw,
    )


def test_reviewed_windows_are_the_events_windows_with_whole_days_of_bars(
    store_url: str,
) -> None:
    market = simulate(80, seed=3, days=2)
    latest = market.trades.groupby("account_id")["ts"].max()
    accounts = sorted(latest.index)[:24]
    events = [
        _event(a, latest[a].to_pydatetime() - timedelta(hours=24), latest[a].to_pydatetime())
        for a in accounts
    ]
    # a second, earlier window of the first account, overlapping its first
    counts = market.trades["account_id"].value_counts()
    first = next(a for a in accounts if counts[a] >= 4)
    ts = market.trades.loc[market.trades["account_id"] == first, "ts"].sort_values()
    early_end = ts.iloc[len(ts) // 2].to_pydatetime()  # ends at one of its trades
    events.append(_event(first, early_end - timedelta(hours=24), early_end))
    # a window with no stored trades, an event left open, and a card event
    gone = datetime(2001, 1, 2, tzinfo=UTC)
    events.append(_event(accounts[1], gone - timedelta(hours=24), gone))
    events.append(
        _event(accounts[2], gone - timedelta(hours=48), gone - timedelta(hours=24))
    )  # stays open
    events.append(
        _event(
            accounts[3],
            gone - timedelta(hours=72),
            gone - timedelta(hours=48),
            fraud_type="card_fraud",
        )
    )
    truth = market.labels.set_index("account_id")["label"]
    with open_store(store_url) as store:
        store.upgrade()
        store.load_klines(market.klines)
        store.load_trades(market.trades)
        assert store.add_risk_events(events) == len(events)
        rows, _ = store.list_risk_events(limit=100, sort="id")
        by_id = {r["id"]: r for r in rows}
        ids = sorted(by_id)
        open_id = next(i for i in ids if by_id[i]["window_end"].startswith("2001-01-01"))
        decided = [
            i for i in ids if i != open_id and by_id[i]["fraud_type"] == "suspicious_transaction"
        ]
        confirm = [i for i in decided if truth[by_id[i]["account_id"]] == 1]
        dismiss = [i for i in decided if truth[by_id[i]["account_id"]] == 0]
        store.review_risk_events(confirm, status="confirmed", reviewed_by="ana")
        store.review_risk_events(dismiss, status="dismissed", reviewed_by="ana")
        card = next(i for i in ids if by_id[i]["fraud_type"] == "card_fraud")
        store.review_risk_event(card, status="confirmed", reviewed_by="ana")

        rev = load_reviewed(store)
        assert rev.skipped == {"no_trades": 1}  # the window of 2001
        assert len(rev) == len(decided) - 1
        n_conf = sum(truth[by_id[i]["account_id"]] for i in rev.event_ids)
        assert rev.counts() == {"confirmed": n_conf, "dismissed": len(rev) - n_conf}
        assert set(rev.data.account_ids) == set(rev.events["sample_id"])
        assert list(rev.data.account_ids) == list(rev.events["sample_id"])
        assert np.array_equal(rev.data.y(), rev.y())
        kinds = dict(zip(rev.data.labels["account_id"], rev.data.labels["kind"], strict=True))
        for row in rev.events.itertuples():
            assert kinds[row.sample_id] == f"reviewed_{row.status}"
            # the sample holds exactly the window's stored trades ...
            want = store.trades_between([row.account_id], row.window_start, row.window_end)
            got = rev.data.trades[rev.data.trades["account_id"] == row.sample_id]
            assert sorted(t.split("/", 1)[1] for t in got["trade_id"]) == sorted(
                want.trades["trade_id"]
            )
            # ... and whole UTC days of bars of each symbol it traded
            for sym in got["symbol"].unique():
                bars = rev.data.klines[rev.data.klines["symbol"] == sym]
                real = sym.rsplit("@", 1)[0]
                days = got.loc[got["symbol"] == sym, "ts"].dt.floor("D").unique()
                stored = market.klines[
                    (market.klines["symbol"] == real) & market.klines["ts"].dt.floor("D").isin(days)
                ]
                assert len(bars) >= len(stored) > 0
        two = rev.events[rev.events["account_id"] == first]
        assert len(two) == 2  # two windows of one account: two samples

        # Renaming accounts, trades and symbols changes no score: the windows read
        # against the store's book (the stored trades that mirror theirs, as in the
        # worker) score as their samples do.
        det = FeatureDetector(n_estimators=40).fit(window(simulate(200, seed=4, days=2)))
        ours = dict(zip(rev.data.account_ids, det.decision_function(rev.data), strict=True))
        first_layer = rev.events.drop_duplicates("account_id", keep=False)
        plain = store.trades_in_windows(
            list(first_layer[["account_id", "window_start", "window_end"]].itertuples(index=False))
        )
        plain.book = store.book(plain.trades)
        theirs = dict(zip(plain.account_ids, det.decision_function(plain), strict=True))
        for row in first_layer.itertuples():
            assert ours[row.sample_id] == pytest.approx(theirs[row.account_id], abs=1e-9)

        prov = rev.provenance()
        text = json.dumps(prov)
        assert "s3cret" not in text
        assert prov["database"] == redact_url(store_url)
        assert prov["events"] == len(rev) and prov["confirmed"] == n_conf
        assert ids_from_ranges(prov["event_ids"]) == set(rev.event_ids)
        assert prov["windows"][1] == max(r.window_end for r in rev.events.itertuples()).isoformat()

        # The hold-out split divides the same events, nothing lost or shared.
        split = HoldoutSplit(fraction=0.5)
        train = load_reviewed(store, split=split, part="train")
        held = load_reviewed(store, split=split, part="holdout")
        assert set(train.event_ids) | set(held.event_ids) == set(rev.event_ids)
        assert not set(train.event_ids) & set(held.event_ids)

        # Merged with simulated data: names kept apart, weights where they belong.
        sim = window(simulate(100, seed=5, days=2))
        merged = merge_training(sim, rev, review_weight=3.0)
        assert len(merged.y) == len(sim.account_ids) + len(rev)
        ids_m = np.asarray(merged.data.account_ids)
        assert np.array_equal(merged.sample_weight[merged.is_reviewed], np.full(len(rev), 3.0))
        assert np.all(merged.sample_weight[~merged.is_reviewed] == 1.0)
        assert set(ids_m[merged.is_reviewed]) == set(rev.events["sample_id"])
        # each part's accounts read against its own book: the same features as alone
        from fraudlens.market.features import account_features

        both = account_features(merged.data)
        for part in (sim, rev.data):
            alone = account_features(part)
            pd.testing.assert_frame_equal(both.loc[alone.index], alone)
        with pytest.raises(DataError, match="review weight"):
            merge_training(sim, rev, review_weight=0)


# ------------------------------------------------------------------------ round trip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Training data, a store of other accounts and the risk events v0001 raised on them."""
    from fraudlens.checks import check_message
    from fraudlens.queues import SQLiteQueue
    from fraudlens.worker import Worker

    tmp = tmp_path_factory.mktemp("feedback")
    kinds = {k: (0.0 if k in UNSEEN else w) for k, w in DEFAULT_KIND_WEIGHTS.items()}
    write_market(simulate(500, seed=1, days=3, kinds=kinds), tmp / "train")
    prod = simulate(800, seed=2, days=3, fraud_share=0.35)
    models = tmp / "models"
    _cli("market", "train", "--data", str(tmp / "train"), "-m", str(models))
    db = f"sqlite:///{tmp / 'store.db'}"
    store = open_store(db)
    store.upgrade()
    store.load_klines(prod.klines)
    store.load_trades(prod.trades)
    q = SQLiteQueue(tmp / "q.db")
    q.send_batch([check_message(a, "withdrawal") for a in prod.account_ids])
    Worker(q, store, models, batch_size=100).run(idle_exit=0.3)
    q.close()
    store.close()
    assert prod.labels is not None
    return {
        "tmp": tmp,
        "db": db,
        "models": models,
        "truth": prod.labels.set_index("account_id")["label"],
    }


def _review_over_http(world: dict[str, Any], n: int) -> dict[str, list[int]]:
    """An analyst signs in to the service and decides the ``n`` first events of the
    review queue through the API, by the simulator's ground truth."""
    argon2 = pytest.importorskip("argon2")
    from fastapi.testclient import TestClient

    from fraudlens.auth import Authenticator, Passwords
    from fraudlens.config import Settings
    from fraudlens.service import create_app

    store = open_store(world["db"])
    fast = Passwords(argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))
    auth = Authenticator(store, passwords=fast)
    auth.create_user("ana", "analyst", "a long enough passphrase")
    settings = Settings(
        models_dir=world["models"],
        database_url=world["db"],
        queue_url=f"sqlite:///{world['tmp'] / 'q.db'}",
        auth="on",
        host="127.0.0.1",
    )
    grant = auth.sign_in("ana", "a long enough passphrase", "198.51.100.7")
    headers = {"Cookie": f"fraudlens_session={grant.cookie}", "X-CSRF-Token": grant.csrf_token}
    events, total = store.list_risk_events(status="open", sort="-priority", limit=n)
    assert total >= n, f"only {total} risk events; the round trip needs {n}"
    decided: dict[str, list[int]] = {"confirmed": [], "dismissed": []}
    app = create_app(settings, store=store, preload=False)
    with TestClient(app) as client:
        for e in events:
            status = "confirmed" if world["truth"][e["account_id"]] == 1 else "dismissed"
            r = client.post(
                f"/v1/risk-events/{e['id']}/review",
                json={"status": status, "note": "checked the round trips"},
                headers=headers,
            )
            assert r.status_code == 200, r.text
            assert r.json()["reviewed_by"] == "ana"
            decided[status].append(int(e["id"]))
    # each decision is in the audit trail under the analyst's name
    history = store.review_history(int(events[0]["id"]))
    assert [h.actor for h in history] == ["ana"]
    store.close()
    return decided


def _figure(output: str, label: str) -> list[str]:
    line = next(x for x in output.splitlines() if x.strip().startswith(label))
    return re.split(r"\s{2,}", line.strip())[1:]


def test_round_trip_review_train_compare_activate(world: dict[str, Any]) -> None:
    db, models, tmp = world["db"], world["models"], world["tmp"]
    reg = Registry(models)
    decided = _review_over_http(world, REVIEWED)
    n_conf, n_dis = len(decided["confirmed"]), len(decided["dismissed"])
    assert n_conf + n_dis == REVIEWED and n_dis > 0, decided  # v0001 raised false alerts

    # -- train a candidate on half of the decisions ---------------------------------
    out = _cli(
        "market", "train", "--data", str(tmp / "train"), "-m", str(models),
        "--reviewed-from", db, "--holdout-fraction", "0.5",
    )  # fmt: skip
    assert "reviewed events from" in out and "not activated" in out
    assert reg.active_version("market-features") == "v0001"  # a candidate waits
    meta = reg.get("market-features", "v0002").metadata
    labels = meta["labels"]
    assert labels["sources"] == ["simulated", "reviewed"]
    assert labels["simulated"]["path"] == str(tmp / "train")
    assert labels["simulated"]["accounts"] == 500
    rev = labels["reviewed"]
    assert rev["database"] == redact_url(db) and rev["weight"] == REVIEW_WEIGHT
    assert rev["split"] == {"holdout_after": None, "holdout_fraction": 0.5, "part": "train"}
    # exactly the reviewed events the split does not hold out
    with open_store(db) as store:
        rows = [store.get_risk_event(i) for i in decided["confirmed"] + decided["dismissed"]]
    frame = pd.DataFrame(rows)
    held = HoldoutSplit(fraction=0.5).held_out(frame["id"], frame["window_end"])
    trained = set(frame["id"][~held])
    assert trained_event_ids(meta) == (trained, redact_url(db))
    assert rev["events"] == len(trained) == rev["confirmed"] + rev["dismissed"]
    assert labels["counts"]["reviewed_confirmed"] == rev["confirmed"]
    assert labels["counts"]["reviewed_dismissed"] == rev["dismissed"]
    assert meta["train_accounts"] == 500 + len(trained)
    listed = _cli("models", "list", "-m", str(models))
    assert re.search(r"market-features\s+v0002\*", listed) and "reviewed labels" in listed

    # -- compare it with the active version on the held-out decisions ---------------
    csv = tmp / "compare.csv"
    out = _cli("models", "compare", "market-features", "v0002", "--db", db, "-m", str(models),
               "--out", str(csv))  # fmt: skip
    assert f"left out: {len(trained)} events market-features:v0002 trained on" in out
    per_event = pd.read_csv(csv)
    assert set(per_event["event_id"]) == set(frame["id"][held])
    y = per_event["label"].to_numpy()
    table = {}
    for version in ("v0002", "v0001"):
        flagged = per_event[f"score_{version}"].to_numpy() > 0.9
        table[version] = {
            "precision": reviewed_precision(
                int((flagged & (y == 1)).sum()), int((flagged & (y == 0)).sum())
            ),
            "silenced": int((~flagged & (y == 0)).sum()),
        }
    shown = _figure(out, "reviewed precision")
    assert shown == [f"{table['v0002']['precision']:.4f}", f"{table['v0001']['precision']:.4f}"]
    silenced = _figure(out, "dismissed no longer firing")
    n_held_dis = int((y == 0).sum())
    assert silenced == [f"{table[v]['silenced']} of {n_held_dis}" for v in ("v0002", "v0001")]
    # v0001 raised these events: rescoring their windows gives back the recorded scores,
    # every one (the samples are read against the stored trades that mirror them, as
    # the worker read its batch against the store; every trade was stored before the
    # worker ran)
    same, of = map(int, _figure(out, "recorded scores reproduced")[1].split(" of "))
    assert of == len(y) and same == of
    drift = (per_event["recorded_score"] - per_event["score_v0001"]).abs()
    assert drift.max() < 1e-9, per_event[drift >= 1e-9]
    assert table["v0001"]["silenced"] == 0
    # the analysts' dismissals taught the candidate something it did not know
    assert table["v0002"]["precision"] >= table["v0001"]["precision"]
    assert table["v0002"]["silenced"] > 0
    recorded = reg.get("market-features", "v0002").metadata["reviewed_comparison"]
    assert recorded["versions"][0]["model"] == "market-features:v0002"
    assert recorded["versions"][0]["precision"] == pytest.approx(table["v0002"]["precision"])
    assert recorded["events"] == len(y) and recorded["database"] == redact_url(db)

    # compared on events it trained on, it says so loudly
    res = runner.invoke(cli, ["models", "compare", "market-features", "v0002", "--db", db,
                              "-m", str(models), "--include-trained"])  # fmt: skip
    assert res.exit_code == 0 and "WARNING" in res.output and "optimistic" in res.output

    # -- activate -----------------------------------------------------------------
    _cli("models", "activate", "market-features", "v0002", "-m", str(models))
    assert reg.active_version("market-features") == "v0002"

    # a version trained on every decision leaves nothing to compare it on
    _cli("market", "train", "--data", str(tmp / "train"), "-m", str(models),
         "--reviewed-from", db)  # fmt: skip
    res = runner.invoke(cli, ["models", "compare", "market-features", "v0003", "--db", db,
                              "-m", str(models)])  # fmt: skip
    assert res.exit_code == 2
    assert f"all {REVIEWED} reviewed events" in " ".join(res.output.split())


def test_compare_without_reviewed_events_exits_2(world: dict[str, Any], tmp_path: Path) -> None:
    import shutil

    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    with open_store(empty) as store:
        store.upgrade()
    models = tmp_path / "models"
    shutil.copytree(world["models"], models)
    reg = Registry(models)
    res = runner.invoke(cli, ["models", "compare", "market-features", "v0001", "--against",
                              "v0001", "--db", empty, "-m", str(models)])  # fmt: skip
    assert res.exit_code == 2 and "given twice" in " ".join(res.output.split())
    other = reg.save(
        FeatureDetector(n_estimators=5).fit(window(simulate(60, seed=6, days=1))), activate=False
    )
    res = runner.invoke(cli, ["models", "compare", "market-features", other.version,
                              "--against", "v0001", "--db", empty, "-m", str(models)])  # fmt: skip
    assert res.exit_code == 2
    assert "no confirmed or dismissed market risk events" in " ".join(res.output.split())


def test_train_options_need_reviewed_from(world: dict[str, Any], tmp_path: Path) -> None:
    res = runner.invoke(cli, ["market", "train", "--data", str(world["tmp"] / "train"),
                              "-m", str(tmp_path / "m"), "--holdout-fraction", "0.5"])  # fmt: skip
    assert res.exit_code == 2 and "need --reviewed-from" in " ".join(res.output.split())


def test_sample_book_names_counterparties_apart_from_samples() -> None:
    # Reviewed windows of V and W (samples review-000000000001 and -2, layer 0). V's
    # stored counterparty's trades lie in no window; that account is named like a
    # sample and keeps a name of its own. W's older trade, outside W's window, that
    # mirrors V's joins W's sample.
    from fraudlens.feedback import _sample_book

    t0 = pd.Timestamp("2026-03-02T14:30:00Z")
    cols = ["trade_id", "account_id", "symbol", "ts", "side", "price", "quantity"]

    def frame(rows: list[tuple]) -> pd.DataFrame:
        return pd.DataFrame(
            [(i, a, "X", t0 + pd.Timedelta(seconds=s), d, p, q) for i, a, s, d, p, q in rows],
            columns=cols,
        )

    s1, s2 = "review-000000000001", "review-000000000002"
    stored = frame(
        [
            ("v1", "V", 10, "buy", 14.0, 4.0),
            ("v2", "V", 320, "sell", 8.0, 4.0),
            ("w1", "W", 2000, "buy", 10.0, 1.0),
        ]
    )
    cut = stored.assign(sample_id=np.where(stored["account_id"] == "V", s1, s2), layer=0)
    samples = cut.assign(trade_id="e/" + cut["trade_id"], account_id=cut["sample_id"])[cols]
    samples = samples.assign(symbol="X@0")
    context = frame(
        [
            ("b1", s1, 10, "sell", 14.0, 4.0),  # named like V's sample
            ("w0", "W", 330, "buy", 8.0, 4.0),  # W's, before its window
            ("o1", "O", 900, "buy", 8.0, 4.0),  # mirrors nothing
        ]
    )
    book = _sample_book(cut, stored, context, samples).set_index("trade_id")
    assert sorted(book.index) == ["c0/b1", "c0/w0", "e/v1", "e/v2", "e/w1"]
    assert book.loc["c0/b1", "account_id"] == "~" + s1
    assert book.loc["c0/w0", "account_id"] == s2
    assert set(book["symbol"]) == {"X@0"}
