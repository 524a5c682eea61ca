"""``fraudlens models``: list, compare and activate registry versions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fraudlens._io import write_csv
from fraudlens.cli._common import (
    ModelDir,
    cli_errors,
    console,
    event_threshold_option,
    plural,
    registry_root,
    working,
)
from fraudlens.errors import DataError, ModelNotFoundError
from fraudlens.registry import Registry, check_version

if TYPE_CHECKING:
    from fraudlens.feedback import Comparison

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None)
stdout = Console(markup=False)  # (as the console of cli._common: paths are no markup)

#: Where a model's headline figure comes from, best first: ``evaluate`` on labelled data,
#: a test part of a training split, the hold-out validation (market; cards: the held-out
#: window of ``cards train``).
_SOURCES = (("evaluation", "eval"), ("metrics", "test"), ("metrics.validation", "val"))
_FIGURES = (("roc_auc", "AUC"), ("average_precision", "AP"))


def version_argument(version: str) -> str:
    """``version`` if it is a well-formed version, else a DataError about the argument.

    The registry's own check names the field ``version`` as a column, which is what the
    service's error bodies show; on the command line it is an argument, not a column.
    """
    try:
        return check_version(version)
    except DataError as e:
        raise DataError(e.reason) from None


def headline(metadata: dict[str, Any]) -> str:
    """One figure that says how good a stored model is, with where it was measured.

    ``"AUC 0.9986 eval"``: ROC AUC (else average precision) from the model's
    evaluation report, else its test split, else its validation hold-out; ``"-"`` if none.
    """
    for path, where in _SOURCES:
        block: Any = metadata
        for key in path.split("."):
            block = block.get(key) if isinstance(block, dict) else None
        if not isinstance(block, dict):
            continue
        for key, label in _FIGURES:
            value = block.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return f"{label} {value:.4f} {where}"
    return "-"


@app.command("list")
@cli_errors
def list_models(model_dir: ModelDir = None) -> None:
    """List every stored model version with its threshold and headline figure.

    The headline is ROC AUC from `evaluate` (eval), else from the test part of a
    training split (test), else from the training hold-out (val: market, and cards'
    held-out window). A
    version marked * was trained with analysts' reviewed labels (market train
    --reviewed-from).
    """
    from fraudlens.feedback import trained_on_reviewed

    reg = Registry(registry_root(model_dir, must_exist=True))
    versions = reg.list()
    if not versions:
        raise ModelNotFoundError(f"no models in registry {reg.root}: train one first")
    # Fits 80 columns: no borders, dates to the minute, one figure per model.
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    table.add_column("model", no_wrap=True)
    table.add_column("version", no_wrap=True)
    table.add_column("active", no_wrap=True)
    table.add_column("created (UTC)", no_wrap=True)
    table.add_column("threshold", justify="right", no_wrap=True)
    table.add_column("headline", no_wrap=True)
    for mv in versions:
        created = str(mv.metadata.get("created_at", ""))[:16].replace("T", " ")
        threshold = mv.metadata.get("threshold")
        table.add_row(
            mv.name,
            mv.version + ("*" if trained_on_reviewed(mv.metadata) else ""),
            "yes" if mv.active else "",
            created,
            f"{threshold:.4f}" if isinstance(threshold, int | float) else "-",
            headline(mv.metadata),
        )
    stdout.print(f"models in {reg.root}", soft_wrap=True, highlight=False)
    stdout.print(table)
    if any(trained_on_reviewed(mv.metadata) for mv in versions):
        stdout.print("* trained with analysts' reviewed labels", highlight=False)
    defaults = reg.defaults()
    if defaults:
        stdout.print(
            "defaults: " + ", ".join(f"{k} -> {v}" for k, v in sorted(defaults.items())),
            soft_wrap=True,
        )


@app.command("activate")
@cli_errors
def activate(name: str, version: str, model_dir: ModelDir = None) -> None:
    """Make VERSION the active version of model NAME."""
    reg = Registry(registry_root(model_dir, must_exist=True))
    reg.activate(reg.resolve(name), version_argument(version))
    console.print(f"{name} -> {version}")


@app.command("compare")
@cli_errors
def compare(
    name: Annotated[str, typer.Argument(help="Model name (market-features, market-cnn, market).")],
    candidate: Annotated[str, typer.Argument(help="The version to judge, e.g. v0002.")],
    db: Annotated[
        str | None,
        typer.Option(
            help="Store with the reviewed risk events [default: FRAUDLENS_DATABASE_URL or "
            "sqlite:///fraudlens.db].",
            show_default=False,
        ),
    ] = None,
    against: Annotated[
        str | None, typer.Option(help="Version to compare with [default: the active one].")
    ] = None,
    model_dir: ModelDir = None,
    event_threshold: Annotated[float | None, event_threshold_option()] = None,
    holdout_after: Annotated[
        str | None,
        typer.Option(help="Compare only on events whose window ends after this ISO-8601 time."),
    ] = None,
    holdout_fraction: Annotated[
        float | None,
        typer.Option(help="Compare only on this held-out share of events (by event id hash)."),
    ] = None,
    include_trained: Annotated[
        bool,
        typer.Option(help="Keep events a version trained on (its figures on them are optimistic)."),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(help="Write each compared event's label and scores to this CSV."),
    ] = None,
) -> None:
    """Score CANDIDATE and the active version on the analysts' reviewed events.

    Prints, per version: reviewed precision at the event threshold (confirmed /
    flagged among reviewed events), recall of the confirmed events, dismissed alerts
    that would no longer fire, and ROC AUC / AP when both classes are present. Events
    either version trained on are left out (see README, "Feedback loop"). The figures
    are recorded in the candidate's metadata ("reviewed_comparison"). Exits 2 when no
    reviewed events are left to compare on.
    """
    from fraudlens.cli._common import existing_database
    from fraudlens.config import get_settings
    from fraudlens.feedback import HoldoutSplit, compare_versions

    for given in (candidate, against):
        if given is not None:
            version_argument(given)
    reg = Registry(registry_root(model_dir, must_exist=True))
    url = existing_database(db or get_settings().database_url)
    with working("comparing") as status:
        result = compare_versions(
            reg,
            name,
            candidate,
            url,
            against=against,
            event_threshold=event_threshold,
            split=HoldoutSplit.parse(holdout_after, holdout_fraction),
            include_trained=include_trained,
            progress=status.update,
        )
    _print_comparison(result)
    cand = result.versions[0].model.split(":")
    reg.update_metadata(cand[0], cand[1], reviewed_comparison=result.to_dict())
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_csv(result.events, out)
        console.print(f"per-event scores -> {out}", soft_wrap=True)


def _share(n: int, of: int) -> str:
    return f"{n:,} of {of:,}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _print_comparison(result: Comparison) -> None:
    """The comparison table, with warnings first and in red."""
    for text in result.warnings:
        console.print(
            f"[bold red]WARNING:[/] {escape(text)}", soft_wrap=True, highlight=False, markup=True
        )
    n = len(result.events)
    stdout.print(
        f"{n:,} reviewed events of {result.database} ({result.confirmed:,} confirmed, "
        f"{result.dismissed:,} dismissed); flagged: score > {result.event_threshold:g}",
        soft_wrap=True,
        highlight=False,
    )
    for tag, k in result.excluded.items():
        stdout.print(
            f"left out: {plural(k, 'event')} {tag} trained on", soft_wrap=True, highlight=False
        )
    if result.split.active:
        stdout.print(f"held-out events only: {result.split.describe()}", highlight=False)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("figure", no_wrap=True)
    for v in result.versions:
        table.add_column(f"{v.model.split(':')[-1]} {v.role}", justify="right", no_wrap=True)
    rows: list[tuple[str, list[str]]] = [
        ("reviewed precision", [_num(v.precision) for v in result.versions]),
        ("flagged", [f"{v.flagged:,}" for v in result.versions]),
        (
            "recall of confirmed",
            [_num(v.recall) for v in result.versions],
        ),
        (
            "dismissed no longer firing",
            [_share(v.dismissed_silenced, result.dismissed) for v in result.versions],
        ),
        (
            "confirmed no longer firing",
            [_share(v.confirmed_missed, result.confirmed) for v in result.versions],
        ),
        ("ROC AUC", [_num(v.roc_auc) for v in result.versions]),
        ("average precision", [_num(v.average_precision) for v in result.versions]),
        (
            "recorded scores reproduced",
            ["-" if v.reproduced is None else _share(*v.reproduced) for v in result.versions],
        ),
    ]
    for label, values in rows:
        table.add_row(label, *values)
    stdout.print(table)
    for r in result.raised_by:
        stdout.print(
            f"as raised by {r['model_version']}: {r['reviewed']:,} reviewed, "
            f"precision {_num(r['precision'])}",
            soft_wrap=True,
            highlight=False,
        )
