"""``fraudlens cards``: simulate -> train -> evaluate -> score -> benchmark, through the
real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _cards_data import ULB_DAY1
from typer.testing import CliRunner

from fraudlens.cli import app
from fraudlens.registry import Registry

runner = CliRunner()


def _run(*args: str) -> str:
    result = runner.invoke(app, ["cards", *args])
    assert result.exit_code == 0, result.output
    return result.output


def _fails(*args: str) -> str:
    result = runner.invoke(app, ["cards", *args])
    assert result.exit_code == 2, result.output
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cards-cli")
    out = _run(
        "simulate", "--out", str(root / "sim"), "--customers", "300", "--days", "30", "--seed", "1"
    )
    assert "transactions" in out
    return root


@pytest.mark.slow
def test_simulate_train_evaluate_score_round_trip(workspace: Path) -> None:
    data = workspace / "sim" / "transactions.csv"
    tx = pd.read_csv(data)
    assert list(tx.columns[:6]) == [
        "transaction_id",
        "ts",
        "customer_id",
        "terminal_id",
        "amount",
        "label",
    ]
    assert len(tx) > 5000 and 0 < tx["label"].mean() < 0.1
    models = workspace / "models"

    out = _run(
        "train",
        "--data",
        str(data),
        "-m",
        str(models),
        "--detector",
        "xgboost",
        "--preset",
        "reference",
    )
    assert "roc_auc" in out and "cards-xgboost" in out and "refitted on all" in out
    _run("train", "--data", str(data), "-m", str(models), "--detector", "anomaly")
    reg = Registry(models)
    assert reg.defaults()["cards"] == "cards-anomaly"  # the last one trained
    meta = reg.get("cards-xgboost").metadata
    split = meta["split"]
    # The latest 21 whole days: 7 to train, 7 of label delay, 7 held out.
    assert split["protocol"] == "handbook 7/7/7 days" and split["known_frauds_removed"]
    last_day = pd.Timestamp(tx["ts"].max()).normalize()
    assert pd.Timestamp(split["test_end"]) == last_day + pd.Timedelta(days=1)
    assert pd.Timestamp(split["train_start"]) == last_day - pd.Timedelta(days=20)
    assert meta["params"]["n_estimators"] == 100 and meta["preset"] == "reference"
    validation = meta["metrics"]["validation"]
    assert validation["roc_auc"] > 0.6 and validation["rows"] == split["test_rows"]
    assert meta["refit"]["rows"] == len(tx) and meta["refit"]["frauds"] == tx["label"].sum()
    assert meta["data_hash"]

    report_dir = workspace / "report"
    out = _run(
        "evaluate",
        "--data",
        str(data),
        "-m",
        str(models),
        "--detector",
        "xgboost",
        "--out",
        str(report_dir),
    )
    assert "report.json" in out and "validation model" in out
    report = json.loads((report_dir / "report.json").read_text())
    for name in ("roc.png", "pr.png", "threshold_sweep.png", "confusion.png"):
        assert (report_dir / name).stat().st_size > 1000
    # The refitted model has seen the held-out rows: the report shows the validation
    # model's stored scores of them, so its figures are the validation figures.
    assert report["metrics"]["roc_auc"] == pytest.approx(validation["roc_auc"])
    assert report["data"]["rows"] == validation["rows"]
    assert "card_precision@100" in report["metrics"]
    sweep = [r["threshold"] for r in report["metrics"]["threshold_sweep"]]
    assert sweep[0] == 0.01 and sweep[-1] == 0.99 and len(sweep) >= 21

    # Score a shuffled copy: the output keeps the input order, row for row.
    shuffled = tx.sample(frac=1.0, random_state=5)
    shuffled.to_csv(workspace / "shuffled.csv", index=False)
    scores_csv = workspace / "scores.csv"
    _run(
        "score",
        "--data",
        str(workspace / "shuffled.csv"),
        "-m",
        str(models),
        "--detector",
        "xgboost",
        "--out",
        str(scores_csv),
    )
    scores = pd.read_csv(scores_csv)
    assert list(scores.columns) == [
        "row",
        "transaction_id",
        "score",
        "flagged",
        "model",
        "threshold",
        "anomaly_score",
        "anomaly_model",
    ]
    assert scores["row"].tolist() == list(range(1, len(tx) + 1))
    assert set(scores["model"]) == {"cards-xgboost:v0001"}
    assert set(scores["anomaly_model"]) == {"cards-anomaly:v0001"}
    assert scores["transaction_id"].tolist() == shuffled["transaction_id"].tolist()
    det = reg.load("cards-xgboost")
    assert np.array_equal(
        scores["flagged"].to_numpy(), (scores["score"] > det.threshold_).astype(int).to_numpy()
    )
    assert set(scores["threshold"]) == {det.threshold_}
    assert scores["anomaly_score"].between(0, 1).all()

    # The same rows in file order score the same (features do not depend on row order).
    _run(
        "score",
        "--data",
        str(data),
        "-m",
        str(models),
        "--detector",
        "xgboost",
        "--out",
        str(workspace / "s2.csv"),
    )
    ordered = pd.read_csv(workspace / "s2.csv").set_index("transaction_id")
    same = np.isclose(
        ordered.loc[scores["transaction_id"], "score"].to_numpy(), scores["score"].to_numpy()
    )
    assert same.mean() > 0.999


@pytest.mark.slow
def test_score_with_and_without_label_history(workspace: Path, tmp_path: Path) -> None:
    data = workspace / "sim" / "transactions.csv"
    tx = pd.read_csv(data)
    models = tmp_path / "models"
    _run("train", "--data", str(data), "-m", str(models), "--detector", "logistic")
    # The last 3 days arrive without labels; their past (with labels) is the history.
    cut = pd.Timestamp(tx["ts"].max()) - pd.Timedelta(days=3)
    ts = pd.to_datetime(tx["ts"])
    new = tx[ts > cut].drop(columns=["label"])
    new.to_csv(tmp_path / "new.csv", index=False)
    tx[ts <= cut].to_csv(tmp_path / "history.csv", index=False)
    out_args = ["-m", str(models), "--detector", "logistic"]

    new_csv, a_csv = str(tmp_path / "new.csv"), str(tmp_path / "a.csv")
    result = runner.invoke(app, ["cards", "score", "--data", new_csv, "--out", a_csv, *out_args])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "warning:" in text and "without any known label" in text and "--history" in text
    out = _fails(
        "score",
        "--data",
        str(tmp_path / "new.csv"),
        "--out",
        str(tmp_path / "b.csv"),
        "--require-history",
        *out_args,
    )
    assert "--require-history refuses this" in out
    assert not (tmp_path / "b.csv").exists()

    out = _run(
        "score",
        "--data",
        str(tmp_path / "new.csv"),
        "--history",
        str(tmp_path / "history.csv"),
        "--require-history",
        "--out",
        str(tmp_path / "c.csv"),
        *out_args,
    )
    assert "warning" not in out and "history rows" in out
    # With its history, a new row scores exactly as inside the full labelled file (its
    # own label is never read: terminal windows end 7 days back).
    _run("score", "--data", str(data), "--out", str(tmp_path / "full.csv"), *out_args)
    full = pd.read_csv(tmp_path / "full.csv").set_index("transaction_id")
    with_history = pd.read_csv(tmp_path / "c.csv")
    np.testing.assert_allclose(
        with_history["score"], full.loc[with_history["transaction_id"], "score"], rtol=1e-9
    )
    without = pd.read_csv(tmp_path / "a.csv")
    assert not np.allclose(without["score"], with_history["score"])


@pytest.mark.slow
def test_train_windows_no_refit_and_blank_labels(workspace: Path, tmp_path: Path) -> None:
    data = workspace / "sim" / "transactions.csv"
    tx = pd.read_csv(data)
    # The last two days' labels are not known yet.
    ts = pd.to_datetime(tx["ts"])
    late = ts > ts.max() - pd.Timedelta(days=2)
    blank = tx.astype({"label": "object"})
    blank.loc[late, "label"] = ""
    blank.to_csv(tmp_path / "blank.csv", index=False)
    models = tmp_path / "models"
    end = str((ts.max() - pd.Timedelta(days=2)).normalize().date())
    out = _run(
        "train",
        "--data",
        str(tmp_path / "blank.csv"),
        "-m",
        str(models),
        "--train-days",
        "5",
        "--gap-days",
        "3",
        "--test-days",
        "4",
        "--test-end",
        end,
        "--no-refit",
    )
    assert "rows with a blank (unknown) label not trained on" in out
    assert "refitted" not in out
    meta = Registry(models).get("cards-xgboost").metadata
    split = meta["split"]
    end_ts = pd.Timestamp(end, tz="UTC")
    assert pd.Timestamp(split["test_end"]) == end_ts
    assert pd.Timestamp(split["test_start"]) == end_ts - pd.Timedelta(days=4)
    assert pd.Timestamp(split["train_end"]) == end_ts - pd.Timedelta(days=7)
    assert pd.Timestamp(split["train_start"]) == end_ts - pd.Timedelta(days=12)
    assert meta["refit"] is None and meta["unknown_labels"] == int(late.sum())
    det = Registry(models).load("cards-xgboost")
    assert "refit_rows" not in det.fit_info_
    assert det.fit_info_["n_train"] == split["train_rows"]

    # Refit (the default): every labelled row, and no unknown one.
    _run("train", "--data", str(tmp_path / "blank.csv"), "-m", str(models))
    meta = Registry(models).get("cards-xgboost").metadata
    assert meta["refit"]["rows"] == int((~late).sum())
    assert meta["metrics"]["validation"]["rounds"] == meta["refit"]["rounds"]


@pytest.mark.slow
def test_anomaly_model_alone_gives_no_extra_column(workspace: Path) -> None:
    data = workspace / "sim" / "transactions.csv"
    models = workspace / "only-anomaly"
    _run(
        "train",
        "--data",
        str(data),
        "-m",
        str(models),
        "--detector",
        "anomaly",
        "--threshold",
        "fpr:0.02",
    )
    _run("score", "--data", str(data), "-m", str(models), "--out", str(workspace / "a.csv"))
    scores = pd.read_csv(workspace / "a.csv")
    assert list(scores.columns) == [
        "row",
        "transaction_id",
        "score",
        "flagged",
        "model",
        "threshold",
    ]
    assert 0.0 < scores["flagged"].mean() < 0.1
    out = _fails("score", "--data", str(data), "-m", str(models), "--out", "x.csv", "--explain")
    assert "--explain needs a classifier" in out


@pytest.mark.slow
def test_train_on_real_ulb_holds_out_the_last_8_hours(tmp_path: Path) -> None:
    if not ULB_DAY1.is_file():
        pytest.skip(f"the ULB day-1 file is not at {ULB_DAY1}")
    out = _run(
        "train",
        "--data",
        str(ULB_DAY1),
        "-m",
        str(tmp_path),
        "--detector",
        "logistic",
        "--threshold",
        "recall:0.8",
    )
    assert "average_precision" in out and "held out 16 h .. 24 h" in out
    meta = Registry(tmp_path).get("cards-logistic").metadata
    split = meta["split"]
    assert (split["train_end"], split["test_start"], split["test_end"]) == (57600, 57600, 86400)
    assert split["train_rows"] == 16_599 and split["test_rows"] == 9_726
    assert meta["metrics"]["validation"]["roc_auc"] > 0.88
    assert meta["params"]["time_of_day"] == "auto"
    assert Registry(tmp_path).load("cards-logistic").ignored_ == ["Time"]
    assert meta["refit"]["rows"] == 26_325
    _run(
        "score",
        "--data",
        str(ULB_DAY1),
        "-m",
        str(tmp_path),
        "--out",
        str(tmp_path / "s.csv"),
        "--explain",
        "--top",
        "2",
    )
    scores = pd.read_csv(tmp_path / "s.csv")
    # The ULB table has no transaction ids: "row" says which input row each score is.
    assert list(scores.columns) == ["row", "score", "flagged", "model", "threshold", "reasons"]
    assert len(scores) == 26_325 and scores["row"].iloc[-1] == 26_325
    flagged = scores[scores["flagged"] == 1]
    reasons = [json.loads(r) for r in flagged["reasons"]]
    assert all(1 <= len(r) <= 2 for r in reasons)
    assert all(r[0]["contribution"] >= r[-1]["contribution"] > 0 for r in reasons)


@pytest.mark.slow
def test_benchmark_runs_the_handbook_protocol(tmp_path: Path) -> None:
    _run("simulate", "--out", str(tmp_path), "--customers", "300", "--days", "60", "--seed", "2")
    out = _run(
        "benchmark",
        "--data",
        str(tmp_path / "transactions.csv"),
        "--protocol",
        "handbook",
        "--detector",
        "logistic",
        "--weeks",
        "2",
        "--out",
        str(tmp_path / "bench"),
    )
    assert "handbook best*" in out and "mean, 2 weeks" in out
    report = json.loads((tmp_path / "bench" / "report.json").read_text())
    weeks = report["weeks"]
    assert len(weeks) == 2
    # The latest two weeks that fit: 21 days from each start, 7 days apart.
    starts = [pd.Timestamp(w["train_start"]) for w in weeks]
    assert starts[1] - starts[0] == pd.Timedelta(days=7)
    assert 0.5 < report["mean"]["roc_auc"] <= 1.0
    assert report["mean"]["average_precision"] == pytest.approx(
        np.mean([w["average_precision"] for w in weeks])
    )
    assert "handbook XGBoost after model selection (best)" in report["published"]
    for name in ("benchmark_weeks.png", "benchmark_pr.png"):
        assert (tmp_path / "bench" / name).stat().st_size > 5000
    out = _fails("benchmark", "--data", str(tmp_path / "transactions.csv"), "--protocol", "prequel")
    assert "prequel" in out and "handbook" in out
    # One week given twice had been run twice and counted twice in the mean.
    week = starts[0].strftime("%Y-%m-%d")
    out = _fails("benchmark", "--data", str(tmp_path / "transactions.csv"), "--detector",
                 "logistic", "--start", week, "--start", f"{week}T05:00",
                 "--out", str(tmp_path / "twice"))  # fmt: skip
    assert f"--start {week} is given twice: give each week once" in out, out
    assert not (tmp_path / "twice").exists()


def test_bad_options_and_bad_rows_exit_with_a_message(workspace: Path, tmp_path: Path) -> None:
    data = workspace / "sim" / "transactions.csv"
    out = _fails("train", "--data", str(data), "-m", str(tmp_path), "--threshold", "precision:2")
    assert "unknown threshold strategy" in out

    # --detector is a choice: the message lists the valid ones.
    out = _fails("train", "--data", str(data), "-m", str(tmp_path), "--detector", "forest")
    assert "'forest' is not one of 'logistic', 'xgboost', 'anomaly'" in out
    out = _fails(
        "train", "--data", str(data), "-m", str(tmp_path), "--test-days", "2", "--test-hours", "5"
    )
    assert "give --test-days or --test-hours, not both" in out
    out = _fails("train", "--data", str(data), "-m", str(tmp_path), "--split", "random",
                 "--test-days", "3")  # fmt: skip
    assert "window options apply to --split time only" in out

    bad = pd.read_csv(data, nrows=50, dtype={"amount": str})
    bad.loc[9, "amount"] = "lots"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    out = _fails(
        "score", "--data", str(tmp_path / "bad.csv"), "-m", str(tmp_path), "--out", "x.csv"
    )
    assert "no model" in out  # nothing trained in this registry yet

    out = _fails("train", "--data", str(tmp_path / "bad.csv"), "-m", str(tmp_path))
    assert "row 10" in out and "'amount'" in out


def test_train_on_rows_of_one_time_names_the_file_and_the_time_column(
    workspace: Path, tmp_path: Path
) -> None:
    """Rows all at one time had been refused as "window lengths must be positive (the gap
    may be 0)": no file named, and no window option had been given."""
    same = pd.read_csv(workspace / "sim" / "transactions.csv", nrows=200)
    same["ts"] = "2026-04-05 10:00:00+00:00"
    path = tmp_path / "same.csv"
    same.to_csv(path, index=False)
    out = _fails("train", "--data", str(path), "-m", str(tmp_path / "m"), "--detector", "logistic")
    assert f"file {path}, column 'ts': every labelled row has the same time" in out, out
    assert "use --split random" in out


