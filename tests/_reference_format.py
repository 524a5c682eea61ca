"""Files in the reference solution's format (a ``time,high,low`` k-line CSV, per-account
``time,price`` CSVs in ``buy/`` and ``sell/``), shared by the importer's tests."""

from __future__ import annotations

from pathlib import Path

#: Three bars, newest first as the market-data API delivers them, no zone.
KLINES = (
    "time,high,low\n"
    "2022-01-04 19:40:00,231.5,229.0\n"
    "2022-01-04 19:35:00,230.0,228.0\n"
    "2022-01-04 19:30:00,229.0,226.0\n"
)
#: A take-over's two round trips at the bars' extremes (buy and sell rows).
BUYS = "2022-01-04 19:30:00,226.1\n2022-01-04 19:40:00,229.2\n"
SELLS = "2022-01-04 19:30:00,228.9\n2022-01-04 19:40:00,231.3\n"


def write_reference(
    root: Path, buys: dict[str, str], sells: dict[str, str]
) -> tuple[Path, Path, Path]:
    """Write ``COIN.csv`` and the ``buy/`` and ``sell/`` files (name -> rows after the
    ``time,price`` header) under ``root``; return the three paths."""
    kl = root / "COIN.csv"
    kl.write_text(KLINES)
    buy, sell = root / "buy", root / "sell"
    for folder, files in ((buy, buys), (sell, sells)):
        folder.mkdir()
        for name, rows in files.items():
            (folder / name).write_text("time,price\n" + rows)
    return kl, buy, sell
