"""Hostile scoring requests get a 4xx naming what is wrong, never a 500 or gigabytes of
memory: lone surrogates and out-of-range dates in market JSON, records that each bring
their own keys, too many accounts in one request, sums that overflow, card values too
large for 32-bit floats, and ids that decode to the replacement character."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from fraudlens.config import Settings
from fraudlens.errors import DataError
from fraudlens.service import create_app
from fraudlens.service._parse import MAX_MARKET_ACCOUNTS, market_data
from fraudlens.service._schemas import MarketScoreRequest

JSON = {"Content-Type": "application/json"}
#: The card models of the service tests' registry (conftest.full_registry) take these.
CARD_FEATURES = ["Time", *(f"V{i}" for i in range(1, 29)), "Amount"]


@pytest.fixture(scope="module")
def market() -> dict[str, list[dict[str, Any]]]:
    from fraudlens.market.simulate import simulate

    data = simulate(6, seed=8, n_symbols=1, days=1)
    klines = data.klines.assign(ts=data.klines["ts"].map(pd.Timestamp.isoformat))
    trades = data.trades.assign(ts=data.trades["ts"].map(pd.Timestamp.isoformat))
    return {"klines": klines.to_dict("records"), "trades": trades.to_dict("records")}


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A service with no models: market input is validated before any model is looked up."""
    root = tmp_path_factory.mktemp("no-models")
    with TestClient(create_app(Settings(models_dir=root), preload=False)) as c:
        yield c


def _raw(body: dict[str, Any], which: str, row: int, column: str, raw_value: str) -> bytes:
    """``body`` as JSON text with one value replaced by raw JSON (``"\\ud800"``, ...)."""
    marker = "@@REPLACE@@"
    body = json.loads(json.dumps(body))
    body[which][row][column] = marker
    return json.dumps(body).replace(json.dumps(marker), raw_value).encode()


@pytest.mark.parametrize(
    ("which", "column"),
    [("trades", "account_id"), ("trades", "trade_id"), ("trades", "ts"), ("klines", "symbol")],
)
def test_lone_surrogates_are_422(bare: Any, market: dict, which: str, column: str) -> None:
    body = _raw(market, which, 1, column, '"a\\ud800"')
    r = bare.post("/v1/market/score", content=body, headers=JSON)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert (detail["file"], detail["row"], detail["column"]) == (which, 2, column)
    # /invocations reads JSON with pydantic's parser, which refuses the text itself.
    assert bare.post("/invocations", content=body, headers=JSON).status_code == 400


@pytest.mark.parametrize("raw", ['"0001-01-01T00:00:00Z"', '"9999-12-31"', "-1", '"2262-04-12"'])
def test_dates_the_clock_cannot_hold_are_422(bare: Any, market: dict, raw: str) -> None:
    for which in ("trades", "klines"):
        r = bare.post("/v1/market/score", content=_raw(market, which, 2, "ts", raw), headers=JSON)
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert (detail["file"], detail["row"], detail["column"]) == (which, 3, "ts")


@pytest.mark.parametrize(
    ("column", "raw"),
    [
        ("account_id", '"a\\u0000b"'),
        ("account_id", json.dumps("x" * 65)),
        ("account_id", "[1, 2]"),
        ("trade_id", "true"),
        ("trade_id", '{"a": 1}'),
    ],
)
def test_ids_in_market_json_follow_the_id_rule(bare: Any, market: dict, column: str, raw: str):
    r = bare.post("/v1/market/score", content=_raw(market, "trades", 0, column, raw), headers=JSON)
    assert r.status_code == 422, r.text
    assert r.json()["detail"]["column"] == column


def test_price_times_quantity_overflow_is_422(bare: Any, market: dict) -> None:
    r = bare.post(
        "/v1/market/score", content=_raw(market, "trades", 0, "price", "1e308"), headers=JSON
    )
    assert r.status_code == 422, r.text
    assert "too large to add up" in r.json()["error"]


def test_records_with_their_own_keys_stay_small(market: dict) -> None:
    # Trades that each bring 40 keys of their own: every key a column for every row
    # (1,600 columns here; a 5 MB body of 570 such trades made a table of several GB and
    # took minutes to copy column by column). Only the contract's columns are read.
    trades = [
        {**t, **{f"k{i}_{j}": 0 for j in range(40)}} for i, t in enumerate(market["trades"][:40])
    ]
    req = MarketScoreRequest(klines=market["klines"], trades=trades)
    t0 = time.perf_counter()
    data = market_data(req, 24.0)
    assert time.perf_counter() - t0 < 10
    assert not [c for c in data.trades.columns if str(c).startswith("k")]
    assert len(data.trades) > 0


