"""``fraudlens quickstart``: the whole flow on embedded defaults, in one folder."""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.text import Text

from fraudlens.cli._common import (
    SeedOpt,
    cli_errors,
    console,
    db_option,
    fraudlens_command,
    plural,
    progress,
    shell_path,
)

#: Where the service of the printed ``serve`` command listens: loopback only.
SERVE_HOST = "127.0.0.1"


def _serve_port() -> int:
    # The port `fraudlens serve` itself would take from the environment, else its default.
    text = os.environ.get("FRAUDLENS_PORT", "")
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else 8080


@cli_errors
def quickstart(
    out: Annotated[Path, typer.Option(help="Working folder for data, models and reports.")] = Path(
        "fraudlens-quickstart"
    ),
    accounts: Annotated[
        int, typer.Option(min=200, help="Training accounts (test set: half).")
    ] = 4000,
    seed: SeedOpt = 0,
    cnn: Annotated[
        bool, typer.Option(help="Also train the image CNN (a few minutes on 2 cores).")
    ] = True,
    cnn_epochs: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="CNN epochs [default: 40; past 8,000 accounts 320,000 / accounts, at least 20].",
        ),
    ] = None,
    cards: Annotated[bool, typer.Option(help="Also run the cards pass.")] = True,
) -> None:
    """Simulate, train, evaluate and score, for market (and cards), with local defaults.

    Everything lands under OUT (default ./fraudlens-quickstart):

    \b
      market/train, market/test  simulated k-lines, trades and labels (CSV)
      market/scores.csv          batch scores of the test accounts
      models/                    the model registry (fraudlens models list -m OUT/models)
      reports/<model>/           report.json and plots of each evaluated model
      fraudlens.db, queue.db     the real-time pass: store with risk events, and its queue
      cards/transactions.csv     simulated card transactions (unless --no-cards)
      sink/                      scored card records, partitioned yyyy/mm/dd/HH

    At the end it prints the commands to look at the results; run them from the same
    folder.
    """
    from fraudlens.cli import market as m

    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    models = out / "models"
    train_dir, test_dir = out / "market" / "train", out / "market" / "test"
    console.rule(Text("market: simulate", style="bold"))
    m.simulate(out=train_dir, accounts=accounts, seed=seed + 1, fraud_share=0.5, fmt="csv")
    m.simulate(
        out=test_dir, accounts=max(accounts // 2, 100), seed=seed + 2, fraud_share=0.5, fmt="csv"
    )
    reports = {}
    detectors = [m.DetectorChoice.features] + ([m.DetectorChoice.cnn] if cnn else [])
    for det in detectors:
        console.rule(Text(f"market: train and evaluate the {det.value} detector", style="bold"))
        m.train(
            data=train_dir,
            model_dir=models,
            detector=det,
            seed=seed,
            epochs=cnn_epochs,
            arch=m.ArchChoice.bars,
            window_hours=24.0,
        )
        rep = out / "reports" / f"market-{det.value}"
        m.evaluate(data=test_dir, model_dir=models, detector=det, out=rep, window_hours=24.0)
        reports[f"market-{det.value}"] = rep
    if cnn:
        # The last activated model is its domain's default: the feature detector, the
        # more accurate and far faster of the two, is made the market default again, so
        # the real-time pass and the printed batch-scoring command use the model that
        # scores.csv is scored with (the CNN, trained last, had been the default).
        from fraudlens.registry import Registry

        registry = Registry(models)
        registry.activate("market-features", registry.active_version("market-features"))
    console.rule(Text("market: batch scoring", style="bold"))
    scores = out / "market" / "scores.csv"
    m.score(
        klines=test_dir / "klines.csv",
        trades=test_dir / "trades.csv",
        out=scores,
        model_dir=models,
        detector=m.DetectorChoice.features,
        window_hours=24.0,
        engine=m.Engine.local,
        ray_address=None,
    )
    db_url, flagged = _pipeline_pass(out, models, test_dir)
    if cards:
        from fraudlens.cli._quickstart_cards import cards_pass

        reports.update(cards_pass(out, models, seed))
    lines = [f"{name}: {path / 'report.json'}" for name, path in reports.items()]
    lines.append(f"market scores: {scores}")
    lines.append(f"risk events: {flagged:,} flagged accounts in {db_url}")
    lines.append(f"registry: {models}")
    console.print(
        Panel(
            "\n".join(lines),
            title=f"quickstart done in {time.perf_counter() - t0:.0f} s",
            expand=False,
        )
    )
    _print_next_steps(next_steps(models, db_url, test_dir))
    from fraudlens.cli.users import local_analyst

    user, password = local_analyst(db_url)
    console.print(
        f"  sign in to the review page as user {user} with password {password} (shown only "
        f"now; `{fraudlens_command()} users password {user}{db_option(db_url)[0]}` sets "
        "another)",
        soft_wrap=True,
        highlight=False,
        markup=False,
    )


def next_steps(models: Path, db_url: str, test_dir: Path) -> list[tuple[str, str]]:
    """The commands the quickstart suggests next, as ``(what, command)`` pairs.

    Each runs as printed from the folder the quickstart ran in; the last one (the
    service) runs until stopped.
    """
    exe = fraudlens_command()
    port = _serve_port()
    m, db = shlex.quote(str(models)), shlex.quote(db_url)
    klines, trades = (shlex.quote(str(test_dir / f)) for f in ("klines.csv", "trades.csv"))
    return [
        ("the model registry", f"{exe} models list -m {m}"),
        ("the newest risk events", f"{exe} db events --db {db} --limit 10"),
        (
            "score a trades file in batch",
            f"{exe} market score --klines {klines} --trades {trades} -m {m} "
            f"--out {shlex.quote(str(test_dir.parent / 'scores-again.csv'))}",
        ),
        (
            f"review the flagged accounts at http://{SERVE_HOST}:{port}/review (Ctrl-C stops "
            f"it); on loopback sign-in is optional (http://{SERVE_HOST}:{port}/login), "
            "FRAUDLENS_AUTH=on demands it",
            f"{exe} serve -m {m} --db {db} --host {SERVE_HOST} --port {port}",
        ),
    ]


def _print_next_steps(steps: list[tuple[str, str]]) -> None:
    # Printed outside the panel and never wrapped, so each command can be copied whole.
    console.print(
        f"[bold]next[/], from {escape(os.getcwd())}:", soft_wrap=True, highlight=False, markup=True
    )
    for what, command in steps:
        console.print(f"  {what}:", highlight=False)
        console.print(f"    $ {command}", soft_wrap=True, highlight=False, markup=False)
    exe = fraudlens_command()
    activate = Path(sys.executable).parent / "activate"
    if exe != "fraudlens" and activate.is_file() and "-m fraudlens" not in exe:
        console.print(
            f"  (or activate the virtualenv with `source {shell_path(activate)}`, "
            "then type fraudlens ... instead of the path)",
            soft_wrap=True,
            highlight=False,
            markup=False,
        )


def _pipeline_pass(out: Path, models: Path, test_dir: Path) -> tuple[str, int]:
    """Load the test accounts into the store, queue a check of each, run the worker and
    show the flagged accounts: the real-time path, on embedded SQLite."""
    from rich.table import Table

    from fraudlens.cli import pipeline as p
    from fraudlens.queues import open_queue
    from fraudlens.store import open_store
    from fraudlens.worker import Worker

    console.rule(
        Text("market: real-time pipeline (store -> queue -> worker -> risk events)", style="bold")
    )
    db_url = f"sqlite:///{out / 'fraudlens.db'}"
    queue_url = f"sqlite:///{out / 'queue.db'}"
    p.db_load(klines=test_dir / "klines.csv", trades=test_dir / "trades.csv", db=db_url)
    p.enqueue(all_accounts=True, queue=queue_url, db=db_url, business_type="quickstart")
    with open_queue(queue_url) as q, open_store(db_url) as store, progress() as bar:
        task = bar.add_task("worker", total=q.depth())
        worker = Worker(q, store, models)
        stats = worker.run(
            idle_exit=0.5, on_batch=lambda s: bar.update(task, completed=s.processed)
        )
        items, total = store.list_risk_events(business_type="quickstart", limit=10_000)
    busy = (stats.last_at or 0.0) - (stats.first_at or 0.0)
    console.print(
        f"worker: {plural(stats.processed, 'check')} in {busy:.1f} s "
        f"({stats.processed / busy if busy > 0 else 0:,.0f}/s), {stats.flagged:,} above "
        f"{worker.threshold}, {plural(stats.written, 'new risk event')}, "
        f"{stats.dead_lettered:,} dead-lettered"
    )
    table = Table(title=f"flagged accounts (top 10 of {total:,} by score)")
    for col in ("account", "score", "window end", "strongest evidence"):
        table.add_column(col)
    for e in sorted(items, key=lambda e: -e["score"])[:10]:
        trades = e["details"].get("trades") or [{}]
        table.add_row(
            e["account_id"], f"{e['score']:.4f}", e["window_end"], trades[0].get("reason", "")
        )
    console.print(table)
    return db_url, total
