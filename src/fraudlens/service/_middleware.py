"""ASGI middleware: request body size limit, HEAD on GET routes and Prometheus request
metrics."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodyLimitMiddleware", "HeadMiddleware", "Metrics", "MetricsMiddleware"]

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a body grows past the limit while it is read."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than the limit of {limit} bytes")


class BodyLimitMiddleware:
    """Refuse bodies over ``limit`` bytes: from ``Content-Length`` before reading, and by
    counting while reading (chunked uploads, or a lying header)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = int(limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
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
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, limited, send)


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
            self.metrics.requests.labels(label, method, str(status)).inc()
            self.metrics.latency.labels(label, method).observe(time.perf_counter() - start)
