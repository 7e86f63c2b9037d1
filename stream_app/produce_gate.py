"""After a lost connection, produce only once fresh metadata has been read.

Kafka clients keep sending a partition's batches to the leader they knew, and retry batches
that were in flight when the connection dropped. After the memory-only embedded broker
(Tansu) restarts, that first write reaches a broker where the topic no longer exists; Tansu
then creates the topic *from the Produce request*, and such a partition's offsets are broken
(the next writer gets UNKNOWN_SERVER_ERROR, later records reuse offsets that are taken, and
consumers skip records). A topic created from a Metadata request — which every client sends
once it notices the lost connection — behaves. So both the CLI's kafka-python producer and the
worker's aiokafka producer hold their batches while a metadata refresh is pending; then send.

The hold costs one metadata round trip after a reconnect and never spins: the sender waits
for the refresh (or its back-off) as it does for an unknown leader. Records still expire after
``delivery_timeout_ms`` (kafka-python) or ``request_timeout_ms`` (aiokafka) while waiting.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

log = logging.getLogger(__name__)


def hold_kafka_python_sends(producer: Any) -> bool:
    """Gate a kafka-python ``KafkaProducer``'s sender; False if its internals are not as known."""
    sender = getattr(producer, "_sender", None)
    accumulator = getattr(sender, "_accumulator", None)
    metadata = getattr(sender, "_metadata", None)
    ready = getattr(accumulator, "ready", None)
    if ready is None or not hasattr(metadata, "need_update"):
        log.warning("kafka-python internals changed; sends are not held for fresh metadata")
        return False
    backoff_s = producer.config["retry_backoff_ms"] / 1000

    def ready_once_metadata_is_fresh(cluster: Any, now: float | None = None) -> Any:
        if metadata.need_update:
            # (ready nodes, seconds until the next check, unknown leaders exist)
            return set(), backoff_s, False
        return ready(cluster, now=now)

    accumulator.ready = ready_once_metadata_is_fresh
    return True


def hold_aiokafka_sends(producer: Any) -> bool:
    """Gate an ``AIOKafkaProducer``'s sender; False if its internals are not as known.

    aiokafka clears a failed metadata refresh like a successful one, and an idle producer
    notices a restarted broker only when it sends. So with a single broker (the embedded
    one), batches are also held while a connection is down or newer than the last
    successful metadata refresh; with several brokers only a pending refresh holds them.
    """
    accumulator = getattr(producer, "_message_accumulator", None)
    client = getattr(producer, "client", None)
    drain = getattr(accumulator, "drain_by_nodes", None)
    update = getattr(client, "_metadata_update", None)
    if drain is None or update is None or not hasattr(client, "_conns"):
        log.warning("aiokafka internals changed; sends are not held for fresh metadata")
        return False
    if getattr(accumulator, "_held_for_metadata", False):
        return True
    fresh_with: weakref.WeakSet = weakref.WeakSet()  # connections of the last good refresh
    backoff_s = getattr(client, "_retry_backoff", 0.1)

    async def metadata_update(cluster_metadata: Any, topics: Any) -> bool:
        ok = await update(cluster_metadata, topics)
        if ok:
            fresh_with.clear()
            fresh_with.update(c for c in client._conns.values() if c.connected())
        else:
            # The held sender asks again at once: without a pause it would spin while the
            # broker is down.
            await asyncio.sleep(max(backoff_s, 0.5))
        return ok

    def stale() -> bool:
        if client._md_update_fut is not None:
            return True
        if len(client.cluster.brokers()) > 1:
            return False
        # Any connection dropped, replaced or added since the last good refresh.
        return {c for c in client._conns.values() if c.connected()} != set(fresh_with)

    def drain_once_metadata_is_fresh(ignore_nodes: Any, muted_partitions: Any = frozenset()):
        if stale():
            # Nothing to send, "unknown leaders": the sender asks for a metadata refresh
            # and waits for it (or its back-off), then comes back here.
            return {}, True
        return drain(ignore_nodes=ignore_nodes, muted_partitions=muted_partitions)

    client._metadata_update = metadata_update

    accumulator.drain_by_nodes = drain_once_metadata_is_fresh
    accumulator._held_for_metadata = True
    return True


def hold_faust_sends(app: Any) -> bool:
    """Gate the aiokafka producer of a started Faust app."""
    producer = getattr(app.producer, "_producer", None)
    if producer is None:
        return False
    return hold_aiokafka_sends(producer)
