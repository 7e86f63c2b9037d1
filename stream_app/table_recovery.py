"""Table recovery that stays correct on the embedded broker and after a broker lost its data.

Faust restores a table partition by reading its changelog from the offset the local RocksDB
store last persisted up to the log's end, which it takes from ListOffsets. Two things break
that here (see BROKER-NOTES):

- Tansu answers ListOffsets "latest" with the base offset of the newest batch + 1, short of
  the real end whenever the last batch held several records. Faust then either stops reading
  a changelog early (a worker taking over a partition restores stale state and the events
  behind the committed offset are never applied: lost) or, when the local store persisted a
  later offset, refuses to start (``ConsistencyError: persisted offset ... is higher than
  the last offset in that topic``): a worker killed mid-stream could not be restarted.
  :func:`log_end_offsets` reads the end from a Fetch response instead (its high watermark is
  right), so recovery reads every record.
- A memory-only broker that restarts comes back without the changelog. The local store then
  holds the only copy of the table; it is kept (a warning says the broker lost data) and its
  persisted offset lowered to the new log end instead of crashing the worker.
- Faust drops a fetched message whose offset is below the last one it dispatched for the
  partition ("DROPPED MESSAGE ROFF"). After a restart that mark was seen ahead of the
  committed offset: a worker restarted after ``kill -9`` skipped everything from its committed
  offset to the log end (1,706 and 3,380 messages in two of seventeen restarts), and those
  events were lost. State updates here are idempotent, so :class:`NeverDropRedelivered` has
  Faust deliver such a message again instead; it is recognised as a replay downstream.
- The worker notices the loss by the topics' identities (Kafka topic ids), which change when
  a topic is re-created, or by a changelog shorter than what the local store persisted.
- After such a loss the input topics are new logs too, whose offsets start again at 0, but
  the consumer still holds offsets of the old logs (its position, and commits made by
  events that were in flight during the outage). Read from there, the new logs would be
  skipped up to the old offsets: events produced after the restart lost. So the input
  partitions are rewound to the beginning of the new logs, and the in-flight events of the
  old logs are still processed but never committed. State updates stay idempotent (see
  ``models/profile.py``: a record newer than the last applied one is not a replay).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.types import TP

from stream_app.settings import Settings

log = logging.getLogger(__name__)


async def log_end_offsets(
    settings: Settings, tps: Iterable[TP], timeout_s: float = 10.0
) -> dict[TP, int]:
    """The offset after the last record of each partition, from Fetch high watermarks.

    ListOffsets gives a first guess; a fetch from just before it returns the partition's
    high watermark, which is the true end. Falls back to the guess if no fetch answers.
    """
    wanted = {TopicPartition(tp.topic, tp.partition): tp for tp in tps}
    if not wanted:
        return {}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **settings.security.kafka_python_kwargs(),
    )
    await consumer.start()
    try:
        listed = await consumer.end_offsets(list(wanted))
        consumer.assign(list(wanted))
        for tp in wanted:
            consumer.seek(tp, max(listed[tp] - 1, 0))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(consumer.highwater(tp) is not None for tp in wanted):
                break
            await consumer.getmany(timeout_ms=200, max_records=1)
        ends = {}
        for ktp, tp in wanted.items():
            highwater = consumer.highwater(ktp)
            if highwater is None:
                log.warning("no fetch answered for %s; using ListOffsets (%d)", tp, listed[ktp])
            ends[tp] = max(listed[ktp], highwater or 0)
        return ends
    finally:
        await consumer.stop()


def topic_ids(settings: Settings, topics: Iterable[str]) -> dict[str, Any]:
    """Kafka topic ids (UUIDs; a re-created topic gets a new one) of ``topics``; None if unknown.

    Blocking (kafka-python): run it off the event loop.
    """
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        **settings.security.kafka_python_kwargs(),
    )
    try:
        consumer.topics()  # one metadata request for every topic
        return {topic: consumer._client.cluster.topic_id(topic) for topic in topics}
    finally:
        consumer.close()


class NeverDropRedelivered(dict):
    """Faust's per-partition "last offset read", which Faust may keep; never used to drop.

    Faust's fetch loop drops a message whose offset is below this mark and takes no gap
    from it when the mark reads as ``None``; everything else (seek, rebalance) stores and
    clears marks as before.
    """

    def __getitem__(self, tp: Any) -> None:
        return None


class ChangelogRecovery(Recovery):
    """Faust's recovery with true log ends, keeping the local store if the broker lost data."""

    settings: Settings
    _broker_lost_data = False
    _known_topic_ids: dict[str, Any] | None = None
    #: Input partitions read again from 0 after a loss -> the log end at that moment. Below
    #: it, records may arrive after later ones were applied (the worker read the new log at
    #: its old offsets before it noticed the loss), so only event ids tell a replay.
    rewound_below: dict[TP, int] | None = None

    async def _build_highwaters(
        self, consumer: Any, tps: set[TP], destination: Any, title: str
    ) -> None:
        self._wrap_perform_seek(self.app.consumer)
        self._never_drop_redelivered(self.app.consumer)
        if title == "active":
            await self._notice_recreated_topics()
        ends = await asyncio.wait_for(log_end_offsets(self.settings, tps), timeout=30.0)
        # Faust's "highwater" is the offset of the last record (end - 1; -1 when empty).
        highwaters = {tp: end - 1 for tp, end in ends.items()}
        offsets = self.active_offsets if title == "active" else self.standby_offsets
        self._keep_local_state_if_log_lost(highwaters, offsets)
        self.log.info("Changelog ends (%s): %s", title, _describe(highwaters))
        destination.clear()
        destination.update(highwaters)

    async def _notice_recreated_topics(self) -> None:
        """Compare the assigned topics' ids with those seen before: new ids, new logs."""
        topics = {tp.topic for tp in self.app.consumer.assignment()}
        loop = asyncio.get_running_loop()
        try:
            ids = await asyncio.wait_for(
                loop.run_in_executor(None, topic_ids, self.settings, topics), timeout=30.0
            )
        except Exception as exc:  # noqa: BLE001 - the changelog check below still runs
            log.warning("topic ids unavailable (%r); relying on changelog ends", exc)
            return
        known = self._known_topic_ids if self._known_topic_ids is not None else {}
        recreated = sorted(
            t for t, i in ids.items() if i is not None and known.get(t) not in (None, i)
        )
        if recreated:
            log.warning("topics were re-created (the broker lost its data?): %s", recreated)
            self._broker_lost_data = True
        known.update({t: i for t, i in ids.items() if i is not None})
        self._known_topic_ids = known

    def _keep_local_state_if_log_lost(
        self, highwaters: Mapping[TP, int], offsets: dict[TP, int | None]
    ) -> None:
        for tp, highwater in highwaters.items():
            persisted = offsets.get(tp)
            if persisted is None or persisted <= highwater:
                continue
            log.warning(
                "changelog %s ends at offset %d but the local store holds data up to %d: the "
                "broker lost data (a memory-only broker restarted?). Keeping the local store; "
                "changes from now on are logged again.",
                tp,
                highwater,
                persisted,
            )
            self.tp_to_table[tp].data.set_persisted_offset(tp, highwater)
            offsets[tp] = highwater
            self._broker_lost_data = True

    async def _resume_streams(self, generation_id: int = 0) -> None:
        """Faust's, but input partitions are seeked to their committed offsets *before* they
        are resumed: resumed first, the running fetcher can deliver records from another
        position ahead of the seek, and a user's later event applied before an earlier one
        makes the earlier one look like a replay."""
        app = self.app
        consumer = app.consumer
        await app.on_rebalance_complete.send()
        assignment = consumer.assignment()
        if self.app.consumer_generation_id != generation_id:
            self.log.warning("Recovery rebalancing again")
            return
        if assignment:
            self.log.info("Seek stream partitions to committed offsets.")
            await self._wait(consumer.perform_seek(), timeout=app.conf.broker_request_timeout)
            consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
        else:
            self.log.info("Resuming streams with empty assignment")
        self.completed.set()
        self.log.info("Resuming flow...")
        app.flow_control.resume()
        consumer.resume_flow()
        await app._fetcher.maybe_start()
        self.tables.on_actives_ready()
        self.tables.on_standbys_ready()
        app.on_rebalance_end()
        self.log.info("Worker ready")

    @staticmethod
    def _never_drop_redelivered(consumer: Any) -> None:
        """Before Faust's fetch loop starts (it binds the mapping's methods when it does)."""
        if not isinstance(consumer._read_offset, NeverDropRedelivered):
            consumer._read_offset = NeverDropRedelivered(consumer._read_offset)

    def _wrap_perform_seek(self, consumer: Any) -> None:
        """After every "seek input partitions to committed offsets", rewind lost logs."""
        if getattr(consumer, "_rewinds_lost_inputs", False):
            return
        seek_to_committed = consumer.perform_seek

        async def perform_seek() -> None:
            await seek_to_committed()
            await self._rewind_lost_inputs(consumer)

        consumer.perform_seek = perform_seek
        consumer._rewinds_lost_inputs = True

    async def _rewind_lost_inputs(self, consumer: Any) -> None:
        inputs = {tp for tp in consumer.assignment() if not self._is_changelog_tp(tp)}
        if not inputs:
            return
        lost = set(inputs) if self._broker_lost_data else set()
        self._broker_lost_data = False
        if lost:
            # Known lost: rewind before anything else awaits, so that the fetcher reads as
            # little as possible of the new logs at the old offsets.
            await self._read_again_from_start(consumer, lost)
        ends = await asyncio.wait_for(log_end_offsets(self.settings, inputs), timeout=30.0)
        for tp in inputs - lost:
            committed = consumer._committed_offset.get(tp)
            if committed is not None and committed > ends[tp]:
                lost.add(tp)  # a commit past the end of the log: not this log's offset
                await self._read_again_from_start(consumer, {tp})
        if not lost:
            return
        log.warning(
            "input logs were lost or re-created (%s); reading them again from the beginning",
            _describe({tp: ends[tp] for tp in lost}),
        )
        if self.rewound_below is None:
            self.rewound_below = {}
        for tp in lost:
            self.rewound_below[tp] = ends[tp]

    @staticmethod
    async def _read_again_from_start(consumer: Any, lost: set[TP]) -> None:
        # Events of the old logs still in flight are processed, but their offsets must not be
        # committed to the new logs: mark them acknowledged already.
        for message in list(consumer._unacked_messages):
            if message.tp in lost:
                message.acked = True
                consumer._unacked_messages.discard(message)
        for tp in lost:
            for bookkeeping in (
                consumer._acked,
                consumer._acked_index,
                consumer._gap,
                consumer._committed_offset,
            ):
                bookkeeping.pop(tp, None)
            await consumer.seek(tp, 0)


def _describe(highwaters: Mapping[TP, int]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]={hw}" for tp, hw in sorted(highwaters.items()))


def table_manager_for(settings: Settings) -> type[TableManager]:
    """A TableManager class whose recovery is :class:`ChangelogRecovery` bound to ``settings``."""

    recovery_class = type("BoundChangelogRecovery", (ChangelogRecovery,), {"settings": settings})

    class ReliableTableManager(TableManager):
        @property
        def recovery(self) -> Recovery:
            if self._recovery is None:
                self._recovery = recovery_class(self.app, self, beacon=self.beacon, loop=self.loop)
            return self._recovery

    return ReliableTableManager


def install(app: Any, settings: Settings) -> None:
    """Use :class:`ChangelogRecovery` for ``app``'s tables; call before declaring a table."""
    if "tables" in app.__dict__:
        raise RuntimeError("install table recovery before the first table is declared")
    app.conf.TableManager = table_manager_for(settings)
