"""Work queues: one :class:`Queue` interface over SQLite, Redis Streams and Amazon SQS.

>>> from fraudlens.queues import open_queue
>>> q = open_queue("sqlite:///tmp-queue.db")                   # doctest: +SKIP
>>> q.send({"account_id": "A1"})                               # doctest: +SKIP
>>> for msg in q.receive(10, visibility_timeout=30, wait=1):   # doctest: +SKIP
...     q.ack(msg)

Delivery is at least once. See :mod:`fraudlens.queues._base` for the shared rules (leases,
retries, dead letters, malformed bodies) and each backend module for how it maps them.
The backend client libraries (redis-py, boto3) are imported only when such a queue is opened.
"""

from __future__ import annotations

from fraudlens._echo import hide_password
from fraudlens.errors import ConfigError, FraudlensError
from fraudlens.queues._base import Message, Queue
from fraudlens.queues.redis import RedisQueue
from fraudlens.queues.sqlite import DEFAULT_SQLITE_PATH, SQLiteQueue
from fraudlens.queues.sqs import SQSQueue

__all__ = [
    "DEFAULT_SQLITE_PATH",
    "Message",
    "Queue",
    "RedisQueue",
    "SQLiteQueue",
    "SQSQueue",
    "open_queue",
]


def open_queue(url: str | None = None, *, name: str = "checks", max_attempts: int = 5) -> Queue:
    """Open the queue a URL names.

    Parameters
    ----------
    url
        One of:

        - ``sqlite`` (file ``./fraudlens-queue.db``), ``sqlite:///relative/path.db`` or
          ``sqlite:////absolute/path.db``, options ``?synchronous=FULL&busy_timeout=30``;
        - ``redis://host:port/db?stream=...&group=...&consumer=...`` (or ``rediss://``);
        - ``sqs://queue-name?region=...&endpoint_url=...``, or an SQS queue URL
          ``https://sqs.<region>.amazonaws.com/<account>/<name>``.

        ``None`` uses the ``queue_url`` setting (``FRAUDLENS_QUEUE_URL``).
    name
        Queue name for SQLite and Redis (several queues can share a file or server), and for
        ``sqs://`` URLs that carry no queue name.
    max_attempts
        Deliveries allowed per message before it is dead-lettered.

    Returns
    -------
    Queue

    Raises
    ------
    ConfigError
        If the URL's scheme or options are not understood.
    QueueError
        If the backend cannot be reached.
    """
    if url is None:
        from fraudlens.config import get_settings

        url = get_settings().queue_url
    scheme = url.split(":", 1)[0].lower() if ":" in url else url.lower()
    try:
        if scheme == "sqlite":
            return SQLiteQueue.from_url(url, name=name, max_attempts=max_attempts)
        if scheme in {"redis", "rediss", "unix"}:
            return RedisQueue.from_url(url, name=name, max_attempts=max_attempts)
        if scheme in {"sqs", "https", "http"}:
            return SQSQueue.from_url(url, name=name, max_attempts=max_attempts)
    except ValueError as exc:
        if isinstance(exc, FraudlensError):
            raise
        # A malformed URL: a port that is not a number, an unclosed [IPv6 address], an
        # option the client cannot read.
        raise ConfigError(f"queue URL {hide_password(url)!r}: {exc}") from None
    raise ConfigError(
        f"unknown queue URL {url!r}: expected sqlite[:///path], redis://host:port/db "
        "or sqs://queue-name"
    )
