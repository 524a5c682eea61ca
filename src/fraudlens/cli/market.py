"""``fraudlens market``: simulate, render, train, evaluate, score."""

from __future__ import annotations

import math
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer
from rich.table import Table

from fraudlens._io import write_csv
from fraudlens.cli._common import (
    ModelDir,
    SeedOpt,
    WindowHoursOpt,
    check_outputs,
    cli_errors,
    console,
    fraudlens_command,
    memory_short,
    plural,
    progress,
    registry_root,
    working,
)

if TYPE_CHECKING:
    from fraudlens._detector import Detector
    from fraudlens.market.data import MarketData

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None)


class DetectorChoice(StrEnum):
    """Which market detector to train or use."""

    cnn = "cnn"
    features = "features"


class ArchChoice(StrEnum):
    """The CNN's architecture (``fraudlens.market._cnn_torch.ARCHS``)."""

    bars = "bars"
    bar = "bar"
    compact = "compact"
    columns = "columns"
    resnet18 = "resnet18"


class PrecisionChoice(StrEnum):
    """The CNN's training arithmetic (``fraudlens.market._cnn_torch.PRECISIONS``)."""

    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


class StyleChoice(StrEnum):
    """The CNN's image style (``fraudlens.market.render.STYLES``, the two-panel looks)."""

    fraudlens = "fraudlens"
    fraudlens_gap = "fraudlens-gap"


#: The image style a new CNN is trained on unless ``--style`` says otherwise: the
#: library's ``fraudlens.market.render.CNN_STYLE``, written out so that the command line
#: starts without importing pandas (a test keeps the two equal).
DEFAULT_CNN_STYLE = StyleChoice.fraudlens_gap


class Engine(StrEnum):
    """Where batch scoring runs."""

    local = "local"
    ray = "ray"


KlinesOpt = Annotated[Path, typer.Option(help="k-lines file (CSV or Parquet).")]
TradesOpt = Annotated[Path, typer.Option(help="Trades file (CSV or Parquet).")]


def _models_dir(model_dir: Path | None) -> Path:
    # A model's or a version's folder given for the registry is refused, naming the right one.
    return registry_root(model_dir)


def _model_name(detector: DetectorChoice | None) -> str:
    return "market" if detector is None else f"market-{detector.value}"


def _finite_tick(value: float | None) -> float | None:
    # inf passed min=0 and was silently replaced by a tick of 1e-8.
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value:g} is not a price tick: give a finite number")
    return value


@app.command()
@cli_errors
def simulate(
    out: Annotated[
        Path, typer.Option(help="Output folder for klines.csv, trades.csv, labels.csv.")
    ],
    accounts: Annotated[
        int,
        typer.Option(
            min=2, help="Number of accounts (the default is the training set the README uses)."
        ),
    ] = 8000,
    seed: SeedOpt = 0,
    fraud_share: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of takeover accounts.")
    ] = 0.5,
    fmt: Annotated[str, typer.Option("--format", help="csv, csv.gz or parquet.")] = "csv",
    klines: Annotated[
        Path | None,
        typer.Option(
            help="Place the accounts on these k-lines (CSV or Parquet, the klines contract, "
            "any symbols and days) instead of simulated bars."
        ),
    ] = None,
    tick_size: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            callback=_finite_tick,
            help="Price tick of every symbol of --klines [default: derived from each "
            "symbol-day's prices].",
        ),
    ] = None,
) -> None:
    """Simulate 5-minute bars and accounts (normal and takeover kinds) with labels."""
    from fraudlens.errors import ConfigError, DataError
    from fraudlens.market.data import load_klines, write_market
    from fraudlens.market.simulate import simulate as run

    # Checked before the simulation: a bad --format used to end, after it, in a traceback.
    if fmt not in ("csv", "csv.gz", "parquet"):
        raise ConfigError(f"--format must be csv, csv.gz or parquet, not {fmt!r}")
    _check_simulation_fits(accounts)
    bars = None
    if klines is not None:
        with working(f"loading {klines}"):
            bars = load_klines(klines)
    with progress() as bar:
        task = bar.add_task("simulating accounts", total=accounts)
        try:
            data = run(
                accounts,
                seed=seed,
                fraud_share=fraud_share,
                klines=bars,
                tick_size=tick_size or None,
                progress=lambda k: bar.advance(task, k),
            )
        except DataError as exc:
            if klines is None:
                raise
            raise DataError(exc.reason, file=str(klines), column=exc.column) from None
    paths = write_market(data, out, fmt=fmt)
    assert data.labels is not None
    console.print(
        f"wrote {plural(len(data.klines), 'bar')}, {plural(len(data.trades), 'trade')}, "
        f"{plural(len(data.labels), 'account')} ({int(data.labels['label'].sum()):,} takeover) "
        f"to {out}"
    )
    for name, p in paths.items():
        console.print(f"  {name}: {p}")


