"""``fraudlens cards``: simulate, train, evaluate, score, benchmark.

How ``train`` trains (``--split time``, the default: the deployment protocol)
----------------------------------------------------------------------------
1. A held-out window at the end of the labelled data, a gap before it, a training window
   before that. Raw transactions spanning 21 days or more: 7 days to train, a 7-day gap
   (the label delay) and 7 days held out, whole days, the latest ones (the handbook's
   protocol; customers with a fraud known before a held-out day are left out of it).
   Anything else (ULB's ``Time`` in seconds, feature tables, shorter data): the last third
   of the time span, rounded to whole hours, is held out, with no gap, and everything
   before trains (on the ULB day-1 file: the first 16 hours against the last 8).
   ``--train-days/--gap-days/--test-days`` (or ``--train-hours``, ...) and
   ``--test-end`` set the windows.
2. The validation model is fitted on the training window. The held-out window chooses its
   threshold (best F1 by default) and, for XGBoost, its number of boosting rounds, and
   gives the validation metrics that are printed and stored.
3. Unless ``--no-refit``, the model is fitted again on every labelled row of the file,
   with the rounds and threshold of step 2, and that refitted model is stored. The
   validation model's scores of the held-out rows are stored beside it, so that
   ``evaluate`` on the same file reports them rather than the refitted model's scores
   of rows it was trained on.

Rows with a blank label are unknown: they are not trained or measured on (their window
features still see them). On ULB tables the model ignores ``Time`` (the detectors'
``time_of_day="auto"``): the hour of the day told day 1's model when its bursts of fraud
came, which cost average precision on hours it had not seen.

``--split random`` is the reference's stratified 90/10 split (a random 10 % held out).
"""

from __future__ import annotations

import json
import math
import time
from enum import Enum, StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from fraudlens._io import write_csv
from fraudlens.cli._common import (
    ModelDir,
    SeedOpt,
    check_outputs,
    cli_errors,
    console,
    memory_short,
    plural,
    progress,
    registry_root,
)
from fraudlens.errors import ConfigError, DataError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np

    from fraudlens.cards._tabular import _TabularDetector
    from fraudlens.cards.data import CardTable

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None)
stdout = Console(markup=False)  # (as the console of cli._common: paths are no markup)


class Kind(StrEnum):
    """Card detectors."""

    logistic = "logistic"
    xgboost = "xgboost"
    anomaly = "anomaly"


class Preset(StrEnum):
    """Hyperparameter presets."""

    default = "default"
    reference = "reference"


class Split(StrEnum):
    """How ``train`` holds rows out."""

    time = "time"
    random = "random"


class TimeUnit(StrEnum):
    """What one unit of a numeric ``--time-column`` is."""

    seconds = "seconds"
    minutes = "minutes"
    hours = "hours"
    days = "days"


_UNIT_SECONDS = {"seconds": 1.0, "minutes": 60.0, "hours": 3600.0, "days": 86_400.0}


class Oversample(StrEnum):
    """Oversampling of frauds."""

    smote = "smote"
    random = "random"


class Rows(StrEnum):
    """Rows ``evaluate`` reports on."""

    auto = "auto"
    test = "test"
    all = "all"


class Protocol(StrEnum):
    """Benchmark protocols."""

    handbook = "handbook"


class Ties(StrEnum):
    """Order of one customer's same-time rows in the window features."""

    input = "input"
    handbook = "handbook"


_KINDS = tuple(k.value for k in Kind)

DataOpt = Annotated[
    Path,
    typer.Option(
        "--data",
        "-d",
        help="Card table: ULB CSV, raw transactions or a feature table (CSV or Parquet), "
        "or a folder of such files.",
    ),
]
LabelOpt = Annotated[
    str | None,
    typer.Option(
        "--label",
        help="Label column [default: Class, label, is_fraud or isFraud]; blank = unknown.",
    ),
]
DetectorOpt = Annotated[
    Kind | None,
    typer.Option("--detector", help="Which card model [default: the cards default]."),
]
TrustPickleOpt = Annotated[
    bool,
    typer.Option(
        "--trust-pickle",
        help="Also read .pkl files (unpickling runs code from the file: trusted files only).",
    ),
]


def _value(x: Any) -> Any:
    """An Enum member's value (commands may also be called with plain strings)."""
    return x.value if isinstance(x, Enum) else x


def _registry(model_dir: Path | None) -> Any:
    from fraudlens.registry import Registry

    # A model's or a version's folder given for the registry is refused, naming the right one.
    return Registry(registry_root(model_dir))


def _model_name(detector: Any) -> str:
    detector = _value(detector)
    if detector is None:
        return "cards"
    short = str(detector).removeprefix("cards-")
    if short not in _KINDS:
        raise ConfigError(f"unknown detector {detector!r}; use one of {', '.join(_KINDS)}")
    return f"cards-{short}"


def make_detector(
    kind: Any,
    preset: Any = "default",
    *,
    oversample: Any = None,
    threshold: str | None = None,
    seed: int = 0,
    time_of_day: str | None = None,
) -> _TabularDetector:
    """Build an unfitted card detector from CLI-style options."""
    from fraudlens.cards.detectors import (
        AnomalyDetector,
        LogisticDetector,
        XGBoostDetector,
        parse_threshold_strategy,
    )

    kind, preset, oversample = _value(kind), _value(preset), _value(oversample)
    classes: dict[str, Any] = {
        "logistic": LogisticDetector,
        "xgboost": XGBoostDetector,
        "anomaly": AnomalyDetector,
    }
    short = str(kind).removeprefix("cards-")
    if short not in classes:
        raise ConfigError(f"unknown detector {kind!r}; use one of {', '.join(_KINDS)}")
    if preset not in ("default", "reference"):
        raise ConfigError(f"unknown preset {preset!r}; use default or reference")
    cls = classes[short]
    det: _TabularDetector = cls.reference() if preset == "reference" else cls()
    det.random_state = seed
    if time_of_day is not None:
        det.time_of_day = time_of_day
    if oversample is not None:
        if short == "anomaly":
            raise ConfigError("--oversample applies to supervised detectors only")
        if oversample not in ("smote", "random"):
            raise ConfigError(f"--oversample must be smote or random, not {oversample!r}")
        det.oversample = oversample
    if threshold is not None:
        strategy = parse_threshold_strategy(threshold)  # fail early on a typo
        if strategy is not None and strategy[0] == "fixed":
            import math

            value = strategy[1]
            # Scores are probabilities: nan, inf or a number outside [0, 1] used to be
            # stored as the model's threshold (nan flags nothing, -1 everything).
            if value is None or not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ConfigError(
                    f"--threshold {threshold!r}: a fixed threshold is a score between 0 "
                    "and 1 (flagged = score > it)"
                )
        det.threshold_strategy = threshold
    return det


