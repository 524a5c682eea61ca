"""The market loader shares the card loader's header checks: a column named twice (even
as "ts" and " ts", which the loader trims alike) is refused naming both positions."""

from __future__ import annotations

from pathlib import Path

import pytest

from fraudlens.errors import DataError
from fraudlens.market.data import load_klines

BAR = "AAA,2024-01-01T00:00:00Z,1,1,1,1,1"


@pytest.mark.parametrize("extra", ["ts", " ts"])
def test_a_column_named_twice_is_refused(tmp_path: Path, extra: str) -> None:
    path = tmp_path / "klines.csv"
    path.write_text(f"symbol,ts,open,high,low,close,volume,{extra}\n{BAR},x\n")
    with pytest.raises(DataError, match="columns 2 and 8 are both named 'ts'") as info:
        load_klines(path)
    assert (info.value.file, info.value.row, info.value.column) == (str(path), 0, "ts")
