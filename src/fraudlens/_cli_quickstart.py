"""``fraudlens quickstart``: the whole flow on embedded defaults, in one folder."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.panel import Panel

from fraudlens._cli_common import cli_errors, console


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
    from fraudlens import _cli_market as m

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
    if cards:
        from fraudlens._cli_quickstart_cards import cards_pass

        reports.update(cards_pass(out, models, seed))
    lines = [f"{name}: {path / 'report.json'}" for name, path in reports.items()]
    lines.append(f"market scores: {scores}")
    lines.append(f"registry: {models}  (fraudlens models list -m {models})")
    console.print(
        Panel(
            "\n".join(lines),
            title=f"quickstart done in {time.perf_counter() - t0:.0f} s",
            expand=False,
        )
    )
