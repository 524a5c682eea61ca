"""What a new user meets on the command line: the version, a readable model list, and
errors that say what is wrong and where, on real files."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pandas as pd
import pytest
from _cli import one_line, run_cli
from typer.testing import CliRunner

from _reference_format import BUYS, SELLS, write_reference  # type: ignore[import-not-found]
from fraudlens.cli import app

runner = CliRunner()


def _fails(args: list[str]) -> str:
    """Run ``fraudlens ARGS``; it must exit 2 without a traceback; return its output."""
    proc = run_cli(args)
    assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    return one_line(proc.stderr + proc.stdout)


def test_version() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0
    assert res.output.strip() == f"fraudlens {metadata.version('fraudlens')}"


# ------------------------------------------------------------------------- models list


def test_models_list_fits_80_columns_with_a_headline(
    market_models: Path, market_dir: Path, card_file: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    shutil.copytree(market_models, models)
    proc = run_cli(["models", "list", "-m", str(models)])
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if "market-features" in line)
    assert " val" in row and "AUC " in row  # the training hold-out: nothing else yet
    for args in (
        ["market", "evaluate", "--data", str(market_dir), "-m", str(models)],
        ["cards", "train", "--data", str(card_file), "-m", str(models), "--detector", "logistic"],
    ):
        res = run_cli(args)
        assert res.returncode == 0, res.stderr
    proc = run_cli(["models", "list", "-m", str(models)])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, proc.stdout
    assert "…" not in proc.stdout and "..." not in proc.stdout, proc.stdout
    header = next(line for line in lines if line.split()[:2] == ["model", "version"])
    assert header.split() == ["model", "version", "active", "created", "(UTC)", "threshold",
                              "headline"]  # fmt: skip
    rows = {line.split()[0]: line.split() for line in lines if line.startswith(("market", "cards"))}
    assert rows["market-features"][-3:-1] == ["AUC", rows["market-features"][-2]]
    assert rows["market-features"][-1] == "eval"  # evaluated on labelled data
    assert rows["cards-logistic"][-1] == "val"  # the held-out window of the training split
    assert rows["market-features"][1:3] == ["v0001", "yes"]
    for name in ("market-features", "cards-logistic"):
        auc = float(rows[name][-2])
        assert 0.0 <= auc <= 1.0


# ------------------------------------------------------------------------- -m


def test_model_dir_at_a_missing_model_or_version_folder(
    market_models: Path, market_dir: Path, card_file: Path, tmp_path: Path
) -> None:
    version = market_models / "market-features" / "v0001"
    out = _fails(["models", "list", "-m", str(version)])
    assert f"{version} is version v0001 of model market-features, not a registry" in out
    assert f"the registry folder is {market_models}" in out
    out = _fails(["models", "list", "-m", str(version.parent)])
    assert f"{version.parent} is the folder of model market-features, not a registry" in out
    missing = tmp_path / "no-such-models"
    out = _fails(["models", "list", "-m", str(missing)])
    assert f"no model registry at {missing}: the folder does not exist" in out
    assert not missing.exists()
    # The same words from the commands that use a model.
    out = _fails(
        ["market", "score", "--klines", str(market_dir / "klines.csv"), "--trades",
         str(market_dir / "trades.csv"), "--out", str(tmp_path / "s.csv"), "-m", str(version)]
    )  # fmt: skip
    assert "is version v0001 of model market-features, not a registry" in out
    out = _fails(["cards", "score", "--data", str(card_file), "--out", str(tmp_path / "s.csv"),
                  "-m", str(missing)])  # fmt: skip
    assert f"no model registry at {missing}: the folder does not exist" in out
    # Training into a version folder would nest a registry inside a model: refused too.
    out = _fails(["market", "train", "--data", str(market_dir), "-m", str(version)])
    assert "not a registry" in out
    out = _fails(["serve", "-m", str(version), "--port", "1"])
    assert "not a registry" in out


# ------------------------------------------------------------------------- bad files


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory, market_dir: Path, card_file: Path) -> Path:
    bad = tmp_path_factory.mktemp("bad")
    trades = (market_dir / "trades.csv").read_bytes().split(b"\n")
    header = trades[0].split(b",")
    cells = trades[3].split(b",")
    cells[header.index(b"account_id")] += b"\xe9"  # Latin-1 e-acute
    trades[3] = b",".join(cells)
    (bad / "trades_latin1.csv").write_bytes(b"\n".join(trades))
    cards = card_file.read_bytes().split(b"\n")[:40]
    cheader = cards[0].split(b",")
    cells = cards[7].split(b",")
    cells[cheader.index(b"terminal_id")] = b"T\xff" + cells[cheader.index(b"terminal_id")]
    cards[7] = b",".join(cells)
    (bad / "cards_latin1.csv").write_bytes(b"\n".join(cards))
    (bad / "empty.csv").write_bytes(b"")
    klines_header = (market_dir / "klines.csv").read_text().splitlines()[0]
    (bad / "klines_header_only.csv").write_text(klines_header + "\n")
    frame = pd.read_csv(market_dir / "klines.csv").drop(columns=["volume"])
    frame.to_csv(bad / "klines_no_volume.csv", index=False)
    return bad


def test_non_utf8_files_name_file_row_and_column(
    bad_files: Path, market_dir: Path, market_models: Path, tmp_path: Path
) -> None:
    latin = bad_files / "trades_latin1.csv"
    klines = market_dir / "klines.csv"
    where = f"file {latin}, row 3, column 'account_id': the file is not UTF-8 text: byte 0xE9"
    out = _fails(["market", "score", "--klines", str(klines), "--trades", str(latin),
                  "--out", str(tmp_path / "s.csv"), "-m", str(market_models)])  # fmt: skip
    assert where in out and "save the file as UTF-8" in out
    db = tmp_path / "fraudlens.db"
    out = _fails(["db", "load", "--klines", str(klines), "--trades", str(latin),
                  "--db", f"sqlite:///{db}"])  # fmt: skip
    assert where in out
    cards = bad_files / "cards_latin1.csv"
    out = _fails(["cards", "score", "--data", str(cards), "--out", str(tmp_path / "c.csv"),
                  "-m", str(market_models)])  # fmt: skip
    assert "no model for 'cards'" in out  # a registry without card models: said first
    models = tmp_path / "models"
    res = run_cli(["cards", "train", "--data", str(bad_files.parent), "-m", str(models)])
    assert res.returncode == 2
    out = _fails(["cards", "train", "--data", str(cards), "-m", str(models)])
    assert (
        f"file {cards}, row 7, column 'terminal_id': the file is not UTF-8 text: byte 0xFF" in out
    )


def test_non_utf8_stream_source(bad_files: Path, card_file: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    res = run_cli(["cards", "train", "--data", str(card_file), "-m", str(models),
                   "--detector", "logistic"])  # fmt: skip
    assert res.returncode == 0, res.stderr
    cards = bad_files / "cards_latin1.csv"
    out = _fails(["cards", "process", "--source", f"file:{cards}", "--sink",
                  str(tmp_path / "sink"), "-m", str(models), "--limit", "5"])  # fmt: skip
    assert f"file {cards}, row 7, column 'terminal_id': the file is not UTF-8 text" in out
    out = _fails(["cards", "process", "--source", f"file:{bad_files / 'empty.csv'}", "--sink",
                  str(tmp_path / "sink2"), "-m", str(models), "--limit", "5"])  # fmt: skip
    assert "the file is empty (no header row, no data rows)" in out


def test_empty_header_only_and_missing_column(
    bad_files: Path, market_dir: Path, market_models: Path, tmp_path: Path
) -> None:
    empty = bad_files / "empty.csv"
    wording = "the file is empty (no header row, no data rows)"
    market = _fails(["market", "score", "--klines", str(empty), "--trades",
                     str(market_dir / "trades.csv"), "--out", str(tmp_path / "s.csv"),
                     "-m", str(market_models)])  # fmt: skip
    cards = _fails(["cards", "train", "--data", str(empty), "-m", str(tmp_path / "m")])
    assert f"error: file {empty}: {wording}" in market
    assert f"error: file {empty}: {wording}" in cards
    # A k-line file with only its header is the k-line file's fault, not the trades'.
    header_only = bad_files / "klines_header_only.csv"
    out = _fails(["market", "score", "--klines", str(header_only), "--trades",
                  str(market_dir / "trades.csv"), "--out", str(tmp_path / "s.csv"),
                  "-m", str(market_models)])  # fmt: skip
    assert f"error: file {header_only}: no data rows (the file has only a header row)" in out
    assert "trades.csv" not in out
    # A missing column is a header problem: the column is named, no "row 0".
    no_volume = bad_files / "klines_no_volume.csv"
    db = f"sqlite:///{tmp_path / 'x.db'}"
    out = _fails(["db", "load", "--klines", str(no_volume), "--trades",
                  str(market_dir / "trades.csv"), "--db", db])  # fmt: skip
    assert f"file {no_volume}, column 'volume': missing column 'volume'" in out
    assert "row 0" not in out


def test_threshold_target_out_of_range(card_file: Path, tmp_path: Path) -> None:
    out = _fails(["cards", "train", "--data", str(card_file), "-m", str(tmp_path / "m"),
                  "--threshold", "recall:2"])  # fmt: skip
    assert "threshold strategy 'recall:2': the recall target 2 is out of range" in out
    assert "between 0 and 1" in out
    out = _fails(["cards", "train", "--data", str(card_file), "-m", str(tmp_path / "m"),
                  "--threshold", "fpr:-0.5"])  # fmt: skip
    assert "the fpr target -0.5 is out of range" in out
    assert not (tmp_path / "m").exists()


# ------------------------------------------------------------------------- database


@pytest.mark.parametrize("command", [["db", "events"], ["db", "status"], ["enqueue", "--all"]])
def test_reading_a_database_file_that_does_not_exist(command: list[str], tmp_path: Path) -> None:
    db = tmp_path / "sub" / "nothing.db"
    url = f"sqlite:///{db}"
    out = _fails([*command, "--db", url])
    assert f"database file {db} does not exist" in out
    assert f"fraudlens db upgrade --db {url}" in out
    assert not db.exists() and not db.parent.exists()
    # The command it names runs as printed, with the virtualenv not activated (it had
    # named a bare `fraudlens`).
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDLENS_")}
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    proc = run_cli([*command, "--db", url], env=env)
    printed = one_line(proc.stderr).split("`")[1]
    assert printed.endswith(f" db upgrade --db {url}"), printed
    made = subprocess.run(shlex.split(printed), env=env, capture_output=True, text=True)
    assert made.returncode == 0, (printed, made.stderr)
    assert db.is_file()


@pytest.mark.parametrize(
    ("option", "url", "says"),
    [
        ("--db", "postgresql://u:SECRET@h:abc/x", "invalid literal for int()"),
        ("--db", "mysql://u:SECRET@[::1/x", "invalid literal for int()"),
        # A host name the resolver cannot encode, a byte that is not UTF-8: a UnicodeError
        # traceback (exit code 1) when the first connection was made.
        ("--db", "postgresql://u:SECRET@db..example/x", "label empty or too long"),
        ("--db", "mysql+pymysql://u:SECRET@db..example/x", "label empty or too long"),
        ("--db", "postgresql://u:SECRET\udcff@h/x", "is not UTF-8 text (U+DCFF)"),
        ("--queue", "redis://:SECRET@h:abc/0", "Port could not be cast to integer"),
        ("--queue", "redis://:SECRET@[::1/0", "Invalid IPv6 URL"),
        ("--queue", "redis://h/0?socket_timeout=abc", "Invalid value for 'socket_timeout'"),
        ("--queue", "sqs://[::1", "Invalid IPv6 URL"),
    ],
)
def test_a_malformed_url_is_one_line_without_its_password(
    option: str, url: str, says: str, tmp_path: Path
) -> None:
    """A mistyped port or an unclosed [IPv6 address] had been a ValueError traceback
    (exit code 1) from every command reading the setting."""
    command = ["db", "status"] if option == "--db" else ["enqueue", "a1"]
    out = _fails([*command, option, url])
    kind = "database" if option == "--db" else "queue"
    assert out.startswith(f"error: {kind} URL '"), out
    assert says in out and "SECRET" not in out, out


def test_reading_the_default_database_that_does_not_exist(tmp_path: Path) -> None:
    proc = run_cli(["db", "events"], cwd=tmp_path)
    assert proc.returncode == 2
    assert "database file fraudlens.db does not exist" in one_line(proc.stderr)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------- evaluate


def test_market_evaluate_lists_only_the_plots_it_wrote(
    market_dir: Path, market_models: Path, tmp_path: Path
) -> None:
    data = tmp_path / "nokind"
    shutil.copytree(market_dir, data)
    labels = pd.read_csv(data / "labels.csv")
    labels.drop(columns=["kind"]).to_csv(data / "labels.csv", index=False)
    models = tmp_path / "models"
    shutil.copytree(market_models, models)
    report = tmp_path / "report"
    proc = run_cli(["market", "evaluate", "--data", str(data), "-m", str(models),
                    "--out", str(report)])  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    text = one_line(proc.stderr)
    listed = text.split("(plots: ", 1)[1].split(")", 1)[0].split(", ")
    written = sorted(p.name for p in report.glob("*.png"))
    assert sorted(listed) == written
    assert "by_kind.png" not in listed and "roc.png" in listed


# ------------------------------------------------------------------------- import-reference


def _reference(root: Path) -> tuple[Path, Path, Path]:
    return write_reference(
        root,
        {"buy_COIN_7.csv": BUYS, "u42.csv": "2022-01-04 19:36:10,229.0\n"},
        {"sell_COIN_7.csv": SELLS, "u42.csv": ""},
    )


def test_import_reference_then_score_as_printed(market_models: Path, tmp_path: Path) -> None:
    kl, buy, sell = _reference(tmp_path)
    out = tmp_path / "imported"
    # The default registry holds a trained market model: one command, the score.
    proc = run_cli(["market", "import-reference", "--klines", str(kl), "--buy", str(buy),
                    "--sell", str(sell), "--out", str(out), "--symbol", "COIN"],
                   env={"FRAUDLENS_MODELS_DIR": str(market_models)})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "imported 3 bars and 5 trades of 2 accounts" in one_line(proc.stderr)
    trades = pd.read_csv(out / "trades.csv")
    assert sorted(trades["account_id"].unique()) == ["COIN_7", "u42"]
    assert set(pd.read_csv(out / "klines.csv").columns) >= {"open", "close", "volume"}
    (command,) = [line.split("$ ", 1)[1] for line in proc.stderr.splitlines() if "$ " in line]
    # As printed, from the same folder, with the default registry pointing at a trained one.
    scored = subprocess.run(
        shlex.split(command),
        env={**os.environ, "FRAUDLENS_MODELS_DIR": str(market_models)},
        capture_output=True,
        text=True,
    )
    assert scored.returncode == 0, scored.stderr
    scores = pd.read_csv(out / "scores.csv")
    assert sorted(scores["account_id"]) == ["COIN_7", "u42"]
    assert scores["score"].between(0, 1).all()


def test_import_reference_bad_row_names_file_row_and_column(tmp_path: Path) -> None:
    kl, buy, sell = _reference(tmp_path)
    bad = sell / "sell_COIN_7.csv"
    bad.write_text("time,price\n2022-01-04 19:30:00,228.9\n2022-01-04 21:00:00,231.3\n")
    out = _fails(["market", "import-reference", "--klines", str(kl), "--buy", str(buy),
                  "--sell", str(sell), "--out", str(tmp_path / "o")])  # fmt: skip
    assert f"file {bad}, row 2, column 'time': no 5-minute bar" in out
    assert not (tmp_path / "o").exists()


def test_import_reference_file_name_or_symbol_not_utf8_is_one_line(tmp_path: Path) -> None:
    """An account file whose name is not UTF-8 (its account id is the name), or a --symbol
    that is not, ended `market import-reference` with a UnicodeEncodeError traceback (the
    lone surrogate Python keeps for the byte reached pyarrow)."""
    kl, buy, sell = _reference(tmp_path)
    bad = Path(os.fsdecode(bytes(buy) + b"/buy_caf\xe9.csv"))
    shutil.copy(buy / "buy_COIN_7.csv", bad)
    args = ["market", "import-reference", "--klines", str(kl), "--buy", str(buy),
            "--sell", str(sell), "--out", str(tmp_path / "o")]  # fmt: skip
    out = _fails(args)
    assert "the file name is not UTF-8 text (byte 0xE9)" in out and "buy_caf" in out
    bad.unlink()
    out = _fails([*args, "--symbol", os.fsdecode(b"COIN\xff")])
    assert "the symbol is not UTF-8 text (byte 0xFF)" in out
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("symbol", "says"),
    [
        ("", "the symbol '' must not be empty"),
        ("X" * 100, "has 100 characters; at most 32 are allowed"),
        ("A\tB", "contains a control character (U+0009 at position 2)"),
    ],
)
def test_import_reference_refuses_a_symbol_that_is_no_symbol(
    tmp_path: Path, symbol: str, says: str
) -> None:
    """A --symbol that is no symbol was blamed on row 1 of the k-line file ("file
    COIN.csv, row 1, column 'symbol': missing symbol"), which has no symbol column."""
    kl, buy, sell = _reference(tmp_path)
    out = _fails(["market", "import-reference", "--klines", str(kl), "--buy", str(buy),
                  "--sell", str(sell), "--out", str(tmp_path / "o"),
                  "--symbol", symbol])  # fmt: skip
    assert "column 'symbol': " in out and says in out, out
    assert str(kl) not in out and "row 1" not in out, out
    assert not (tmp_path / "o").exists()
