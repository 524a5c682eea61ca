"""The cards pass of ``fraudlens quickstart``: simulate, train, evaluate, stream to a sink."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text

from fraudlens.cli._common import console


def cards_pass(
    out: Path, models: Path, seed: int, *, customers: int = 2000, days: int = 90
) -> dict[str, Path]:
    """Run the cards flow under ``out``; return the report folders by model name."""
    from fraudlens.cli import cards as c
    from fraudlens.cli.serve import process

    data_dir = out / "cards"
    console.rule(Text("cards: simulate", style="bold"))
    c.simulate_cmd(out=data_dir, customers=customers, days=days, seed=seed, terminals=None)
    tx = data_dir / "transactions.csv"
    reports: dict[str, Path] = {}
    # The anomaly model first, so the supervised one ends up as the cards default.
    for det in ("anomaly", "xgboost"):
        console.rule(Text(f"cards: train and evaluate {det}", style="bold"))
        # train prints the validation table; the report of the same rows is not printed
        # again.
        c.train_cmd(
            data=tx,
            model_dir=models,
            detector=c.Kind(det),
            label=None,
            preset=c.Preset.default,
            split=c.Split.time,
            train_days=None,
            gap_days=None,
            test_days=None,
            train_hours=None,
            gap_hours=None,
            test_hours=None,
            test_end=None,
            no_refit=False,
            oversample=None,
            threshold=None,
            seed=seed,
            trust_pickle=False,
        )
        rep = out / "reports" / f"cards-{det}"
        c.evaluate_cmd(
            data=tx,
            model_dir=models,
            detector=c.Kind(det),
            out=rep,
            label=None,
            rows=c.Rows.auto,
            k=100,
            trust_pickle=False,
            show=False,
        )
        reports[f"cards-{det}"] = rep
    console.rule(Text("cards: stream scored records into the sink", style="bold"))
    sink = out / "sink"
    process(
        source=f"generate:{tx}",
        sink=str(sink),
        model_dir=models,
        every=None,
        limit=2000,
        batch_size=2000,
        history=tx,
        seed=seed,
        queue_name="card-events",
        fmt="csv",
        max_seconds=60.0,
    )
    console.print(f"sink: {sink} (partitioned yyyy/mm/dd/HH)")
    return reports