#: memory ``market simulate`` needs per account at its peak, bytes (the accounts' fills,
#: the tables and the CSV writing; measured about 14,000 from 8,000 to 40,000 accounts)
_SIM_BYTES_PER_ACCOUNT = 16_000


def _check_simulation_fits(accounts: int) -> None:
    """ConfigError up front when ``accounts`` need more memory than the machine has: the
    accounts are made one by one, so 5,000,000 filled memory for an hour before a
    MemoryError, and 99999999999999999999999 ended in an OverflowError traceback."""
    from fraudlens.errors import ConfigError

    need = float(accounts) * _SIM_BYTES_PER_ACCOUNT
    have = memory_short(need)
    if have is not None:
        raise ConfigError(
            f"--accounts {accounts:,} would need about {need / 2**30:,.0f} GiB of memory "
            f"(about {_SIM_BYTES_PER_ACCOUNT / 1000:,.0f} kB an account); this machine has "
            f"{have}: simulate fewer accounts"
        )


@app.command()
@cli_errors
def render(
    klines: KlinesOpt,
    trades: TradesOpt,
    account: Annotated[str, typer.Option(help="Account id to draw.")],
    out: Annotated[Path, typer.Option(help="Output PNG.")],
    style: Annotated[
        str,
        typer.Option(
            help="fraudlens-gap or fraudlens (the CNN's inputs; a model renders with the "
            "style it was trained on) or reference (the seed's look)."
        ),
    ] = DEFAULT_CNN_STYLE.value,
    scale: Annotated[int, typer.Option(min=1, max=16, help="Enlarge pixels by this factor.")] = 1,
    window_hours: WindowHoursOpt = 24.0,
) -> None:
    """Render one account's trades over its bars as an image."""
    from fraudlens._echo import cut
    from fraudlens.errors import ConfigError, DataError
    from fraudlens.market.data import load_market_files, window
    from fraudlens.market.render import render_account, save_png

    check_outputs({"--klines": klines, "--trades": trades}, {"--out": out})
    if out.suffix and out.suffix.lower() != ".png":
        # (a .jpg name had been given PNG bytes; a name with no suffix, a device such as
        # /dev/stdout, is written as given)
        raise ConfigError(f"--out {out} must end in .png: the image is written as a PNG")
    data = window(load_market_files(klines, trades), window_hours)
    if account not in set(data.account_ids.tolist()):
        # (the id quoted as repr shows control characters; cut, as a long one was repeated whole)
        raise DataError(
            f"account {cut(repr(account), 80)} has no trades", file=str(trades), column="account_id"
        )
    image = render_account(data, account, style=style)
    if scale > 1:
        image = np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)
    save_png(image, out)
    console.print(f"wrote {out} ({image.shape[1]}x{image.shape[0]}, style {style})")