# --------------------------------------------------------------------------- splits

_HOUR = 3600.0
_DAY = 86_400.0
#: Longest train, gap or held-out window (100 years).
_MAX_WINDOW_SECONDS = 36_500 * _DAY


def _window(days: float | None, hours: float | None, name: str) -> float | None:
    """One window length in seconds from ``--NAME-days`` or ``--NAME-hours`` (not both)."""
    import math

    if days is not None and hours is not None:
        raise ConfigError(f"give --{name}-days or --{name}-hours, not both")
    seconds = None
    if days is not None:
        seconds = float(days) * _DAY
    elif hours is not None:
        seconds = float(hours) * _HOUR
    # inf used to end in pandas' OutOfBoundsTimedelta traceback.
    if seconds is not None and not (math.isfinite(seconds) and seconds <= _MAX_WINDOW_SECONDS):
        given = f"--{name}-days {days:g}" if days is not None else f"--{name}-hours {hours:g}"
        raise ConfigError(f"{given}: a window is at most {_MAX_WINDOW_SECONDS / _DAY:,.0f} days")
    return seconds


def _span_seconds(table: CardTable) -> float:
    import pandas as pd

    assert table.time is not None
    t = table.time.iloc[table.labelled]
    if isinstance(t.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(t.dtype):
        return float((t.max() - t.min()) / pd.Timedelta(seconds=1))
    return float(t.max()) - float(t.min())


def split_table(
    table: CardTable,
    method: Any = "time",
    seed: int = 0,
    *,
    train: float | None = None,
    gap: float | None = None,
    test: float | None = None,
    test_end: str | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Training and held-out row positions (labelled rows only) and a description.

    ``train``, ``gap`` and ``test`` are window lengths in seconds (None: the defaults in
    the module docstring); ``test_end`` the end of the held-out window.
    """
    import numpy as np

    from fraudlens.cards.data import holdout_split, random_split

    method = _value(method)
    if method == "random":
        labelled = table.labelled
        part = table.subset(labelled)
        tr, te = random_split(part, test_size=0.1, seed=seed, stratify=True)
        return (
            labelled[tr],
            labelled[te],
            {"method": "random", "test_size": 0.1, "seed": seed},
        )
    if method != "time":
        raise ConfigError(f"--split must be time or random, not {method!r}")
    if table.time is None:
        raise DataError(
            "a time split needs a Time or ts column, a column of date-times, or "
            "--time-column naming the column that times the rows; else use --split random",
            file=table.source,
        )
    span = _span_seconds(table)
    if span <= 0 and test is None:
        # (the default held-out window, a third of no time, had been refused as "window
        # lengths must be positive", which no option given had set)
        column = "ts" if table.frame is not None and "ts" in table.frame.columns else "Time"
        raise DataError(
            "every labelled row has the same time: a time split needs a span; use --split random",
            file=table.source,
            column=column,
        )
    handbook = table.kind == "raw" and span >= 20 * _DAY
    if handbook:
        d_train, d_gap, d_test = 7 * _DAY, 7 * _DAY, 7 * _DAY
    else:
        # The last third, in whole hours when the span allows it (ULB day 1: 8 of 24 h).
        third = span / 3.0
        d_test = max(_HOUR, round(third / _HOUR) * _HOUR) if third >= 2 * _HOUR else third
        d_train, d_gap = None, 0.0
    end: Any = test_end
    if test_end is not None and table.kind == "raw":
        end = _timestamp(test_end, "--test-end")
    elif test_end is not None:
        import pandas as pd

        if not (
            isinstance(table.time.dtype, pd.DatetimeTZDtype)
            or pd.api.types.is_datetime64_dtype(table.time.dtype)
        ):
            try:
                end = float(test_end)
            except ValueError:
                raise ConfigError(
                    f"--test-end {test_end!r}: this table's time is in seconds ({table.kind}); "
                    "give a number of seconds"
                ) from None
    tr, te, desc = holdout_split(
        table,
        test_seconds=test if test is not None else d_test,
        gap_seconds=gap if gap is not None else d_gap,
        train_seconds=train if train is not None else d_train,
        test_end=end,
    )
    if handbook and train is None and gap is None and test is None:
        desc["protocol"] = "handbook 7/7/7 days"
    return np.asarray(tr), np.asarray(te), desc


def _timestamp(text: str, option: str) -> Any:
    """``text`` as a UTC timestamp; ConfigError naming ``option`` when it is not one (a
    bad date used to end in pandas' DateParseError traceback)."""
    import pandas as pd

    from fraudlens._time import utc

    try:
        value = pd.Timestamp(text)
    except (ValueError, TypeError, OverflowError):
        value = pd.NaT
    if value is pd.NaT:
        raise ConfigError(f"{option} {text!r} is not a date or time (e.g. 2026-04-25)")
    try:
        value = utc(value)
    except (OverflowError, ValueError):
        value = pd.NaT
    # A zone can move it past year 9999 (or before year 1) in UTC, a timestamp pandas
    # holds but cannot show or take the date of (NotImplementedError tracebacks).
    if value is pd.NaT or not 1 <= value.year <= 9999:
        raise ConfigError(f"{option} {text!r} lies outside years 1-9999 in UTC")
    return value


def _redo_split(table: CardTable, desc: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Recompute a split recorded by ``train``."""
    import pandas as pd

    from fraudlens.cards.data import random_split, redo_holdout, time_split, time_split_hours

    if desc.get("method") == "random":
        labelled = table.labelled
        tr, te = random_split(
            table.subset(labelled), test_size=float(desc["test_size"]), seed=int(desc["seed"])
        )
        return labelled[tr], labelled[te]
    if desc.get("method") == "holdout":
        return redo_holdout(table, desc)
    # Splits recorded by earlier versions.
    if "start" in desc:
        return time_split(
            table,
            train_days=desc["train_days"],
            gap_days=desc["gap_days"],
            test_days=desc["test_days"],
            start=pd.Timestamp(desc["start"]),
        )
    return time_split_hours(table, train_hours=float(desc["train_hours"]))


# --------------------------------------------------------------------------- output


def _load(
    path: Path,
    label: str | None,
    require_label: bool,
    *,
    trust_pickle: bool = False,
    kind: str = "auto",
    time_column: str | None = None,
    time_unit: str | float = "seconds",
    drop: Sequence[str] = (),
    drop_strict: bool = False,
    time_of_day: bool = False,
) -> CardTable:
    from fraudlens.cards.data import load_table

    with progress(transient=True) as bar:
        bar.add_task(f"reading {path.name} and building features", total=None)
        return load_table(
            path,
            label=label,
            require_label=require_label,
            trust_pickle=trust_pickle,
            kind=kind,
            time_column=time_column,
            time_unit=_UNIT_SECONDS[time_unit] if isinstance(time_unit, str) else time_unit,
            drop=drop,
            drop_strict=drop_strict,
            time_of_day=time_of_day,
        )


def _dropped(metadata: dict[str, Any], *also: Any) -> list[str]:
    """The columns a stored model was trained without (``cards train --drop``), less any
    that another model scoring the same rows (``also``) reads."""
    needed = {str(c) for det in also if det is not None for c in det.feature_names_}
    return [str(c) for c in metadata.get("dropped_columns") or () if str(c) not in needed]


def _located(exc: DataError, path: Path, offset: int | None) -> DataError:
    """``exc`` naming ``path`` when it names no file (a column the model needs and DATA
    lacks had been reported without the file); its row moved by ``offset``, dropped when
    None (rows of a subset)."""
    if exc.file is not None:
        return exc
    row = None if exc.row is None or offset is None else exc.row + offset
    return DataError(exc.reason, file=str(path), row=row, column=exc.column)


def _headline(metrics: dict[str, Any]) -> dict[str, float]:
    keys = (
        "roc_auc",
        "average_precision",
        "recall_at_1pct_fpr",
        "balanced_accuracy",
        "cohen_kappa",
        "brier_score",
    )
    out = {k: float(metrics[k]) for k in keys if k in metrics}
    for k, v in metrics.items():
        if k.startswith("card_precision@"):
            out[k] = float(v)
    return out


def _metrics_table(title: str, metrics: dict[str, Any]) -> Table:
    table = Table("metric", "value", title=title)
    for k, v in _headline(metrics).items():
        table.add_row(k, f"{v:.4f}")
    cm = metrics.get("confusion_matrix")
    if cm:
        table.add_row("threshold", f"{metrics['threshold']:.4f}")
        table.add_row("confusion (tn fp fn tp)", f"{cm['tn']} {cm['fp']} {cm['fn']} {cm['tp']}")
    return table


def _warn(message: str) -> None:
    from rich.markup import escape

    console.print(
        f"[bold yellow]warning:[/] {escape(message)}", soft_wrap=True, highlight=False, markup=True
    )


# --------------------------------------------------------------------------- commands


@app.command("simulate")
@cli_errors
def simulate_cmd(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder (gets transactions.csv).")
    ],
    customers: Annotated[
        int, typer.Option("--customers", min=1, help="Number of customers.")
    ] = 5000,
    days: Annotated[
        int, typer.Option("--days", min=1, max=_MAX_SIM_DAYS, help="Days to simulate.")
    ] = 183,
    seed: SeedOpt = 0,
    terminals: Annotated[
        int | None,
        typer.Option("--terminals", min=1, help="Number of terminals [default: 2 x customers]."),
    ] = None,
) -> None:
    """Simulate raw card transactions with the Fraud Detection Handbook's fraud scenarios.

    The daily number of compromised terminals (2) and cards (3) is the handbook's at its
    size (5,000 customers, 10,000 terminals) and scaled down with smaller simulations,
    but never below one a day: the fraud rate stays near 1 % down to about 2,000
    customers and rises below that (about 3 % at 500, 20 % at 50).
    """
    from fraudlens.cards.simulate import simulate, write_transactions

    n_terminals = terminals if terminals is not None else 2 * customers
    _check_simulation_fits(customers, days, n_terminals)
    per_day_t = max(1, round(2 * min(n_terminals, 10_000) / 10_000))
    per_day_c = max(1, round(3 * min(customers, 5_000) / 5_000))
    t0 = time.perf_counter()
    with progress() as bar:
        task = bar.add_task("simulating days", total=days)
        df = simulate(
            customers,
            n_terminals,
            days,
            seed=seed,
            progress=lambda n: bar.advance(task, n),
            compromised_terminals_per_day=per_day_t,
            compromised_customers_per_day=per_day_c,
        )
        write = bar.add_task("writing transactions.csv", total=None)
        path = write_transactions(df, Path(out) / "transactions.csv")
        bar.update(write, total=1, completed=1)
    if df.empty:
        _warn(
            f"no transactions: {plural(customers, 'customer')} and "
            f"{plural(n_terminals, 'terminal')} over {plural(days, 'day')} made none (a "
            "customer makes 2 a day on average, at the terminals within 5 of them on a "
            "100 x 100 grid); simulate more customers, terminals or days"
        )
    rate = f" ({df['label'].mean():.2%})" if len(df) else ""
    stdout.print(
        f"{plural(len(df), 'transaction')}, {plural(int(df['label'].sum()), 'fraud')}"
        f"{rate} -> {path} in {time.perf_counter() - t0:.1f} s"
    )


#: ``cards simulate --days`` at most (a century: timestamps stay far inside what
#: datetime64[ns] holds, which ends in 2262)
_MAX_SIM_DAYS = 36_500
#: memory the simulation needs per transaction at its peak, bytes (the blocks' arrays,
#: their concatenation and the DataFrame; measured about 200 at 5,000 x 183)
_SIM_BYTES_PER_TX = 250
#: share of the terminals within a customer's reach (radius 5 on the 100 x 100 grid)
_SIM_REACH = math.pi * 5.0**2 / 100.0**2
#: memory per (customer, terminal within reach) pair at the peak of listing them, bytes
#: (measured about 50 at 20,000 x 200,000 and 5,000 x 1,000,000)
_SIM_BYTES_PER_PAIR = 56


def _check_simulation_fits(customers: int, days: int, terminals: int) -> None:
    """ConfigError up front when ``customers`` x ``days`` needs more memory than the
    machine has: the simulation runs block of days by block of days and met a
    MemoryError only after hours. So do the customers' lists of terminals within reach
    (``customers`` x ``terminals`` distances: 5,000,000 customers with their default
    10,000,000 terminals filled memory for hours) and the terminals' compromise calendar
    (``terminals`` x ``days``; --terminals 99999999999999999999999 ended in numpy's
    ValueError traceback)."""
    expected = 2.0 * customers * days  # a customer makes 2 transactions a day on average
    need = expected * _SIM_BYTES_PER_TX
    have = memory_short(need)
    if have is not None:
        raise ConfigError(
            f"--customers {customers:,} --days {days:,} would make about {expected:,.0f} "
            f"transactions, needing about {need / 2**30:,.0f} GiB of memory; this machine "
            f"has {have}: simulate fewer customers or days"
        )
    pairs = float(customers) * terminals * _SIM_REACH
    # (a terminal's place and its distances to a chunk of customers: about 48 bytes; its
    # calendar: a byte a day)
    need = pairs * _SIM_BYTES_PER_PAIR + float(terminals) * (48 + days)
    have = memory_short(need)
    if have is not None:
        raise ConfigError(
            f"--customers {customers:,} with {terminals:,} terminals over {days:,} days "
            f"would put about {pairs:,.0f} terminals within the customers' reach, needing "
            f"about {need / 2**30:,.0f} GiB of memory; this machine has "
            f"{have}: simulate fewer customers or terminals (--terminals)"
        )


def _describe_windows(desc: dict[str, Any]) -> str:
    if desc.get("method") == "random":
        return "a random 10 % of the labelled rows held out (stratified)"
    unit = desc.get("unit")

    def at(key: str) -> str:
        v = desc[key]
        return f"{float(v) / _HOUR:g} h" if unit == "seconds" else str(v)[:19]

    gap = float(desc.get("gap_seconds") or 0.0)
    gap_text = (
        f", {gap / _DAY:g}-day gap" if gap >= _DAY else (f", {gap / _HOUR:g} h gap" if gap else "")
    )
    return (
        f"train {at('train_start')} .. {at('train_end')}{gap_text}, "
        f"held out {at('test_start')} .. {at('test_end')}"
    )


@app.command("train")
@cli_errors
def train_cmd(
    data: DataOpt,
    model_dir: ModelDir = None,
    detector: Annotated[Kind, typer.Option("--detector", help="Which card model.")] = Kind.xgboost,
    label: LabelOpt = None,
    preset: Annotated[
        Preset,
        typer.Option(help="default (fraudlens) or reference (the AWS solution's settings)."),
    ] = Preset.default,
    split: Annotated[
        Split, typer.Option(help="time (held-out window at the end) or random (90/10).")
    ] = Split.time,
    train_days: Annotated[
        float | None,
        typer.Option(min=0.0, help="Training window, days [default: 7 for raw, else all]."),
    ] = None,
    gap_days: Annotated[
        float | None,
        typer.Option(min=0.0, help="Gap (label delay) before the held-out window, days."),
    ] = None,
    test_days: Annotated[
        float | None, typer.Option(min=0.0, help="Held-out (validation) window, days.")
    ] = None,
    train_hours: Annotated[
        float | None, typer.Option(min=0.0, help="Training window in hours (e.g. ULB).")
    ] = None,
    gap_hours: Annotated[float | None, typer.Option(min=0.0, help="Gap in hours.")] = None,
    test_hours: Annotated[
        float | None, typer.Option(min=0.0, help="Held-out window in hours (e.g. ULB: 8).")
    ] = None,
    test_end: Annotated[
        str | None,
        typer.Option(
            help="End of the held-out window: a date/time (ts) or seconds (ULB Time) "
            "[default: end of the latest labelled day (raw) or hour]."
        ),
    ] = None,
    no_refit: Annotated[
        bool,
        typer.Option(
            "--no-refit", help="Store the validation model instead of refitting on every row."
        ),
    ] = False,
    oversample: Annotated[
        Oversample | None, typer.Option(help="Oversample frauds (supervised models).")
    ] = None,
    threshold: Annotated[
        str | None,
        typer.Option(help="f1, recall:0.8, fpr:0.01, none, or a fixed number."),
    ] = None,
    seed: SeedOpt = 0,
    trust_pickle: TrustPickleOpt = False,
    time_column: Annotated[
        str | None,
        typer.Option(
            help="Feature tables: the column that times the rows for --split time (numbers "
            "in --time-unit, or date-times), instead of ts or Time; not a feature "
            "[default: ts, or the table's one column of date-times]."
        ),
    ] = None,
    time_unit: Annotated[
        TimeUnit, typer.Option(help="What one unit of a numeric --time-column is.")
    ] = TimeUnit.seconds,
    drop: Annotated[
        list[str] | None,
        typer.Option(
            help="Feature tables: a column not to read at all (repeat it, or separate "
            "names with commas), e.g. a card holder's name or address, which lets the "
            "model remember the cards that had fraud."
        ),
    ] = None,
    time_of_day: Annotated[
        bool,
        typer.Option(
            "--time-of-day",
            help="With --time-column: the model also reads the column's hour of the day, "
            "as the feature 'COL (hour of day)'.",
        ),
    ] = False,
) -> None:
    """Validate a card model on a held-out time window, refit it on every labelled row,
    and store it.

    Default windows: raw transactions spanning 21 days or more: 7 days to train, a
    7-day gap (the label delay) and the latest 7 days held out, whole days. Other tables
    (ULB's Time in seconds, feature tables): the last third of the time span held out, in
    whole hours, everything before trains (ULB day 1: hours 16-24 held out). The held-out
    window chooses XGBoost's number of rounds and the threshold and gives the validation
    figures; the model is then refitted on every labelled row with them (--no-refit keeps
    the validation model). Rows with a blank label are not trained on.
    """
    import numpy as np

    from fraudlens._echo import cut
    from fraudlens.cards.data import AUTO_TIME, describe_columns
    from fraudlens.cards.evaluate import LEAK_AUC, card_precision_at_k, single_feature_auc
    from fraudlens.evaluation import binary_metrics
    from fraudlens.monitoring import reference_profile
    from fraudlens.registry import data_hash

    windows = {
        "train": _window(train_days, train_hours, "train"),
        "gap": _window(gap_days, gap_hours, "gap"),
        "test": _window(test_days, test_hours, "test"),
    }
    if _value(split) == "random" and (test_end is not None or any(windows.values())):
        raise ConfigError("window options apply to --split time only")
    # Bad options fail before a large file is read (and -m at a file or a model's folder
    # before the training, which it had followed).
    make_detector(detector, preset, oversample=oversample, threshold=threshold, seed=seed)
    reg = _registry(model_dir)
    dropped = [c for names in drop or () for c in names.split(",") if c]
    # A time split of a feature table without ts is timed by its one column of
    # date-times, when it has one.
    find_time = time_column is None and _value(split) == "time"
    table = _load(
        data,
        label,
        require_label=True,
        trust_pickle=trust_pickle,
        time_column=AUTO_TIME if find_time else time_column,
        time_unit=_value(time_unit),
        drop=dropped,
        drop_strict=True,
        time_of_day=time_of_day,
    )
    if find_time:
        time_column = table.time_column
    det = make_detector(
        detector,
        preset,
        oversample=oversample,
        threshold=threshold,
        seed=seed,
    )
    train, test, desc = split_table(table, split, seed, test_end=test_end, **windows)
    assert table.y is not None
    y_train, y_test = table.y[train], table.y[test]
    # (none held out: a random 10 % of a few rows rounds to 0, whose minimum had ended
    # in numpy's ValueError)
    if len(test) == 0 or y_test.min() == y_test.max():
        what = "a single class" if len(test) else "no row"
        raise DataError(
            f"the held-out rows ({len(test)}) hold {what}; cannot validate "
            f"({_describe_windows(desc)})",
            file=str(data),
        )
    time_order = None if table.time is None else table.time.iloc[train].to_numpy()
    unsupervised = det.name == "cards-anomaly"
    with progress(transient=True) as bar:
        bar.add_task(f"validating {det.name}: training on {len(train):,} rows", total=None)
        det.fit(
            table.X.iloc[train],
            None if unsupervised else y_train,
            time_order=time_order,
            eval_set=(table.X.iloc[test], y_test),
        )
        scores = det.decision_function(table.X.iloc[test])
    metrics = binary_metrics(y_test, scores, det.threshold_)
    # One feature that ranks the held-out rows almost perfectly on its own is, in real
    # data, nearly always the label in another form (a chargeback flag, a status set
    # after the fraud): a model trained on it is useless in production.
    # Features as the model reads them (a level such as status=chargeback can leak).
    aside = [*table.set_aside, *getattr(det, "set_aside_", [])]
    categories = getattr(det, "categories_", {})

    def features(rows: Any) -> Any:
        return det.encode_features(table.X.iloc[rows].loc[:, det.feature_names_])

    leaks = {
        col: auc
        for col, auc in single_feature_auc(features(test), y_test).items()
        if auc >= LEAK_AUC
    }
    if not unsupervised:
        from sklearn.metrics import brier_score_loss

        # How well the scores read as probabilities on the held-out rows.
        metrics["brier_score"] = float(brier_score_loss(y_test, scores))
    if table.kind == "raw":
        cp = card_precision_at_k(
            table.frame.iloc[test], scores, 100, label=table.label_column or "label"
        )
        metrics["card_precision@100"] = cp["mean"]
    validation = {
        **_headline(metrics),
        "rows": len(test),
        "frauds": int(y_test.sum()),
        "threshold": float(det.threshold_),
        "rounds": det.fit_info_.get("rounds"),
        "threshold_source": det.fit_info_.get("threshold_source"),
        # What the held-out rows chose: a fixed threshold (--threshold 0.3 or none) is
        # not chosen there, and had been reported as if it were.
        "chosen_here": " and ".join(
            what
            for what, here in (
                ("threshold", _threshold_chosen(det.fit_info_.get("threshold_source"))),
                ("boosting rounds", "best_rounds" in det.fit_info_),
            )
            if here
        ),
    }
    det.validation_ = {
        "rows": np.asarray(test, dtype=np.int64),
        "scores": np.asarray(scores, dtype=np.float64),
        "labels": np.asarray(y_test, dtype=np.int8),
    }
    refit: dict[str, Any] | None = None
    fitted_rows = train
    if not no_refit:
        labelled = table.labelled
        with progress(transient=True) as bar:
            bar.add_task(f"refitting on all {len(labelled):,} labelled rows", total=None)
            det.refit_on(table.X.iloc[labelled], table.y[labelled])
        refit = {
            "rows": len(labelled),
            "frauds": int(table.y[labelled].sum()),
            "rounds": det.fit_info_.get("rounds"),
            "seconds": det.fit_info_.get("refit_seconds"),
        }
        fitted_rows = labelled
    if time_of_day:
        # Carried by the model, so every path that scores files builds the feature.
        det.clock_ = {"column": time_column, "unit": _UNIT_SECONDS[_value(time_unit)]}
    mv = reg.save(
        det,
        metrics={"validation": validation},
        data_digest=data_hash(data) if Path(data).is_file() else None,
        extra={
            "split": desc,
            "refit": refit,
            "unknown_labels": table.n_unknown,
            "data_file": str(data),
            "table_kind": table.kind,
            "label_column": table.label_column,
            "time_column": time_column,
            "time_unit": _value(time_unit) if time_column is not None else None,
            "dropped_columns": dropped,
            "set_aside": aside,
            "leak_suspects": leaks,
            "preset": _value(preset),
            # what monitoring measures feature drift against
            "reference_profile": reference_profile(features(fitted_rows)),
        },
    )
    stdout.print(
        _metrics_table(
            f"{det.name} {mv.version}: validation on held-out rows ({len(test):,}, "
            f"{plural(int(y_test.sum()), 'fraud')})",
            metrics,
        )
    )
    stdout.print(f"windows: {_describe_windows(desc)}")
    if find_time and time_column is not None:
        stdout.print(
            f"timed by its column of date-times {time_column!r} (not a feature; "
            "--time-column names another)"
        )
    if dropped:
        stdout.print(f"dropped, not read: {describe_columns(dropped)}")
    if table.set_aside:
        stdout.print(f"set aside as row ids, not features: {describe_columns(table.set_aside)}")
    if getattr(det, "set_aside_", None):
        stdout.print(
            "set aside as identifiers (a distinct value in most rows), not features: "
            f"{describe_columns(det.set_aside_)}"
        )
    if categories:
        levels = ", ".join(
            f"{cut(repr(col), 40)} ({plural(len(spec['levels']), 'level')})"
            for col, spec in categories.items()
        )
        stdout.print(f"text columns read as levels: {levels}")
    if getattr(det, "dates_", None):
        stdout.print(f"dates read as days since 1970-01-01: {describe_columns(det.dates_)}")
    for col, auc in leaks.items():
        _warn(
            f"feature {cut(repr(col), 60)} alone ranks the held-out rows with ROC AUC "
            f"{auc:.4f}: check that it is not the label in another form or known only "
            "after the fraud (a leak)"
        )
    chosen = str(validation["chosen_here"])
    rounds = f", {validation['rounds']} boosting rounds" if validation["rounds"] else ""
    fixed = (
        ""
        if "threshold" in chosen
        else f"threshold {det.threshold_:.4f}, "
        + (
            "fixed by --threshold"
            if validation["threshold_source"] == "fixed"
            else str(validation["threshold_source"])
        )
        + ("; " if chosen else "")
    )
    stdout.print(
        f"validation model: {plural(len(train), 'training row')} "
        f"({plural(int(y_train.sum()), 'fraud')}){rounds}; "
        f"{fixed}{chosen + ' chosen on the held-out rows' if chosen else ''}"
    )
    if refit is not None:
        kept = "the same rounds and threshold" if validation["rounds"] else "the same threshold"
        stdout.print(
            f"refitted on all {plural(refit['rows'], 'labelled row')} "
            f"({plural(refit['frauds'], 'fraud')}) "
            f"with {kept}"
        )
    if table.n_unknown:
        stdout.print(
            f"{plural(table.n_unknown, 'row')} with a blank (unknown) label not trained on"
        )
    stdout.print(f"saved {mv.name}:{mv.version} -> {mv.path}")


def _threshold_chosen(source: str | None) -> bool:
    # The threshold came from the held-out rows, not from --threshold or the default.
    return source is not None and not source.startswith(("fixed", "default"))


@app.command("evaluate")
@cli_errors
def evaluate_cmd(
    data: DataOpt,
    model_dir: ModelDir = None,
    detector: DetectorOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.")] = Path("cards-report"),
    label: LabelOpt = None,
    rows: Annotated[
        Rows,
        typer.Option(
            help="auto (the held-out rows of the training split when DATA is the training "
            "file, else all), test or all.",
        ),
    ] = Rows.auto,
    k: Annotated[int, typer.Option("--k", min=1, help="Cards per day for card precision@k.")] = 100,
    trust_pickle: TrustPickleOpt = False,
    show: Annotated[bool, typer.Option(hidden=True)] = True,
) -> None:
    """Write an evaluation report (report.json and plots) for a stored card model.

    On its own training file (auto), a refitted model is not scored on rows it was
    trained on: the report shows the validation model's stored scores of the held-out
    rows instead.
    """
    from fraudlens.cards.evaluate import evaluate_cards
    from fraudlens.registry import data_hash

    rows_v = _value(rows)
    reg = _registry(model_dir)
    mv = reg.get(_model_name(detector))
    det = reg.load(mv.name, mv.version)
    same_data = Path(data).is_file() and mv.metadata.get("data_hash") == data_hash(data)
    # The split is redone by the column that timed it.
    redo = rows_v == "test" or (rows_v == "auto" and same_data)
    clock = getattr(det, "clock_", None)
    table = _load(
        data,
        label or mv.metadata.get("label_column"),
        require_label=True,
        trust_pickle=trust_pickle,
        time_column=mv.metadata.get("time_column") if redo or clock else None,
        time_unit=str(mv.metadata.get("time_unit") or "seconds"),
        drop=_dropped(mv.metadata),
        time_of_day=clock is not None,
    )
    split = mv.metadata.get("split")
    use_test = rows_v == "test" or (rows_v == "auto" and same_data and split is not None)
    if use_test and split is None:
        raise ConfigError(f"{mv.name}:{mv.version} has no recorded split; use --rows all")
    idx = _redo_split(table, split)[1] if use_test else None
    refitted = bool(mv.metadata.get("refit"))
    stored = getattr(det, "validation_", None)
    scores = None
    which = "held-out rows of the training split" if use_test else "all labelled rows"
    label_v = f"{mv.name}:{mv.version}"
    if use_test and refitted:
        import numpy as np

        if stored is None or idx is None or not np.array_equal(stored["rows"], idx):
            raise ConfigError(
                f"{label_v} was refitted on these rows after validation and its validation "
                "scores are not stored; use --rows all on other data"
            )
        scores = stored["scores"]
        which = "held-out rows, validation model (before its refit)"
        label_v += " (validation model)"
    title = f"{label_v}\n{Path(data).name}: {which}"
    with progress(transient=True) as bar:
        bar.add_task("scoring and plotting", total=None)
        try:
            report = evaluate_cards(
                det,
                table,
                idx,
                out,
                k=k,
                title=title,
                scores=scores,
                model_label=label_v,
                extra={"rows": which, "split": split},
            )
        except DataError as exc:
            raise _located(exc, data, None if idx is not None else 0) from None
    if show:
        stdout.print(
            _metrics_table(f"{label_v} on {which} of {Path(data).name}", report["metrics"])
        )
    stdout.print(
        f"report: {Path(out) / 'report.json'} "
        "(+ roc.png, pr.png, threshold_sweep.png, confusion.png)"
    )


def _reasons_text(reasons: list[dict[str, Any]]) -> str:
    return json.dumps(
        [
            {
                "feature": r["feature"],
                "value": round(r["value"], 6),
                "contribution": round(r["contribution"], 4),
            }
            for r in reasons
        ]
    )


@app.command("score")
@cli_errors
def score_cmd(
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output CSV.")],
    model_dir: ModelDir = None,
    detector: DetectorOpt = None,
    label: LabelOpt = None,
    history: Annotated[
        Path | None,
        typer.Option(
            help="Raw transactions before DATA's, with their labels (blank = unknown): the "
            "past the window features and known frauds come from."
        ),
    ] = None,
    require_history: Annotated[
        bool,
        typer.Option(
            "--require-history",
            help="Refuse raw transactions that come with no known label (no --history).",
        ),
    ] = False,
    explain: Annotated[
        bool,
        typer.Option("--explain", help="Add a reasons column: the features that raised the score."),
    ] = False,
    top: Annotated[int, typer.Option(min=1, max=20, help="Reasons per row.")] = 3,
    trust_pickle: TrustPickleOpt = False,
) -> None:
    """Score every row of DATA; write row, transaction_id (or a feature table's row ids,
    such as id or Unnamed: 0), score, flagged, model, threshold (and anomaly_score,
    anomaly_model; reasons with --explain).

    Rows keep the input order; ``row`` is the 1-based data row of the input (the header is
    row 0). ``anomaly_score`` is added when the registry also holds a cards-anomaly model
    and the chosen model is a different one. Raw transactions' terminal risk features
    count known frauds: score them with their past (``--history``), or they read as if
    no terminal had ever seen a fraud.
    """
    import pandas as pd

    from fraudlens.cards.data import load_table, with_history
    from fraudlens.errors import ModelNotFoundError
    from fraudlens.scoring import score_cards

    check_outputs({"--data": data, "--history": history}, {"--out": out})
    reg = _registry(model_dir)
    mv = reg.get(_model_name(detector))
    det = reg.load(mv.name, mv.version)
    anomaly = None
    if mv.name != "cards-anomaly":
        try:
            anomaly = reg.load("cards-anomaly")
        except ModelNotFoundError:
            anomaly = None
    clock = getattr(det, "clock_", None) or getattr(anomaly, "clock_", None)
    table = _load(
        data,
        label,
        require_label=False,
        trust_pickle=trust_pickle,
        drop=_dropped(mv.metadata, anomaly),
        time_column=None if clock is None else clock["column"],
        time_unit=1.0 if clock is None else float(clock["unit"]),
        time_of_day=clock is not None,
    )
    if history is not None:
        with progress(transient=True) as bar:
            bar.add_task(f"reading {history.name} and rebuilding the window features", total=None)
            past = load_table(history, kind="raw", trust_pickle=trust_pickle)
            table = with_history(table, past)
        known_labels = (past.y is not None and len(past.labelled) > 0) or len(table.labelled) > 0
    else:
        known_labels = table.y is not None and len(table.labelled) > 0
    if table.kind == "raw" and not known_labels:
        message = (
            f"{data.name} holds raw transactions without any known label and no --history "
            "was given: every terminal risk feature reads 0 (no known fraud anywhere) and "
            "the window counts start at the file's first day, so scores are far weaker than "
            "in validation. Pass --history with earlier labelled transactions."
        )
        if require_history:
            raise DataError(message.replace(" Pass", " --require-history refuses this. Pass"))
        _warn(message)
    n = len(table)
    chunk = 200_000
    classifier, anomaly = (None, det) if mv.name == "cards-anomaly" else (det, anomaly)
    if explain and classifier is None:
        raise ConfigError("--explain needs a classifier (cards-xgboost or cards-logistic)")
    parts = []
    t0 = time.perf_counter()
    with progress() as bar:
        task = bar.add_task(f"scoring with {mv.name}:{mv.version}", total=n)
        for lo in range(0, max(n, 1), chunk):
            part = table.X.iloc[lo : lo + chunk]
            try:
                scored = score_cards(classifier, part, anomaly=anomaly, explain=explain, top=top)
            except DataError as exc:
                raise _located(exc, data, lo) from None
            frame = scored.frame()
            if explain and scored.explanations is not None:
                frame["reasons"] = [_reasons_text(r) for r in scored.explanations]
            parts.append(frame)
            bar.advance(task, len(part))
    result = pd.concat(parts, ignore_index=True)
    if table.ids is not None:
        result.insert(0, "transaction_id", table.ids.to_numpy())
    # Row ids set aside from a feature table's features (id, Unnamed: 0) come along, so
    # the scores join back to the rows; a name the output has already is left out.
    # So do text columns the model set aside as identifiers (an account name).
    aside = [*table.set_aside, *(c for c in getattr(det, "set_aside_", []) if c in table.frame)]
    for pos, col in enumerate(c for c in dict.fromkeys(aside) if c not in result.columns):
        result.insert(pos, col, table.frame[col].to_numpy())
    result.insert(0, "row", range(1, n + 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(result, out)
    seconds = time.perf_counter() - t0
    stdout.print(
        f"{n:,} rows scored by {mv.name}:{mv.version}, {int(result['flagged'].sum()):,} flagged "
        f"(score > {det.threshold_:.4f}, the model's own threshold) -> {out} in {seconds:.1f} s"
    )
    if table.history_rows:
        stdout.print(f"window features computed with {table.history_rows:,} history rows")
    if classifier is not None and anomaly is not None:
        console.print(f"anomaly_score from {getattr(anomaly, 'model_version_', 'cards-anomaly')}")


@app.command("benchmark")
@cli_errors
def benchmark_cmd(
    data: DataOpt,
    protocol: Annotated[
        Protocol, typer.Option(help="handbook: prequential 7-day train / 7-day delay / 7-day test.")
    ] = Protocol.handbook,
    detector: Annotated[Kind, typer.Option("--detector", help="Which card model.")] = Kind.xgboost,
    preset: Annotated[Preset, typer.Option(help="default or reference.")] = Preset.default,
    start: Annotated[
        list[str] | None,
        typer.Option(
            help="Training start of a week (repeat the option) [default: the handbook's "
            "2018-07-25 .. 08-15 when the data cover them, else the latest weeks]."
        ),
    ] = None,
    weeks: Annotated[int, typer.Option(min=1, max=52, help="Weeks when --start is not given.")] = 4,
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.")] = Path(
        "cards-benchmark"
    ),
    label: LabelOpt = None,
    ties: Annotated[
        Ties, typer.Option(help="Same-second rows of a customer: input order or the handbook's.")
    ] = Ties.input,
    k: Annotated[int, typer.Option("--k", min=1, help="Cards per day for card precision@k.")] = 100,
    seed: SeedOpt = 0,
    trust_pickle: TrustPickleOpt = False,
) -> None:
    """Run the Fraud Detection Handbook's protocol on raw transactions: per test week and on
    average, ROC AUC, AP and card precision@100, beside the handbook's published figures."""
    from fraudlens import __version__
    from fraudlens.cards.benchmark import (
        HANDBOOK_STARTS,
        PUBLISHED,
        default_starts,
        plot_benchmark,
        run_handbook,
    )
    from fraudlens.evaluation import write_json

    del protocol  # one protocol so far; the option names it for the reader
    table = _load(data, label, require_label=True, trust_pickle=trust_pickle, kind="raw")
    if _value(ties) == "handbook":
        table = _handbook_ties(table)
    starts = (
        [_timestamp(s, "--start").normalize() for s in start]
        if start
        else default_starts(table, weeks)
    )
    twice = next((d for i, d in enumerate(starts) if d in starts[:i]), None)
    if twice is not None:
        # (the week was run again and counted twice in the mean)
        raise ConfigError(f"--start {twice.date()} is given twice: give each week once")
    _check_weeks(table, starts, given=bool(start))
    same_weeks = [str(s.date()) for s in starts] == list(HANDBOOK_STARTS[: len(starts)])
    name = f"cards-{_value(detector)} ({_value(preset)} preset, fraudlens {__version__})"

    def make() -> Any:
        return make_detector(detector, preset, seed=seed)

    with progress() as bar:
        task = bar.add_task("weeks", total=len(starts))

        def step(line: str) -> None:
            console.print(line)
            bar.advance(task)

        result = run_handbook(table, make, starts, model=name, k=k, progress=step)
    for note in result.warnings:
        _warn(note)
    from rich import box

    # Fits 80 columns: no side borders, short labels.
    t = Table(
        title=f"{name} on {_data_name(data)}: handbook protocol",
        caption="* the handbook's published figures (7/7/7 days, "
        + (
            "same weeks)"
            if same_weeks
            else f"its own data and weeks from {HANDBOOK_STARTS[0]}, not these)"
        ),
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    t.add_column("train start", no_wrap=True)
    for col in ("train rows/frauds", "test rows/frauds"):
        t.add_column(col, justify="right")
    for col in ("AUC", "AP", f"CP@{k}"):
        t.add_column(col, justify="right", no_wrap=True, min_width=len(col) + 2)
    for w in result.weeks:
        t.add_row(
            w.train_start,
            f"{w.train_rows:,}/{w.train_frauds:,}",
            f"{w.test_rows:,}/{w.test_frauds:,}",
            f"{w.roc_auc:.3f}",
            f"{w.average_precision:.3f}",
            f"{w.card_precision_at_100:.3f}",
        )
    m = result.mean
    t.add_row(
        f"mean, {plural(len(result.weeks), 'week')}",
        "",
        "",
        f"{m['roc_auc']:.3f}",
        f"{m['average_precision']:.3f}",
        f"{m['card_precision@100']:.3f}",
        style="bold",
    )
    short = {
        "handbook logistic regression": "handbook LR*",
        "handbook random forest": "handbook RF*",
        "handbook XGBoost": "handbook XGB*",
        "handbook XGBoost after model selection (best)": "handbook best*",
    }
    for pub, figs in PUBLISHED.items():
        t.add_row(
            short.get(pub, pub),
            "",
            "",
            f"{figs['roc_auc']:.3f}",
            f"{figs['average_precision']:.3f}",
            # (published at 100 cards a day only: no figure beside another --k)
            f"{figs['card_precision@100']:.3f}" if k == 100 else "-",
        )
    stdout.print(t)
    report = {**result.to_dict(), "ties": _value(ties), "k": k}
    files = plot_benchmark(result, out, f"{name} | {_data_name(data)}")
    report["files"] = [str(f) for f in files]
    write_json(report, Path(out) / "report.json")
    stdout.print(f"report: {Path(out) / 'report.json'} (+ {', '.join(f.name for f in files)})")


def _check_weeks(table: CardTable, starts: list[Any], *, given: bool) -> None:
    """Refuse weeks whose 7-day training window starts before the data (the run used to
    stop at such a week with "need at least 2 training rows, got 0"), and a --start after
    its last day (one past year 2262 ended in pandas' OutOfBoundsDatetime)."""
    from fraudlens.cards.benchmark import _utc_days

    days = _utc_days(table)
    first, last = days.min(), days.max()
    span = int((last - first).days) + 1
    fit = max(0, (span - 21) // 7 + 1)
    cover = f"the data cover {plural(span, 'day')} ({first.date()} .. {last.date()})"
    late = [s for s in starts if s > last] if given else []
    if late:
        raise DataError(
            f"--start {late[0].date()} is after the last day of the data; {cover}",
            file=table.source,
        )
    early = [s for s in starts if s < first]
    if not early:
        return
    if given:
        raise DataError(
            f"--start {early[0].date()} is before the first day of the data; {cover}",
            file=table.source,
        )
    # (with no room at all, "ask for --weeks 1" had sent the user to the same refusal)
    fix = f"ask for --weeks {fit}" if fit else "give the data at least 21 days"
    raise DataError(
        f"{cover}: room for {plural(fit, 'week')} of the protocol (21 days for the first, 7 more "
        f"for each next one), not {len(starts)}; {fix}",
        file=table.source,
    )


def _data_name(path: Path) -> str:
    """A file's name, or a folder's with its parent (``hb-raw/data``).

    A folder given by a bare relative name (``data``) gets its parent from the working
    folder: it had read ``/data``, a path that is not the one given.
    """
    p = Path(path).absolute()
    if not p.is_dir():
        return p.name
    return f"{p.parent.name}/{p.name}" if p.parent.name else str(p)


def _handbook_ties(table: CardTable) -> CardTable:
    """``table`` with its features rebuilt in the handbook's same-second order."""
    from dataclasses import replace

    import numpy as np

    from fraudlens.cards.features import transaction_features

    frame = table.frame
    cols = ["ts", "customer_id", "terminal_id", "amount"]
    raw = frame[cols].assign(label=0 if table.y is None else table.y)
    # The handbook reads its rows in transaction id order before sorting each customer's.
    order = (
        np.argsort(table.ids.to_numpy(), kind="stable")
        if table.ids is not None
        else np.arange(len(frame))
    )
    X = transaction_features(raw.iloc[order], ties="handbook").sort_index()
    return replace(table, X=X.reset_index(drop=True))
