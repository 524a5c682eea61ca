"""``fraudlens models``: list and activate registry versions."""

from __future__ import annotations

from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from fraudlens.cli._common import ModelDir, cli_errors, console, registry_root
from fraudlens.errors import ModelNotFoundError
from fraudlens.registry import Registry

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None)
stdout = Console()

#: Where a model's headline figure comes from, best first: ``evaluate`` on labelled data,
#: the test part of the training split (cards), the hold-out validation (market).
_SOURCES = (("evaluation", "eval"), ("metrics", "test"), ("metrics.validation", "val"))
_FIGURES = (("roc_auc", "AUC"), ("average_precision", "AP"))


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

    The headline is ROC AUC from `evaluate` (eval), else from the test part of the
    training split (test, cards), else from the training hold-out (val, market).
    """
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
            mv.version,
            "yes" if mv.active else "",
            created,
            f"{threshold:.4f}" if isinstance(threshold, int | float) else "-",
            headline(mv.metadata),
        )
    stdout.print(f"models in {reg.root}", soft_wrap=True, highlight=False)
    stdout.print(table)
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
    reg.activate(reg.resolve(name), version)
    console.print(f"{name} -> {version}")
