"""HTTP latency of one request at a time against a running scoring service.

Used by the cards benchmark to time single-transaction requests end to end (client
serialisation, TCP on loopback, routing, parsing, the model, the reply), the way a
payment flow would call the service.

Run directly to measure a service it starts itself::

    python bench/_http.py --models ./models --n 2000

The request row holds the values of the chosen model's own features, in the model's
order (from its registry metadata), taken from the first row of ``--csv``: by default
the file the model was trained on (its metadata's ``data_file``) when it still exists,
else the ULB sample. Raw card transactions are turned into features the way training
did, so a registry trained on any card table works.
"""

from __future__ import annotations

import http.client
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

__all__ = ["http_latency", "request_row", "serve_in_subprocess", "serve_in_thread"]

#: Rows sent when neither ``--csv`` nor the model's training file is at hand.
ULB_SAMPLE = str(
    Path(__file__).resolve().parents[2] / "shared" / "data" / "ulb_creditcard_day1.csv"
)


def http_latency(
    base_url: str,
    payload: str | bytes,
    n: int,
    *,
    path: str = "/invocations",
    content_type: str = "text/csv",
    headers: dict[str, str] | None = None,
    warmup: int = 50,
) -> dict[str, Any]:
    """Send ``payload`` ``n`` times, one at a time on one keep-alive connection.

    Parameters
    ----------
    base_url
        ``http://host:port`` of the service.
    payload
        Request body (e.g. one CSV row).
    n
        Timed requests.
    path, content_type, headers
        Where and how to send it.
    warmup
        Untimed requests sent first (connection set-up, lazy model loading, caches).

    Returns
    -------
    dict
        ``n``, ``p50_ms``, ``p90_ms``, ``p99_ms``, ``mean_ms``, ``max_ms``,
        ``requests_per_s`` and the last reply body as ``sample``.

    Raises
    ------
    RuntimeError
        If any reply is not 200.
    """
    url = urlsplit(base_url)
    body = payload.encode() if isinstance(payload, str) else payload
    hdrs = {"Content-Type": content_type, **(headers or {})}
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80, timeout=30)
    times = np.empty(n, dtype=np.float64)
    sample = b""
    try:
        for i in range(warmup + n):
            t0 = time.perf_counter()
            conn.request("POST", path, body=body, headers=hdrs)
            resp = conn.getresponse()
            sample = resp.read()
            dt = time.perf_counter() - t0
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {sample[:300]!r}")
            if i >= warmup:
                times[i - warmup] = dt
    finally:
        conn.close()
    ms = times * 1000.0
    return {
        "n": n,
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "max_ms": float(ms.max()),
        "requests_per_s": float(n / times.sum()),
        "sample": sample.decode(errors="replace"),
    }


def serve_in_thread(app: Any, *, host: str = "127.0.0.1", port: int = 0) -> tuple[Any, Any, str]:
    """Start uvicorn for ``app`` in a daemon thread; return ``(server, thread, base_url)``.

    Stop it with ``server.should_exit = True; thread.join()``.
    """
    import socket
    import threading

    import uvicorn

    if port == 0:
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    return server, thread, f"http://{host}:{port}"


def serve_in_subprocess(models_dir: str, *, host: str = "127.0.0.1") -> tuple[Any, str]:
    """Start the service in its own process (no GIL shared with the client).

    Returns ``(process, base_url)``; stop it with ``process.terminate(); process.wait()``.
    """
    import socket
    import subprocess
    import sys
    import urllib.request

    with socket.socket() as s:
        s.bind((host, 0))
        port = s.getsockname()[1]
    code = (
        "import sys, uvicorn\n"
        "from fraudlens.service import create_app\n"
        "uvicorn.run(create_app(models_dir=sys.argv[1]), host=sys.argv[2], port=int(sys.argv[3]),"
        " log_level='warning', access_log=False)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, models_dir, host, str(port)])
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "/ping", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("the service did not start")
        time.sleep(0.1)


def request_row(models_dir: str, model: str, csv: str | None = None) -> str:
    """One headerless ``text/csv`` record for ``model``: its own features, in its order.

    Parameters
    ----------
    models_dir
        The registry folder.
    model
        A card model as the ``X-Model`` header names it (``xgboost``, ``cards-xgboost``,
        ``cards`` for the domain default, ...).
    csv
        A card table (ULB, raw transactions or a feature table) to take the first row
        from [default: the model's training file if it exists, else the ULB sample].

    Returns
    -------
    str
        The comma-separated feature values of the first row.

    Raises
    ------
    SystemExit
        When the table lacks some of the model's features (they are named).
    """
    from fraudlens.cards.data import load_table
    from fraudlens.registry import Registry

    reg = Registry(models_dir)
    name = model if model.startswith("cards") else f"cards-{model}"
    mv = reg.get(name)
    names = [str(n) for n in mv.metadata.get("feature_names", [])]
    if not names:
        raise SystemExit(f"{mv.name}:{mv.version} records no feature names")
    if csv is None:
        trained_on = mv.metadata.get("data_file")
        csv = trained_on if trained_on and Path(trained_on).is_file() else ULB_SAMPLE
    table = load_table(csv)
    missing = [n for n in names if n not in table.X.columns]
    if missing:
        raise SystemExit(
            f"{csv} does not give {mv.name}:{mv.version}'s features {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}; pass --csv with the table it was trained on"
        )
    values = table.X[names].iloc[0].to_numpy(dtype=np.float64)
    return ",".join(format(float(v), ".17g") for v in values)


def _main() -> None:
    import argparse
    import json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", required=True, help="model registry folder")
    ap.add_argument(
        "--csv",
        default=None,
        help="card table to take the row from [default: the model's training file if it "
        f"exists, else {ULB_SAMPLE}]",
    )
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument(
        "--model", default="xgboost", help="X-Model header (xgboost, logistic, anomaly)"
    )
    args = ap.parse_args()
    row = request_row(args.models, args.model, args.csv)
    proc, url = serve_in_subprocess(args.models)
    try:
        out = http_latency(url, row, args.n, headers={"X-Model": args.model, "Accept": "text/csv"})
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    _main()
