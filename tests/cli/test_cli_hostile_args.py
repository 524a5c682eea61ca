"""Hostile command-line arguments: refused with exit code 2 and a one-line reason, never
a traceback; formula-like ids (``=1+1``) are ids like any other."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from _cli import one_line, run_cli

pytest.importorskip("sqlalchemy")


@pytest.fixture
def db(tmp_path: Path) -> str:
    from fraudlens.store import open_store

    url = f"sqlite:///{tmp_path / 'store.db'}"
    with open_store(url) as store:
        store.upgrade()
    return url


@pytest.mark.parametrize(
    ("account", "says"),
    [
        # The shell passes the bytes as given; Python reads 0xFF as a lone surrogate, which
        # the database driver could not encode (a UnicodeEncodeError traceback, exit 1).
        ("ab\udcff", "the account id is not UTF-8 text: byte 0xFF"),
        ("a\x01b", "the account id contains a control character (U+0001 at position 2)"),
        ("a" * 65, "the account id has 65 characters; at most 64 are allowed"),
    ],
)
def test_db_events_refuses_an_account_that_is_no_id(db: str, account: str, says: str) -> None:
    proc = run_cli(["db", "events", "--db", db, "--account", account])
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    out = one_line(proc.stderr)
    assert "Invalid value for --account" in out and says in out, out


@pytest.mark.parametrize("account", ["=1+1", "@SUM(A1)", "-2+3", "+cmd"])
def test_db_events_takes_a_formula_like_account_id(db: str, account: str) -> None:
    proc = run_cli(["db", "events", "--db", db, "--account", account])
    assert proc.returncode == 0, proc.stderr
    assert "risk events (0 of 0)" in one_line(proc.stdout + proc.stderr)


@pytest.mark.parametrize(
    "args",
    [
        ["market", "simulate", "--accounts", "2"],
        ["cards", "simulate", "--customers", "5", "--days", "1"],
        ["cards", "process", "--source", "generate", "--limit", "5"],
    ],
)
@pytest.mark.parametrize("seed", ["-1", "4294967296"])
def test_a_seed_no_random_source_takes_is_refused(
    args: list[str], seed: str, tmp_path: Path
) -> None:
    """A negative --seed ended every command that draws random numbers in a ValueError
    traceback from numpy (exit 1), and one past 32 bits `market train` in an XGBoostError."""
    out = ["--sink" if args[0:2] == ["cards", "process"] else "--out", str(tmp_path / "o")]
    proc = run_cli([*args, *out, "--seed", seed], cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert "Invalid value for '--seed'" in one_line(proc.stderr)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("accounts", "says"),
    [
        # a MemoryError traceback (exit 1), then numpy's 'Unable to allocate' line
        ("99999999999", "--accounts 99,999,999,999 would need about 1,490,116 GiB of memory"),
        # an OverflowError traceback (exit 1)
        ("99999999999999999999999", "simulate fewer accounts"),
    ],
)
def test_a_market_simulation_no_machine_holds_is_refused_up_front(
    accounts: str, says: str, tmp_path: Path
) -> None:
    """The accounts are made one by one: 5,000,000 filled 24 GB of memory for an hour
    before numpy's MemoryError; the refusal now comes before any is made."""
    args = ["market", "simulate", "--accounts", accounts, "--out", str(tmp_path / "o")]
    proc = run_cli([*args, "--seed", "1"], cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    out = one_line(proc.stderr)
    assert says in out and "this machine has" in out, out
    assert not (tmp_path / "o").exists()


def test_an_infinite_tick_is_refused(market_dir: Path, tmp_path: Path) -> None:
    """`market simulate --tick-size inf` passed the option's min=0 and the accounts were
    placed on a tick of 1e-8 instead, without a word."""
    klines = str(market_dir / "klines.csv")
    args = ["market", "simulate", "--klines", klines, "--accounts", "4", "--seed", "1"]
    proc = run_cli([*args, "--tick-size", "inf", "--out", str(tmp_path / "o")], cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    out = one_line(proc.stderr)
    assert "Invalid value for '--tick-size': inf is not a price tick" in out, out
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["worker", "--queue", "sqlite:///{tmp}/q.db", "--db", "sqlite:///{tmp}/s.db",
         "--metrics-port", "0", "--idle-exit", "0"],
        ["cards", "process", "--source", "generate", "--sink", "{tmp}/sink", "--limit", "1"],
    ],
    ids=["worker", "cards-process"],
)  # fmt: skip
@pytest.mark.parametrize("size", ["10001", "99999999999999999999999"])
def test_a_batch_size_past_the_bound_is_refused(args: list[str], size: str, tmp_path: Path) -> None:
    """No bound: a SQLite queue's receive ended in an OverflowError traceback (exit 1) past
    2**63, and the card processor's generate source made a pass's records at once (2.9 GB
    a million)."""
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    proc = run_cli([*argv, "--batch-size", size], cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    out = one_line(proc.stderr)
    assert "Invalid value for '--batch-size'" in out and "10000" in out, out
    assert not (tmp_path / "sink").exists()


@pytest.mark.parametrize("lease", ["inf", "1e20", "43201"])
def test_a_worker_lease_past_twelve_hours_is_refused(lease: str, tmp_path: Path) -> None:
    """--visibility-timeout inf ended a Redis (or SQS) receive in an OverflowError
    traceback (exit 1), and 1e20 had Redis refuse every receive, which the worker read as
    an outage and waited out for ever."""
    args = ["worker", "--queue", f"sqlite:///{tmp_path}/q.db", "--db",
            f"sqlite:///{tmp_path}/s.db", "--metrics-port", "0", "--idle-exit", "0"]  # fmt: skip
    proc = run_cli([*args, "--visibility-timeout", lease], cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    out = one_line(proc.stderr)
    assert "Invalid value for '--visibility-timeout'" in out and "43200" in out, out


@pytest.mark.parametrize(
    "args",
    [
        ["market", "train", "--detector", "features"],
        ["cards", "train", "--detector", "logistic"],
    ],
    ids=["market", "cards"],
)
def test_train_refuses_a_registry_that_is_no_registry_before_the_training(
    args: list[str], tmp_path: Path
) -> None:
    """-m at a file (or a model's folder) was refused only when the trained model was to
    be stored: a CNN's epochs, or a card model's validation and refit, lost. Checked now
    before DATA is read (here DATA does not exist, which had been said first)."""
    not_a_registry = tmp_path / "models.txt"
    not_a_registry.write_text("x")
    data = ["--data", str(tmp_path / "no-such-data")]
    proc = run_cli([*args, *data, "-m", str(not_a_registry)], cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    out = one_line(proc.stderr)
    assert f"{not_a_registry} is a file, not a model registry folder" in out, out


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("file:{tmp}/no-such.csv", "no such file"),
        ("ftp://x", "unknown source 'ftp://x'"),
        ("generate", "no card model in registry"),
    ],
)
def test_cards_process_that_fails_leaves_no_new_sink_folder(
    card_file: Path, tmp_path: Path, source: str, says: str
) -> None:
    """A run refused at its start (a missing file, an unknown source, no model) had left
    the new sink folder behind, with nothing in it but an empty hidden spool."""
    if source != "generate":
        trained = run_cli(["cards", "train", "--data", str(card_file), "-m",
                           str(tmp_path / "models"), "--detector", "logistic"])  # fmt: skip
        assert trained.returncode == 0, trained.stderr
    sink = tmp_path / "out" / "sink"
    args = ["cards", "process", "--source", source.replace("{tmp}", str(tmp_path)),
            "--sink", str(sink), "-m", str(tmp_path / "models")]  # fmt: skip
    proc = run_cli(args, cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert says in one_line(proc.stderr), proc.stderr
    assert not (tmp_path / "out").exists()


def test_brackets_in_data_are_text_not_console_markup(
    market_dir: Path, market_models: Path, db: str, tmp_path: Path
) -> None:
    """The console read [ and ] in a table cell or a message as markup: an output path, a
    kind, an account id or a token name holding '[/]' ended `market score`, `market
    evaluate`, `market pairs`, `db events` and `tokens create` / `tokens list` in a
    MarkupError traceback (the token was stored, never shown, and listed no more), and
    "[copy]" in a path was left out of the path shown."""
    import shutil

    import pandas as pd

    data = tmp_path / "data"
    shutil.copytree(market_dir, data)
    # a copy: `market evaluate` records its report in the registry, which the session's
    # other tests share
    models = tmp_path / "models"
    shutil.copytree(market_models, models)
    labels = pd.read_csv(data / "labels.csv")
    labels["kind"] = "[/]" + labels["kind"].astype(str)
    labels["account_id"] = "[/]" + labels["account_id"].astype(str)
    labels.to_csv(data / "labels.csv", index=False)
    trades = pd.read_csv(data / "trades.csv")
    trades["account_id"] = "[/]" + trades["account_id"].astype(str)
    trades.to_csv(data / "trades.csv", index=False)
    runs = [
        ["market", "evaluate", "--data", str(data), "-m", str(models),
         "--out", str(tmp_path / "report")],
        ["market", "pairs", "--klines", str(data / "klines.csv"),
         "--trades", str(data / "trades.csv"), "--out", str(tmp_path / "pairs.csv")],
        # a path the user names: it had been shown as "scores .csv", or ended the command,
        # its work done, in the traceback
        ["market", "score", "--klines", str(data / "klines.csv"), "--trades",
         str(data / "trades.csv"), "-m", str(models),
         "--out", str(tmp_path / "scores [copy] [/].csv")],
        ["users", "add", "svc", "--role", "service", "--db", db],
        ["tokens", "create", "svc", "--name", "[/]batch", "--db", db],
        ["tokens", "list", "--db", db],
    ]  # fmt: skip
    for args in runs:
        proc = run_cli(args)
        assert proc.returncode == 0, (args, proc.stderr[-2000:])
        if args[0] != "users":
            assert "[/]" in proc.stderr, (args, proc.stderr[-2000:])
        if args[1] == "score":
            assert "scores [copy] [/].csv" in " ".join(proc.stderr.split()), proc.stderr
    from _services import risk_event  # type: ignore[import-not-found]
    from fraudlens.store import open_store

    with open_store(db) as store:
        store.add_risk_events([risk_event("[/]a1", 1)])
    proc = run_cli(["db", "events", "--db", db])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "[/]a1" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["db", "upgrade", "--db", "sqlite:///:memory:"], "database URL sqlite:///:memory:"),
        (["db", "upgrade", "--db", "sqlite://"], "database URL sqlite://"),
        (
            ["db", "load", "--klines", "k.csv", "--trades", "t.csv", "--db", "sqlite://"],
            "sqlite://",
        ),
        (["enqueue", "A1", "--queue", "sqlite:///:memory:"], "queue URL sqlite:///:memory:"),
    ],
    ids=["upgrade-memory", "upgrade-empty", "load", "enqueue"],
)
def test_an_in_memory_database_or_queue_is_refused_where_it_would_lose_the_writes(
    args: list[str], says: str
) -> None:
    """What these commands write is read later by another process; an in-memory SQLite
    database or queue was reported written and was gone when the command ended."""
    proc = run_cli(args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    out = one_line(proc.stderr)
    assert says in out and "in-memory SQLite" in out and "give a file" in out, out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--customers", "99999999999", "--days", "1"],
            "would make about 199,999,999,998 transactions, needing about",
        ),
        # a few customers over many days filled memory block by block for hours
        (["--customers", "100000", "--days", "36500"], "simulate fewer customers or days"),
        (["--customers", "10", "--days", "999999999"], "Invalid value for '--days'"),
        # the customers' terminals within reach, customers x terminals distances: the
        # memory check counted transactions alone, and this filled memory for hours
        (
            ["--customers", "5000000", "--days", "2"],
            "would put about 392,699,081,699 terminals within the customers' reach",
        ),
        # numpy's "Maximum allowed dimension exceeded" traceback (exit 1)
        (
            ["--customers", "50", "--days", "2", "--terminals", "99999999999999999999999"],
            "simulate fewer customers or terminals (--terminals)",
        ),
    ],
)
def test_a_card_simulation_no_machine_holds_is_refused_up_front(
    args: list[str], expected: str, tmp_path: Path
) -> None:
    proc = run_cli(["cards", "simulate", *args, "--out", str(tmp_path / "o")], cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert expected in one_line(proc.stderr), proc.stderr
    assert not (tmp_path / "o").exists()


def test_a_card_simulation_with_no_transactions_says_why(tmp_path: Path) -> None:
    """One customer over one day printed '0 transactions, 0 frauds (nan%)'."""
    out = str(tmp_path / "o")
    proc = run_cli(
        ["cards", "simulate", "--customers", "1", "--days", "1", "--seed", "3", "--out", out],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    text = one_line(proc.stdout + proc.stderr)
    assert "nan" not in text
    assert "no transactions: 1 customer and 2 terminals over 1 day made none" in text, text


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_a_holdout_time_past_the_calendar_in_utc_is_one_line(
    market_models: Path, db: str, tmp_path: Path, when: str
) -> None:
    """A hold-out time whose zone moves it past year 9999 (or before year 1) in UTC ended
    `market train` and `models compare` in an OverflowError traceback (exit 1)."""
    runs = [
        ["market", "train", "--data", str(tmp_path / "data"), "-m", str(tmp_path / "m"),
         "--reviewed-from", db, "--holdout-after", when],
        ["models", "compare", "market-features", "v0001", "--against", "v0002",
         "-m", str(market_models), "--db", db, "--holdout-after", when],
    ]  # fmt: skip
    for args in runs:
        proc = run_cli(args, cwd=tmp_path)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
        out = one_line(proc.stderr)
        assert f"hold-out time '{when}' lies outside years 1-9999 in UTC" in out, out


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--test-end", "0001-01-01"], "held-out window ending at 0001-01-01 00:00:00+00:00"),
        (["--test-end", "1700-01-01"], "held-out window ending at 1700-01-01 00:00:00+00:00"),
        (["--test-end", "5000-01-01"], "held-out window ending at 5000-01-01 00:00:00+00:00"),
        # three windows of 300 years in all, back from the data's own end
        (
            ["--train-days", "36500", "--gap-days", "36500", "--test-days", "36500"],
            "the training window holds no labelled rows (1726-",
        ),
    ],
    ids=["year-1", "year-1700", "year-5000", "300-years"],
)
def test_card_windows_centuries_from_the_data_are_one_line(
    card_file: Path, tmp_path: Path, args: list[str], says: str
) -> None:
    """`cards train` with a --test-end centuries from the data, or with windows of 300
    years in all, ended in pandas' OutOfBoundsDatetime (a difference of timestamps holds
    292 years) or OverflowError traceback, exit 1."""
    proc = run_cli(
        ["cards", "train", "--data", str(card_file), "-m", str(tmp_path / "m"),
         "--detector", "logistic", *args],
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    out = one_line(proc.stderr)
    assert f"error: file {card_file}: " in out and says in out, out
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    ("start", "says"),
    [
        ("2262-05-01", "--start 2262-05-01 is after the last day of the data; the data cover"),
        ("9999-12-31", "--start 9999-12-31 is after the last day of the data; the data cover"),
        ("9999-12-31T23:59:59-01:00", "lies outside years 1-9999 in UTC"),
        ("0001-01-01T00:00:00+01:00", "lies outside years 1-9999 in UTC"),
    ],
)
def test_a_benchmark_start_past_the_data_or_the_calendar_is_one_line(
    card_file: Path, tmp_path: Path, start: str, says: str
) -> None:
    """`cards benchmark --start` past year 2262 ended in pandas' OutOfBoundsDatetime, and
    one whose zone moves it past year 9999 (or before year 1) in UTC in a
    NotImplementedError ("date not yet supported on Timestamps which are outside the range
    of Python's standard library"), each a traceback, exit 1."""
    proc = run_cli(
        ["cards", "benchmark", "--data", str(card_file), "--detector", "logistic",
         "-o", str(tmp_path / "report"), "--start", start],
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    out = one_line(proc.stderr)
    assert says in out, out


@pytest.mark.parametrize("case", ["score-out", "train-registry", "sink", "worker", "serve"])
def test_a_link_that_loops_is_one_line(
    market_dir: Path, market_models: Path, tmp_path: Path, case: str
) -> None:
    """A link to itself (``ln -s loop loop``) given as an output file, a sink or a model
    registry ended the command in Python 3.11's RuntimeError traceback ("Symlink loop
    from ..."), exit 1: Path.resolve() raises it where other unusable paths are an
    OSError."""
    loop = tmp_path / "loop"
    loop.symlink_to("loop")
    kl, tr = str(market_dir / "klines.csv"), str(market_dir / "trades.csv")
    args = {
        "score-out": ["market", "score", "--klines", kl, "--trades", tr,
                      "-m", str(market_models), "--out", str(loop)],
        "train-registry": ["market", "train", "--data", str(market_dir), "-m", str(loop),
                           "--detector", "features"],
        "sink": ["cards", "process", "--source", "generate", "--limit", "3",
                 "--sink", str(loop), "-m", str(tmp_path / "no-models")],
        "worker": ["worker", "-m", str(loop), "--queue", f"sqlite:///{tmp_path / 'q.db'}",
                   "--db", f"sqlite:///{tmp_path / 'store.db'}", "--idle-exit", "1"],
        "serve": ["serve", "-m", str(loop), "--port", "1"],
    }[case]  # fmt: skip
    proc = run_cli(args, cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr and "RuntimeError" not in proc.stderr
    out = one_line(proc.stderr)
    says = (
        f"model market-features:new version is not a folder inside the registry ({loop}/"
        if case == "train-registry"
        else f"cannot use {loop}: Too many levels of symbolic links"
    )
    assert says in out, out
    assert loop.is_symlink()


@pytest.mark.parametrize(
    ("share", "held"), [("1", "3 takeover and 0 normal"), ("0", "0 takeover and 3 normal")]
)
def test_market_training_labels_of_one_class_are_one_line(
    tmp_path: Path, share: str, held: str
) -> None:
    """`market train` (features) on labels of one class ended in numpy's ValueError
    traceback ("a cannot be empty unless no samples are taken", exit 1) while drawing the
    validation hold-out."""
    data = tmp_path / "data"
    made = run_cli(
        ["market", "simulate", "--out", str(data), "--accounts", "3", "--fraud-share", share],
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    proc = run_cli(
        ["market", "train", "--data", str(data), "-m", str(tmp_path / "m")], cwd=tmp_path
    )
    assert proc.returncode == 2, (proc.stdout, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr
    out = one_line(proc.stderr)
    assert "training needs at least 2 takeover (1) and 2 normal (0) accounts" in out, out
    assert f"the labels hold {held}" in out, out
    assert not (tmp_path / "m").exists()


def test_a_random_split_holding_out_no_row_is_one_line(card_file: Path, tmp_path: Path) -> None:
    """`cards train --split random` on a few rows (10 % of them rounds to none) ended in
    numpy's ValueError traceback ("zero-size array to reduction operation minimum which
    has no identity", exit 1)."""
    few = tmp_path / "few.csv"
    few.write_text("".join(card_file.read_text().splitlines(keepends=True)[:6]))
    proc = run_cli(
        ["cards", "train", "--data", str(few), "-m", str(tmp_path / "m"),
         "--detector", "logistic", "--split", "random"],
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, (proc.stdout, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr
    out = one_line(proc.stderr)
    assert f"file {few}: the held-out rows (0) hold no row; cannot validate" in out, out
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("level", ["bogus", "", "INFO!"])
def test_serve_refuses_a_log_level_uvicorn_has_not(tmp_path: Path, level: str) -> None:
    """`serve --log-level bogus` ended in uvicorn's KeyError traceback (exit 1) after the
    banner; now it is refused first, naming the levels."""
    proc = run_cli(["serve", "-m", str(tmp_path / "m"), "--port", "1", "--log-level", level])
    assert proc.returncode == 2, (proc.stdout, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr
    out = one_line(proc.stderr)
    assert "Invalid value for '--log-level'" in out, out
    assert "give one of critical, error, warning, info, debug, trace" in out, out
    assert "serving models" not in out


def test_serve_refuses_more_workers_than_a_machine_runs(tmp_path: Path) -> None:
    """`serve --workers 100000` started uvicorn worker processes, each loading the models,
    until memory ran out (92 processes in its first 6 seconds on 2 cores). The command
    runs in a session of its own, ended whole whatever happens, so that on such code the
    test fails without leaving processes behind."""
    args = ["serve", "-m", str(tmp_path / "m"), "--port", "1", "--workers", "100000"]
    code, err = _run_in_own_session(args, tmp_path, 15)
    assert code == 2, err[-3000:]
    assert "Invalid value for '--workers'" in one_line(err), err


def test_an_output_that_is_an_input_or_another_output_is_refused(
    market_dir: Path, market_models: Path, card_file: Path, tmp_path: Path
) -> None:
    """`market score --out` naming its --trades file (or a link to it) replaced the trades
    with the scores, `cards score --out` its --data file the transactions, and `market
    pairs --matches` naming its --out file the pairs with the matches; each reported
    success (exit 0)."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(market_dir, data)
    kl, tr = data / "klines.csv", data / "trades.csv"
    cards = tmp_path / "transactions.csv"
    shutil.copy(card_file, cards)
    link = tmp_path / "link.csv"
    link.symlink_to(tr)
    before = {p: p.read_bytes() for p in (kl, tr, cards)}
    pairs = tmp_path / "pairs.csv"
    runs = [
        (["market", "score", "--klines", str(kl), "--trades", str(tr), "-m", str(market_models),
          "--out", str(tr)], f"--out {tr} is the same file as --trades {tr}"),
        (["market", "score", "--klines", str(kl), "--trades", str(tr), "-m", str(market_models),
          "--out", str(link)], f"--out {link} is the same file as --trades {tr}"),
        (["market", "render", "--klines", str(kl), "--trades", str(tr), "--account", "a",
          "--out", str(kl)], f"--out {kl} is the same file as --klines {kl}"),
        (["market", "pairs", "--klines", str(kl), "--trades", str(tr), "--out", str(pairs),
          "--matches", str(pairs)], f"--matches {pairs} is the same file as --out {pairs}"),
        (["cards", "score", "--data", str(cards), "-m", str(tmp_path / "m"), "--out", str(cards)],
         f"--out {cards} is the same file as --data {cards}"),
    ]  # fmt: skip
    for args, says in runs:
        proc = run_cli(args, cwd=tmp_path)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr[-3000:])
        out = one_line(proc.stderr)
        assert says in out and "give another file" in out, (args, out)
    assert {p: p.read_bytes() for p in (kl, tr, cards)} == before
    assert not pairs.exists()


@pytest.mark.parametrize("name", ["r.jpg", "r.JPEG", "r.webp", "r.png.txt"])
def test_render_writes_png_under_a_png_name_only(
    market_dir: Path, tmp_path: Path, name: str
) -> None:
    """`market render --out r.jpg` had written PNG bytes under a JPEG name (exit 0)."""
    kl, tr = market_dir / "klines.csv", market_dir / "trades.csv"
    account = pd.read_csv(tr, usecols=["account_id"])["account_id"].iloc[0]
    base = ["market", "render", "--klines", str(kl), "--trades", str(tr), "--account", account]
    proc = run_cli([*base, "--out", str(tmp_path / name)], cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr[-3000:])
    assert "must end in .png" in one_line(proc.stderr)
    assert not (tmp_path / name).exists()
    proc = run_cli([*base, "--out", str(tmp_path / "r.PNG")], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "r.PNG").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_render_quotes_an_unknown_account_cut_short(market_dir: Path, tmp_path: Path) -> None:
    """`market render --account <100,000 characters>` repeated the id whole in its error."""
    kl, tr = market_dir / "klines.csv", market_dir / "trades.csv"
    base = ["market", "render", "--klines", str(kl), "--trades", str(tr)]
    out = ["--out", str(tmp_path / "r.png")]
    proc = run_cli([*base, "--account", "z" * 100_000, *out], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(proc.stderr) < 400, len(proc.stderr)
    assert "'zzz" in proc.stderr and "... has no trades" in one_line(proc.stderr)
    proc = run_cli([*base, "--account", "a\x1b[31mb", *out], cwd=tmp_path)
    assert proc.returncode == 2 and "\x1b" not in proc.stderr, proc.stderr[-3000:]
    assert "account 'a\\x1b[31mb' has no trades" in one_line(proc.stderr)
    assert not (tmp_path / "r.png").exists()


def test_import_reference_keeps_a_reference_file_in_its_out_folder(tmp_path: Path) -> None:
    """`market import-reference --klines ref/klines.csv --out ref` replaced the reference's
    k-lines (time, high, low) with the converted ones and reported success."""
    from _reference_format import BUYS, SELLS, write_reference  # type: ignore[import-not-found]

    kl, buy, sell = write_reference(tmp_path, {"buy_7.csv": BUYS}, {"sell_7.csv": SELLS})
    ref = kl.rename(tmp_path / "klines.csv")
    before = ref.read_bytes()
    proc = run_cli(
        ["market", "import-reference", "--klines", str(ref), "--buy", str(buy),
         "--sell", str(sell), "--out", str(tmp_path)],
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, (proc.stdout, proc.stderr[-3000:])
    out = one_line(proc.stderr)
    assert f"--out {ref} is the same file as --klines {ref}" in out, out
    assert ref.read_bytes() == before and not (tmp_path / "trades.csv").exists()


@pytest.mark.parametrize("kind", ["\x1b]0;pwned\x07takeover", "\x1b[31mred", "normal\x9b2J"])
def test_a_label_kind_holding_a_terminal_escape_is_refused(
    market_dir: Path, market_models: Path, tmp_path: Path, kind: str
) -> None:
    """A labels file's ``kind`` reached the analyst's terminal raw in `market evaluate`'s
    by-kind table: an escape sequence there set the window title or coloured the rest
    of the output."""
    import shutil

    import pandas as pd

    data = tmp_path / "data"
    shutil.copytree(market_dir, data)
    labels = pd.read_csv(data / "labels.csv")
    labels.loc[2, "kind"] = kind
    labels.to_csv(data / "labels.csv", index=False)
    models = tmp_path / "models"
    shutil.copytree(market_models, models)
    proc = run_cli(
        ["market", "evaluate", "--data", str(data), "-m", str(models),
         "--out", str(tmp_path / "report")],
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, (proc.stdout, proc.stderr[-3000:])
    assert "\x1b" not in proc.stdout + proc.stderr and "\x9b" not in proc.stdout + proc.stderr
    out = one_line(proc.stderr)
    assert f"file {data / 'labels.csv'}, row 3, column 'kind'" in out, out
    assert "contains a control character (U+" in out, out


@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1", "nosuchhost.invalid:6379"])
def test_a_ray_address_nothing_answers_at_is_one_line(
    market_dir: Path, market_models: Path, tmp_path: Path, address: str
) -> None:
    """`market score --engine ray --ray-address` naming an address nothing answers at
    (refused, or a name that does not resolve) waited in ray.init, retrying, for minutes
    (still "waiting for GCS" after 5). The command runs in a session of its own, ended
    whole whatever happens, so that on such code the test fails without leaving Ray's
    processes behind."""
    pytest.importorskip("ray")
    args = [
        "market", "score", "--klines", str(market_dir / "klines.csv"),
        "--trades", str(market_dir / "trades.csv"), "-m", str(market_models),
        "--out", str(tmp_path / "s.csv"), "--engine", "ray", "--ray-address", address,
    ]  # fmt: skip
    code, err = _run_in_own_session(args, tmp_path, 60)
    assert code == 2, err[-3000:]
    assert "Traceback" not in err
    assert f"cannot reach the Ray cluster at '{address}'" in one_line(err), err[-3000:]
    assert not (tmp_path / "s.csv").exists()


def test_a_ray_client_address_that_answers_without_ray_is_one_line(
    market_dir: Path, market_models: Path, tmp_path: Path
) -> None:
    """A `ray://` address where something takes the connection but no Ray Client server
    answers: Ray's own INFO line (the options passed on to the server) and its
    UserWarning about ports came before fraudlens's error. Ray Client's connection
    timeouts are cut to 1 s here (its 30 s in all otherwise)."""
    pytest.importorskip("ray")
    pytest.importorskip("grpc")
    from _services import silent_server  # type: ignore[import-not-found]

    with silent_server() as port:
        address = f"ray://127.0.0.1:{port}"
        args = [
            "market", "score", "--klines", str(market_dir / "klines.csv"),
            "--trades", str(market_dir / "trades.csv"), "-m", str(market_models),
            "--out", str(tmp_path / "s.csv"), "--engine", "ray", "--ray-address", address,
        ]  # fmt: skip
        env = {
            "RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S": "1",
            "RAY_CLIENT_MAX_CONNECTION_TIMEOUT_S": "1",
        }
        code, err = _run_in_own_session(args, tmp_path, 60, env)
    assert code == 2, err[-3000:]
    assert f"cannot reach the Ray cluster at '{address}'" in one_line(err), err[-3000:]
    assert "Warning" not in err and " INFO " not in err, err[-3000:]
    assert "Traceback" not in err


def _run_in_own_session(
    args: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Run ``fraudlens ARGS`` in a session of its own, killed whole after ``timeout``
    seconds whatever happens (so that code that starts processes without end, or waits
    for ever, fails the test without leaving processes behind); its exit code and
    standard error."""
    import contextlib
    import os
    import signal
    import subprocess
    import sys

    from _cli import _BOOT  # type: ignore[attr-defined]

    proc = subprocess.Popen(
        [sys.executable, "-c", _BOOT, "", *args],
        cwd=cwd,
        env={**os.environ, "COLUMNS": "80", "TERM": "dumb", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        err = f"(still running after {timeout:g} s)"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return proc.returncode, err


def test_cnn_epochs_without_end_are_refused(tmp_path: Path) -> None:
    """`market train --detector cnn --epochs 99999999999` trained until killed."""
    proc = run_cli(
        [
            "market",
            "train",
            "--data",
            str(tmp_path / "d"),
            "-m",
            str(tmp_path / "m"),
            "--detector",
            "cnn",
            "--epochs",
            "99999999999",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Invalid value for '--epochs'" in one_line(proc.stderr), proc.stderr
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("host", ["999.1.1.1", "a b"])
def test_serve_names_a_host_it_cannot_bind(tmp_path: Path, host: str) -> None:
    """uvicorn printed the banner, then "ERROR: [Errno -2] Name or service not known"
    without naming the address, and exited 3."""
    args = ["serve", "-m", str(tmp_path / "m"), "--port", "18999", "--host", host]
    code, err = _run_in_own_session(args, tmp_path, 30)
    assert code == 2, err[-3000:]
    assert f"--host '{host}' is not an address to serve on" in one_line(err), err


def test_an_input_link_that_loops_or_leads_nowhere_says_so(
    tmp_path: Path, market_models: Path
) -> None:
    """A link given as an input file that loops (`ln -s loop loop`) or whose target is
    gone had been "file not found" / "no such file", though `ls` lists it: so said
    `market score`, `cards score` / `cards train` (read_frame) and `cards process`."""
    from fraudlens.cards.data import read_frame
    from fraudlens.errors import DataError
    from fraudlens.processor import _read_any

    (tmp_path / "loop").symlink_to("loop")
    (tmp_path / "gone").symlink_to("nothing-here")
    for name, why in [
        ("loop", "is a link that loops (too many levels of symbolic links)"),
        ("gone", "is a link to nothing-here, which does not exist"),
    ]:
        args = ["market", "score", "--klines", name, "--trades", name, "--out", "o.csv"]
        proc = run_cli([*args, "-m", str(market_models)], cwd=tmp_path)
        assert proc.returncode == 2, (proc.stdout, proc.stderr)
        assert f"{name}: {why}" in one_line(proc.stderr), proc.stderr
        for read in (read_frame, _read_any):
            with pytest.raises(DataError, match=re.escape(why)):
                read(str(tmp_path / name))


@pytest.mark.parametrize(
    ("command", "name", "value", "said"),
    [
        (["users", "list"], "STORE_CALL_TIMEOUT", "abc", "='abc': Input should be a valid number"),
        (["serve", "--port", "1"], "STORE_CALL_TIMEOUT", "abc", "='abc': Input should be"),
        (["worker"], "STORE_CALL_TIMEOUT", "abc", "='abc': Input should be a valid number"),
        # the service had started, then answered every signed-in request 422
        (["serve", "--port", "1"], "SECRET_KEY", "hunter2", ": the secret key must have"),
    ],
)
def test_a_refused_setting_is_one_line(
    tmp_path: Path, command: list[str], name: str, value: str, said: str
) -> None:
    """A FRAUDLENS_* variable with a value the settings refuse was a pydantic traceback
    in every command that reads the settings."""
    proc = run_cli(command, cwd=tmp_path, env={f"FRAUDLENS_{name}": value}, timeout=60)
    assert proc.returncode == 2, (proc.stdout, proc.stderr[-3000:])
    err = one_line(proc.stderr)
    assert "Traceback" not in err and "ValidationError" not in err, err
    assert "error: setting refused (from the environment or ./.env): " in err, err
    assert f"FRAUDLENS_{name}{said}" in err, err