def test_too_many_accounts_in_one_request_is_422(bare: Any, market: dict) -> None:
    bar = market["klines"][0]
    ts = pd.Timestamp(bar["ts"]) + pd.Timedelta(minutes=1)
    n = MAX_MARKET_ACCOUNTS + 1
    trades = [
        {
            "trade_id": f"t{i}",
            "account_id": f"a{i}",
            "symbol": bar["symbol"],
            "ts": ts.isoformat(),
            "side": "buy",
            "price": bar["low"],
            "quantity": 1,
        }
        for i in range(n)
    ]
    r = bare.post("/v1/market/score", json={"klines": [bar], "trades": trades})
    assert r.status_code == 422, r.text
    assert f"{n:,} accounts" in r.json()["error"]
    # Exactly the limit passes validation (then 503: this service has no model).
    r = bare.post("/v1/market/score", json={"klines": [bar], "trades": trades[:-1]})
    assert r.status_code == 503, r.text


def test_scores_that_are_not_finite_are_422_not_500() -> None:
    from fraudlens.service.routes._scoring import market_records

    class Scores:
        def records(self) -> list[dict[str, Any]]:
            return [
                {"account_id": "a", "score": 0.5, "value_moved": 1.0, "trades": []},
                {"account_id": "b", "score": 0.5, "trades": [{"delta": float("inf")}]},
            ]

    with pytest.raises(DataError, match=r"account 'b': trades\[0\]\.delta is not a finite"):
        market_records(Scores())  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ cards


@pytest.fixture(scope="module")
def client(full_registry: Path) -> Any:
    with TestClient(create_app(models_dir=full_registry, check_seconds=0.0)) as c:
        yield c


@pytest.mark.slow
@pytest.mark.parametrize("explain", [False, True])
def test_card_values_beyond_float32_are_422(client: Any, explain: bool) -> None:
    row = [0.5] * len(CARD_FEATURES)
    row[2] = 1e308
    for body in (
        {"data": [row], "explain": explain},
        {"data": [dict(zip(CARD_FEATURES, row, strict=True))], "explain": explain},
        {"data": ",".join(map(repr, row)), "explain": explain},
    ):
        r = client.post("/v1/cards/score", json=body)
        assert r.status_code == 422, r.text
        assert (r.json()["detail"]["row"], r.json()["detail"]["column"]) == (1, "3")
    r = client.post(
        "/invocations", content=",".join(map(repr, row)), headers={"Content-Type": "text/csv"}
    )
    assert r.status_code == 422, r.text
    row[2] = float(np.finfo(np.float32).max)
    assert client.post("/v1/cards/score", json={"data": [row]}).status_code == 200


@pytest.mark.slow
@pytest.mark.parametrize("digit", ["\uff11", "\u0661", "\U0001d7cf"])
def test_card_digits_of_other_scripts_are_422_in_short_bodies_too(client: Any, digit: str) -> None:
    # A short body went to the numpy fast path, whose float() read a fullwidth or
    # Arabic-Indic 1 as 1.0 and scored the row; the same row in a longer body was a 422.
    row = ",".join([digit] + ["0.5"] * (len(CARD_FEATURES) - 1))
    filler = (",".join(["0.5"] * len(CARD_FEATURES)) + "\n") * 3000
    for text in (row, filler + row):
        r = client.post("/invocations", content=text.encode(), headers={"Content-Type": "text/csv"})
        assert r.status_code == 422, r.text
        assert "not a finite number" in r.json()["error"]
        r = client.post("/v1/cards/score", json={"data": text})
        assert r.status_code == 422, r.text
    # Blanks of other scripts around a number are read as blanks, short or long.
    spaced = ",".join(["\u00a00.5"] * len(CARD_FEATURES))
    for text in (spaced, filler + spaced):
        r = client.post("/invocations", content=text.encode(), headers={"Content-Type": "text/csv"})
        assert r.status_code == 200, r.text


@pytest.mark.slow
def test_card_metadata_the_sink_cannot_write_is_422(full_registry: Path, tmp_path: Path) -> None:
    from fraudlens.sinks import open_sink

    row = json.dumps([0.5] * len(CARD_FEATURES))
    sink = open_sink(str(tmp_path / "sink"))
    app = create_app(models_dir=full_registry, sink=sink, check_seconds=0.0)
    with TestClient(app) as c:
        for meta in ('[{"x": "a\\ud800"}]', '[{"\\ud800": 1}]', '["\\udfff"]', '[{"x": NaN}]'):
            body = '{"data": [' + row + '], "metadata": ' + meta + "}"
            r = c.post("/v1/cards/score", content=body, headers=JSON)
            assert r.status_code == 422, (meta, r.text)
        # Items that each bring their own keys: a sink column per key for every row.
        rows = "[" + ",".join([row] * 300) + "]"
        meta = json.dumps([{f"k{i}": 1} for i in range(300)])
        r = c.post(
            "/v1/cards/score", content=f'{{"data": {rows}, "metadata": {meta}}}', headers=JSON
        )
        assert r.status_code == 422, r.text
        assert "256 keys" in r.json()["error"]
        ok = c.post("/v1/cards/score", json={"data": [json.loads(row)], "metadata": [{"id": "é"}]})
        assert ok.status_code == 200, ok.text
    # The sink flushed on shutdown: nothing hostile reached its buffer.
    written = [
        p
        for p in (tmp_path / "sink").rglob("*")
        if p.is_file() and p.suffix in (".csv", ".jsonl") and not p.name.startswith(".")
    ]
    assert len(written) == 1
    assert "é" in written[0].read_text()