def test_a_table_without_the_models_features_is_named(workspace: Path, tmp_path: Path) -> None:
    """A feature table given to a raw-transaction model: `cards score` and `cards
    evaluate` named the first missing feature column but not the file."""
    models = tmp_path / "m"
    data = workspace / "sim" / "transactions.csv"
    _run("train", "--data", str(data), "-m", str(models), "--detector", "logistic")
    table = tmp_path / "features.csv"
    pd.read_csv(data, nrows=200)[["amount", "tx_time_seconds", "label"]].to_csv(table, index=False)
    runs = [
        ("score", "--data", str(table), "-m", str(models), "--out", str(tmp_path / "s.csv")),
        ("evaluate", "--data", str(table), "-m", str(models), "--out", str(tmp_path / "r")),
    ]
    for args in runs:
        out = _fails(*args)
        assert f"file {table}, column 'tx_amount': 33 feature column(s) missing" in out, out


def test_benchmark_titles_name_the_data_folder_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A folder given by a bare relative name (`--data hb`) had been titled "/hb".
    from fraudlens.cli.cards import _data_name

    (tmp_path / "raw" / "hb").mkdir(parents=True)
    (tmp_path / "raw" / "t.csv").write_text("x\n")
    monkeypatch.chdir(tmp_path / "raw")
    assert _data_name(Path("hb")) == "raw/hb"
    assert _data_name(Path(".")) == f"{tmp_path.name}/raw"
    assert _data_name(tmp_path / "raw" / "hb") == "raw/hb"
    assert _data_name(Path("t.csv")) == "t.csv"
    assert _data_name(Path("/")) == "/"


