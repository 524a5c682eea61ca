"""Convert public bar files into fraudlens's k-lines contract (for the real-bar check).

Nothing here ships data: it reads files the user fetched themselves and writes a
``symbol, ts, open, high, low, close, volume`` table of 5-minute bars.

Formats read (by file name):

- ``*.feather`` with ``date, open, high, low, close, volume`` (freqtrade's candle
  files; ``date`` is the bar start, UTC). The symbol is the file name's part before
  the first ``-`` (``ETH_BTC-5m.feather`` -> ``ETH_BTC``).
- ``nt-*.csv``: ``YYYYMMDD HHMMSS;open;high;low;close;volume`` minute bars stamped at
  their end (NinjaTrader exports).
- ``*-min-001.txt`` / ``*-min-005.txt``: ``date,time,open,high,low,close,volume,oi``
  bars stamped at their end (backtrader's sample files).
- ``SYMBOL-5m*.csv`` / ``SYMBOL-1m*.csv`` without a header: Binance's public k-line
  files (``open_time`` in epoch milliseconds, open, high, low, close, volume, then
  close time and trade counts, 12 columns).

Bars shorter than 5 minutes are aggregated (first open, highest high, lowest low, last
close, summed volume) into 5-minute bars by start time.

Run:  python bench/_real_bars.py --out /work/ext/klines FILE [FILE ...]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pandas as pd

_FIVE = pd.Timedelta(minutes=5)


def _aggregate(df: pd.DataFrame, symbol: str) -> pd.DataFrame:
    """Bars (``start`` column) of any length <= 5 min -> 5-minute bars."""
    df = df.sort_values("start")
    key = df["start"].dt.floor("5min")
    g = df.groupby(key, sort=True)
    out = pd.DataFrame(
        {
            "open": g["open"].first(),
            "high": g["high"].max(),
            "low": g["low"].min(),
            "close": g["close"].last(),
            "volume": g["volume"].sum(),
        }
    )
    out.index.name = "ts"
    out = out.reset_index()
    out.insert(0, "symbol", symbol)
    return out


def _feather(path: Path) -> pd.DataFrame:
    d = pd.read_feather(path)
    symbol = path.name.split("-")[0]
    if "futures" in path.name:
        symbol += "_PERP"
    df = pd.DataFrame(
        {
            "start": pd.to_datetime(d["date"], utc=True),
            **{c: d[c].astype(float) for c in ("open", "high", "low", "close", "volume")},
        }
    )
    return _aggregate(df, symbol)


def _ninjatrader(path: Path, symbol: str) -> pd.DataFrame:
    d = pd.read_csv(
        path, sep=";", header=None, names=["t", "open", "high", "low", "close", "volume"]
    )
    end = pd.to_datetime(d["t"], format="%Y%m%d %H%M%S", utc=True)
    d["start"] = end - pd.Timedelta(minutes=1)
    return _aggregate(d, symbol)


def _backtrader(path: Path, symbol: str, minutes: int) -> pd.DataFrame:
    d = pd.read_csv(path, header=None, skiprows=1)
    d = d.iloc[:, :7]
    d.columns = ["date", "time", "open", "high", "low", "close", "volume"]
    end = pd.to_datetime(d["date"] + " " + d["time"], utc=True)
    d["start"] = end - pd.Timedelta(minutes=minutes)
    return _aggregate(d, symbol)


def _binance(path: Path) -> pd.DataFrame:
    d = pd.read_csv(path, header=None).iloc[:, :6]
    d.columns = ["open_time", "open", "high", "low", "close", "volume"]
    d["start"] = pd.to_datetime(d["open_time"], unit="ms", utc=True)
    return _aggregate(d, path.name.split("-")[0])


def convert(path: Path) -> pd.DataFrame:
    """One file in a known format -> 5-minute k-lines."""
    name = path.name
    if name.endswith(".feather"):
        return _feather(path)
    if name.startswith("nt-"):
        symbol = re.sub(r"^nt-|-minute.*$", "", name).upper()
        return _ninjatrader(path, symbol)
    m = re.search(r"-min-(\d+)\.txt$", name)
    if m:
        symbol = "ESTX50" if "volume" in name else "ESTX50_IDX"
        return _backtrader(path, symbol, int(m.group(1)))
    if re.search(r"-[15]m\b.*\.csv$", name):
        return _binance(path)
    raise SystemExit(f"{path}: unknown format")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True, help="output folder (one CSV per file)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for f in args.files:
        k = convert(f)
        dest = args.out / f"{k['symbol'].iloc[0]}.csv"
        # several source files of one symbol (e.g. two months) go into one table
        if dest.exists():
            old = pd.read_csv(dest, parse_dates=["ts"])
            k = pd.concat([old, k]).drop_duplicates(["symbol", "ts"]).sort_values("ts")
        k.to_csv(dest, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
        print(f"{f} -> {dest}: {len(k):,} bars")


if __name__ == "__main__":
    main()
