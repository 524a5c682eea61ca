"""``fraudlens models``: list and activate registry versions."""

from __future__ import annotations

import typer
from rich.table import Table

from fraudlens.cli._common import ModelDir, cli_errors, console
from fraudlens.config import get_settings
from fraudlens.registry import Registry

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None)


@app.command("list")
@cli_errors
def list_models(model_dir: ModelDir = None) -> None:
    """List every stored model version."""
    reg = Registry(model_dir or get_settings().models_dir)
    table = Table("name", "version", "active", "created", "threshold", "metrics")
    for mv in reg.list():
        m = mv.metadata.get("metrics", {})
        short = ", ".join(f"{k}={v:.4f}" for k, v in m.items() if isinstance(v, float))[:80]
        table.add_row(
            mv.name,
            mv.version,
            "*" if mv.active else "",
            mv.metadata.get("created_at", ""),
            f"{mv.metadata.get('threshold', float('nan')):.4f}",
            short,
        )
    console.print(table)
    defaults = reg.defaults()
    if defaults:
        console.print("defaults: " + ", ".join(f"{k} -> {v}" for k, v in sorted(defaults.items())))


@app.command("activate")
@cli_errors
def activate(name: str, version: str, model_dir: ModelDir = None) -> None:
    """Make VERSION the active version of model NAME."""
    reg = Registry(model_dir or get_settings().models_dir)
    reg.activate(reg.resolve(name), version)
    console.print(f"{name} -> {version}")
