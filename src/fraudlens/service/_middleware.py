"""ASGI middleware: request body size and time limits, HEAD on GET routes and Prometheus
request metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "BODY_IDLE_SECONDS",
    "BODY_SECONDS",
    "LARGE_BODY_BYTES",
    "LARGE_BODY_QUEUE",
    "LARGE_BODY_SLOTS",
    "LARGE_BODY_WAIT_SECONDS",
    "BodyLimitMiddleware",
    "HeadMiddleware",
    "Metrics",
    "MetricsMiddleware",
]

#: Longest wait for the next piece of a request body (or the first) before a 408.
BODY_IDLE_SECONDS = 15.0
#: Longest time a whole request body may take to arrive (5 MB at 45 KB/s) before a 408.
BODY_SECONDS = 120.0
#: Bodies larger than this are "large": at most :data:`LARGE_BODY_SLOTS` of them are
#: handled at a time. Parsed and scored, a body takes about 40 times its size in memory
#: (a 5 MB JSON body of card rows: 200 MB).
LARGE_BODY_BYTES = 256 * 1024
#: Large bodies handled at the same time (the others wait, up to
#: :data:`LARGE_BODY_WAIT_SECONDS`, then get 503). Eight 5 MB card requests at once had
#: taken the server from 390 MB to 1.9 GB; as many again, that much more.
LARGE_BODY_SLOTS = 2
#: How long a large body waits for a slot before the reply is 503 (with Retry-After).
LARGE_BODY_WAIT_SECONDS = 30.0
#: Large bodies let in beyond the slots (being read, or read and waiting for a slot); one
#: more gets 503 with Retry-After before its body is read. A waiting 5 MB body holds
#: about 10 MB (its pieces and their join): fifty 5 MB card requests at once had taken
#: a server from 250 MB to 910 MB, and a thousand would take it to 10 GB.
LARGE_BODY_QUEUE = 8

#: Methods the metrics label by name; any other (``M1XXXX...``: HTTP allows any token)
#: is labelled ``other``, so clients cannot add series. 200 requests with their own
#: 60 KB method names had grown a /metrics scrape to 240 MB.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a body grows past the limit while it is read."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than the limit of {limit} bytes")


class BodyTooSlow(HTTPException):
    """Raised from ``receive`` when a body stalls or takes too long to arrive."""

    def __init__(self, why: str) -> None:
        # The rest of the body may still come: the connection cannot carry another request.
        super().__init__(
            408,
            f"the request body {why}; send it whole and promptly",
            headers={"Connection": "close"},
        )


class LargeBodiesBusy(HTTPException):
    """Raised from ``receive`` when a large body found no free slot in time."""

    def __init__(self, slots: int, waited: float) -> None:
        super().__init__(
            503,
            f"the service is handling {slots} large requests already and none finished "
            f"within {waited:g} s; retry later, or send fewer rows per request",
            headers={"Retry-After": "5"},
        )


class LargeBodiesQueued(HTTPException):
    """Raised from ``receive`` when a body turns out large (it had no ``Content-Length``,
    or a smaller one) while :data:`LARGE_BODY_QUEUE` large bodies wait already."""

    def __init__(self, admitted: int) -> None:
        super().__init__(
            503,
            _queued_error(admitted),
            headers={"Retry-After": "5", "Connection": "close"},
        )


def _queued_error(admitted: int) -> str:
    return (
        f"the service has {admitted} large requests in hand or waiting already; retry "
        "later, or send fewer rows per request"
    )


class BodyLimitMiddleware:
    """Refuse bodies over ``limit`` bytes: from ``Content-Length`` before reading, and by
    counting while reading (chunked uploads, or a lying header).

    Bodies are also bounded in time: a client that stops sending for ``idle_seconds``, or
    whose body takes longer than ``total_seconds`` in all, gets 408 and the connection is
    closed. Without this a client that announces a body and never sends it (or sends a
    byte a minute) holds its connection and the request's handler forever.

    And in number: a request whose body is over ``large_bytes`` takes one of
    ``large_slots`` slots once its body is in (so a slow sender holds none) and keeps it
    until its reply is sent; the memory of parsing and scoring is then bounded by the
    slots, not by how many clients send at once. A body that finds no slot within
    ``large_wait_seconds`` gets 503 with ``Retry-After``.

    And the bodies waiting for a slot are bounded too, since each holds its bytes: at
    most ``large_slots + large_queue`` large requests are let in at a time (from their
    ``Content-Length``, or once a body without one grows past ``large_bytes``). One more
    gets 503 with ``Retry-After`` and ``Connection: close`` before its body is read; the
    body is then read and dropped, within the same time limits, so that clients that
    send their whole body before reading the reply (Python's ``http.client``) get the
    503 rather than a reset connection.
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        idle_seconds: float = BODY_IDLE_SECONDS,
        total_seconds: float = BODY_SECONDS,
        large_bytes: int = LARGE_BODY_BYTES,
        large_slots: int = LARGE_BODY_SLOTS,
        large_wait_seconds: float = LARGE_BODY_WAIT_SECONDS,
        large_queue: int = LARGE_BODY_QUEUE,
    ) -> None:
        self.app = app
        self.limit = int(limit)
        self.idle_seconds = float(idle_seconds)
        self.total_seconds = float(total_seconds)
        self.large_bytes = int(large_bytes)
        self.large_slots = int(large_slots)
        self.large_wait_seconds = float(large_wait_seconds)
        self.large_queue = int(large_queue)
        self._large = asyncio.Semaphore(self.large_slots)
        #: Large requests let in (reading, waiting for a slot or holding one).
        self.large_admitted = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = 0
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _json_reply(send, 400, "invalid Content-Length header", None)
                    return
                if declared > self.limit:
                    await _json_reply(
                        send,
                        413,
                        f"request body is larger than the limit of {self.limit} bytes",
                        {"limit": self.limit, "content_length": declared},
                    )
                    return
        admitted = False  # counted in large_admitted
        if declared > self.large_bytes:
            if not self._admit():
                await self._refuse_unread(scope, receive, send)
                return
            admitted = True
        seen = 0
        complete = False
        waited = 0.0  # seconds spent waiting for the client's body so far
        holds_slot = False
        loop = asyncio.get_running_loop()

        async def limited() -> Message:
            nonlocal seen, complete, waited, holds_slot, admitted
            if complete:
                # The body is in: later calls wait for the client to disconnect.
                return await receive()
            wait = min(self.idle_seconds, self.total_seconds - waited)
            start = loop.time()
            try:
                message = await asyncio.wait_for(receive(), wait)
            except TimeoutError:
                if wait < self.idle_seconds:
                    raise BodyTooSlow(
                        f"took more than {self.total_seconds:g} s to arrive"
                    ) from None
                raise BodyTooSlow(f"stalled for {self.idle_seconds:g} s") from None
            finally:
                waited += loop.time() - start
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
                if seen > self.large_bytes and not admitted:
                    if not self._admit():
                        raise LargeBodiesQueued(self.large_admitted)
                    admitted = True
                complete = not message.get("more_body", False)
                if complete and seen > self.large_bytes:
                    try:
                        await asyncio.wait_for(self._large.acquire(), self.large_wait_seconds)
                    except TimeoutError:
                        raise LargeBodiesBusy(self.large_slots, self.large_wait_seconds) from None
                    holds_slot = True
            else:
                complete = True  # the client is gone
            return message

        try:
            await self.app(scope, limited, send)
        finally:
            if holds_slot:
                self._large.release()
            if admitted:
                self.large_admitted -= 1

    def _admit(self) -> bool:
        """Count one more large request in, unless the slots and the queue are full."""
        if self.large_admitted >= self.large_slots + self.large_queue:
            return False
        self.large_admitted += 1
        return True

    async def _refuse_unread(self, scope: Scope, receive: Receive, send: Send) -> None:
        """503 for a large body that is not let in: the reply goes first, then the body
        is read and dropped (bounded by the body time limits), then the connection is
        closed."""
        body = await send_unavailable(
            send,
            _queued_error(self.large_admitted),
            {"large_requests": self.large_admitted},
            retry_after=5,
            finish=False,
        )
        expects = (b"expect", b"100-continue") in [
            (k, v.lower()) for k, v in scope.get("headers", ())
        ]
        if expects:  # the client waits for a 100 before it sends its body: none comes
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        await send({"type": "http.response.body", "body": body, "more_body": True})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.total_seconds
        with contextlib.suppress(TimeoutError):
            while True:
                wait = min(self.idle_seconds, deadline - loop.time())
                message = await asyncio.wait_for(receive(), max(wait, 0.0))
                if message["type"] != "http.request" or not message.get("more_body", False):
                    break
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def send_unavailable(
    send: Send,
    error: str,
    detail: dict[str, Any],
    *,
    retry_after: int,
    finish: bool = True,
) -> bytes:
    """Start a JSON ``503`` with ``Retry-After`` and ``Connection: close``; with
    ``finish`` also send its body. Returns the body (to send later when not finished)."""
    body = json.dumps({"error": error, "detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(retry_after).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    if finish:
        await send({"type": "http.response.body", "body": body, "more_body": False})
    return body


class HeadMiddleware:
    """Answer ``HEAD`` wherever ``GET`` is answered (RFC 9110: the same status and
    headers, no body), as Starlette's own routes do and FastAPI's do not.

    The request goes on as a ``GET`` (so authentication, routing and the reply are the
    GET's, and a path without GET still gets 405 with its ``Allow``), and the reply's body
    is dropped; its ``Content-Length`` stays the GET's. GET routes change nothing, so
    answering HEAD on them is safe. The outer middleware (metrics) still sees ``HEAD``.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, without_body)


async def _json_reply(send: Send, status: int, error: str, detail: Any) -> None:
    body = json.dumps({"error": error, "detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Metrics:
    """The Prometheus collectors of one app, in their own registry.

    A registry per app keeps several apps in one process (tests) apart. With several
    uvicorn workers each process serves its own counts.
    """

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "fraudlens_http_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "fraudlens_http_request_seconds",
            "HTTP request latency by route and method.",
            ["route", "method"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.models = Gauge(
            "fraudlens_model_loaded",
            "1 for each loaded model version.",
            ["name", "version"],
            registry=self.registry,
        )
        self.scored = Counter(
            "fraudlens_scored_records",
            "Records scored, by model.",
            ["model"],
            registry=self.registry,
        )

    def model_loaded(self, name: str, old: str | None, new: str) -> None:
        """Record a (re)loaded model version."""
        if old is not None and old != new:
            with contextlib.suppress(KeyError):
                self.models.remove(name, old)
        self.models.labels(name=name, version=new).set(1)

    def render(self) -> tuple[bytes, str]:
        """Exposition text and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Count requests and time them, labelled by the matched route's path template.

    ``known_paths`` labels requests answered before routing (e.g. a 413 on
    ``/invocations``) by their path when it is one of the app's fixed paths.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, known_paths: set[str] | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.known_paths = known_paths if known_paths is not None else set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            # Unmatched paths share one label, so random URLs cannot blow up cardinality.
            label = getattr(route, "path", None)
            if label is None:
                path = scope.get("path", "")
                label = path if path in self.known_paths else "<unmatched>"
            method = scope.get("method", "")
            if method not in _METHODS:
                method = "other"
            self.metrics.requests.labels(label, method, str(status)).inc()
            self.metrics.latency.labels(label, method).observe(time.perf_counter() - start)
