"""uvicorn's HTTP/1.1 protocol (h11) with the bounds it lacks: on the time a client may
take to send a request's headers or to read its reply, and on the connections served at once.

uvicorn times out neither a connection that never sends a byte nor one that sends part
of its request line and headers and then stalls (slowloris): its keep-alive timer runs
only between requests and is cancelled by any byte. Measured on uvicorn 0.54 (h11): a
connection that sent ``GET /ping HTTP/1.1\\r\\nHost: x\\r\\n`` was still open after 40 s, and
3,000 of them were all held open. Its own ``limit_concurrency`` refuses with a plain-text
503 and no ``Retry-After``.

:class:`GuardedH11Protocol` keeps a deadline, :data:`HEADER_SECONDS` by default, from the
moment the connection waits for a request (it was accepted, or the previous reply was
sent) until that request's headers are in. When it passes, a client that sent part of a
request gets ``408`` with ``Connection: close`` and a silent one is closed; either way the
connection is gone. While a request is being handled the deadline does not run (the body
has its own limits, in :class:`~fraudlens.service._middleware.BodyLimitMiddleware`).

Replies are bounded in time too: uvicorn hands a reply to the transport whole, and a
client that never reads it kept it in the server's memory for good (a 5 MB request of
card rows has a 3.3 MB reply; twelve such clients held 80 MB, a thousand would hold
3 GB), since closing a connection waits for its unread bytes. When the process's write
buffer of a connection stays above its high-water mark for :data:`WRITE_SECONDS`, the
connection is dropped with the bytes.

And with ``max_connections``, a request arriving while more than that many connections
are open, or more than that many requests are in hand, gets a JSON ``503`` with
``Retry-After`` and ``Connection: close`` (uvicorn's own check, with the service's reply).
Each worker process counts its own.

A request whose body framing is ambiguous is refused with ``400`` and ``Connection:
close`` before the application sees it: one that carries both ``Transfer-Encoding`` and
``Content-Length`` (the shape of request smuggling through a proxy that reads the other
header; RFC 9112 section 6.1 lets a server reject it, and h11 accepted it, reading the
body as chunked and keeping the connection), or more than one ``Content-Length`` (two
field lines or a list, even of equal values, which h11 merged into one; different values
it refused already).

``fraudlens serve`` passes it to uvicorn as ``http=guarded_protocol(...)`` (a
:func:`functools.partial`, so it survives the trip to worker processes).
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from typing import Any

import h11
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import DEFAULT_MAX_INCOMPLETE_EVENT_SIZE, H11Protocol

from fraudlens.service._middleware import send_unavailable

__all__ = [
    "DEFAULT_LIMIT_CONCURRENCY",
    "HEADER_SECONDS",
    "WRITE_SECONDS",
    "GuardedH11Protocol",
    "guarded_protocol",
]

#: How long a client may take to send a request's line and headers, counted from when
#: the connection starts waiting for it.
HEADER_SECONDS = 10.0
#: Connections (and requests in hand) one worker process serves at once; beyond, 503.
DEFAULT_LIMIT_CONCURRENCY = 1000
#: How long a reply may sit unread in the process's write buffer (above its high-water
#: mark, 64 KiB) before the connection is dropped with it.
WRITE_SECONDS = 30.0


def _timeout_reply(seconds: float) -> bytes:
    """A whole ``408`` reply, written straight to the socket (h11 sends replies only to
    requests it has read)."""
    error = f"the request's headers did not arrive within {seconds:g} s; send them promptly"
    body = json.dumps({"error": error, "detail": {"header_seconds": seconds}}).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


# The end of a request's head, as h11 finds it (its lines may end in LF alone).
_HEAD_END = re.compile(rb"\n\r?\n")


def _framing_problem(head: bytes) -> str | None:
    """Why the body framing of a request head (as received, the request line first) is
    refused, or None."""
    lengths = 0
    transfer = False
    for line in head.split(b"\n")[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            continue
        name = name.strip().lower()
        if name == b"content-length":
            lengths += 1 + value.count(b",")
        elif name == b"transfer-encoding":
            transfer = True
    if transfer and lengths:
        return (
            "a request with both Transfer-Encoding and Content-Length is refused "
            "(RFC 9112 section 6.1); send one of them"
        )
    if lengths > 1:
        return "a request with more than one Content-Length is refused; send one"
    return None


class _FramedConnection(h11.Connection):
    """h11's connection, refusing (as a protocol error: ``400``, connection closed) a
    request whose head has ambiguous body framing (see :func:`_framing_problem`)."""

    refused: str | None = None

    def next_event(self) -> Any:
        head = None
        if self.their_state is h11.IDLE:
            # The head as it came, before h11 merges equal Content-Length values.
            data, _ = self.trailing_data
            end = _HEAD_END.search(data)
            head = data[: end.start()] if end is not None else None
        event = super().next_event()
        if head is not None and isinstance(event, h11.Request):
            problem = _framing_problem(head)
            if problem is not None:
                self.refused = problem
                raise h11.RemoteProtocolError(problem, error_status_hint=400)
        return event


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-header deadline and a connection cap (see
    the module's docs)."""

    def __init__(
        self,
        *args: Any,
        header_seconds: float = HEADER_SECONDS,
        max_connections: int | None = None,
        write_seconds: float = WRITE_SECONDS,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        size = self.config.h11_max_incomplete_event_size
        self.conn = _FramedConnection(
            h11.SERVER, DEFAULT_MAX_INCOMPLETE_EVENT_SIZE if size is None else size
        )
        self.header_seconds = float(header_seconds)
        self.max_connections = max_connections
        self.write_seconds = float(write_seconds)
        self._header_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        if max_connections is not None:
            self.limit_concurrency = None  # checked by _limited, with the service's reply
            self.app = functools.partial(
                _limited, self.connections, self.tasks, max_connections, self.app
            )

    # --------------------------------------------------------------- header deadline

    def _busy(self) -> bool:
        """A request's headers are in and its reply is not yet complete."""
        return self.cycle is not None and not self.cycle.response_complete

    def _watch(self) -> None:
        """Run the deadline while the connection waits for a request's headers."""
        if self._busy() or self.transport is None or self.transport.is_closing():
            self._stop_watch()
        elif self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_seconds, self._headers_late)

    def _stop_watch(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self._busy():
            return
        pending, _ = self.conn.trailing_data
        if pending and self.conn.their_state is h11.IDLE:
            self.transport.write(_timeout_reply(self.header_seconds))
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        # Waiting for the next request starts now (a pipelined one may start at once).
        self._stop_watch()
        self._header_timer = self.loop.call_later(self.header_seconds, self._headers_late)
        super().on_response_complete()
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_watch()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        super().connection_lost(exc)

    # ---------------------------------------------------------------- write deadline

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self.write_seconds, self._write_late)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _write_late(self) -> None:
        """The client has not read its reply: drop the connection and the unread bytes
        (``close`` would wait for them to be read)."""
        self._write_timer = None
        self.transport.abort()

    def send_400_response(self, msg: str) -> None:
        # The reason of a refused framing instead of uvicorn's "Invalid HTTP request".
        refused = getattr(self.conn, "refused", None)
        super().send_400_response(refused or msg)

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._stop_watch()
        super().handle_websocket_upgrade(event)


async def _limited(
    connections: set[Any],
    tasks: set[Any],
    limit: int,
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    """``app``, or a 503 when the process holds more than ``limit`` connections or
    requests in hand (this connection and this request's task counted)."""
    if scope["type"] == "http" and (len(connections) > limit or len(tasks) > limit):
        await send_unavailable(
            send,
            f"the service is serving {limit} connections already; retry later",
            {"limit": limit},
            retry_after=1,
        )
        return
    await app(scope, receive, send)


def guarded_protocol(
    header_seconds: float = HEADER_SECONDS,
    max_connections: int | None = None,
    write_seconds: float = WRITE_SECONDS,
) -> Any:
    """The protocol to pass to uvicorn as ``http=``: picklable, so ``--workers N``
    processes get the same bounds."""
    return functools.partial(
        GuardedH11Protocol,
        header_seconds=header_seconds,
        max_connections=max_connections,
        write_seconds=write_seconds,
    )
