"""Ids given as floats (JSON numbers, Parquet float columns with gaps): a float names an
id only while it is an exact integer. Past 2**53 it does not, and int64 conversion had
turned 1e19 and 1e300 into the same id (int64's minimum), merging different accounts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudlens.errors import DataError
from fraudlens.market.data import load_trades, validate_trades
from fraudlens.market.simulate import simulate


def _trades_with(ids: list[object]) -> pd.DataFrame:
    trades = simulate(4, seed=0, days=1).trades.head(len(ids)).copy()
    trades["account_id"] = pd.Series(ids, index=trades.index, dtype=object)
    return trades


@pytest.mark.parametrize(
    ("ids", "row", "reason"),
    [
        ([7.0, 1e19], 2, "account_id 1e+19 is a number too large to be an exact id"),
        ([1e300, 7.0], 1, "account_id 1e+300 is a number too large to be an exact id"),
        (["a1", -1e19], 2, "account_id -1e+19 is a number too large to be an exact id"),
        ([7.0, float("inf")], 2, "account_id inf is not a finite number"),
    ],
)
def test_inexact_float_ids_are_refused(ids: list[object], row: int, reason: str) -> None:
    for frame in (_trades_with(ids), _trades_with(ids).astype({"account_id": "float64"})
                  if all(isinstance(v, float) for v in ids) else None):  # fmt: skip
        if frame is None:
            continue
        with pytest.raises(DataError) as info:
            validate_trades(frame, "records")
        assert (info.value.row, info.value.column) == (row, "account_id")
        assert info.value.reason.startswith(reason)


def test_exact_float_ids_read_as_integers(tmp_path: Path) -> None:
    largest = float(2**53 - 1)
    frame = _trades_with([12.0, np.nan, largest]).astype({"account_id": "float64"})
    frame.loc[frame.index[1], "account_id"] = 13.0
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    assert list(load_trades(path)["account_id"]) == ["12", "13", str(2**53 - 1)]
    gap = frame.copy()
    gap.loc[gap.index[1], "account_id"] = np.nan
    with pytest.raises(DataError) as info:
        validate_trades(gap, "records")
    assert (info.value.row, info.value.reason) == (2, "missing account_id")
