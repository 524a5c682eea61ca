"""Card loaders, validation errors and splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudlens.cards.data import (
    RAW_COLUMNS,
    ULB_FEATURES,
    CardTable,
    load_table,
    random_split,
    read_csv_rows,
    time_split,
    time_split_hours,
    validate_frame,
)
from fraudlens.cards.features import FEATURE_NAMES, transaction_features
from fraudlens.cards.simulate import simulate, write_transactions
from fraudlens.errors import DataError

ULB_DAY1 = Path(__file__).resolve().parents[3] / "shared/data/ulb_creditcard_day1.csv"


@pytest.fixture(scope="module")
def ulb() -> CardTable:
    if not ULB_DAY1.is_file():
        pytest.skip(f"the ULB day-1 file is not at {ULB_DAY1}")
    return load_table(ULB_DAY1, require_label=True)


def test_ulb_loader_on_the_real_file(ulb: CardTable) -> None:
    assert ulb.kind == "ulb"
    assert len(ulb) == 26_325
    assert ulb.n_frauds == 272
    assert ulb.X.shape == (26_325, 30)
    assert tuple(ulb.X.columns) == ULB_FEATURES
    assert (ulb.X.dtypes == np.float64).all()
    assert ulb.y is not None and ulb.y.dtype == np.int8
    assert ulb.label_column == "Class"
    assert ulb.time is not None and ulb.time.max() < 86_400
    assert ulb.ids is None
    # The first row of creditcard.csv.
    assert ulb.X.loc[0, "V1"] == pytest.approx(-1.3598071336738)
    assert ulb.X.loc[0, "Amount"] == pytest.approx(149.62)


def test_ulb_splits(ulb: CardTable) -> None:
    train, test = time_split_hours(ulb, 16)
    assert len(train) + len(test) == len(ulb)
    assert ulb.X["Time"].to_numpy()[train].max() < 16 * 3600
    assert ulb.X["Time"].to_numpy()[test].min() >= 16 * 3600
    assert len(train) > 0 and len(test) > 0
    train, test = random_split(ulb, 0.1, seed=0)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == len(ulb)
    assert ulb.y is not None
    assert int(ulb.y[test].sum()) == round(0.1 * 272)
    assert len(test) == round(0.1 * 272) + round(0.1 * (len(ulb) - 272))
    again, _ = random_split(ulb, 0.1, seed=0)
    np.testing.assert_array_equal(train, again)
    other, _ = random_split(ulb, 0.1, seed=1)
    assert not np.array_equal(train, other)
    part = ulb.subset(test)
    assert len(part) == len(test) and part.n_frauds == int(ulb.y[test].sum())
    assert part.X.index.equals(pd.RangeIndex(len(test)))


def _ulb_rows(n: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(n, 28)), columns=[f"V{i}" for i in range(1, 29)])
    df.insert(0, "Time", np.arange(n) * 10.0)
    df["Amount"] = [1.0, 2.5, 3.0, 4.0][:n]
    df["Class"] = [0, 1, 0, 0][:n]
    return df


def _write(tmp_path: Path, df: pd.DataFrame, name: str = "t.csv") -> Path:
    p = tmp_path / name
    df.to_csv(p, index=False)
    return p


@pytest.mark.parametrize(
    ("column", "value", "row", "message"),
    [
        ("V3", "abc", 3, "not a number: 'abc'"),
        ("V7", "", 2, "missing value"),
        ("V2", "inf", 4, "infinite value"),
        ("Amount", "-5", 2, "negative amount"),
        ("Class", "2", 3, "label must be 0, 1 or blank"),
    ],
)
def test_ulb_errors_name_row_and_column(
    tmp_path: Path, column: str, value: str, row: int, message: str
) -> None:
    df = _ulb_rows().astype(object)
    df.loc[row - 1, column] = value
    path = _write(tmp_path, df)
    with pytest.raises(DataError, match=message) as err:
        load_table(path)
    assert (err.value.row, err.value.column, err.value.file) == (row, column, str(path))
    assert f"row {row}" in str(err.value) and repr(column) in str(err.value)


def test_the_earliest_bad_row_is_named(tmp_path: Path) -> None:
    df = _ulb_rows().astype(object)
    df.loc[3, "V1"] = "x"  # row 4
    df.loc[1, "V20"] = "y"  # row 2: reported first
    with pytest.raises(DataError) as err:
        load_table(_write(tmp_path, df))
    assert (err.value.row, err.value.column) == (2, "V20")


def test_missing_columns_and_labels(tmp_path: Path) -> None:
    df = _ulb_rows().drop(columns=["V5"])
    with pytest.raises(DataError, match="missing column") as err:
        load_table(_write(tmp_path, df), kind="ulb")
    assert err.value.column == "V5"
    # Detected as a plain feature table without V5; no label is fine unless required.
    table = load_table(_write(tmp_path, df.drop(columns=["Class"])))
    assert table.kind == "features" and table.y is None
    with pytest.raises(DataError, match="no label column"):
        load_table(_write(tmp_path, df.drop(columns=["Class"])), require_label=True)
    with pytest.raises(DataError, match="label column not found") as err:
        load_table(_write(tmp_path, _ulb_rows()), label="fraud")
    assert err.value.column == "fraud"
    with pytest.raises(DataError, match="no such file"):
        load_table(tmp_path / "absent.csv")
    (tmp_path / "empty.csv").write_text("Time,Amount\n")
    with pytest.raises(DataError, match="no data rows"):
        load_table(tmp_path / "empty.csv")


def test_feature_table_with_named_label(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "transaction_id": ["a", "b", "c"],
            "f1": [0.1, 0.2, 0.3],
            "f2": [1, 2, 3],
            "is_fraud": [0, 0, 1],
        }
    )
    table = load_table(_write(tmp_path, df, "f.csv"))
    assert table.kind == "features" and table.label_column == "is_fraud"
    assert list(table.X.columns) == ["f1", "f2"] and table.ids is not None
    np.testing.assert_array_equal(table.y, [0, 0, 1])
    df.to_parquet(tmp_path / "f.parquet", index=False)
    pq = load_table(tmp_path / "f.parquet")
    pd.testing.assert_frame_equal(pq.X, table.X)
    bad = df.assign(f2=["1", "2", "two"])
    with pytest.raises(DataError) as err:
        load_table(_write(tmp_path, bad))
    assert (err.value.row, err.value.column) == (3, "f2")
    # A stray word in a column of numbers is a bad cell, said so (a column mostly of
    # text would be read as text levels).
    assert "this column is mostly numbers" in err.value.reason
    # A column named by --label overrides the default.
    named = validate_frame(df.assign(other=[1, 0, 0]), label="other")
    np.testing.assert_array_equal(named.y, [1, 0, 0])
    assert "is_fraud" in named.X.columns


def _raw_rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "transaction_id": [10, 11, 12, 13],
            "ts": [
                "2026-04-01T10:00:00",
                "2026-04-01T11:00:00Z",
                "2026-04-02 09:00:00+02:00",
                "2026-04-03",
            ],
            "customer_id": [1, 1, 2, 1],
            "terminal_id": [5, 6, 5, 5],
            "amount": [10.0, 20.0, 30.0, 40.0],
            "label": [0, 0, 1, 0],
        }
    )


def test_raw_table(tmp_path: Path) -> None:
    table = load_table(_write(tmp_path, _raw_rows()))
    assert table.kind == "raw" and table.label_column == "label"
    assert tuple(table.X.columns) == FEATURE_NAMES
    assert (table.X.dtypes == np.float32).all()
    assert str(table.frame["ts"].dtype) == "datetime64[ns, UTC]"
    assert table.frame["ts"][2] == pd.Timestamp("2026-04-02 07:00:00", tz="UTC")
    np.testing.assert_array_equal(table.ids, [10, 11, 12, 13])
    np.testing.assert_array_equal(table.X["customer_id_nb_tx_7day_window"], [1, 2, 1, 3])
    unlabelled = load_table(_write(tmp_path, _raw_rows().drop(columns=["label"])))
    assert unlabelled.y is None and unlabelled.kind == "raw"


def test_raw_table_with_another_label_name(sim: pd.DataFrame) -> None:
    renamed = sim.rename(columns={"label": "is_fraud"})
    table = validate_frame(renamed, source="<sim>")
    assert table.kind == "raw" and table.label_column == "is_fraud"
    # The terminal risk features use that column as the labels.
    assert table.X["terminal_id_risk_30day_window"].max() > 0
    pd.testing.assert_frame_equal(table.X, transaction_features(sim))


@pytest.mark.parametrize(
    ("column", "value", "row", "message"),
    [
        ("ts", "yesterday", 3, "unparseable timestamp"),
        ("amount", "-1", 2, "negative amount"),
        ("amount", "12,5", 4, "not a number"),
        ("transaction_id", 10, 3, r"duplicate transaction_id 10 \(first in row 1\)"),
        ("label", "yes", 2, "label must be 0, 1 or blank"),
        ("customer_id", None, 4, "missing value"),
    ],
)
def test_raw_errors_name_row_and_column(
    tmp_path: Path, column: str, value: object, row: int, message: str
) -> None:
    df = _raw_rows().astype(object)
    df.loc[row - 1, column] = value
    with pytest.raises(DataError, match=message) as err:
        load_table(_write(tmp_path, df))
    assert (err.value.row, err.value.column) == (row, column)


def test_raw_missing_column(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing column") as err:
        load_table(_write(tmp_path, _raw_rows().drop(columns=["terminal_id"])), kind="raw")
    assert err.value.column == "terminal_id"


def test_read_csv_rows() -> None:
    X = read_csv_rows("1,2,3\n4, 5 ,6e1\n\n", 3)
    np.testing.assert_array_equal(X, [[1, 2, 3], [4, 5, 60]])
    with pytest.raises(DataError, match="expected 3 comma-separated values, got 2") as err:
        read_csv_rows("1,2,3\n1,2\n", 3)
    assert err.value.row == 2
    with pytest.raises(DataError, match="not a finite number: 'x'") as err:
        read_csv_rows("1,2,3\n\n4,x,6\n", 3)
    assert (err.value.row, err.value.column) == (3, "2")
    with pytest.raises(DataError, match="not a finite number: 'nan'") as err:
        read_csv_rows("nan,1,1", 3)
    assert (err.value.row, err.value.column) == (1, "1")
    with pytest.raises(DataError, match="missing value") as err:
        read_csv_rows("1,,3", 3)
    assert err.value.column == "2"
    with pytest.raises(DataError, match="no rows"):
        read_csv_rows("\n", 3)


@pytest.fixture(scope="module")
def sim() -> pd.DataFrame:
    return simulate(300, 600, 40, seed=4)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_simulated_file_round_trip(tmp_path: Path, sim: pd.DataFrame, suffix: str) -> None:
    path = write_transactions(sim, tmp_path / f"tx{suffix}")
    table = load_table(path, require_label=True)
    assert table.kind == "raw" and len(table) == len(sim)
    assert set(RAW_COLUMNS) <= set(table.frame.columns)
    pd.testing.assert_series_equal(table.frame["ts"], sim["ts"], check_names=False)
    np.testing.assert_array_equal(table.y, sim["label"].to_numpy())
    pd.testing.assert_frame_equal(table.X, transaction_features(sim))


def test_time_split_by_day(sim: pd.DataFrame) -> None:
    table = validate_frame(sim, "raw", "<sim>")
    train, test = time_split(table, start="2026-04-05", drop_known_frauds=False)
    days = sim["tx_time_days"].to_numpy()
    assert set(np.unique(days[train])) == set(range(4, 11))
    assert set(np.unique(days[test])) == set(range(18, 25))
    kept_train, kept_test = time_split(table, start="2026-04-05")
    np.testing.assert_array_equal(kept_train, train)
    assert 0 < len(kept_test) < len(test)
    # Every dropped test row belongs to a card with a fraud known by then.
    dropped = np.setdiff1d(test, kept_test)
    y = sim["label"].to_numpy()
    cust = sim["customer_id"].to_numpy()
    for i in dropped[:50]:
        known = (cust == cust[i]) & (y == 1) & (days >= 4) & (days < days[i] - 7)
        assert known.any()
    for i in kept_test[:: max(1, len(kept_test) // 200)]:
        known = (cust == cust[i]) & (y == 1) & (days >= 4) & (days < days[i] - 7)
        assert not known.any()
    # Day numbers for ULB-style seconds.
    secs = CardTable(
        X=pd.DataFrame({"Time": [0.0, 90_000.0, 200_000.0]}),
        y=None,
        kind="ulb",
        time=pd.Series([0.0, 90_000.0, 200_000.0]),
    )
    tr, te = time_split(secs, train_days=1, gap_days=0, test_days=1)
    np.testing.assert_array_equal(tr, [0])
    np.testing.assert_array_equal(te, [1])
    tr, te = time_split(secs, train_days=1, gap_days=1, test_days=1, start=0)
    np.testing.assert_array_equal(te, [2])


def test_time_split_needs_time() -> None:
    table = CardTable(X=pd.DataFrame({"a": [1.0]}), y=None, kind="features")
    with pytest.raises(DataError, match="no time column"):
        time_split(table)


# ------------------------------------------------------------------ deployment inputs


def _handbook_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Raw rows under the Fraud Detection Handbook's column names (and its extras)."""
    out = df.rename(
        columns={
            "transaction_id": "TRANSACTION_ID",
            "ts": "TX_DATETIME",
            "customer_id": "CUSTOMER_ID",
            "terminal_id": "TERMINAL_ID",
            "amount": "TX_AMOUNT",
            "label": "TX_FRAUD",
        }
    )
    out["TX_FRAUD_SCENARIO"] = out["TX_FRAUD"]
    return out


