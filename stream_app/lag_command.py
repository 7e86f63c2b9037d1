"""``streamrec lag``: a group's lag per partition, like ``kafka-consumer-groups --describe``.

Works against any cluster. The log end offset is the high watermark carried by a Fetch
response, read by a group-less consumer positioned at the committed offset, never
ListOffsets "latest" (wrong on Tansu after batched produce; see BROKER-NOTES). Committed
offsets come from OffsetFetch (``AIOKafkaAdminClient.list_consumer_group_offsets``).
Without a committed offset the lag counts from the log start, where the group will begin.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Sequence

import click
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from stream_app.metrics import PartitionLag, total_lag
from stream_app.settings import ConfigError, Settings


async def group_lag(
    settings: Settings,
    group: str,
    topics: Sequence[str] = (),
    timeout_s: float = 15.0,
) -> list[PartitionLag]:
    """Lag of ``group`` on every partition of ``topics`` (default: streamrec's input topics)."""
    topics = list(topics) or [settings.topic_events, settings.topic_catalog]
    security = settings.security.kafka_python_kwargs()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=1,  # the broker still sends one batch: enough for the watermark
        **security,
    )
    await consumer.start()
    try:
        tps = await _partitions(consumer, topics)
        if not tps:
            return []
        committed = await _committed_offsets(settings, group, tps)
        consumer.assign(tps)
        log_start = await consumer.beginning_offsets(tps)
        for tp in tps:
            consumer.seek(tp, committed.get(tp, log_start[tp]))
        await _fetch_high_watermarks(consumer, tps, timeout_s)
        return [
            PartitionLag(
                group=group,
                topic=tp.topic,
                partition=tp.partition,
                committed=committed.get(tp),
                end=consumer.highwater(tp),
                log_start=log_start[tp],
            )
            for tp in tps
        ]
    finally:
        await consumer.stop()


async def _committed_offsets(
    settings: Settings, group: str, tps: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """The group's committed offsets; partitions it never committed on are left out.

    Partitions are named explicitly: Tansu drops the connection on the "all partitions"
    form of OffsetFetch.
    """
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, **settings.security.kafka_python_kwargs()
    )
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group, partitions=tps)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


async def _partitions(consumer: AIOKafkaConsumer, topics: Iterable[str]) -> list[TopicPartition]:
    await consumer._client.force_metadata_update()
    tps = []
    for topic in topics:
        for partition in sorted(consumer.partitions_for_topic(topic) or ()):
            tps.append(TopicPartition(topic, partition))
    return tps


async def _fetch_high_watermarks(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], timeout_s: float
) -> None:
    """Fetch until every partition has reported its high watermark (or time is up)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pending = [tp for tp in tps if consumer.highwater(tp) is None]
        if not pending:
            return
        await consumer.getmany(*pending, timeout_ms=200, max_records=1)


def format_lag_table(rows: Sequence[PartitionLag]) -> str:
    """A table with kafka-consumer-groups' columns, then the total lag."""
    header = ("GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG")

    def cell(value: int | None) -> str:
        return "-" if value is None else str(value)

    lines = [
        (r.group, r.topic, str(r.partition), cell(r.committed), cell(r.end), cell(r.lag))
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in [header, *lines]) for i in range(len(header))]
    text = [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *lines]
    ]
    total = total_lag(rows)
    text.append(f"TOTAL LAG: {cell(total)}")
    return "\n".join(text)


@click.command()
@click.option("--bootstrap", help="Kafka bootstrap servers [STREAMREC_KAFKA_BOOTSTRAP]")
@click.option("--group", default=None, help="Consumer group [default: STREAMREC_APP_ID]")
@click.option(
    "--topic",
    "topics",
    multiple=True,
    help="Topic to describe (repeatable) [default: the events and catalog topics]",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of a table")
@click.option("--timeout", type=float, default=15.0, show_default=True, help="Seconds to wait")
def lag(
    bootstrap: str | None, group: str | None, topics: tuple[str, ...], as_json: bool, timeout: float
) -> None:
    """Lag per partition and in total for streamrec's consumer group (any Kafka cluster)."""
    try:
        settings = Settings.from_env(kafka_bootstrap=bootstrap)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    group = group or settings.app_id  # Faust's consumer group id is its app id
    rows = asyncio.run(group_lag(settings, group, topics, timeout))
    if not rows:
        wanted = ", ".join(topics or (settings.topic_events, settings.topic_catalog))
        raise click.ClickException(f"no partitions found for {wanted}")
    if as_json:
        partitions = [r.as_dict() for r in rows]
        doc = {"group": group, "total_lag": total_lag(rows), "partitions": partitions}
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(format_lag_table(rows))
