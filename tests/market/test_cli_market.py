"""CLI round trip: simulate, train, evaluate, score, render; bad input exits 2."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from fraudlens.cli import app
from fraudlens.scoring import EVIDENCE_COLUMNS

runner = CliRunner()


def _ok(args: list[str]) -> str:
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    return res.output


def test_simulate_train_evaluate_score(tmp_path: Path) -> None:
    train, test, models = tmp_path / "train", tmp_path / "test", tmp_path / "models"
    _ok(["market", "simulate", "--out", str(train), "--accounts", "500", "--seed", "1"])
    _ok(["market", "simulate", "--out", str(test), "--accounts", "300", "--seed", "2"])
    labels = pd.read_csv(train / "labels.csv")
    assert {"account_id", "label", "kind"} <= set(labels.columns)
    _ok(
        [
            "market",
            "train",
            "--data",
            str(train),
            "--model-dir",
            str(models),
            "--detector",
            "features",
        ]
    )
    out = tmp_path / "report"
    _ok(["market", "evaluate", "--data", str(test), "--model-dir", str(models), "--out", str(out)])
    report = json.loads((out / "report.json").read_text())
    assert report["roc_auc"] > 0.97
    for name in ("roc.png", "pr.png", "by_kind.png", "samples.png"):
        assert (out / name).stat().st_size > 1000
    scores = tmp_path / "scores.csv"
    _ok(
        [
            "market",
            "score",
            "--klines",
            str(test / "klines.csv"),
            "--trades",
            str(test / "trades.csv"),
            "--model-dir",
            str(models),
            "--out",
            str(scores),
        ]
    )
    s = pd.read_csv(scores)
    base = ["account_id", "score", "flagged", "model", "threshold"]
    assert list(s.columns) == [*base, *EVIDENCE_COLUMNS]
    assert (s["value_moved"] >= 0).all() and s["value_moved"].notna().all()
    assert len(s) == 300 and s["score"].between(0, 1).all()
    meta = json.loads((models / "market-features" / "v0001" / "metadata.json").read_text())
    assert set(s["model"]) == {"market-features:v0001"}
    assert set(s["threshold"]) == {meta["threshold"]}
    assert (s["flagged"] == (s["score"] > meta["threshold"])).all()
    merged = s.merge(pd.read_csv(test / "labels.csv"), on="account_id")
    assert (merged["flagged"] == merged["label"]).mean() > 0.95
    event = tmp_path / "scores_event.csv"
    args = ["market", "score", "--klines", str(test / "klines.csv")]
    args += ["--trades", str(test / "trades.csv"), "--model-dir", str(models)]
    said = _ok([*args, "--out", str(event), "--threshold", "0.9"])
    e = pd.read_csv(event)
    assert set(e["threshold"]) == {0.9}
    assert (e["flagged"] == (e["score"] > 0.9)).all()
    assert "score > 0.9000 (given with --threshold)" in said
    png = tmp_path / "a.png"
    _ok(
        [
            "market",
            "render",
            "--klines",
            str(test / "klines.csv"),
            "--trades",
            str(test / "trades.csv"),
            "--account",
            str(s["account_id"].iloc[0]),
            "--out",
            str(png),
        ]
    )
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_bad_input_exits_2_naming_row_and_column(tmp_path: Path) -> None:
    data = tmp_path / "d"
    _ok(["market", "simulate", "--out", str(data), "--accounts", "50", "--seed", "3"])
    trades = pd.read_csv(data / "trades.csv")
    trades.loc[4, "side"] = "hold"
    trades.to_csv(data / "trades.csv", index=False)
    res = runner.invoke(
        app, ["market", "train", "--data", str(data), "--model-dir", str(tmp_path / "m")]
    )
    assert res.exit_code == 2
    text = " ".join(res.output.split())
    assert "row 5" in text and "side" in text and "trades.csv" in text