def test_handbook_columns_read_as_raw_transactions(tmp_path: Path) -> None:
    df = simulate(40, 80, 12, seed=4).drop(columns=["scenario", "tx_time_seconds", "tx_time_days"])
    plain = validate_frame(df, "auto", "<plain>")
    hb = _handbook_frame(df)
    hb["TX_DATETIME"] = hb["TX_DATETIME"].dt.tz_localize(None)  # the handbook's naive UTC
    table = load_table(_write(tmp_path, hb))
    assert table.kind == "raw" and table.label_column == "label"
    pd.testing.assert_frame_equal(table.X, plain.X)
    # The scenario column is not a feature.
    assert "TX_FRAUD_SCENARIO" not in table.X.columns


def test_a_folder_of_daily_files_is_one_table(tmp_path: Path) -> None:
    df = simulate(40, 80, 6, seed=5).drop(columns=["scenario", "tx_time_seconds", "tx_time_days"])
    days = df["ts"].dt.strftime("%Y-%m-%d")
    folder = tmp_path / "days"
    folder.mkdir()
    for day, part in df.groupby(days):
        # Parquet and CSV mixed: both are read, in file-name order.
        if day.endswith(("1", "3")):
            part.to_parquet(folder / f"{day}.parquet")
        else:
            part.to_csv(folder / f"{day}.csv", index=False)
    (folder / "README.txt").write_text("not a table")
    table = load_table(folder)
    whole = validate_frame(df.reset_index(drop=True), "raw", "<whole>")
    np.testing.assert_array_equal(table.ids.to_numpy(), whole.ids.to_numpy())
    pd.testing.assert_frame_equal(table.X, whole.X)
    # A bad cell is named by its own file and row in that file.
    second = sorted(folder.glob("*.csv"))[1]
    bad = pd.read_csv(second, dtype={"amount": str})
    bad.loc[2, "amount"] = "lots"
    bad.to_csv(second, index=False)
    with pytest.raises(DataError) as err:
        load_table(folder)
    assert err.value.file == str(second) and err.value.row == 3 and err.value.column == "amount"


