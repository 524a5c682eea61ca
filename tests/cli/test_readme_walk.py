"""The README walked through as a new user would: bad option values are one-line errors
(exit 2, no traceback), and every command the program prints for the user to run next
runs as printed, from the same folder."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from _cli import one_line, run_cli

from _reference_format import write_reference  # type: ignore[import-not-found]

SCRIPT = Path(sys.executable).parent / "fraudlens"


def _fails(args: list[str], cwd: Path | None = None) -> str:
    """Run ``fraudlens ARGS``; it must exit 2 without a traceback; return its output."""
    proc = run_cli(args, cwd=cwd)
    assert proc.returncode == 2, (args, proc.stdout, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return one_line(proc.stderr + proc.stdout)


def _printed(output: str) -> list[str]:
    """The commands a run printed for the user, one per ``$ `` line."""
    return [line.split("$ ", 1)[1] for line in output.splitlines() if "  $ " in line]


def _run_as_printed(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    argv = shlex.split(command)
    if argv[0] == "fraudlens":  # the virtualenv is active for the test run, or not
        argv[0] = str(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDLENS_")}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


# ------------------------------------------------------------------------- market


def test_simulate_refuses_an_unknown_format_before_simulating(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    text = _fails(["market", "simulate", "--out", str(out), "--accounts", "4", "--format", "xlsx"])
    assert "--format must be csv, csv.gz or parquet, not 'xlsx'" in text
    assert not out.exists()


@pytest.mark.parametrize("hours", ["0", "-5", "nan", "inf"])
def test_window_hours_must_be_a_window(hours: str, market_dir: Path, tmp_path: Path) -> None:
    # Used to end in a pandas traceback (or, for 0, train on an empty window).
    out = tmp_path / "s.csv"
    text = _fails(["market", "score", "--klines", str(market_dir / "klines.csv"),
                   "--trades", str(market_dir / "trades.csv"), "-m", str(tmp_path / "m"),
                   "--out", str(out), "--window-hours", hours])  # fmt: skip
    assert "--window-hours" in text and "is not a window" in text, text
    assert not out.exists()


def test_cnn_epochs_must_be_positive(market_dir: Path, tmp_path: Path) -> None:
    # --epochs 0 used to train nothing and end in an IndexError traceback.
    text = _fails(["market", "train", "--data", str(market_dir), "-m", str(tmp_path / "m"),
                   "--detector", "cnn", "--epochs", "0"])  # fmt: skip
    assert "--epochs" in text
    assert not (tmp_path / "m").exists()


def test_a_version_not_activated_prints_commands_that_run(market_dir: Path, tmp_path: Path) -> None:
    models = tmp_path / "my models"  # a path that needs quoting
    for activate in ("--activate", "--no-activate"):
        proc = run_cli(["market", "train", "--data", str(market_dir), "-m", str(models),
                        activate], cwd=tmp_path)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    (command,) = _printed(proc.stderr)
    # It names this registry (it used to leave -m out, so it acted on ./models).
    assert shlex.split(command)[-2:] == ["-m", str(models)], command
    done = _run_as_printed(command, tmp_path)
    assert done.returncode == 0, done.stderr
    listing = run_cli(["models", "list", "-m", str(models)]).stdout
    active = [line for line in listing.splitlines() if " yes " in line]
    assert len(active) == 1 and "v0002" in active[0], listing


def test_a_first_version_not_activated_is_said_to_be_in_use(
    market_dir: Path, tmp_path: Path
) -> None:
    # With no version marked active the newest one is used: the run used to say "not
    # activated" and print commands to compare it.
    models = tmp_path / "m"
    proc = run_cli(["market", "train", "--data", str(market_dir), "-m", str(models),
                    "--no-activate"])  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "not marked active, but in use" in one_line(proc.stderr), proc.stderr
    assert _printed(proc.stderr) == []
    listing = run_cli(["models", "list", "-m", str(models)]).stdout
    assert any(" yes " in line and "v0001" in line for line in listing.splitlines())


def test_a_candidate_names_its_store_and_registry(capsys: pytest.CaptureFixture[str]) -> None:
    # It used to print `--db URL` (a placeholder) and no -m.
    from fraudlens.cli.market import _print_candidate_steps

    _print_candidate_steps("market-features", "v0002", Path("reg"), "sqlite:///store.db")
    compare, activate = _printed(capsys.readouterr().err)
    assert shlex.split(compare)[1:] == ["models", "compare", "market-features", "v0002",
                                        "--db", "sqlite:///store.db", "-m", "reg"]  # fmt: skip
    assert shlex.split(activate)[1:] == ["models", "activate", "market-features", "v0002",
                                         "-m", "reg"]  # fmt: skip
    # A password is not echoed back; the line says where it goes.
    _print_candidate_steps("market-features", "v0002", None, "postgresql://u:s3cret@db/risk")
    err = capsys.readouterr().err
    assert "s3cret" not in err and "in place of ***" in one_line(err)
    assert "--db postgresql+psycopg://u:***@db/risk" in err or "u:***@db/risk" in err


def _reference(root: Path) -> tuple[Path, Path, Path]:
    return write_reference(
        root,
        {"buy_7.csv": "2022-01-04 19:30:00,226.1\n"},
        {"sell_7.csv": "2022-01-04 19:30:00,228.9\n"},
    )


@pytest.mark.slow
def test_import_reference_with_no_model_prints_commands_that_run(tmp_path: Path) -> None:
    # A first run, with no ./models: the printed score command alone used to fail with
    # "no model registry at models".
    kl, buy, sell = _reference(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDLENS_")}
    proc = subprocess.run(
        [str(SCRIPT), "market", "import-reference", "--klines", str(kl), "--buy", str(buy),
         "--sell", str(sell), "--out", "imported"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    commands = _printed(proc.stderr)
    assert [shlex.split(c)[1:3] for c in commands] == [
        ["market", "simulate"],
        ["market", "train"],
        ["market", "score"],
    ], proc.stderr
    for command in commands:
        done = _run_as_printed(command, tmp_path)
        assert done.returncode == 0, (command, done.stderr[-2000:])
    scores = pd.read_csv(tmp_path / "imported" / "scores.csv")
    assert list(scores["account_id"].astype(str)) == ["7"]


# ------------------------------------------------------------------------- cards


@pytest.mark.parametrize("value", ["nan", "inf", "1.5", "-1", "fixed:2"])
def test_cards_fixed_threshold_is_a_score(value: str, card_file: Path, tmp_path: Path) -> None:
    # Used to be stored as the model's threshold (nan flags nothing, -1 everything).
    models = tmp_path / "m"
    text = _fails(["cards", "train", "--data", str(card_file), "-m", str(models),
                   "--threshold", value])  # fmt: skip
    assert "a fixed threshold is a score between 0 and 1" in text, text
    assert not models.exists()


def test_cards_logistic_refit_line_names_no_rounds(card_file: Path, tmp_path: Path) -> None:
    proc = run_cli(["cards", "train", "--data", str(card_file), "-m", str(tmp_path / "m"),
                    "--detector", "logistic", "--threshold", "0.3"])  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    text = one_line(proc.stdout)
    assert "with the same threshold" in text and "rounds" not in text.split("refitted")[1]


def test_cards_test_end_must_be_a_date(card_file: Path, tmp_path: Path) -> None:
    # Used to end in pandas' DateParseError traceback.
    text = _fails(["cards", "train", "--data", str(card_file), "-m", str(tmp_path / "m"),
                   "--test-end", "garbage"])  # fmt: skip
    assert "--test-end 'garbage' is not a date or time" in text


def test_cards_benchmark_start_and_weeks(card_file: Path, tmp_path: Path) -> None:
    text = _fails(["cards", "benchmark", "--data", str(card_file), "--start", "garbage",
                   "--out", str(tmp_path / "b")])  # fmt: skip
    assert "--start 'garbage' is not a date or time" in text
    # 25 days hold one week of the protocol: --weeks 2 used to stop with "need at least 2
    # training rows, got 0", naming neither the file nor the fix.
    days = pd.to_datetime(pd.read_csv(card_file)["ts"]).dt.normalize()
    span = (days.max() - days.min()).days + 1
    assert 21 <= span < 28
    text = _fails(["cards", "benchmark", "--data", str(card_file), "--weeks", "2",
                   "--out", str(tmp_path / "b")])  # fmt: skip
    assert f"file {card_file}" in text and "ask for --weeks 1" in text, text
    assert "room for 1 week of the protocol" in one_line(text), text
    proc = run_cli(["cards", "benchmark", "--data", str(card_file), "--weeks", "1",
                    "--out", str(tmp_path / "b")])  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # Not the handbook's weeks: the caption must not say "same weeks".
    assert "same weeks" not in proc.stdout and "not these" in one_line(proc.stdout)
    assert re.search(r"mean, 1 week\b(?!s)", proc.stdout), proc.stdout


def test_cards_simulate_help_matches_the_fraud_rate(tmp_path: Path) -> None:
    proc = run_cli(["cards", "simulate", "--out", str(tmp_path), "--customers", "500",
                    "--days", "30"])  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rate = float(re.search(r"\(([\d.]+)%\)", one_line(proc.stderr + proc.stdout)).group(1))  # type: ignore[union-attr]
    assert rate > 2.0  # a small simulation: one compromised card and terminal a day
    helptext = one_line(run_cli(["cards", "simulate", "--help"]).stdout)
    assert "rises below that" in helptext, helptext


# ------------------------------------------------------------------------- enqueue


def test_enqueue_file_empty_header_only_and_csv(market_dir: Path, tmp_path: Path) -> None:
    queue = f"sqlite:///{tmp_path / 'q.db'}"
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    # Used to say "give account ids, --file or --all" to a user who gave --file.
    text = _fails(["enqueue", "--file", str(empty), "--queue", queue])
    assert f"file {empty}: the file is empty (no header row, no data rows)" in text
    header = tmp_path / "header.csv"
    header.write_text("trade_id,account_id,symbol,ts,side,price,quantity\n")
    # Used to queue the header line as an account id.
    text = _fails(["enqueue", "--file", str(header), "--queue", queue])
    assert f"file {header}: no data rows (the file has only a header row)" in text
    other = tmp_path / "other.csv"
    other.write_text("id,label\nx,1\n")
    text = _fails(["enqueue", "--file", str(other), "--queue", queue])
    # The header is row 0, as in every loader.
    assert "row 0, column 'account_id': a CSV header without an account_id column" in text
    # labels.csv: its account_id column, each account once (rows used to be queued whole).
    proc = run_cli(["enqueue", "--file", str(market_dir / "labels.csv"), "--queue", queue])
    assert proc.returncode == 0, proc.stderr
    n = len(pd.read_csv(market_dir / "labels.csv"))
    assert f"queued {n} checks" in one_line(proc.stderr)
    from fraudlens.queues import open_queue

    with open_queue(queue) as q:
        got = q.receive(max_messages=n + 10, visibility_timeout=60)
    ids = sorted(m.body["account_id"] for m in got)
    assert ids == sorted(pd.read_csv(market_dir / "labels.csv")["account_id"])


@pytest.mark.parametrize("seconds", ["nan", "-1"])
def test_worker_idle_exit_is_seconds(seconds: str, tmp_path: Path) -> None:
    # nan used to run the worker forever (never "reached"); -1 exited before any receive.
    text = _fails(["worker", "--queue", f"sqlite:///{tmp_path / 'q.db'}", "--db",
                   f"sqlite:///{tmp_path / 's.db'}", "--metrics-port", "0",
                   "--idle-exit", seconds])  # fmt: skip
    assert "--idle-exit" in text and "is not a number of seconds" in text, text


@pytest.mark.parametrize("days", ["inf", "1e9"])
def test_token_expiry_days_is_bounded(days: str, tmp_path: Path) -> None:
    # Used to end in an OverflowError traceback after the user was looked up.
    db = f"sqlite:///{tmp_path / 's.db'}"
    proc = run_cli(["users", "add", "svc", "--role", "service", "--db", db])
    assert proc.returncode == 0, proc.stderr
    text = _fails(["tokens", "create", "svc", "--expires-days", days, "--db", db])
    assert "--expires-days" in text, text


def test_pairs_max_gap_is_bounded(market_dir: Path, tmp_path: Path) -> None:
    # inf used to end in pandas' OutOfBoundsTimedelta traceback.
    text = _fails(["market", "pairs", "--klines", str(market_dir / "klines.csv"),
                   "--trades", str(market_dir / "trades.csv"), "--out",
                   str(tmp_path / "p.csv"), "--max-gap", "inf"])  # fmt: skip
    assert "--max-gap" in text


def test_cards_window_lengths_are_bounded(card_file: Path, tmp_path: Path) -> None:
    # inf used to end in pandas' OutOfBoundsTimedelta traceback.
    text = _fails(["cards", "train", "--data", str(card_file), "-m", str(tmp_path / "m"),
                   "--train-days", "inf"])  # fmt: skip
    assert "--train-days inf: a window is at most 36,500 days" in text


@pytest.mark.parametrize("every", ["nan", "inf"])
def test_process_every_is_a_schedule(every: str) -> None:
    # Both were taken as a schedule that never comes round.
    from fraudlens.cli.serve import parse_duration
    from fraudlens.errors import ConfigError

    with pytest.raises(ConfigError, match="must be positive"):
        parse_duration(every)


def test_render_writes_into_a_new_folder_and_an_empty_registry_hint_runs(tmp_path: Path) -> None:
    """``market render --out new/folder/a.png`` makes the folder (as ``simulate`` does),
    and ``cards process`` on an empty registry names a train command with the registry
    the user gave (a bare ``fraudlens cards train`` fails for want of ``--data``)."""
    data = tmp_path / "sim"
    run_cli(["market", "simulate", "--out", str(data), "--accounts", "20", "--seed", "1"])
    account = str(pd.read_csv(data / "labels.csv")["account_id"].iloc[0])
    out = tmp_path / "new" / "folder" / "a.png"
    proc = run_cli(
        [
            "market",
            "render",
            "--klines",
            str(data / "klines.csv"),
            "--trades",
            str(data / "trades.csv"),
            "--account",
            account,
            "--out",
            str(out),
        ]
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "empty").mkdir()
    rows = tmp_path / "rows.csv"
    rows.write_text("Time,Amount\n0,1.0\n")
    message = _fails(
        [
            "cards",
            "process",
            "--source",
            f"file:{rows}",
            "--sink",
            str(tmp_path / "sink"),
            "-m",
            str(tmp_path / "empty"),
        ]
    )
    assert f"fraudlens cards train --data FILE -m {tmp_path / 'empty'}" in message, message
