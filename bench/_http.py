"""HTTP latency of one request at a time against a running scoring service.

Used by the cards benchmark to time single-transaction requests end to end (client
serialisation, TCP on loopback, routing, parsing, the model, the reply), the way a
payment flow would call the service.

Run directly to measure a service it starts itself::

    python bench/_http.py --models ./models --n 2000
"""

from __future__ import annotations

import http.client
import time
from typing import Any
from urllib.parse import urlsplit

import numpy as np

__all__ = ["http_latency", "serve_in_subprocess", "serve_in_thread"]


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


def _main() -> None:
    import argparse
    import json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", required=True, help="model registry folder")
    ap.add_argument("--csv", default="../shared/data/ulb_creditcard_day1.csv", help="rows to send")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument(
        "--model", default="xgboost", help="X-Model header (xgboost, logistic, anomaly)"
    )
    args = ap.parse_args()
    with open(args.csv) as f:
        f.readline()
        # The ULB row without its Class column: one SageMaker text/csv record.
        row = f.readline().strip().rsplit(",", 1)[0]
    proc, url = serve_in_subprocess(args.models)
    try:
        out = http_latency(url, row, args.n, headers={"X-Model": args.model, "Accept": "text/csv"})
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    _main()