@pytest.mark.slow
def test_card_metadata_cannot_overwrite_the_rows_own_fields(
    full_registry: Path, tmp_path: Path
) -> None:
    """A metadata key named like one of the row's own fields (timestamp, score, ...) used to
    replace the service's value in the sink (a back-dated row); a key of a megabyte became
    a sink column name."""
    import csv

    from fraudlens.sinks import open_sink

    row = [0.5] * len(CARD_FEATURES)
    sink = open_sink(str(tmp_path / "sink"))
    app = create_app(models_dir=full_registry, sink=sink, check_seconds=0.0)
    meta = {"timestamp": "1999-01-01", "score": "0", "model": "x", "metadata.score": "own", "id": 7}
    with TestClient(app) as c:
        long_key = {"k" * 129: 1}
        r = c.post("/v1/cards/score", json={"data": [row], "metadata": [long_key]})
        assert r.status_code == 422, r.text
        assert "129 characters; at most 128" in r.json()["error"]
        # Keys that break a line of the sink's CSV header, or show as another column's name
        # (they had become sink columns).
        for key, words in [
            ("a\x00", "contains a control character (U+0000 at position 2)"),
            ("a\nb", "contains a control character (U+000A at position 2)"),
            ("sc\u202eore", "contains an invisible formatting character (U+202E at position 3)"),
            ("", "must not be empty"),
        ]:
            r = c.post("/v1/cards/score", json={"data": [row], "metadata": [{"id": 1, key: 1}]})
            assert r.status_code == 422, (key, r.text)
            assert f"a metadata key {words}" in r.json()["error"], r.text
        ok = c.post("/v1/cards/score", json={"data": [row], "metadata": [meta]})
        assert ok.status_code == 200, ok.text
        score = ok.json()["fraud_classifier"]["pred_proba"][0]
    (written,) = [p for p in (tmp_path / "sink").rglob("*.csv") if not p.name.startswith(".")]
    with open(written, newline="") as f:
        (out,) = list(csv.DictReader(f))
    assert out["timestamp"].startswith("20") and out["timestamp"] != "1999-01-01"
    assert float(out["score"]) == pytest.approx(score)
    assert out["model"] != "x"
    assert out["metadata.timestamp"] == "1999-01-01" and out["metadata.model"] == "x"
    assert out["metadata.score"] == "0" and out["id"] == "7"


# -- values that parse but mean nothing ------------------------------------------------
# ``"ts": "now"`` or ``"today"`` (pandas reads them as the time of reading: a request's
# trades were stamped with the clock's time and scored), and ``NaN`` in a number column
# (Python's json reads it; it had been reported as "missing open"). Each is a 422 naming
# the row and column, on both market routes.

VALUE_ROUTES = ("/v1/market/score", "/invocations")


@pytest.mark.parametrize("route", VALUE_ROUTES)
@pytest.mark.parametrize("which", ["klines", "trades"])
@pytest.mark.parametrize("word", ["now", "today"])
def test_clock_words_are_no_timestamps(
    bare: Any, market: dict, route: str, which: str, word: str
) -> None:
    r = bare.post(route, content=_raw(market, which, 2, "ts", json.dumps(word)), headers=JSON)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert (detail["file"], detail["row"], detail["column"]) == (which, 3, "ts")
    assert f"'{word}' is a word read as the time of reading" in detail["reason"]


@pytest.mark.parametrize("route", VALUE_ROUTES)
@pytest.mark.parametrize(
    ("which", "column"),
    [
        ("klines", "open"),
        ("klines", "high"),
        ("klines", "low"),
        ("klines", "close"),
        ("klines", "volume"),
        ("trades", "price"),
        ("trades", "quantity"),
    ],
)
@pytest.mark.parametrize(
    ("raw", "shown"), [("NaN", "nan"), ("Infinity", "inf"), ("-Infinity", "-inf")]
)
def test_numbers_that_are_not_finite_are_named(
    bare: Any, market: dict, route: str, which: str, column: str, raw: str, shown: str
) -> None:
    r = bare.post(route, content=_raw(market, which, 2, column, raw), headers=JSON)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert (detail["file"], detail["row"], detail["column"]) == (which, 3, column)
    assert detail["reason"] == f"{shown} is not a finite number"