def test_pickle_files_need_trust(tmp_path: Path) -> None:
    df = _raw_rows()
    folder = tmp_path / "pkl"
    folder.mkdir()
    df.iloc[:2].to_pickle(folder / "a.pkl")
    df.iloc[2:].to_pickle(folder / "b.pkl")
    for path in (folder, folder / "a.pkl"):
        with pytest.raises(DataError, match="pickle file can run code") as err:
            load_table(path)
        assert "--trust-pickle" in str(err.value)
    table = load_table(folder, trust_pickle=True)
    assert len(table) == 4 and table.kind == "raw"
    with pytest.raises(DataError, match="no such file or folder"):
        load_table(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no table files"):
        load_table(empty)


def test_blank_labels_are_unknown(tmp_path: Path) -> None:
    df = _raw_rows().astype({"label": object})
    df.loc[[1, 3], "label"] = ""
    table = load_table(_write(tmp_path, df))
    assert table.known is not None and table.known.tolist() == [True, False, True, False]
    assert table.n_unknown == 2 and table.labelled.tolist() == [0, 2]
    assert table.y is not None and table.y.tolist() == [0, 0, 1, 0]
    # The features read unknown labels as not (yet) fraud, as missing ones.
    zero = df.assign(label=df["label"].replace("", 0).astype(int))
    pd.testing.assert_frame_equal(table.X, load_table(_write(tmp_path, zero)).X)
    df["label"] = ""
    with pytest.raises(DataError, match="every label is blank"):
        load_table(_write(tmp_path, df), require_label=True)
    ulb = pd.DataFrame({c: [0.5, 1.0] for c in ULB_FEATURES}).assign(Class=[1.0, np.nan])
    t = validate_frame(ulb, "ulb", "<ulb>")
    assert t.n_unknown == 1 and t.labelled.tolist() == [0]


def test_holdout_split_windows(tmp_path: Path) -> None:
    df = simulate(200, 400, 40, seed=6).drop(
        columns=["scenario", "tx_time_seconds", "tx_time_days"]
    )
    table = validate_frame(df, "raw", "<sim>")
    from fraudlens.cards.data import holdout_split, redo_holdout

    day = 86_400.0
    train, test, desc = holdout_split(
        table, test_seconds=7 * day, gap_seconds=7 * day, train_seconds=7 * day
    )
    # Whole days ending after the latest row: the handbook split of the latest 21 days.
    last = df["ts"].max().normalize()
    start = last - pd.Timedelta(days=20)
    ref_train, ref_test = time_split(table, start=start)
    np.testing.assert_array_equal(train, ref_train)
    np.testing.assert_array_equal(test, ref_test)
    assert desc["known_frauds_removed"] and desc["test_rows"] == len(test)
    np.testing.assert_array_equal(redo_holdout(table, desc)[1], test)
    # Rows with unknown labels are never trained or measured on.
    unknown = np.zeros(len(df), dtype=bool)
    unknown[::5] = True
    df2 = df.astype({"label": float})
    df2.loc[unknown, "label"] = np.nan
    t2 = validate_frame(df2, "raw", "<sim>")
    tr2, te2, _ = holdout_split(t2, test_seconds=7 * day, gap_seconds=7 * day)
    assert not unknown[tr2].any() and not unknown[te2].any()
    # Before the gap, everything trains when no training length is given.
    assert table.time is not None
    assert table.time.iloc[tr2].min() == table.time[~unknown].min()
    with pytest.raises(DataError, match="holds no labelled rows"):
        holdout_split(table, test_seconds=day, test_end="2000-01-01")


def test_holdout_split_in_seconds_and_hours(ulb: CardTable) -> None:
    from fraudlens.cards.data import holdout_split

    train, test, desc = holdout_split(ulb, test_seconds=8 * 3600)
    ref_train, ref_test = time_split_hours(ulb, 16)
    np.testing.assert_array_equal(train, ref_train)
    np.testing.assert_array_equal(test, ref_test)
    assert (desc["train_end"], desc["test_end"]) == (57_600, 86_400)
    train, test, _ = holdout_split(
        ulb, test_seconds=4 * 3600, gap_seconds=2 * 3600, train_seconds=6 * 3600, test_end=72_000
    )
    h = ulb.X["Time"].to_numpy() / 3600
    assert h[train].min() >= 8 and h[train].max() < 14
    assert h[test].min() >= 16 and h[test].max() < 20


def test_with_history_gives_the_features_of_the_whole_file() -> None:
    from fraudlens.cards.data import with_history

    df = simulate(60, 120, 50, seed=8).drop(columns=["scenario", "tx_time_seconds", "tx_time_days"])
    whole = validate_frame(df, "raw", "<whole>")
    cut = df["ts"].max() - pd.Timedelta(days=5)
    past, new = df[df["ts"] <= cut], df[df["ts"] > cut].drop(columns=["label"])
    alone = validate_frame(new, "raw", "<new>")
    hist = validate_frame(past, "raw", "<past>")
    joined = with_history(alone, hist)
    assert joined.history_rows == len(past)
    idx = np.flatnonzero((df["ts"] > cut).to_numpy())
    np.testing.assert_array_equal(joined.X.to_numpy(), whole.X.iloc[idx].to_numpy())
    # Without it the terminal risk is all zero; with it, it is not.
    assert (alone.X["terminal_id_risk_30day_window"] == 0).all()
    assert (joined.X["terminal_id_risk_30day_window"] > 0).any()
    # Rows given twice count once (the scored row wins).
    again = with_history(alone, validate_frame(df, "raw", "<all>"))
    np.testing.assert_array_equal(again.X.to_numpy(), joined.X.to_numpy())
    with pytest.raises(DataError, match="no label column"):
        with_history(alone, validate_frame(past.drop(columns=["label"]), "raw", "<x>"))


def test_read_csv_rows_names_the_expected_columns() -> None:
    with pytest.raises(DataError) as err:
        read_csv_rows("1,2\n3", 2, ["a", "b"])
    assert "expected 2 comma-separated values (a, b), got 1" in str(err.value)
    assert err.value.row == 2


@pytest.mark.parametrize(
    "missing", ["amount", "ts", "transaction_id", "customer_id", "terminal_id"]
)
def test_raw_transactions_missing_a_column_are_refused_naming_it(
    tmp_path: Path, missing: str
) -> None:
    # Without its amount column (or its customer_id, or its terminal_id) a raw file had
    # been read as a feature table and trained on with the ids (and the simulator's
    # scenario column) as features: validation ROC AUC 1.0.
    raw = simulate(40, 80, 5, seed=1)
    path = tmp_path / "tx.csv"
    raw.drop(columns=[missing]).to_csv(path, index=False)
    with pytest.raises(DataError, match="missing column") as exc:
        load_table(path)
    assert (exc.value.file, exc.value.column) == (str(path), missing)


@pytest.mark.parametrize(
    "name", ["id", "ID", "Index", "Unnamed: 0", "TransactionID", "user_id", "accountId"]
)
def test_row_ids_of_a_feature_table_are_no_features(tmp_path: Path, name: str) -> None:
    """A feature table's row id (``id``, or the ``Unnamed: 0`` of a saved pandas index)
    had been a feature: on a file sorted by class it ranks every row perfectly."""
    df = pd.DataFrame({name: [0, 1, 2, 3], "f1": [0.3, 0.1, 0.4, 0.2], "Class": [0, 0, 1, 1]})
    table = load_table(_write(tmp_path, df, "f.csv"))
    assert table.kind == "features" and list(table.X.columns) == ["f1"]
    assert table.set_aside == (name,)
    assert list(table.subset([1, 2]).set_aside) == [name]
    with pytest.raises(DataError, match=r"no feature columns \(.*set aside as row ids\)"):
        validate_frame(df[[name, "Class"]])
    # A column that only contains the words is a feature; so is one named as the label.
    kept = validate_frame(df.rename(columns={name: "order_id_count"}))
    assert "order_id_count" in kept.X.columns and kept.set_aside == ()
    for word in ("paid", "valid", "card1", "grid"):
        assert validate_frame(df.rename(columns={name: word})).set_aside == ()
    assert validate_frame(df.assign(**{name: [0, 1, 0, 1]}), label=name).set_aside == ()


def test_is_fraud_in_camel_case_is_a_label() -> None:
    table = validate_frame(pd.DataFrame({"f1": [0.1, 0.2], "isFraud": [0, 1]}))
    assert table.label_column == "isFraud" and list(table.X.columns) == ["f1"]
