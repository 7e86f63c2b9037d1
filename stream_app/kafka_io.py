"""Plain Kafka clients (kafka-python) for the CLI: topic setup, producing, tailing.

Producers retry through broker outages with a bounded buffer (:class:`BoundedProducer`):
records are retried until ``delivery_timeout_ms``; while more than ``max_buffered_bytes``
await acknowledgement, ``send`` blocks (back-pressure) for at most ``max_block_ms``; and any
record the broker never acknowledged makes ``flush`` raise :class:`DeliveryError`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from typing import Any

import click
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import (
    KafkaError,
    KafkaTimeoutError,
    RetriableError,
    TopicAlreadyExistsError,
    UnknownError,
)

from stream_app.produce_gate import hold_kafka_python_sends
from stream_app.settings import Settings


def client_kwargs(settings: Settings) -> dict[str, Any]:
    return {
        "bootstrap_servers": settings.bootstrap_servers,
        **settings.security.kafka_python_kwargs(),
    }


def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> None:
    """Create the four topics with the configured partitions if they are missing."""
    names = [
        settings.topic_events,
        settings.topic_catalog,
        settings.topic_recommendations,
        settings.topic_dead_letters,
    ]
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(client_id="streamrec-admin", **client_kwargs(settings))
            break
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(name, settings.partitions, settings.replication_factor)
            for name in names
            if name not in existing
        ]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()


class DeliveryError(click.ClickException):
    """Records the broker did not acknowledge, or a send that could not be buffered in time."""


class BoundedProducer(KafkaProducer):
    """A KafkaProducer whose buffer is bounded and whose failed deliveries are reported.

    kafka-python 3 no longer bounds its record accumulator, so during a broker outage an
    unthrottled producer would buffer without limit. Here ``send`` blocks while more than
    ``max_buffered_bytes`` (record keys and values) await acknowledgement, for at most
    ``max_block_ms``, then raises :class:`DeliveryError`; ``flush`` raises it too when any
    record failed after all retries, naming how many and the first error.
    """

    def __init__(self, max_buffered_bytes: int = 32 * 1024 * 1024, **configs: Any) -> None:
        super().__init__(**configs)
        self.max_buffered_bytes = max_buffered_bytes
        self.acknowledged = 0
        self.failed = 0
        self.first_error: BaseException | None = None
        self._buffered = 0
        self._reported = 0
        self._closing = False
        self._space = threading.Condition()
        self._retry_unknown_errors()
        hold_kafka_python_sends(self)  # see stream_app/produce_gate.py

    def _retry_unknown_errors(self) -> None:
        """Retry batches the broker refused with UNKNOWN_SERVER_ERROR, like retriable ones.

        Right after a restart the embedded broker (Tansu) answers the first write to a
        re-created partition with UNKNOWN_SERVER_ERROR (a transient write conflict); a retry
        succeeds. kafka-python treats that code as fatal, so without this the records would
        be dropped. Retries stay bounded by ``retries`` and ``delivery_timeout_ms``.
        """
        sender = getattr(self, "_sender", None)
        strict = getattr(sender, "_can_retry", None)
        if strict is None:
            return

        def can_retry(batch: Any, error_cls: type) -> bool:
            return strict(batch, RetriableError if error_cls is UnknownError else error_cls)

        sender._can_retry = can_retry

    @property
    def buffered_bytes(self) -> int:
        """Bytes of records sent but not yet acknowledged (or failed)."""
        return self._buffered

    def send(self, topic: str, value: Any = None, key: Any = None, **kwargs: Any) -> Any:
        max_block_s = self.config["max_block_ms"] / 1000
        deadline = time.monotonic() + max_block_s
        with self._space:
            while self._buffered >= self.max_buffered_bytes:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DeliveryError(
                        f"{self._buffered} bytes to {topic!r} still unacknowledged after "
                        f"{max_block_s:g}s (buffer limit {self.max_buffered_bytes}); "
                        "is the broker reachable?"
                    )
                self._space.wait(remaining)
        try:
            future = super().send(topic, value=value, key=key, **kwargs)
        except KafkaTimeoutError as exc:
            raise DeliveryError(
                f"could not send to {topic!r}: no broker answered within {max_block_s:g}s ({exc})"
            ) from None
        size = max(future.args[3], 0) + max(future.args[4], 0)
        with self._space:
            self._buffered += size
        future.add_callback(self._settled, size, None)
        future.add_errback(self._settled_with_error, size)
        return future

    def _settled(self, size: int, error: BaseException | None, _result: Any = None) -> None:
        with self._space:
            self._buffered -= size
            if error is None:
                self.acknowledged += 1
            else:
                self.failed += 1
                self.first_error = self.first_error or error
            self._space.notify_all()

    def _settled_with_error(self, size: int, error: BaseException) -> None:
        self._settled(size, error)

    def close(self, timeout: float | None = None, null_logger: bool = False) -> None:
        self._closing = True  # close() flushes; failures are reported by flush() alone
        super().close(timeout, null_logger)

    def flush(self, timeout: float | None = None) -> None:
        super().flush(timeout)
        if self.failed > self._reported and not self._closing:
            self._reported = self.failed
            raise DeliveryError(
                f"{self.failed} record(s) were not acknowledged by the broker after retrying "
                f"for {self.config['delivery_timeout_ms'] / 1000:g}s; first error: "
                f"{self.first_error!r}"
            )


def make_producer(settings: Settings, **overrides: Any) -> BoundedProducer:
    options: dict[str, Any] = {
        "linger_ms": 5,
        "acks": "all",
        # Retry until delivery_timeout_ms, through broker restarts: ordering is kept by one
        # request in flight, and the consumer deduplicates a retried record by its event id.
        "retries": 2**31 - 1,
        "delivery_timeout_ms": 120_000,
        "request_timeout_ms": 30_000,
        "retry_backoff_ms": 200,
        "reconnect_backoff_max_ms": 2_000,
        "max_block_ms": 60_000,
        "max_buffered_bytes": 32 * 1024 * 1024,
        "max_in_flight_requests_per_connection": 1,  # keeps a user's events in order on retry
        # Not idempotent: a broker that restarts without its data (the memory-only embedded
        # broker) forgets producer ids, and every record then fails with UnknownProducerId.
        # A record retried twice is deduplicated downstream by its event id.
        "enable_idempotence": False,
        "key_serializer": lambda k: k.encode("utf-8") if isinstance(k, str) else k,
        "value_serializer": lambda v: (
            json.dumps(v, separators=(",", ":")).encode("utf-8") if isinstance(v, dict) else v
        ),
    }
    options.update(overrides)
    return BoundedProducer(**client_kwargs(settings), **options)


def make_consumer(
    settings: Settings, topics: Iterable[str], group_id: str | None = None, **overrides: Any
) -> KafkaConsumer:
    options: dict[str, Any] = {
        "group_id": group_id,
        "auto_offset_reset": "earliest",
        "enable_auto_commit": group_id is not None,
        "consumer_timeout_ms": 1000,
    }
    options.update(overrides)
    return KafkaConsumer(*topics, **client_kwargs(settings), **options)
