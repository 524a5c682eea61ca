"""Queue on Amazon SQS (standard queues), through boto3.

How the contract maps onto SQS:

- ``send_batch`` uses ``SendMessageBatch`` in chunks of 10 (the SQS limit).
- ``receive`` is ``ReceiveMessage`` with ``VisibilityTimeout`` and long polling
  (``WaitTimeSeconds``); SQS takes whole seconds, so both are rounded up. ``Message.id`` is
  the receipt handle and ``attempts`` is ``ApproximateReceiveCount``.
- ``ack`` is ``DeleteMessage``; ``nack`` is ``ChangeMessageVisibility`` to ``delay``.
- ``release`` cannot lower SQS's own receive count, so it sends a copy of each message (with
  ``DelaySeconds`` = ``delay``, at most 15 minutes) carrying the attempts already spent in
  the message attribute ``fraudlens_attempts_spent``, then deletes the original. ``attempts``
  is that attribute plus ``ApproximateReceiveCount``. A crash between the two calls leaves
  both copies: delivery stays at least once.
- Dead letters go to an explicit queue ``<name>-dlq`` (created if missing): the adapter sends
  the raw body there with message attributes ``reason``, ``attempts``, ``failed_at``,
  ``source_message_id`` and ``source_queue``, then deletes the original. The send and the
  delete are two calls, so a crash between them can leave a copy in both queues.

An SQS redrive policy (``maxReceiveCount``) on the source queue can be configured on AWS as
a backstop; set its count above ``max_attempts`` so the adapter, which records the reason,
acts first. SQS cannot attach a reason to a message in place, so the reason for
"max attempts exceeded" is only known to the instance that nacked the message last; other
instances report that the visibility timeout expired.

``dead_letters`` browses the dead-letter queue by receiving its messages with a short
visibility timeout and making them visible again at once; SQS has no read-only browse.
Sizes from ``depth`` are SQS's approximate counters. FIFO queues are not supported.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fraudlens.errors import ConfigError, QueueError
from fraudlens.queues._base import (
    Message,
    Queue,
    dead_letter_record,
    encode_body,
    log,
    max_attempts_reason,
)

__all__ = ["SQSQueue"]

_BATCH = 10  # SQS limit for batch calls and for MaxNumberOfMessages
_MAX_WAIT = 20  # SQS limit for WaitTimeSeconds
_MAX_VISIBILITY = 12 * 3600  # SQS limit for VisibilityTimeout
_BROWSE_LEASE = 30  # seconds dead letters are hidden while dead_letters() pages through them
_MAX_DELAY = 900  # SQS limit for DelaySeconds
#: Message attribute with the delivery attempts spent before a release re-sent the message.
SPENT_ATTRIBUTE = "fraudlens_attempts_spent"


def _seconds(value: float, upper: int) -> int:
    """Round a duration up to whole seconds within ``[0, upper]`` as SQS requires."""
    return min(upper, max(0, math.ceil(value)))


class SQSQueue(Queue):
    """A queue on an SQS standard queue, with an explicit dead-letter queue.

    Parameters
    ----------
    queue
        Queue name, or its full URL (``https://sqs.<region>.amazonaws.com/<account>/<name>``).
        A queue given by name is created if it does not exist (``create=False`` turns that
        off); the dead-letter queue ``<name>-dlq`` likewise.
    region, endpoint_url
        AWS region and a custom endpoint (e.g. a local emulator). The region of an AWS
        queue URL is taken from its host when not given.
    max_attempts
        Deliveries allowed per message before it is dead-lettered.
    create
        Create missing queues.
    client
        An existing boto3 SQS client to use; :meth:`close` leaves it open.
    """

    def __init__(
        self,
        queue: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        max_attempts: int = 5,
        create: bool = True,
        client: Any = None,
    ) -> None:
        is_url = queue.startswith(("https://", "http://"))
        name = urlsplit(queue).path.rstrip("/").rsplit("/", 1)[-1] if is_url else queue
        super().__init__(name, max_attempts=max_attempts)
        if name.endswith(".fifo"):
            raise ConfigError(f"SQS FIFO queues are not supported: {queue!r}")
        if is_url:
            parts = urlsplit(queue)
            host = parts.hostname or ""
            labels = host.split(".")
            if host.endswith("amazonaws.com"):
                # sqs.<region>.amazonaws.com, or the legacy <region>.queue.amazonaws.com
                if region is None and len(labels) >= 4:
                    region = labels[1] if labels[0] == "sqs" else labels[0]
            elif endpoint_url is None:
                # A queue URL of an SQS-compatible server (ElasticMQ, LocalStack, ...):
                # the server is the endpoint.
                endpoint_url = f"{parts.scheme}://{parts.netloc}"
        # A client passed in belongs to the caller, who closes it.
        self._owns_client = client is None
        if client is None:
            import boto3
            from botocore.exceptions import NoRegionError

            try:
                client = boto3.client("sqs", region_name=region, endpoint_url=endpoint_url)
            except NoRegionError as exc:
                raise ConfigError(
                    f"no AWS region for SQS queue {queue!r}: add ?region=... to the URL "
                    "or set AWS_DEFAULT_REGION"
                ) from exc
        self._client: Any = client
        self._create = create
        # Latest nack reason per SQS MessageId, for the "max attempts exceeded" reason.
        self._reasons: dict[str, str] = {}
        # MessageId of each receipt handle handed out and not yet settled.
        self._message_ids: dict[str, str] = {}
        with self._guard("open"):
            self.queue_url = queue if is_url else self._resolve(name)
            self.dlq_name = f"{name}-dlq"
            self.dlq_url = self._resolve(self.dlq_name)

    @classmethod
    def from_url(cls, url: str, *, name: str = "checks", max_attempts: int = 5) -> SQSQueue:
        """Open ``sqs://<queue-name>?region=...&endpoint_url=...&create=true`` or an https URL.

        ``sqs://`` without a queue name uses ``name``.
        """
        if url.startswith(("https://", "http://")):
            return cls(url, max_attempts=max_attempts)
        parts = urlsplit(url)
        if parts.scheme != "sqs":
            raise ConfigError(f"not an SQS queue URL: {url!r}")
        opts = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(opts) - {"region", "endpoint_url", "create"}
        if unknown:
            raise ConfigError(f"unknown SQS queue option(s) {sorted(unknown)} in {url!r}")
        queue = (parts.netloc + parts.path).strip("/") or name
        return cls(
            queue,
            region=opts.get("region"),
            endpoint_url=opts.get("endpoint_url"),
            max_attempts=max_attempts,
            create=opts.get("create", "true").lower() not in {"0", "false", "no"},
        )

    @property
    def identity(self) -> str:
        """``sqs:<queue URL>``."""
        return f"sqs:{self.queue_url}"

    # -- plumbing ------------------------------------------------------------------------
    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Turn botocore errors into QueueError."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except (BotoCoreError, ClientError) as exc:
            raise QueueError(f"SQS queue {self.name}: {what}: {exc}") from exc

    def _resolve(self, name: str) -> str:
        try:
            return str(self._client.get_queue_url(QueueName=name)["QueueUrl"])
        except self._client.exceptions.QueueDoesNotExist:
            if not self._create:
                raise
            return str(self._client.create_queue(QueueName=name)["QueueUrl"])

    def _is_error(self, exc: Exception, *codes: str) -> bool:
        from botocore.exceptions import ClientError

        return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in codes

    # -- producing -----------------------------------------------------------------------
    def send(self, body: dict[str, Any] | str) -> str:
        """Send one message; return its SQS MessageId."""
        raw = encode_body(body)
        with self._guard("send"):
            return str(
                self._client.send_message(QueueUrl=self.queue_url, MessageBody=raw)["MessageId"]
            )

    def send_batch(self, bodies: Iterable[dict[str, Any] | str]) -> list[str]:
        """Send many messages, 10 per ``SendMessageBatch``; return their MessageIds."""
        raws = [encode_body(b) for b in bodies]
        ids: list[str] = []
        with self._guard("send_batch"):
            for start in range(0, len(raws), _BATCH):
                chunk = raws[start : start + _BATCH]
                resp = self._client.send_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[{"Id": str(i), "MessageBody": raw} for i, raw in enumerate(chunk)],
                )
                if resp.get("Failed"):
                    first = resp["Failed"][0]
                    raise QueueError(
                        f"SQS queue {self.name}: {len(resp['Failed'])} of {len(chunk)} messages "
                        f"not sent (first: {first.get('Code')}: {first.get('Message')}); "
                        f"{len(ids)} sent before this batch"
                    )
                by_entry = {e["Id"]: e["MessageId"] for e in resp["Successful"]}
                ids.extend(by_entry[str(i)] for i in range(len(chunk)))
        return ids

    # -- consuming -----------------------------------------------------------------------
    def _receive(
        self, max_messages: int, visibility_timeout: float, deadline: float
    ) -> list[Message]:
        """Receive up to ``max_messages`` (10 per call), long-polling until ``deadline``."""
        out: list[Message] = []
        with self._guard("receive"):
            while len(out) < max_messages:
                remaining = deadline - time.monotonic()
                # Only poll long while nothing has arrived; then take what is there.
                poll = _seconds(remaining, _MAX_WAIT) if not out else 0
                want = min(_BATCH, max_messages - len(out))
                resp = self._client.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=want,
                    VisibilityTimeout=_seconds(visibility_timeout, _MAX_VISIBILITY),
                    WaitTimeSeconds=poll,
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                    MessageAttributeNames=[SPENT_ATTRIBUTE],
                )
                raw_msgs = resp.get("Messages", [])
                got = self._settle_received(raw_msgs)
                out.extend(got)
                if len(raw_msgs) < want and (out or deadline - time.monotonic() <= 0):
                    break
        return out

    def _settle_received(self, raw_msgs: list[dict[str, Any]]) -> list[Message]:
        out: list[Message] = []
        for m in raw_msgs:
            handle, message_id, raw = m["ReceiptHandle"], m["MessageId"], m["Body"]
            attempts = int(m.get("Attributes", {}).get("ApproximateReceiveCount", 1))
            spent = m.get("MessageAttributes", {}).get(SPENT_ATTRIBUTE, {}).get("StringValue")
            if spent is not None and spent.isdigit():
                attempts += int(spent)
            verdict = self._verdict(attempts, raw, self._reasons.get(message_id))
            self._message_ids[handle] = message_id
            msg = Message(
                handle, verdict if isinstance(verdict, dict) else {}, attempts, raw, key=message_id
            )
            if isinstance(verdict, str):
                self.dead_letter(msg, verdict)
                continue
            out.append(msg)
        return out

    def ack(self, msg: Message) -> None:
        """Delete the message."""
        with self._guard("ack"):
            self._client.delete_message(QueueUrl=self.queue_url, ReceiptHandle=msg.id)
        self._forget(msg)

    def ack_many(self, msgs: Iterable[Message]) -> None:
        """Delete messages 10 per ``DeleteMessageBatch``."""
        todo = list(msgs)
        with self._guard("ack_many"):
            for start in range(0, len(todo), _BATCH):
                chunk = todo[start : start + _BATCH]
                resp = self._client.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m.id} for i, m in enumerate(chunk)],
                )
                for failed in resp.get("Failed", []):
                    log.warning("queue %s: ack failed: %s", self.name, failed.get("Message"))
        for m in todo:
            self._forget(m)

    def _forget(self, msg: Message) -> None:
        message_id = self._message_ids.pop(msg.id, None)
        if message_id is not None:
            self._reasons.pop(message_id, None)

    def nack(self, msg: Message, *, reason: str = "", delay: float = 0.0) -> None:
        """Make the message visible again after ``delay`` s (whole seconds, at most 12 h)."""
        reason = reason or "nacked"
        if msg.attempts >= self.max_attempts:
            self.dead_letter(msg, max_attempts_reason(reason))
            return
        message_id = self._message_ids.pop(msg.id, None)
        if message_id is not None:
            self._reasons[message_id] = reason
        try:
            self._client.change_message_visibility(
                QueueUrl=self.queue_url,
                ReceiptHandle=msg.id,
                VisibilityTimeout=_seconds(delay, _MAX_VISIBILITY),
            )
        except Exception as exc:
            # The receipt handle went stale (lease expired, message redelivered or deleted):
            # the message is already visible again or gone, which is what nack wanted.
            if self._is_error(
                exc, "ReceiptHandleIsInvalid", "MessageNotInflight", "InvalidParameterValue"
            ):
                log.warning("queue %s: nack after the lease was lost: %s", self.name, exc)
                return
            with self._guard("nack"):
                raise

    def release(self, msgs: Iterable[Message], *, delay: float = 0.0, reason: str = "") -> int:
        """Re-send each message with its spent attempts recorded, then delete the original.

        The copy becomes visible after ``delay`` seconds (whole seconds, at most 900).
        """
        todo = list(msgs)
        done = 0
        with self._guard("release"):
            for start in range(0, len(todo), _BATCH):
                chunk = todo[start : start + _BATCH]
                resp = self._client.send_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {
                            "Id": str(i),
                            "MessageBody": m.raw,
                            "DelaySeconds": _seconds(delay, _MAX_DELAY),
                            "MessageAttributes": {
                                SPENT_ATTRIBUTE: {
                                    "DataType": "Number",
                                    "StringValue": str(max(0, m.attempts - 1)),
                                }
                            },
                        }
                        for i, m in enumerate(chunk)
                    ],
                )
                sent = [chunk[int(e["Id"])] for e in resp.get("Successful", [])]
                for failed in resp.get("Failed", []):
                    # Not copied: leave the original leased; it comes back when its lease
                    # runs out (that delivery then counts, as SQS counts it).
                    log.warning("queue %s: release failed: %s", self.name, failed.get("Message"))
                if sent:
                    self._client.delete_message_batch(
                        QueueUrl=self.queue_url,
                        Entries=[{"Id": str(i), "ReceiptHandle": m.id} for i, m in enumerate(sent)],
                    )
                for m in sent:
                    self._forget(m)
                done += len(sent)
        return done

    def dead_letter(self, msg: Message, reason: str) -> None:
        """Send the raw body with its reason to ``<name>-dlq``, then delete the original."""
        message_id = self._message_ids.get(msg.id, "")
        attrs = {
            "reason": {"DataType": "String", "StringValue": reason or "dead-lettered"},
            "attempts": {"DataType": "Number", "StringValue": str(msg.attempts)},
            "failed_at": {"DataType": "Number", "StringValue": f"{time.time():.6f}"},
            "source_queue": {"DataType": "String", "StringValue": self.name},
        }
        if message_id:
            attrs["source_message_id"] = {"DataType": "String", "StringValue": message_id}
        with self._guard("dead_letter"):
            self._client.send_message(
                QueueUrl=self.dlq_url, MessageBody=msg.raw, MessageAttributes=attrs
            )
            self._client.delete_message(QueueUrl=self.queue_url, ReceiptHandle=msg.id)
        self._forget(msg)
        self._counted_dead_letter(reason)

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """Browse up to ``limit`` dead letters, oldest first, leaving them in the DLQ."""
        seen: dict[str, dict[str, Any]] = {}
        handles: list[str] = []
        with self._guard("dead_letters"):
            while len(seen) < limit:
                resp = self._client.receive_message(
                    QueueUrl=self.dlq_url,
                    MaxNumberOfMessages=_BATCH,
                    VisibilityTimeout=_BROWSE_LEASE,
                    WaitTimeSeconds=0,
                    MessageAttributeNames=["All"],
                )
                msgs = resp.get("Messages", [])
                if not msgs:
                    break
                for m in msgs:
                    handles.append(m["ReceiptHandle"])
                    seen.setdefault(m["MessageId"], m)
            # Give the browsed messages back at once.
            for start in range(0, len(handles), _BATCH):
                self._client.change_message_visibility_batch(
                    QueueUrl=self.dlq_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0}
                        for i, h in enumerate(handles[start : start + _BATCH])
                    ],
                )
        dated = []
        for m in seen.values():
            attrs = {k: v.get("StringValue", "") for k, v in m.get("MessageAttributes", {}).items()}
            failed_at = float(attrs.get("failed_at") or 0.0)
            record = dead_letter_record(
                attrs.get("source_message_id", ""),
                m["Body"],
                attrs.get("reason", ""),
                int(attrs.get("attempts") or 0),
                failed_at,
            )
            dated.append((failed_at, record))
        dated.sort(key=lambda pair: pair[0])
        return [record for _, record in dated[:limit]]

    # -- housekeeping --------------------------------------------------------------------
    def depth(self) -> int:
        """Return SQS's approximate visible + in-flight + delayed message counts."""
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        with self._guard("depth"):
            attrs = self._client.get_queue_attributes(
                QueueUrl=self.queue_url, AttributeNames=names
            )["Attributes"]
        return sum(int(attrs.get(n, 0)) for n in names)

    def purge(self) -> None:
        """Purge the queue and its DLQ; drain them by hand if AWS refuses a second purge."""
        with self._guard("purge"):
            for url in (self.queue_url, self.dlq_url):
                try:
                    self._client.purge_queue(QueueUrl=url)
                except Exception as exc:
                    # AWS allows one purge per queue per 60 s.
                    if not self._is_error(
                        exc, "AWS.SimpleQueueService.PurgeQueueInProgress", "PurgeQueueInProgress"
                    ):
                        raise
                    self._drain(url)
        self._reasons.clear()
        self._message_ids.clear()

    def _drain(self, url: str) -> None:
        while True:
            msgs = self._client.receive_message(
                QueueUrl=url, MaxNumberOfMessages=_BATCH, WaitTimeSeconds=0
            ).get("Messages", [])
            if not msgs:
                return
            self._client.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)
                ],
            )

    def close(self) -> None:
        """Close the boto3 client's connections (unless the client was passed in)."""
        close = getattr(self._client, "close", None)
        if self._owns_client and close is not None:
            close()

    def __repr__(self) -> str:
        return f"SQSQueue(queue_url={self.queue_url!r})"
