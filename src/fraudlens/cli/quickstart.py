"""``fraudlens quickstart``: the whole flow on embedded defaults, in one folder."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.panel import Panel

from fraudlens.cli._common import cli_errors, console, progress


@cli_errors
def quickstart(
    out: Annotated[Path, typer.Option(help="Working folder for data, models and reports.")] = Path(
        "fraudlens-quickstart"
    ),
    accounts: Annotated[
        int, typer.Option(min=200, help="Training accounts (test set: half).")
    ] = 4000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    cnn: Annotated[
        bool, typer.Option(help="Also train the image CNN (a few minutes on 2 cores).")
    ] = True,
    cnn_epochs: Annotated[
        int | None, typer.Option(help="CNN epochs [default: the detector's].")
    ] = None,
    cards: Annotated[bool, typer.Option(help="Also run the cards pass.")] = True,
) -> None:
    """Simulate, train, evaluate and score, for market (and cards), with local defaults.

    Everything lands under OUT: data/, models/ (the registry), reports/ and scores.
    """
    from fraudlens.cli import market as m

    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    models = out / "models"
    train_dir, test_dir = out / "market" / "train", out / "market" / "test"
    console.rule("[bold]market: simulate")
    m.simulate(out=train_dir, accounts=accounts, seed=seed + 1, fraud_share=0.5, fmt="csv")
    m.simulate(
        out=test_dir, accounts=max(accounts // 2, 100), seed=seed + 2, fraud_share=0.5, fmt="csv"
    )
    reports = {}
    detectors = [m.DetectorChoice.features] + ([m.DetectorChoice.cnn] if cnn else [])
    for det in detectors:
        console.rule(f"[bold]market: train and evaluate the {det.value} detector")
        m.train(
            data=train_dir,
            model_dir=models,
            detector=det,
            seed=seed,
            epochs=cnn_epochs,
            arch="compact",
            window_hours=24.0,
        )
        rep = out / "reports" / f"market-{det.value}"
        m.evaluate(data=test_dir, model_dir=models, detector=det, out=rep, window_hours=24.0)
        reports[f"market-{det.value}"] = rep
    console.rule("[bold]market: batch scoring")
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
    lines.append(
        f"review them: fraudlens serve -m {models} --db {db_url}  "
        "then open http://127.0.0.1:8080/review"
    )
    lines.append(f"registry: {models}  (fraudlens models list -m {models})")
    console.print(
        Panel(
            "\n".join(lines),
            title=f"quickstart done in {time.perf_counter() - t0:.0f} s",
            expand=False,
        )
    )


def _pipeline_pass(out: Path, models: Path, test_dir: Path) -> tuple[str, int]:
    """Load the test accounts into the store, queue a check of each, run the worker and
    show the flagged accounts: the real-time path, on embedded SQLite."""
    from rich.table import Table

    from fraudlens.cli import pipeline as p
    from fraudlens.queues import open_queue
    from fraudlens.store import open_store
    from fraudlens.worker import Worker

    console.rule("[bold]market: real-time pipeline (store -> queue -> worker -> risk events)")
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
        f"worker: {stats.processed:,} checks in {busy:.1f} s "
        f"({stats.processed / busy if busy > 0 else 0:,.0f}/s), {stats.flagged:,} above "
        f"{worker.threshold}, {stats.written:,} new risk events, "
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
