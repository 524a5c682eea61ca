"""Text columns of a card feature table (a transaction type, a card network): the card
models learn their encoding from the training rows and every scoring path reads them the
same way. Before, a feature table with a text column was refused outright."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from _text_book import book_table as _book  # type: ignore[import-not-found]
from fraudlens.cards import _categories
from fraudlens.cards.data import load_table, validate_frame
from fraudlens.cards.detectors import AnomalyDetector, LogisticDetector, XGBoostDetector
from fraudlens.cards.explain import explain
from fraudlens.cli import app
from fraudlens.errors import DataError
from fraudlens.registry import Registry


@pytest.fixture(scope="module")
def book() -> pd.DataFrame:
    return _book(6000, seed=5)


def test_a_column_mostly_of_text_is_read_as_text() -> None:
    df = pd.DataFrame(
        {"type": ["A", "B", None, "A"], "f": [1.0, 2.0, 3.0, 4.0], "label": [0, 1, 0, 0]}
    )
    table = validate_frame(df, "features")
    assert table.text == ("type",) and table.feature_names == ["type", "f"]
    assert table.X["type"].tolist()[:2] == ["A", "B"]
    # Numbers with a stray word stay numbers with a bad cell, named.
    with pytest.raises(DataError) as err:
        validate_frame(df.assign(f=["1", "2", "x", "4"]), "features")
    assert (err.value.row, err.value.column) == (3, "f")
    assert "mostly numbers" in err.value.reason
    assert not _categories.mostly_text(pd.Series(["1", "2", "3", "oops"], dtype=object))
    assert _categories.mostly_text(pd.Series(["T", "F", "F", "12"], dtype=object))


@pytest.mark.parametrize("cls", [XGBoostDetector, LogisticDetector, AnomalyDetector])
def test_models_encode_text_the_same_way_in_any_batch(
    cls: type, book: pd.DataFrame, tmp_path: Path
) -> None:
    table = validate_frame(book, "features")
    det = cls().fit(table.X, table.y)
    # The account name holds a distinct value in every row: an identifier, no feature.
    assert det.set_aside_ == ["nameOrig"]
    assert set(det.categories_) == {"type", "network"}
    levels = ["PAYMENT", "CASH_OUT", "CASH_IN", "TRANSFER", "DEBIT"]
    assert det.categories_["type"]["levels"] == levels
    names = det.model_feature_names_
    assert "type=TRANSFER" in names and "network=(blank)" in names and "type (share)" in names
    whole = det.decision_function(table.X)
    # Row by row, each batch holding one level: the same scores (the encoding is the
    # model's, not the batch's).
    for i in (0, 1, 2, 17):
        one = validate_frame(book.iloc[[i]].drop(columns="isFraud"), "features")
        assert det.decision_function(one.X)[0] == pytest.approx(whole[i], rel=1e-9, abs=1e-12)
    # An unseen level and a blank read as no known level, without error.
    odd = table.X.iloc[:3].copy()
    odd["type"] = ["NEW_KIND", None, ""]
    assert np.isfinite(det.decision_function(odd)).all()
    # Through the registry: the same scores.
    reg = Registry(tmp_path)
    reg.save(det)
    again = reg.load(det.name)
    np.testing.assert_allclose(again.decision_function(table.X), whole, rtol=1e-9)
    # A model that reads text refuses bare numbers, saying why.
    with pytest.raises(DataError, match="reads text columns"):
        det.decision_function(np.zeros((1, 6)))


def test_the_text_column_carries_the_signal(book: pd.DataFrame) -> None:
    """Fraud lives in two transaction types: a model that reads the type ranks held-out
    rows better than one that cannot (a test that fails if the levels are encoded
    wrong or dropped)."""
    test = _book(4000, seed=6)
    train_t, test_t = validate_frame(book, "features"), validate_frame(test, "features")
    with_type = XGBoostDetector().fit(train_t.X, train_t.y)
    without = XGBoostDetector().fit(train_t.X.drop(columns="type"), train_t.y)
    auc_with = roc_auc_score(test_t.y, with_type.decision_function(test_t.X))
    auc_without = roc_auc_score(test_t.y, without.decision_function(test_t.X.drop(columns="type")))
    assert auc_with > 0.95 and auc_with > auc_without + 0.02
    # The reasons name the level.
    flagged = int(np.argmax(with_type.decision_function(test_t.X)))
    reasons = explain(with_type, test_t.X.iloc[[flagged]], top=5)[0]
    assert any(r["feature"].startswith("type") for r in reasons)


def test_a_numeric_feature_sent_as_text_is_named(book: pd.DataFrame) -> None:
    table = validate_frame(book, "features")
    det = LogisticDetector().fit(table.X, table.y)
    bad = table.X.iloc[:2].astype({"amount": object})
    bad.loc[1, "amount"] = "lots"
    with pytest.raises(DataError) as err:
        det.decision_function(bad)
    assert (err.value.row, err.value.column) == (2, "amount")


def test_cli_trains_and_scores_a_table_with_text_columns(
    book: pd.DataFrame, tmp_path: Path
) -> None:
    runner = CliRunner()
    data = tmp_path / "book.csv"
    book.assign(status=np.where(book["isFraud"] == 1, "chargeback", "ok")).to_csv(data, index=False)
    models = tmp_path / "m"
    res = runner.invoke(
        app, ["cards", "train", "--data", str(data), "-m", str(models), "--split", "random"]
    )
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "set aside as identifiers (a distinct value in most rows), not features: nameOrig" in out
    assert "text columns read as levels: 'type' (5 levels), 'network' (3 levels)" in out
    # The leak check reads the levels: a status set after the fraud is named.
    assert "feature 'status=chargeback' alone ranks the held-out rows" in out
    meta = json.loads((models / "cards-xgboost" / "v0001" / "metadata.json").read_text())
    assert meta["set_aside"] == ["nameOrig"] and "status=chargeback" in meta["leak_suspects"]
    scores = tmp_path / "s.csv"
    res = runner.invoke(
        app,
        [
            "cards",
            "score",
            "--data",
            str(data),
            "-m",
            str(models),
            "--out",
            str(scores),
            "--explain",
        ],
    )
    assert res.exit_code == 0, res.output
    got = pd.read_csv(scores)
    # The identifier comes along so the scores join back to the rows.
    assert list(got.columns[:3]) == ["row", "nameOrig", "score"]
    assert got["nameOrig"].tolist() == book["nameOrig"].tolist()
    assert got["reasons"].str.contains("status=chargeback").any()
    assert load_table(data).text == ("type", "nameOrig", "network", "status")


def test_text_levels_and_width_are_bounded() -> None:
    """Long text never becomes a level (it would go into the model's metadata), and a
    table of very many text columns is refused before its encoding fills memory."""
    long = "x" * 300
    df = pd.DataFrame({"note": [long] * 30 + ["short"] * 30, "f": np.arange(60.0)})
    spec = _categories.learn(df["note"])
    assert spec["levels"] == ["short"] and long not in spec["shares"]
    wide = pd.DataFrame({f"t{i}": ["a", "b", "c"] * 10 for i in range(1400)})
    y = np.tile([0, 1, 0], 10)
    with pytest.raises(DataError, match="encode to 5,600 feature columns"):
        LogisticDetector().fit(wide, y)


def test_the_processor_scores_files_and_queued_records_with_text_and_blanks(
    book: pd.DataFrame, tmp_path: Path
) -> None:
    """The event processor reads text columns and blanks of a feature table from a file
    and from queue messages, scoring them as the model does; a record whose text feature
    is not text, or whose numeric feature is blank where training had none, is
    dead-lettered with the reason."""
    import csv

    from fraudlens.processor import process
    from fraudlens.queues import open_queue

    df = book.drop(columns="nameOrig").copy()
    df.loc[df.index % 7 == 0, "oldbalanceOrg"] = np.nan
    table = validate_frame(df, "features")
    models = tmp_path / "m"
    det = XGBoostDetector(n_estimators=30, early_stopping_rounds=None, refit=False)
    Registry(models).save(det.fit(table.X, table.y))
    assert det.fill_ and "type" in det.categories_
    new = df.drop(columns="isFraud").head(12).reset_index(drop=True)
    expected = det.decision_function(validate_frame(new, "features").X)

    def sink_scores(root: Path) -> dict[str, float]:
        out: dict[str, float] = {}
        for f in sorted(p for p in root.rglob("*.csv") if not p.name.startswith(".")):
            with open(f, newline="") as fh:
                out.update((r["transaction_id"], float(r["score"])) for r in csv.DictReader(fh))
        return out

    new.assign(transaction_id=[f"f{i}" for i in range(12)]).to_csv(
        tmp_path / "new.csv", index=False
    )
    stats = process(f"file:{tmp_path / 'new.csv'}", tmp_path / "sink-file", models)
    assert stats.records == 12
    got = sink_scores(tmp_path / "sink-file")
    np.testing.assert_allclose([got[f"f{i}"] for i in range(12)], expected, rtol=1e-6)

    url = f"sqlite:///{tmp_path / 'q.db'}"
    with open_queue(url, name="card-events") as q:
        records = [
            {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in rec.items()}
            for rec in new.to_dict(orient="records")
        ]
        for i, rec in enumerate(records):
            q.send({"record": {**rec, "transaction_id": f"q{i}"}})
        first = records[0]
        q.send({**first, "type": {"not": "text"}, "transaction_id": "bad-type"})
        q.send({**first, "amount": None, "transaction_id": "bad-blank"})
    stats = process(f"queue:{url}", tmp_path / "sink-queue", models, batch_size=5)
    assert stats.records == 12 and stats.dead_lettered == 2
    got = sink_scores(tmp_path / "sink-queue")
    np.testing.assert_allclose([got[f"q{i}"] for i in range(12)], expected, rtol=1e-6)
    with open_queue(url, name="card-events") as q:
        reasons = [d["reason"] for d in q.dead_letters()]
    assert any("'type'" in r and "is not text" in r for r in reasons), reasons
    assert any("'amount'" in r for r in reasons), reasons


def test_a_column_of_flags_is_read_as_two_levels(tmp_path: Path) -> None:
    """True/False (a card-present flag) had been refused as "not a number: True"; it is
    read as the levels True and False, from a file, a frame or JSON true/false."""
    rng = np.random.default_rng(4)
    n = 2000
    present = rng.random(n) < 0.7
    amount = rng.lognormal(3.0, 1.0, n)
    fraud = (~present & (rng.random(n) < 0.3)) | (rng.random(n) < 0.01)
    df = pd.DataFrame({"card_present": present, "amount": amount, "label": fraud.astype(int)})
    path = tmp_path / "flags.csv"
    df.to_csv(path, index=False)
    table = load_table(path)
    assert table.text == ("card_present",)
    assert set(table.X["card_present"]) == {"True", "False"}
    det = XGBoostDetector(n_estimators=30, early_stopping_rounds=None, refit=False)
    det.fit(table.X, table.y)
    assert det.categories_["card_present"]["levels"] == ["True", "False"]
    # JSON-style rows (Python bools, a blank) score as the file's text does.
    rows = pd.DataFrame({"card_present": [False, True, None], "amount": [20.0, 20.0, 20.0]})
    got = det.decision_function(validate_frame(rows, "features").X)
    want = det.decision_function(
        pd.DataFrame({"card_present": ["False", "True", None], "amount": [20.0] * 3})
    )
    np.testing.assert_allclose(got, want, rtol=1e-9)
    assert got[0] > got[1]  # fraud comes without the card here


def test_an_encoded_name_made_twice_is_refused() -> None:
    df = pd.DataFrame({"type": ["A"] * 10 + ["B"] * 10, "type=A": np.arange(20.0)})
    with pytest.raises(DataError, match="'type=A' would be made twice"):
        LogisticDetector().fit(df, np.tile([0, 1], 10))
