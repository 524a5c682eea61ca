"""``fraudlens cards``: simulate, train, evaluate, score.

Splits used by ``train`` (and recomputed by ``evaluate`` on the same file):

- ``time`` (default). Raw transactions spanning at least 21 days: the Fraud Detection
  Handbook's protocol on the latest 21 days (7 days to train, 7 days of label delay left
  out, 7 days to test, customers with a fraud already known before a test day left out).
  Any other table with a time column (ULB ``Time``, a ``ts`` column, shorter raw
  tables): train on the earliest two thirds of the time span (rounded to whole hours),
  test on the rest. On the ULB day-1 file that is the first 16 hours against the last 8.
- ``random``: the reference's stratified 90/10 split.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from fraudlens.cli._common import ModelDir, cli_errors, console, progress, registry_root
from fraudlens.errors import ConfigError, DataError

if TYPE_CHECKING:
    import numpy as np

    from fraudlens.cards._tabular import _TabularDetector
    from fraudlens.cards.data import CardTable

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None)
stdout = Console()

_KINDS = ("logistic", "xgboost", "anomaly")

DataOpt = Annotated[
    Path,
    typer.Option("--data", "-d", help="Card table: ULB CSV, raw transactions or a feature table."),
]
LabelOpt = Annotated[
    str | None, typer.Option("--label", help="Label column [default: Class, label or is_fraud].")
]
DetectorOpt = Annotated[
    str | None,
    typer.Option("--detector", help="logistic, xgboost or anomaly [default: the cards default]."),
]


def _registry(model_dir: Path | None) -> Any:
    from fraudlens.registry import Registry

    # A model's or a version's folder given for the registry is refused, naming the right one.
    return Registry(registry_root(model_dir))


def _model_name(detector: str | None) -> str:
    if detector is None:
        return "cards"
    short = detector.removeprefix("cards-")
    if short not in _KINDS:
        raise ConfigError(f"unknown detector {detector!r}; use one of {', '.join(_KINDS)}")
    return f"cards-{short}"


def make_detector(
    kind: str,
    preset: str = "default",
    *,
    oversample: str | None = None,
    threshold: str | None = None,
    seed: int = 0,
) -> _TabularDetector:
    """Build an unfitted card detector from CLI-style options."""
    from fraudlens.cards.detectors import (
        AnomalyDetector,
        LogisticDetector,
        XGBoostDetector,
        parse_threshold_strategy,
    )

    classes: dict[str, Any] = {
        "logistic": LogisticDetector,
        "xgboost": XGBoostDetector,
        "anomaly": AnomalyDetector,
    }
    short = kind.removeprefix("cards-")
    if short not in classes:
        raise ConfigError(f"unknown detector {kind!r}; use one of {', '.join(_KINDS)}")
    if preset not in ("default", "reference"):
        raise ConfigError(f"unknown preset {preset!r}; use default or reference")
    cls = classes[short]
    det: _TabularDetector = cls.reference() if preset == "reference" else cls()
    det.random_state = seed
    if oversample is not None:
        if short == "anomaly":
            raise ConfigError("--oversample applies to supervised detectors only")
        if oversample not in ("smote", "random"):
            raise ConfigError(f"--oversample must be smote or random, not {oversample!r}")
        det.oversample = oversample
    if threshold is not None:
        parse_threshold_strategy(threshold)  # fail early on a typo
        det.threshold_strategy = threshold
    return det


# --------------------------------------------------------------------------- splits


def split_table(
    table: CardTable, method: str, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Train/test row positions for ``method`` (``time`` or ``random``) and a description."""
    import pandas as pd

    from fraudlens.cards.data import random_split, time_split, time_split_hours

    if method == "random":
        train, test = random_split(table, test_size=0.1, seed=seed, stratify=True)
        return train, test, {"method": "random", "test_size": 0.1, "seed": seed}
    if method != "time":
        raise ConfigError(f"--split must be time or random, not {method!r}")
    if table.time is None:
        raise DataError(
            "a time split needs a Time or ts column; use --split random", file=table.source
        )
    t = table.time
    is_ts = isinstance(t.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(t.dtype)
    if table.kind == "raw" and is_ts:
        first, last = t.min().normalize(), t.max().normalize()
        if (last - first).days + 1 >= 21:
            start = last - pd.Timedelta(days=20)
            train, test = time_split(table, train_days=7, gap_days=7, test_days=7, start=start)
            desc = {
                "method": "time",
                "protocol": "handbook 7/7/7",
                "start": str(start.date()),
                "train_days": 7,
                "gap_days": 7,
                "test_days": 7,
            }
            return train, test, desc
    span_h = (
        (t.max() - t.min()) / pd.Timedelta(hours=1)
        if is_ts
        else (float(t.max()) - float(t.min())) / 3600.0
    )
    # Whole hours when the span allows it (ULB day 1: 16 of 24 hours).
    two_thirds = 2.0 * float(span_h) / 3.0
    train_hours = float(round(two_thirds)) if two_thirds >= 2 else round(two_thirds, 6)
    train, test = time_split_hours(table, train_hours=train_hours)
    return (
        train,
        test,
        {"method": "time", "protocol": "first two thirds", "train_hours": train_hours},
    )


def _redo_split(table: CardTable, desc: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Recompute a split recorded by ``train``."""
    import pandas as pd

    from fraudlens.cards.data import random_split, time_split, time_split_hours

    if desc.get("method") == "random":
        return random_split(table, test_size=float(desc["test_size"]), seed=int(desc["seed"]))
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


def _load(path: Path, label: str | None, require_label: bool) -> CardTable:
    from fraudlens.cards.data import load_table

    with progress(transient=True) as bar:
        bar.add_task(f"reading {path.name}", total=None)
        return load_table(path, label=label, require_label=require_label)


def _headline(metrics: dict[str, Any]) -> dict[str, float]:
    keys = (
        "roc_auc",
        "average_precision",
        "recall_at_1pct_fpr",
        "balanced_accuracy",
        "cohen_kappa",
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
    days: Annotated[int, typer.Option("--days", min=1, help="Days to simulate.")] = 183,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    terminals: Annotated[
        int | None,
        typer.Option("--terminals", min=1, help="Number of terminals [default: 2 x customers]."),
    ] = None,
) -> None:
    """Simulate raw card transactions with the Fraud Detection Handbook's fraud scenarios.

    The daily number of compromised terminals (2) and cards (3) is the handbook's at its
    size (5,000 customers, 10,000 terminals) and scaled down with smaller simulations,
    so the fraud rate stays near 1 %.
    """
    from fraudlens.cards.simulate import simulate, write_transactions

    n_terminals = terminals if terminals is not None else 2 * customers
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
    stdout.print(
        f"{len(df):,} transactions, {int(df['label'].sum()):,} frauds "
        f"({df['label'].mean():.2%}) -> {path} in {time.perf_counter() - t0:.1f} s"
    )


@app.command("train")
@cli_errors
def train_cmd(
    data: DataOpt,
    model_dir: ModelDir = None,
    detector: Annotated[
        str, typer.Option("--detector", help="logistic, xgboost or anomaly.")
    ] = "xgboost",
    label: LabelOpt = None,
    preset: Annotated[
        str,
        typer.Option(
            "--preset", help="default (fraudlens) or reference (the AWS solution's settings)."
        ),
    ] = "default",
    split: Annotated[str, typer.Option("--split", help="time or random (90/10).")] = "time",
    oversample: Annotated[str | None, typer.Option("--oversample", help="smote or random.")] = None,
    threshold: Annotated[
        str | None,
        typer.Option("--threshold", help="f1, recall:0.8, fpr:0.01, none, or a fixed number."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
) -> None:
    """Train a card model on the train part of a split, test it, and store it."""
    from fraudlens.cards.evaluate import card_precision_at_k
    from fraudlens.evaluation import binary_metrics
    from fraudlens.monitoring import reference_profile
    from fraudlens.registry import data_hash

    det = make_detector(detector, preset, oversample=oversample, threshold=threshold, seed=seed)
    table = _load(data, label, require_label=True)
    train, test, desc = split_table(table, split, seed)
    if len(train) == 0 or len(test) == 0:
        raise DataError(
            f"the {split} split left {len(train)} training and {len(test)} test rows",
            file=str(data),
        )
    assert table.y is not None
    time_order = None if table.time is None else table.time.iloc[train].to_numpy()
    with progress(transient=True) as bar:
        bar.add_task(f"training {det.name} on {len(train):,} rows", total=None)
        det.fit(table.X.iloc[train], table.y[train], time_order=time_order)
        scores = det.decision_function(table.X.iloc[test])
    y_test = table.y[test]
    if y_test.min() == y_test.max():
        raise DataError("the test part holds a single class; cannot measure", file=str(data))
    metrics = binary_metrics(y_test, scores, det.threshold_)
    if table.kind == "raw":
        cp = card_precision_at_k(
            table.frame.iloc[test], scores, 100, label=table.label_column or "label"
        )
        metrics["card_precision@100"] = cp["mean"]
    stored = {**_headline(metrics), "test_rows": len(test), "test_frauds": int(y_test.sum())}
    reg = _registry(model_dir)
    mv = reg.save(
        det,
        metrics=stored,
        data_digest=data_hash(data),
        extra={
            "split": desc,
            "data_file": str(data),
            "table_kind": table.kind,
            "label_column": table.label_column,
            "preset": preset,
            # what monitoring measures feature drift against
            "reference_profile": reference_profile(table.X.iloc[train]),
        },
    )
    stdout.print(
        _metrics_table(f"{det.name} {mv.version}: test rows ({desc['method']} split)", metrics)
    )
    stdout.print(
        f"trained on {len(train):,} rows ({int(table.y[train].sum())} frauds) in "
        f"{det.fit_info_.get('fit_seconds', 0):.1f} s; saved {mv.name}:{mv.version} -> {mv.path}"
    )


@app.command("evaluate")
@cli_errors
def evaluate_cmd(
    data: DataOpt,
    model_dir: ModelDir = None,
    detector: DetectorOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.")] = Path("cards-report"),
    label: LabelOpt = None,
    rows: Annotated[
        str,
        typer.Option(
            "--rows",
            help="auto (the training split's test rows when DATA is the training file, else all), "
            "test or all.",
        ),
    ] = "auto",
    k: Annotated[int, typer.Option("--k", min=1, help="Cards per day for card precision@k.")] = 100,
) -> None:
    """Write an evaluation report (report.json and plots) for a stored card model."""
    from fraudlens.cards.evaluate import evaluate_cards
    from fraudlens.registry import data_hash

    if rows not in ("auto", "test", "all"):
        raise ConfigError(f"--rows must be auto, test or all, not {rows!r}")
    reg = _registry(model_dir)
    mv = reg.get(_model_name(detector))
    det = reg.load(mv.name, mv.version)
    table = _load(data, label or mv.metadata.get("label_column"), require_label=True)
    split = mv.metadata.get("split")
    same_data = mv.metadata.get("data_hash") == data_hash(data)
    use_test = rows == "test" or (rows == "auto" and same_data and split is not None)
    if use_test and split is None:
        raise ConfigError(f"{mv.name}:{mv.version} has no recorded split; use --rows all")
    idx = _redo_split(table, split)[1] if use_test else None
    with progress(transient=True) as bar:
        bar.add_task("scoring and plotting", total=None)
        report = evaluate_cards(
            det,
            table,
            idx,
            out,
            k=k,
            title=mv.name,
            extra={
                "rows": "test part of the training split" if use_test else "all",
                "split": split,
            },
        )
    which = "test rows of the training split" if use_test else "all rows"
    stdout.print(
        _metrics_table(f"{mv.name}:{mv.version} on {which} of {data.name}", report["metrics"])
    )
    stdout.print(
        f"report: {Path(out) / 'report.json'} "
        "(+ roc.png, pr.png, threshold_sweep.png, confusion.png)"
    )


@app.command("score")
@cli_errors
def score_cmd(
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output CSV.")],
    model_dir: ModelDir = None,
    detector: DetectorOpt = None,
    label: LabelOpt = None,
) -> None:
    """Score every row of DATA; write transaction_id, score, flagged, model, threshold (and
    anomaly_score, anomaly_model).

    Rows keep the input order. ``anomaly_score`` is added when the registry also holds a
    cards-anomaly model and the chosen model is a different one.
    """
    import pandas as pd

    from fraudlens.errors import ModelNotFoundError
    from fraudlens.scoring import score_cards

    reg = _registry(model_dir)
    mv = reg.get(_model_name(detector))
    det = reg.load(mv.name, mv.version)
    anomaly = None
    if mv.name != "cards-anomaly":
        try:
            anomaly = reg.load("cards-anomaly")
        except ModelNotFoundError:
            anomaly = None
    table = _load(data, label, require_label=False)
    n = len(table)
    chunk = 200_000
    classifier, anomaly = (None, det) if mv.name == "cards-anomaly" else (det, anomaly)
    parts = []
    t0 = time.perf_counter()
    with progress() as bar:
        task = bar.add_task(f"scoring with {mv.name}:{mv.version}", total=n)
        for lo in range(0, max(n, 1), chunk):
            part = table.X.iloc[lo : lo + chunk]
            parts.append(score_cards(classifier, part, anomaly=anomaly).frame())
            bar.advance(task, len(part))
    result = pd.concat(parts, ignore_index=True)
    if table.ids is not None:
        result.insert(0, "transaction_id", table.ids.to_numpy())
    out.parent.mkdir(parents=True, exist_ok=True)
    result.to_csv(out, index=False)
    seconds = time.perf_counter() - t0
    stdout.print(
        f"{n:,} rows scored by {mv.name}:{mv.version}, {int(result['flagged'].sum()):,} flagged "
        f"(score > {det.threshold_:.4f}, the model's own threshold) -> {out} in {seconds:.1f} s"
    )
    if classifier is not None and anomaly is not None:
        console.print(f"anomaly_score from {getattr(anomaly, 'model_version_', 'cards-anomaly')}")