@pytest.mark.parametrize("route", VALUE_ROUTES)
def test_null_is_still_missing(bare: Any, market: dict, route: str) -> None:
    """null (and a NaN elsewhere in the column) keep their own messages."""
    body = json.loads(_raw(market, "klines", 1, "open", "null"))
    body["klines"][4]["open"] = float("nan")
    r = bare.post(route, content=json.dumps(body).encode(), headers=JSON)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert (detail["row"], detail["column"], detail["reason"]) == (2, "open", "missing open")
    body["klines"][1]["open"] = market["klines"][1]["open"]
    r = bare.post(route, content=json.dumps(body).encode(), headers=JSON)
    assert r.json()["detail"]["row"] == 5
    assert r.json()["detail"]["reason"] == "nan is not a finite number"


def test_a_valid_body_still_reaches_the_model(bare: Any, market: dict) -> None:
    """Integer and float values, with no null or NaN, pass as before (503: no model)."""
    r = bare.post("/v1/market/score", content=json.dumps(market).encode(), headers=JSON)
    assert r.status_code == 503, r.text


@pytest.mark.slow
def test_a_sink_that_cannot_write_is_503(full_registry: Path, tmp_path: Path) -> None:
    """The sink's disk is full (or its folder gone, or S3 unreachable): the rows were not
    accepted, so the reply is 503, an outage the client retries after (it was a 500)."""
    import errno

    from fraudlens.sinks import open_sink

    class FullDisk:
        def __init__(self) -> None:
            self.inner = open_sink(str(tmp_path / "sink"))
            self.full = True

        def put_many(self, records: Any, **kwargs: Any) -> None:
            if self.full:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.inner.put_many(records, **kwargs)

        def close(self) -> None:
            self.inner.close()

    sink = FullDisk()
    app = create_app(models_dir=full_registry, sink=sink, check_seconds=0.0)  # type: ignore[arg-type]
    row = [0.5] * len(CARD_FEATURES)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/v1/cards/score", json={"data": [row]})
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "the sink is unavailable", r.text
        assert "No space left on device" in r.json()["detail"]["reason"]
        assert r.headers["retry-after"] == "5"  # an outage: the client may try again
        sink.full = False
        assert c.post("/v1/cards/score", json={"data": [row]}).status_code == 200


def _accounts(n: int) -> dict[str, Any]:
    """A market request of ``n`` accounts, one trade each."""
    bar = {"symbol": "C", "ts": "2024-03-01T14:30:00Z", "open": 10, "high": 11, "low": 9}
    trades = [
        {"trade_id": f"t{i}", "account_id": f"a{i}", "symbol": "C", "ts": "2024-03-01T14:31:00Z"}
        | {"side": "buy", "price": 10, "quantity": 1}
        for i in range(n)
    ]
    return {"klines": [bar | {"close": 10, "volume": 1}], "trades": trades, "model": "features"}


@pytest.mark.slow
def test_market_requests_of_many_accounts_are_scored_a_few_at_a_time(
    full_registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request of 2,000 accounts is a 230 KB body, under the body limit's "large" size,
    and holds about 30 MB while scored: forty at once (the thread pool) had taken a real
    server from 350 MB to 1.5 GB. More than 100 accounts take one of the large bodies'
    slots (2 here); a request that waits too long for one gets 503; small ones never
    wait."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from fraudlens.service.routes import _scoring

    real = _scoring.score_market
    lock = threading.Lock()
    running: dict[int, int] = {}  # requests being scored, by their number of accounts
    most: dict[int, int] = {}

    def slow(det: Any, data: Any, **kwargs: Any) -> Any:
        n = len(data.account_ids)
        with lock:
            running[n] = running.get(n, 0) + 1
            most[n] = max(most.get(n, 0), running[n])
        time.sleep(0.5)
        with lock:
            running[n] -= 1
        return real(det, data, **kwargs)

    monkeypatch.setattr(_scoring, "score_market", slow)
    heavy, light = _accounts(150), _accounts(3)

    def post_all(app: Any, bodies: list[dict[str, Any]]) -> list[int]:
        with TestClient(app) as c, ThreadPoolExecutor(len(bodies)) as pool:
            return list(pool.map(lambda b: c.post("/v1/market/score", json=b).status_code, bodies))

    app = create_app(models_dir=full_registry, large_body_slots=2)
    assert post_all(app, [heavy] * 6 + [light] * 6) == [200] * 12
    assert most[150] == 2
    assert most[3] >= 3, most
    # A heavy request that finds no slot in time: 503.
    app = create_app(models_dir=full_registry, large_body_slots=1, large_body_wait_seconds=0.1)
    assert sorted(post_all(app, [heavy] * 2)) == [200, 503]