def _fit(
    kind: DetectorChoice,
    data: MarketData,
    seed: int,
    epochs: int | None,
    arch: str,
    weights: np.ndarray | None = None,
    style: str = DEFAULT_CNN_STYLE.value,
    precision: str = PrecisionChoice.auto.value,
) -> tuple[Detector, dict[str, Any]]:
    """Fit one detector with progress; return it and its validation metrics.

    ``weights``: per-account sample weights in ``data.account_ids`` order (None: all 1).
    """
    from fraudlens.errors import DataError
    from fraudlens.evaluation import binary_metrics
    from fraudlens.market.detectors import CNNDetector, FeatureDetector

    y = data.y()
    if kind is DetectorChoice.features:
        # A stratified hold-out gives honest validation figures; the stored model is
        # then refit on everything (boosting is fast).
        takeover, normal = int((y == 1).sum()), int((y == 0).sum())
        if min(takeover, normal) < 2:
            # (labels of one class had ended the draw below in numpy's ValueError; one
            # account of a class went to the hold-out and left training without it)
            raise DataError(
                "training needs at least 2 takeover (1) and 2 normal (0) accounts, one of "
                f"each to hold out for validation; the labels hold {takeover} takeover and "
                f"{normal} normal",
                column="label",
            )
        rng = np.random.default_rng(seed)
        ids = data.account_ids
        val = np.zeros(len(ids), dtype=bool)
        for label in (0, 1):
            idx = np.flatnonzero(y == label)
            val[rng.choice(idx, size=max(1, len(idx) // 5), replace=False)] = True
        with working("training the feature detector (hold-out validation)"):
            w_fit = None if weights is None else weights[~val]
            det = FeatureDetector(seed=seed).fit(
                data.subset(ids[~val]), y[~val], sample_weight=w_fit
            )
            s = det.decision_function(data.subset(ids[val]))
            metrics = _headline(binary_metrics(y[val], s, det.threshold_))
            det = FeatureDetector(seed=seed).fit(data, y, sample_weight=weights)
        return det, metrics
    params: dict[str, Any] = {"seed": seed, "arch": arch, "style": style, "precision": precision}
    if epochs is not None:
        params["epochs"] = epochs
    det_cnn = CNNDetector(**params)
    with progress() as bar:
        # Off a terminal: one line per epoch ("training the CNN: epoch 3/8 (38%), loss ...").
        task = bar.add_task(
            "training the CNN (epochs)",
            total=det_cnn.epochs_for(len(data.account_ids)),
            name="training the CNN",
            unit="epoch",
            line_each_step=True,
        )

        def on_epoch(epoch: int, total: int, m: dict[str, float]) -> None:
            desc = ", ".join(f"{k} {v:.4f}" for k, v in m.items() if isinstance(v, float))
            bar.update(
                task,
                completed=epoch,
                total=total,
                description=f"training the CNN  {desc}",
                detail=desc,
            )

        if weights is None:
            det_cnn.fit(data, y, progress=on_epoch)
        else:
            det_cnn.fit(data, y, sample_weight=weights, progress=on_epoch)  # type: ignore[call-arg,unused-ignore]
    metrics = dict(getattr(det_cnn, "validation_", {}) or {})
    return det_cnn, metrics


def _load_reviewed(url: str, split: Any, detector: DetectorChoice) -> Any:
    """The reviewed windows to train on (the part ``split`` does not hold out)."""
    import inspect

    from fraudlens.cli._common import existing_database
    from fraudlens.errors import DataError
    from fraudlens.feedback import load_reviewed
    from fraudlens.market.detectors import CNNDetector

    if detector is DetectorChoice.cnn and (
        "sample_weight" not in inspect.signature(CNNDetector.fit).parameters
    ):
        raise DataError(
            "the CNN does not take sample weights yet, so it cannot weight reviewed "
            "events: train --detector features with --reviewed-from"
        )
    with working("loading reviewed events") as status:
        rev = load_reviewed(
            existing_database(url), split=split, part="train", progress=status.update
        )
    counts = rev.counts()
    words = {"held_out": "held out for comparison", "no_trades": "without trades in the store"}
    skipped = ", ".join(f"{v:,} {words.get(k, k)}" for k, v in rev.skipped.items())
    console.print(
        f"reviewed events from {rev.database}: {counts['confirmed']:,} confirmed and "
        f"{counts['dismissed']:,} dismissed to train on"
        + (f"; {skipped}" if skipped else "")
        + (f" (held out: {split.describe()})" if split.active else ""),
        soft_wrap=True,
        highlight=False,
    )
    if len(rev) == 0:
        raise DataError(
            f"no confirmed or dismissed market risk events to train on in {rev.database}"
            + (f" ({skipped})" if skipped else "")
            + ": review alerts first, or train without --reviewed-from"
        )
    return rev


def _headline(report: dict[str, Any]) -> dict[str, Any]:
    keys = ("n", "roc_auc", "average_precision", "accuracy", "recall_at_1pct_fpr")
    return {k: report[k] for k in keys if k in report}


@app.command()
@cli_errors
def train(
    data: Annotated[
        Path, typer.Option(help="Folder with klines, trades and labels (CSV or Parquet).")
    ],
    model_dir: ModelDir = None,
    detector: Annotated[
        DetectorChoice, typer.Option(help="cnn (image CNN) or features (boosting).")
    ] = DetectorChoice.features,
    seed: SeedOpt = 0,
    epochs: Annotated[
        int | None,
        typer.Option(
            min=1,
            # (no bound had trained for ever: --epochs 99999999999; the default's 40
            # epochs take minutes, 1,000 a few hours)
            max=1000,
            help="CNN epochs [default: 40; past 8,000 accounts 320,000 / accounts, at least 20].",
        ),
    ] = None,
    arch: Annotated[
        ArchChoice,
        typer.Option(
            help="CNN architecture: bars (three averaged column networks), bar (one), "
            "compact, columns or resnet18."
        ),
    ] = ArchChoice.bars,
    style: Annotated[
        StyleChoice,
        typer.Option(
            help="CNN image style: fraudlens-gap draws the two bars of an equal-size "
            "round trip across neighbouring bars at least as bright as one bar as wide as "
            "the legs' price gap; fraudlens (the earlier default) does not. The model's "
            "metadata records it and scoring uses it."
        ),
    ] = DEFAULT_CNN_STYLE,
    precision: Annotated[
        PrecisionChoice,
        typer.Option(
            help="CNN training arithmetic: auto is bf16 (bfloat16 products, float32 "
            "weights and scoring) where the CPU multiplies bfloat16 natively (AVX-512 "
            "BF16 or AMX), fp32 elsewhere."
        ),
    ] = PrecisionChoice.auto,
    window_hours: WindowHoursOpt = 24.0,
    reviewed_from: Annotated[
        str | None,
        typer.Option(
            help="Store URL whose confirmed (label 1) and dismissed (label 0) market risk "
            "events join the training labels, each event's window as one sample."
        ),
    ] = None,
    review_weight: Annotated[
        float | None,
        typer.Option(
            help="What one reviewed event counts for, in simulated accounts [default: 5]."
        ),
    ] = None,
    holdout_after: Annotated[
        str | None,
        typer.Option(
            help="Keep reviewed events whose window ends after this ISO-8601 time out of "
            "training (for models compare)."
        ),
    ] = None,
    holdout_fraction: Annotated[
        float | None,
        typer.Option(
            help="Keep this share of reviewed events (chosen by event id) out of training."
        ),
    ] = None,
    activate: Annotated[
        bool | None,
        typer.Option(
            "--activate/--no-activate",
            help="Make the new version the active one [default: yes, except with "
            "--reviewed-from, whose versions wait for models compare and models activate].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Train a market detector and store it as the next registry version.

    With --reviewed-from, the analysts' decisions in that store join the simulated
    labels (weighted by --review-weight); reviewed events held out by --holdout-after or
    --holdout-fraction are not trained on. The version's metadata records every source
    of labels ("labels": simulated data hash and path, the store, event ids, counts).
    Such a version is stored as a candidate, not activated: `fraudlens models compare`
    measures it on the held-out reviewed events, `fraudlens models activate` puts it in
    service.
    """
    from fraudlens import feedback
    from fraudlens.market.data import load_market, window
    from fraudlens.monitoring import market_reference_profile
    from fraudlens.registry import Registry, data_hash

    split = feedback.HoldoutSplit.parse(holdout_after, holdout_fraction)
    if reviewed_from is None and (split.active or review_weight is not None):
        from fraudlens.errors import ConfigError

        raise ConfigError(
            "--review-weight, --holdout-after and --holdout-fraction need --reviewed-from"
        )
    # -m at a file or a model's folder is refused before the training (it had been after,
    # a CNN's hours of epochs lost)
    registry = Registry(_models_dir(model_dir))
    with working(f"loading {data}"):
        md = window(load_market(data, require_labels=True), window_hours)
    y = md.y()
    console.print(
        f"{plural(len(y), 'account')} ({int(y.sum()):,} takeover), "
        f"{plural(len(md.trades), 'trade')}"
    )
    sim_hash = data_hash(md.trades, md.klines)
    reviewed = None
    if reviewed_from is not None:
        reviewed = _load_reviewed(reviewed_from, split, detector)
    training = feedback.merge_training(
        md,
        reviewed,
        review_weight=feedback.REVIEW_WEIGHT if review_weight is None else review_weight,
    )
    t0 = time.perf_counter()
    weights = training.sample_weight if reviewed is not None else None
    det, metrics = _fit(
        detector,
        training.data,
        seed,
        epochs,
        arch.value,
        weights,
        style=style.value,
        precision=precision.value,
    )
    seconds = time.perf_counter() - t0
    wanted = reviewed is None if activate is None else activate
    mv = registry.save(
        det,
        activate=wanted,
        metrics={"validation": metrics, "train_seconds": round(seconds, 2)},
        data_digest=(
            sim_hash if reviewed is None else data_hash(training.data.trades, training.data.klines)
        ),
        extra={
            "window_hours": window_hours,
            "train_accounts": len(training.y),
            # which labels trained this version (simulated, analysts' reviewed events)
            "labels": feedback.label_sources(
                training, simulated_path=str(data), simulated_hash=sim_hash
            ),
            # what monitoring measures feature drift against
            "reference_profile": market_reference_profile(training.data),
        },
    )
    shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
    console.print(
        f"trained {mv.name} {mv.version} in {seconds:.1f} s; validation: {shown or 'n/a'}"
    )
    if reviewed is not None:
        c = reviewed.counts()
        console.print(
            f"labels: {int((~training.is_reviewed).sum()):,} simulated accounts + "
            f"{c['confirmed']:,} confirmed and {c['dismissed']:,} dismissed reviewed events "
            f"(weight {training.review_weight:g} each)",
            highlight=False,
        )
    console.print(f"stored in {mv.path}")
    if mv.active and not wanted:
        # No version of the model is marked active, so the newest is used: the run used
        # to say nothing, as if the version waited for `models activate`.
        console.print(
            f"not marked active, but in use: no version of {mv.name} is marked active, "
            "so the newest (this one) is the one scoring uses",
            soft_wrap=True,
            highlight=False,
        )
    elif not mv.active:
        _print_candidate_steps(mv.name, mv.version, model_dir, reviewed_from)


def _print_candidate_steps(
    name: str, version: str, model_dir: Path | None, reviewed_from: str | None
) -> None:
    """The commands that judge and activate a version stored without activating it,
    runnable as printed: this registry and the store the reviewed events came from."""
    import shlex

    from fraudlens.feedback import redact_url

    exe = fraudlens_command()
    registry = "" if model_dir is None else f" -m {shlex.quote(str(model_dir))}"
    steps, note = [], ""
    if reviewed_from is not None:
        db = reviewed_from
        if "***" in redact_url(db) and "***" not in db:
            # A password is not echoed to the terminal: the user puts it back.
            db, note = redact_url(db), " (with the database password in place of ***)"
        steps.append(f"{exe} models compare {name} {version} --db {shlex.quote(db)}{registry}")
    steps.append(f"{exe} models activate {name} {version}{registry}")
    what = (
        f"compare it with the active version{note}, then activate it"
        if reviewed_from is not None
        else "activate it with"
    )
    console.print(f"not activated; {what}:", highlight=False)
    for step in steps:
        console.print(f"  $ {step}", soft_wrap=True, highlight=False, markup=False)


@app.command()
@cli_errors
def evaluate(
    data: Annotated[Path, typer.Option(help="Folder with klines, trades and labels.")],
    model_dir: ModelDir = None,
    detector: Annotated[
        DetectorChoice | None, typer.Option(help="Model [default: the last activated].")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Report folder [default: <model-dir>/reports/<model>-<version>]."),
    ] = None,
    window_hours: WindowHoursOpt = 24.0,
) -> None:
    """Evaluate a stored detector on labelled data and write a report with plots."""
    from fraudlens.market.data import load_market
    from fraudlens.market.evaluate import evaluate_market
    from fraudlens.registry import Registry

    reg = Registry(_models_dir(model_dir))
    mv = reg.get(_model_name(detector))
    det = reg.load(mv.name, mv.version)
    with working(f"loading {data}"):
        md = load_market(data, require_labels=True)
    out_dir = out or reg.root / "reports" / f"{mv.name}-{mv.version}"
    with progress() as bar:
        task = bar.add_task("scoring accounts", total=len(md.account_ids))
        report = evaluate_market(
            det,
            md,
            out_dir,
            window_hours=window_hours,
            progress=lambda k: bar.advance(task, k),
            data_name=str(data),
        )
    reg.update_metadata(mv.name, mv.version, evaluation={"data": str(data), **_headline(report)})
    _print_report(report)
    # Only the plots this run wrote: by_kind.png needs a kind column in the labels.
    plots = [name for name in report.get("files", {}).values() if str(name).endswith(".png")]
    console.print(
        f"report: {out_dir / 'report.json'} (plots: {', '.join(plots) or 'none'})",
        soft_wrap=True,
    )


def _print_report(report: dict[str, Any]) -> None:
    t = Table("metric", "value", title=f"evaluation of {report.get('model', '')}")
    for k in (
        "n",
        "positives",
        "roc_auc",
        "average_precision",
        "accuracy",
        "recall_at_1pct_fpr",
    ):
        v = report[k]
        t.add_row(k, f"{v:.4f}" if isinstance(v, float) else f"{v:,}")
    own = report.get("model_threshold", report["threshold"])
    which = "the model's own" if report["threshold"] == own else f"model's own {own:.4f}"
    t.add_row(f"threshold ({which}; flagged: score >)", f"{report['threshold']:.4f}")
    cm = report["confusion_matrix"]
    t.add_row("confusion (tn fp / fn tp)", f"{cm['tn']} {cm['fp']} / {cm['fn']} {cm['tp']}")
    console.print(t)
    if "by_kind" in report:
        from fraudlens._echo import cut
        from fraudlens.market.evaluate import KIND_CHARS

        kt = Table("kind", "label", "n", "flagged share", "mean score", title="by kind")
        for name, row in report["by_kind"].items():
            kt.add_row(
                cut(str(name), KIND_CHARS),  # (report.json keeps it whole)
                str(row["label"]),
                str(row["n"]),
                f"{row['flagged_share']:.3f}",
                f"{row['mean_score']:.3f}",
            )
        console.print(kt)


@app.command()
@cli_errors
def score(
    klines: KlinesOpt,
    trades: TradesOpt,
    out: Annotated[Path, typer.Option(help="Output scores CSV.")],
    model_dir: ModelDir = None,
    detector: Annotated[
        DetectorChoice | None, typer.Option(help="Model [default: the last activated].")
    ] = None,
    window_hours: WindowHoursOpt = 24.0,
    engine: Annotated[Engine, typer.Option(help="local (in-process) or ray.")] = Engine.local,
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster address (ray engine).")
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Flag scores above this [default: the model's own threshold].",
        ),
    ] = None,
) -> None:
    """Score every account in a trades file: one row per account
    (account_id, score, flagged, model, threshold)."""
    from fraudlens.market.batch import score_accounts, score_accounts_ray
    from fraudlens.market.data import load_market_files
    from fraudlens.registry import Registry

    check_outputs({"--klines": klines, "--trades": trades}, {"--out": out})
    t0 = time.perf_counter()
    with working("loading and validating"):
        md = load_market_files(klines, trades)
    reg = Registry(_models_dir(model_dir))
    name = _model_name(detector)
    if engine is Engine.ray:
        with working("scoring on Ray"):
            frame = score_accounts_ray(
                md,
                str(reg.root),
                reg.resolve(name),
                window_hours=window_hours,
                threshold=threshold,
                address=ray_address,
            )
    else:
        det = reg.load(name)
        with progress() as bar:
            task = bar.add_task("scoring accounts", total=len(md.account_ids))
            frame = score_accounts(
                md,
                det,
                window_hours=window_hours,
                threshold=threshold,
                progress=lambda k: bar.advance(task, k),
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(frame, out)
    secs = time.perf_counter() - t0
    console.print(
        f"scored {plural(len(frame), 'account')} in {secs:.2f} s "
        f"({len(frame) / max(secs, 1e-9):,.0f}/s); "
        f"{int(frame['flagged'].sum()):,} flagged -> {out}"
    )
    if len(frame):
        used = float(frame["threshold"].iloc[0])
        which = "given with --threshold" if threshold is not None else "the model's own threshold"
        console.print(f"model {frame['model'].iloc[0]}; flagged: score > {used:.4f} ({which})")


@app.command()
@cli_errors
def pairs(
    klines: KlinesOpt,
    trades: TradesOpt,
    out: Annotated[Path, typer.Option(help="Output CSV: one row per (account, counterparty).")],
    matches: Annotated[
        Path | None, typer.Option(help="Also write every mirrored trade match to this CSV.")
    ] = None,
    max_gap: Annotated[
        float,
        # At most a day: inf used to end in pandas' OutOfBoundsTimedelta traceback.
        typer.Option(min=0.0, max=86_400.0, help="Largest time between mirrored legs, in seconds."),
    ] = 60.0,
    price_tol: Annotated[
        float, typer.Option(min=0.0, help="Relative tolerance for equal prices.")
    ] = 1e-9,
    top: Annotated[int, typer.Option(min=0, help="Pairs shown in the summary table.")] = 10,
) -> None:
    """Find account pairs whose trades mirror each other, with the value moved between them.

    Mirrored trades: same symbol, opposite sides, equal price and quantity, at most
    --max-gap apart, different accounts. Each pair is written from both sides;
    value_lost is what the account lost to the counterparty through the mirrored round
    trips (quote currency), value_moved its size.
    """
    import pandas as pd

    from fraudlens.market.data import _iso, load_klines, load_trades
    from fraudlens.market.pairs import account_pairs, find_pairs

    check_outputs({"--klines": klines, "--trades": trades}, {"--out": out, "--matches": matches})
    t0 = time.perf_counter()
    gap = pd.Timedelta(seconds=max_gap)
    with progress() as bar:
        task = bar.add_task("loading k-lines", total=4)
        k = load_klines(klines)
        bar.update(task, advance=1, description="loading trades")
        t = load_trades(trades, klines=k)
        bar.update(task, advance=1, description=f"matching {len(t):,} trades")
        table = account_pairs(t, max_gap=gap, price_tol=price_tol)
        bar.update(task, advance=1, description="writing")
        out.parent.mkdir(parents=True, exist_ok=True)
        shown = table.copy()
        for col in ("first_ts", "last_ts"):
            shown[col] = _iso(shown[col])
        write_csv(shown, out)
        n_matches = None
        if matches is not None:
            m = find_pairs(t, max_gap=gap, price_tol=price_tol)
            n_matches = len(m)
            for col in ("buy_ts", "sell_ts"):
                m[col] = _iso(m[col])
            matches.parent.mkdir(parents=True, exist_ok=True)
            write_csv(m, matches)
        bar.update(task, advance=1, description="done")
    secs = time.perf_counter() - t0
    n_acc = t["account_id"].nunique()
    console.print(
        f"{plural(n_acc, 'account')}, {plural(len(t), 'trade')}: "
        f"{plural(len(table) // 2, 'account pair')} with "
        f"mirrored trades in {secs:.2f} s -> {out}"
        + (
            f" ({plural(n_matches or 0, 'match', 'matches')} -> {matches})"
            if matches is not None
            else ""
        )
    )
    if top and len(table):
        # each pair once, from the side that lost the value
        lost = table["value_lost"]
        one = table[(lost > 0) | ((lost == 0) & (table["account_id"] < table["counterparty"]))]
        tt = Table(
            "account (lost)",
            "counterparty",
            "matched",
            "round trips",
            "value moved",
            "symbols",
            "first (UTC)",
            "last (UTC)",
            title=f"top {min(top, len(one))} pairs by value moved",
        )
        for row in one.head(top).itertuples(index=False):
            tt.add_row(
                str(row.account_id),
                str(row.counterparty),
                f"{row.n_matched:,}",
                f"{row.n_round_trips:,}",
                f"{row.value_moved:,.6g}",
                str(row.symbols),
                f"{row.first_ts:%m-%d %H:%M}",
                f"{row.last_ts:%m-%d %H:%M}",
            )
        console.print(tt)