@pytest.mark.parametrize(
    ("threshold", "said"),
    [
        ("0.3", "threshold 0.3000, fixed by --threshold; boosting rounds chosen on the held-out"),
        ("none", "threshold 0.5000, fixed by --threshold; boosting rounds chosen on the held-out"),
        ("f1", "threshold and boosting rounds chosen on the held-out rows"),
    ],
)
def test_train_says_what_the_held_out_rows_chose(
    workspace: Path, tmp_path: Path, threshold: str, said: str
) -> None:
    # A fixed --threshold had been reported as "threshold ... chosen on the held-out rows".
    tx = workspace / "sim" / "transactions.csv"
    res = runner.invoke(
        app,
        ["cards", "train", "--data", str(tx), "-m", str(tmp_path / "m"), "--threshold", threshold],
    )
    assert res.exit_code == 0, res.output
    assert said in " ".join(res.output.split()), res.output


def test_train_sets_row_ids_aside_and_warns_of_a_leak(tmp_path: Path) -> None:
    """A feature table with a row id (sorted by class, as public benchmark files often
    are) and a column that is the label in disguise: the id had been trained on and
    the leak passed in silence."""
    rng = np.random.default_rng(3)
    n = 1_200
    y = (rng.random(n) < 0.1).astype(int)
    df = pd.DataFrame({"f1": rng.normal(size=n) + y, "f2": rng.normal(size=n)})
    df["chargeback"] = y * 2.0 + rng.random(n) * 0.1
    df["Class"] = y
    df = df.sort_values("Class", kind="stable").reset_index(drop=True)
    df.insert(0, "id", np.arange(n) + 1000)
    data = tmp_path / "table.csv"
    df.to_csv(data, index=False)
    models = tmp_path / "m"
    out = " ".join(
        _run("train", "--data", str(data), "-m", str(models), "--split", "random").split()
    )
    assert "set aside as row ids, not features: id" in out
    assert "feature 'chargeback' alone ranks the held-out rows with ROC AUC 1.0000" in out
    assert "'f1' alone" not in out
    meta = json.loads((models / "cards-xgboost" / "v0001" / "metadata.json").read_text())
    assert meta["set_aside"] == ["id"] and set(meta["leak_suspects"]) == {"chargeback"}
    _run("score", "--data", str(data), "-m", str(models), "--out", str(tmp_path / "s.csv"))
    scores = pd.read_csv(tmp_path / "s.csv")
    assert list(scores.columns[:3]) == ["row", "id", "score"]
    assert scores["id"].tolist() == df["id"].tolist()
