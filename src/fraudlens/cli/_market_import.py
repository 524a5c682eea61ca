"""``fraudlens market import-reference``: the reference system's files to fraudlens's own.

Kept apart from :mod:`fraudlens.cli.market` (mounted into the same ``market`` group) so
the converter stays a small, separate piece over :func:`fraudlens.market.data.import_reference`.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from fraudlens.cli._common import (
    check_outputs,
    cli_errors,
    console,
    fraudlens_command,
    plural,
    working,
)


@cli_errors
def import_reference(
    klines: Annotated[
        Path, typer.Option(help="The reference's k-line CSV (columns time, high, low).")
    ],
    buy: Annotated[
        Path, typer.Option(help="Folder of per-account buy CSVs (time, price), e.g. buy_7.csv.")
    ],
    sell: Annotated[
        Path, typer.Option(help="Folder of per-account sell CSVs (time, price), e.g. sell_7.csv.")
    ],
    out: Annotated[Path, typer.Option(help="Output folder for klines, trades (and labels).")],
    symbol: Annotated[str, typer.Option(help="Symbol given to the bars and every trade.")] = "COIN",
    labels: Annotated[
        Path | None, typer.Option(help="Optional labels file (account_id, label).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="csv, csv.gz or parquet.")] = "csv",
) -> None:
    """Convert the reference format (a time,high,low k-line CSV and per-account buy/ and
    sell/ CSVs) into fraudlens's klines, trades (and labels) files.

    The reference has no open, close or volume: open and close become (high + low) / 2 and
    volume 0. An account is its file name without .csv and without a buy_/sell_ prefix;
    every trade gets quantity 1. Bad input is reported with its file, row and column.
    """
    from fraudlens.errors import ConfigError
    from fraudlens.market.data import import_reference as run
    from fraudlens.market.data import write_market

    if fmt not in ("csv", "csv.gz", "parquet"):
        raise ConfigError(f"--format must be csv, csv.gz or parquet, not {fmt!r}")
    # (an --out folder holding the reference's own klines.csv had replaced it)
    for name in ("klines", "trades", "labels"):
        check_outputs({"--klines": klines, "--labels": labels}, {"--out": out / f"{name}.{fmt}"})
    with working("reading and validating the reference files"):
        data = run(klines, buy, sell, symbol=symbol, labels=labels)
    paths = write_market(data, out, fmt=fmt)
    accounts = len(data.account_ids)
    console.print(
        f"imported {plural(len(data.klines), 'bar')} and {plural(len(data.trades), 'trade')} of "
        f"{plural(accounts, 'account')} (symbol {symbol}) to {out}"
    )
    for name, path in paths.items():
        console.print(f"  {name}: {path}", soft_wrap=True, highlight=False)
    k, t = (shlex.quote(str(paths[n])) for n in ("klines", "trades"))
    exe = fraudlens_command()
    steps = [
        f"{exe} market score --klines {k} --trades {t} "
        f"--out {shlex.quote(str(Path(out) / 'scores.csv'))}"
    ]
    registry = _default_registry()
    if _has_market_model(registry):
        console.print(
            "score them with the default registry's market model (add -m FOLDER for another):",
            highlight=False,
        )
    else:
        # The score command alone would fail here ("no model registry at models"): train a
        # model on simulated accounts first, into the default registry the command reads.
        sim = "market-sim"
        console.print(
            f"no market model in the default registry ({registry}) yet: train one on "
            "simulated accounts, then score them (or add -m FOLDER to score with another "
            "registry's):",
            soft_wrap=True,
            highlight=False,
        )
        steps[:0] = [f"{exe} market simulate --out {sim}", f"{exe} market train --data {sim}"]
    for step in steps:
        console.print(f"  $ {step}", soft_wrap=True, highlight=False, markup=False)


def _default_registry() -> Path:
    # The registry `market score` reads without -m.
    from fraudlens.config import get_settings

    return Path(get_settings().models_dir)


def _has_market_model(root: Path) -> bool:
    from fraudlens.errors import FraudlensError
    from fraudlens.registry import Registry

    try:
        Registry(root).get("market")
    except FraudlensError:
        return False
    return True
