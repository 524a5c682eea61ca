"""The card processor with its sink on a full disk (a real tmpfs): an outage, waited out
without spending the records' delivery attempts, then every record written once.

An empty file can still be made on a full disk, so the sink's probe (an empty temporary
file) passed while every put failed: the processor nacked its queue messages as "not an
outage" until they were dead-lettered.
"""

from __future__ import annotations

import csv
import threading
from pathlib import Path
from typing import Any

import pytest

from _disk import fill  # type: ignore[import-not-found]
from fraudlens.processor import process
from fraudlens.queues import open_queue

pytestmark = pytest.mark.slow


def test_a_full_sink_disk_pauses_the_processor_and_loses_nothing(
    card_models: Path, ulb_records: list[dict[str, Any]], tmp_path: Path, full_disk_folder: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    with open_queue(url, name="card-events") as q:
        q.send_batch(
            [
                {
                    "record": {
                        **{k: v for k, v in r.items() if k != "Class"},
                        "transaction_id": f"t{i}",
                    }
                }
                for i, r in enumerate(ulb_records[:60])
            ]
        )
    sink = full_disk_folder / "sink"
    sink.mkdir()
    filler = fill(full_disk_folder, leave=8 << 10)
    threading.Timer(2.0, filler.unlink).start()
    stats = process(
        f"queue:{url}",
        sink,
        card_models,
        batch_size=20,
        idle_exit=1.0,
        pause_cap=0.5,
        handle_signals=False,
    )
    assert stats.outages >= 1 and stats.failed == 0 and stats.dead_lettered == 0
    ids: list[str] = []
    for f in sorted(p for p in sink.rglob("*.csv") if not p.name.startswith(".")):
        with open(f, newline="") as fh:
            ids.extend(r["transaction_id"] for r in csv.DictReader(fh))
    assert sorted(ids) == sorted(f"t{i}" for i in range(60))
    with open_queue(url, name="card-events") as q:
        assert q.depth() == 0 and q.dead_letters() == []
