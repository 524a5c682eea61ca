"""A sweep of hostile input files through every command that reads a data file: market
score / evaluate / train / pairs / simulate --klines, db load, enqueue --file and cards
train / score (and --history) / evaluate / benchmark / process --source file:.

Each case (see ``_hostile_files``) writes one variant of a small valid file (empty, not
UTF-8, binary garbage, an endless pipe, NaN / inf / 1e308 / text in a number column,
dates in year 1 or 9999, epoch numbers, duplicated rows or columns, Parquet files that
are truncated or hold a struct, a list, a map, a dictionary or a date where a number or
text belongs, a folder of mixed files, ...) and runs the command on it in one child
process with a memory limit and a per-case alarm. A case passes when the command exits
0 (where the variant may be taken) or 2 with one ``error:`` line naming the file (and,
for a bad cell, its row and column), never a traceback, another exit code or the
alarm. The unchanged file must be taken (exit 0), so a refusal for some other reason
(no model, a wrong option) cannot pass for one.

Found by it (each ended in a traceback, exit code 1): a Parquet column holding structs
or lists where the file's pandas metadata says text (pyarrow's ArrowNotImplementedError,
market and card loaders and the card processor); a Parquet list column of card ids (a
ValueError in the id check); a list or struct ``transaction_id`` ("unhashable type" in
the duplicate check); a struct in a labels file's ``kind`` (the same, in ``market
evaluate``'s by-kind table); a labels file with a blank ``kind`` (``market evaluate``:
"cannot convert float NaN to integer"). Also: a Parquet timestamp column where a card
value belongs had been read as a count of microseconds, not refused; a quote never
closed was pandas' "EOF inside string starting at row 1" (now that row, as the loaders
number rows); a link to /dev/zero given to a card command was "no such file or folder",
and a folder given to ``cards process --source file:`` "no such file" (now "not a
regular file", "is a folder, not a file").
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("pyarrow")

import _hostile_files as sweep  # (tests/cli is on the path, as for _cli)

#: Seconds the whole sweep may take (it takes about a minute and a half on 2 cores).
SWEEP_SECONDS = 600


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("hostile-files") / "results.jsonl"
    proc = subprocess.run(
        [sys.executable, sweep.__file__, str(out)],
        capture_output=True,
        text=True,
        timeout=SWEEP_SECONDS,
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    started = [r["case"] for r in rows if r.get("started")]
    return {
        "done": {r["case"]: r for r in rows if "code" in r},
        "last": started[-1] if started else None,
        "child": f"exit code {proc.returncode}; stderr: {proc.stderr[-3000:]}",
    }


def _folder_of(case: str, file: str) -> str | None:
    """The data folder a ``--data`` case's file is in (its error may name the folder when
    the variant is no file of the kind looked for, e.g. a sub-folder or a .txt file)."""
    target = next((t for t in sweep.TARGETS if t.name == case.split(":")[0]), None)
    return str(Path(file).parent) if target is not None and target.folder else None


@pytest.mark.parametrize("case", sweep.case_ids())
def test_a_hostile_file_is_refused_in_one_line(results: dict[str, Any], case: str) -> None:
    r = results["done"].get(case)
    assert r is not None, (
        f"the sweep did not run {case}: the last case started was {results['last']} "
        f"({results['child']})"
    )
    shown = f"{' '.join(r['argv'])}\n{r['output'][-1500:]}"
    assert not r["traceback"], f"{shown}\n{r['traceback']}"
    assert r["code"] in (0, 2), shown
    expect = sweep.expectation(case)
    if expect == "accept":
        assert r["code"] == 0, shown
    elif expect == "refuse":
        assert r["code"] == 2, shown
    if r["code"] == 2:
        errors = [line for line in r["output"].splitlines() if line.startswith("error:")]
        assert len(errors) == 1, shown
        named = [r["file"], _folder_of(case, r["file"])]
        assert any(n and n in errors[0] for n in named), shown
        if expect == "refuse" and sweep.bad_cell(case):
            assert ", row " in errors[0], shown
            variant = case.split(":", 1)[1]
            assert variant in sweep.ROW_ONLY or ", column " in errors[0], shown


def test_a_card_file_too_short_for_the_benchmark_names_the_fix(tmp_path: Path) -> None:
    """Found by the sweep's first draft: 20 days of data had been told "room for 0
    weeks ...; ask for --weeks 1", which only gets the same refusal."""
    from typer.testing import CliRunner

    from fraudlens.cli import app

    runner = CliRunner()
    made = runner.invoke(
        app, ["cards", "simulate", "--out", str(tmp_path), "--customers", "20", "--days", "20"]
    )
    assert made.exit_code == 0, made.output
    data = tmp_path / "transactions.csv"
    res = runner.invoke(app, ["cards", "benchmark", "--data", str(data), "--weeks", "1"])
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert f"file {data}: the data cover 20 days" in text, text
    assert "room for 0 weeks" in text and "give the data at least 21 days" in text, text
    assert "--weeks 1" not in text.split("not 1;")[-1], text
