"""The streaming topology: validate → update per-user state → recommend.

- ``process_events`` (agent, partitioned by user): micro-batches of raw events;
  bad ones go to the dead-letter topic, each touched user's profile is updated
  in the ``user-profiles`` table, and one recommendation per touched user is
  emitted per micro-batch. A ``delete_user`` event deletes the user's profile and
  publishes a tombstone for them on the recommendations topic.
- ``validate_catalog`` (agent): dead-letters bad catalog messages.
- ``follow_catalog`` (task, every worker): reads the whole catalog topic, since
  every worker must be able to rank every item, and embeds new items off the
  event loop so they become recommendable without a restart.
- ``reload_sequence_checkpoint`` (timer): swaps in a new checkpoint written to
  ``STREAMREC_SEQUENCE_CHECKPOINT``; a bad one is refused and the old model serves on.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import threading
import time
import weakref
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust
import faust.streams as faust_streams
from aiokafka import AIOKafkaConsumer, TopicPartition

from models.profile import UserProfile
from schemas import BehaviorEvent, InvalidInput, ValidationPolicy, parse_catalog_item
from schemas.records import DeadLetter, UserDeletion
from schemas.validation import parse_input
from stream_app import produce_gate, table_recovery
from stream_app.engine import Engine, checkpoint_fingerprint, dead_letter
from stream_app.log_throttle import throttle_noisy_loggers
from stream_app.metrics import (
    WindowedHistogram,
    batch_seconds_histogram,
    batch_size_histogram,
    latency_histogram,
)
from stream_app.settings import Settings
from stream_app.web import register_views

log = logging.getLogger(__name__)


def _lower_thread_priority() -> None:
    """Background model work yields the CPU to the event loop (Linux: per-thread nice)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
    except (AttributeError, OSError):  # not Linux, or not permitted: run at normal priority
        pass


# Long-term re-embedding, fine-tuning, checkpoint loading and catalog embedding run here:
# one thread at lower priority, so these minutes of BERT never delay a micro-batch.
# Measured with `streamrec bench`: at the default priority a 19 s long-term refresh
# pushed p95 latency to 2 s on a 2-core machine.
BACKGROUND_NICE = 10
BACKGROUND = ThreadPoolExecutor(
    max_workers=1, thread_name_prefix="streamrec-background", initializer=_lower_thread_priority
)

# How often the worker looks for a new sequence checkpoint at STREAMREC_SEQUENCE_CHECKPOINT.
CHECKPOINT_WATCH_INTERVAL_S = 5.0
LONG_TERM_USERS_PER_RUN = 64  # small runs: the pacing below then follows the load closely

# RocksDB memory per table partition (Faust's defaults: 3 x 64 MiB write buffers and a 2 GiB
# block cache per partition). User state is small and overwritten in place, so a flood
# mostly churns write buffers: these bound a worker's table memory to ~32 MiB per partition.
TABLE_STORE_OPTIONS = {
    "write_buffer_size": 8 * 2**20,
    "max_write_buffer_number": 2,
    "block_cache_size": 16 * 2**20,
}


# A micro-batch's stages: parse and apply its events (state read, learners, state written);
# rank and send the recommendations; teach the gate. "between": from the end of one batch to
# the start of the next (fetching, buffering, commits, timers: the event loop's share).
BATCH_STAGES = ("apply", "rank", "gate", "between")


@dataclass
class PipelineStats:
    """Counters the agents keep; read by tests, logs and (later) metrics."""

    events_in: int = 0
    events_applied: int = 0
    duplicates: int = 0
    rerouted: int = 0
    recommendations_out: int = 0
    catalog_items: int = 0
    long_term_refreshes: int = 0  # users re-embedded
    long_term_refresh_runs: int = 0
    last_long_term_refresh_at: float | None = None
    sequence_finetunes: int = 0
    last_sequence_finetune_at: float | None = None
    ranking_errors: int = 0
    users_deleted: int = 0
    sequence_checkpoint_reloads: int = 0
    sequence_checkpoints_refused: int = 0
    dead_letters: Counter = field(default_factory=Counter)
    # Observed once per micro-batch (all of a batch's values at once); see stream_app.metrics.
    batch_sizes: WindowedHistogram = field(default_factory=batch_size_histogram)
    batch_seconds: WindowedHistogram = field(default_factory=batch_seconds_histogram)
    end_to_end_seconds: WindowedHistogram = field(default_factory=latency_histogram)
    # Where a micro-batch's time goes (BATCH_STAGES), and the event loop's time between two.
    stage_seconds: dict[str, WindowedHistogram] = field(
        default_factory=lambda: {stage: batch_seconds_histogram() for stage in BATCH_STAGES}
    )


@dataclass
class Pipeline:
    app: faust.App
    engine: Engine
    stats: PipelineStats
    events_topic: Any
    catalog_topic: Any
    recommendations_topic: Any
    dead_letters_topic: Any
    profiles: Any
    agents: dict[str, Any]
    send_debounced: Any = None  # recommends held users now (a timer calls it)
    debounce: RecommendDebounce | None = None


class InputOrder:
    """Keeps each input partition's records in offset order, and says when they are not.

    A user's later event applied before an earlier one makes the earlier one look like a
    replay (models/profile.py), so order is what at-least-once rests on. After a
    (re)assignment Faust can hand over records fetched from an old position before the seek
    to the committed offset took effect (seen after restarts: offsets ~1,400 first, then
    625 onwards). Until a partition's first record at its committed offset arrives, records
    past it are not processed: the seek delivers them again, in order.

    A later gap (seen once in CI right after a memory-only broker restarted: the re-read of
    a new log went from offset 142 to 145) is read again: the partition is sought back to
    the missing offset (:meth:`take_seeks`) and later records are held back until it
    arrives. If the re-read starts past it too, the offsets are not in the log (a real
    Kafka's transaction markers, compaction): the gap is logged and reading goes on.
    """

    #: Records held back per partition before giving up on the committed offset arriving
    #: (then they are processed as they come, with a warning).
    MAX_EARLY = 50_000

    def __init__(self, committed_of: Any) -> None:
        self.committed_of = committed_of  # tp -> committed offset or None
        self.next_offset: dict[Any, int] = {}
        self.early: Counter = Counter()  # tp -> records held back since the assignment
        self.held_back = 0
        self.gaps_read_again = 0
        # tp -> the first offset seen past a gap, while the gap is being read again
        self.rereading: dict[Any, int] = {}
        self._seeks: dict[Any, int] = {}  # tp -> offset to seek to, not yet done

    def forget(self, tps: Iterable[Any]) -> None:
        for tp in tps:
            self.next_offset.pop(tp, None)
            self.early.pop(tp, None)
            self.rereading.pop(tp, None)
            self._seeks.pop(tp, None)

    def take_seeks(self) -> dict[Any, int]:
        """Partitions to seek back to a gap (the caller awaits ``consumer.seek``)."""
        seeks, self._seeks = self._seeks, {}
        return seeks

    def admit(self, message: Any) -> bool:
        """True: process ``message`` now. False: it is early and will be delivered again."""
        tp, offset = message.tp, message.offset
        expected = self.next_offset.get(tp)
        if expected is None:  # the first record since the assignment
            committed = self.committed_of(tp)
            if committed is not None and offset > committed:
                self.early[tp] += 1
                if self.early[tp] <= self.MAX_EARLY:
                    self.held_back += 1
                    return False
                log.warning(
                    "input %s[%d]: offset %d never arrived; processing from %d",
                    message.topic,
                    message.partition,
                    committed,
                    offset,
                )
        elif offset > expected:
            first_past_gap = self.rereading.get(tp)
            if first_past_gap is None:  # a new gap: read it again
                self.rereading[tp] = offset
                self._seeks[tp] = expected
                self.early[tp] = 1
                self.held_back += 1
                self.gaps_read_again += 1
                log.warning(
                    "input %s[%d]: offsets %d..%d were not delivered; reading them again",
                    message.topic,
                    message.partition,
                    expected,
                    offset - 1,
                )
                return False
            if offset != first_past_gap and self.early[tp] < self.MAX_EARLY:
                self.early[tp] += 1  # fetched before the seek back
                self.held_back += 1
                return False
            log.warning(
                "input %s[%d]: offsets %d..%d are not in the log; reading on",
                message.topic,
                message.partition,
                expected,
                offset - 1,
            )
        elif offset < expected:
            log.info(
                "input %s[%d]: read again from offset %d (was at %d)",
                message.topic,
                message.partition,
                offset,
                expected,
            )
        self.rereading.pop(tp, None)
        if self.early.pop(tp, 0):
            log.info(
                "input %s[%d]: records fetched before the seek were held back",
                message.topic,
                message.partition,
            )
        self.next_offset[tp] = offset + 1
        return True


class TimeShare:
    """Paces background work to a share of wall time: a run that took t seconds is
    followed by a pause of t * (1 / share - 1). Wall time, not CPU time: a run slowed by
    a busy machine also pauses longer."""

    def __init__(self, share: float, clock: Any = time.monotonic) -> None:
        self.share = share
        self.clock = clock
        self.paused_until = float("-inf")

    def ready(self) -> bool:
        return self.clock() >= self.paused_until

    @contextlib.contextmanager
    def timed(self) -> Iterator[None]:
        started = self.clock()
        try:
            yield
        finally:
            took = self.clock() - started
            self.paused_until = self.clock() + took * (1 / self.share - 1)


class RecommendDebounce:
    """At most one recommendation per user per ``interval_s``; a change sooner waits.

    A waiting user keeps only the latest trigger (the list reflects every change made by
    then) and the Kafka times of all the events behind it, for the latency metric. Memory
    is bounded by the users recommended within the last interval.
    """

    def __init__(self, interval_s: float, clock: Any = time.monotonic) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self._last: OrderedDict[str, float] = OrderedDict()  # user -> last sent, oldest first
        self.waiting: dict[str, tuple[str, list[float]]] = {}

    def admit(self, user_id: str, trigger: str, kafka_times: list[float]) -> bool:
        """True: recommend now. False: held until :meth:`due`."""
        if self.interval_s <= 0:
            return True
        now = self.clock()
        last = self._last.get(user_id)
        if last is not None and now - last < self.interval_s:
            held = self.waiting.get(user_id)
            self.waiting[user_id] = (trigger, (held[1] if held else []) + kafka_times)
            return False
        self._sent(user_id, now)
        return True

    def due(self) -> list[tuple[str, str, list[float]]]:
        """(user, trigger, kafka times) of waiting users whose interval is over."""
        now = self.clock()
        ready = [
            (user, *held)
            for user, held in self.waiting.items()
            if now - self._last.get(user, -self.interval_s) >= self.interval_s
        ]
        for user, _, _ in ready:
            self._sent(user, now)
        while self._last:  # users last sent an interval ago hold nothing back any more
            user, at = next(iter(self._last.items()))
            if now - at < self.interval_s or user in self.waiting:
                break
            del self._last[user]
        return ready

    def forget(self, user_id: str) -> None:
        self._last.pop(user_id, None)
        self.waiting.pop(user_id, None)

    def _sent(self, user_id: str, now: float) -> None:
        self.waiting.pop(user_id, None)
        self._last[user_id] = now
        self._last.move_to_end(user_id)


def table_writes_go_with(event: faust.EventT) -> None:
    """Make ``event`` the one whose partition the table reads and writes (its changelog).

    Tables read Faust's "current event" context variable. Only that is set here, not the
    stream's own ``current_event``, which ``take_batches`` reads to buffer the message that
    arrives meanwhile: pointed at another event, it buffers that event a second time and
    drops the new message (processed twice, the next one never, and no commit past it).
    """
    faust_streams._current_event.set(weakref.ref(event))


def record_source(message: Any, rewound_below: Any = None) -> tuple[int, ...] | None:
    """Where a record sits: (partition, offset, timestamp ms); see models/profile.py.

    ``None`` (replays told by event id only) below the point an input partition was read
    again from after the broker lost its data (stream_app/table_recovery.py).
    """
    if rewound_below and message.offset < rewound_below.get(message.tp, -1):
        return None
    if message.timestamp:
        return (message.partition, message.offset, round(message.timestamp * 1000))
    return (message.partition, message.offset)


def validation_policy(settings: Settings) -> ValidationPolicy:
    return ValidationPolicy(
        max_bytes=settings.max_message_bytes,
        unknown_fields=settings.unknown_fields,
        max_future_skew_s=settings.max_future_skew_s,
    )


def register_pipeline(app: faust.App, settings: Settings, engine: Engine) -> Pipeline:
    """Declare topics, the profile table, the agents and the catalog follower on ``app``."""
    stats = PipelineStats()
    policy = validation_policy(settings)
    table_recovery.install(app, settings)  # before the table: see stream_app/table_recovery.py
    throttle_noisy_loggers()  # a broker outage logs one line per kind every 10 s, not 100/s
    follower = CatalogFollower(settings, engine, policy, stats)
    partitions = settings.partitions
    events_topic = app.topic(
        settings.topic_events, key_serializer="raw", value_serializer="raw", partitions=partitions
    )
    catalog_topic = app.topic(
        settings.topic_catalog, key_serializer="raw", value_serializer="raw", partitions=partitions
    )
    # Values are JSON documents in the schemas.Recommendation shape, encoded by the agent.
    recommendations_topic = app.topic(
        settings.topic_recommendations,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
    )
    dead_letters_topic = app.topic(
        settings.topic_dead_letters, value_type=DeadLetter, partitions=partitions
    )
    profiles = app.Table(
        "user-profiles",
        default=None,
        # Values are compact JSON bytes (Engine.stored_form): state size is a budget.
        schema=faust.Schema(key_type=str, key_serializer="raw", value_serializer="raw"),
        partitions=partitions,
        options=dict(TABLE_STORE_OPTIONS),  # Faust copies nothing: give each table its own
    )

    debounce = RecommendDebounce(settings.recommend_debounce_s)
    order = InputOrder(lambda tp: app.consumer._committed_offset.get(tp))

    @app.on_partitions_revoked.connect
    async def on_revoked(app: faust.App, revoked: set, **kwargs: Any) -> None:
        order.forget(revoked)  # another worker may read them meanwhile: not a gap

    async def send_dead_letter(message: Any, kind: str, text: str) -> None:
        stats.dead_letters[kind] += 1
        await dead_letters_topic.send(
            value=dead_letter(
                message.value, message.topic, message.partition, message.offset, kind, text
            )
        )

    @app.agent(events_topic, name="process-events")
    async def process_events(stream: faust.StreamT) -> None:
        # Ranking against a half-read catalog would serve poor lists; the backlog waits.
        await follower.wait_caught_up(settings.catalog_wait_s)
        # Models, catalog and libraries live as long as the worker: keep them out of the
        # collector's full scans, which took 135-294 ms each (the latency run's p99 spikes).
        gc.collect()
        gc.freeze()
        batches = stream.take_batches(
            settings.batch_size, settings.batch_wait_s, settings.batch_idle_s
        )
        finished = None
        async for batch in batches:
            started = time.perf_counter()
            if finished is not None:
                stats.stage_seconds["between"].observe(started - finished)
            await _process_batch(batch, stream)
            finished = time.perf_counter()
            stats.batch_seconds.observe(finished - started)
            stats.batch_sizes.observe(len(batch))

    async def _process_batch(batch: Sequence[faust.EventT], stream: faust.StreamT) -> None:
        batch_started = time.perf_counter()
        by_user: dict[str, list[tuple[BehaviorEvent | UserDeletion, faust.EventT]]] = {}
        new_items: set[str] = set()  # items first named in this batch (see admits_item)
        for event in batch:
            message = event.message
            if not order.admit(message):
                continue  # delivered again, in order, by the seek to the committed offset
            stats.events_in += 1
            try:
                record = parse_input(message.value, policy)  # an event or a user deletion
            except InvalidInput as exc:
                await send_dead_letter(message, exc.kind, exc.message)
                continue
            key = record.user_id.encode("utf-8")
            if message.key != key:
                # State is partitioned by user; a message keyed otherwise would
                # land beside another user's state. Re-key it once.
                stats.rerouted += 1
                await events_topic.send(key=key, value=message.value)
                continue
            if isinstance(record, BehaviorEvent) and not engine.admits_item(
                record.item_id, new_items
            ):
                limit = settings.max_uncataloged_items
                text = f"item not in the catalog, and {limit:,} such items are held already"
                await send_dead_letter(message, "item_limit", text)
                continue
            by_user.setdefault(record.user_id, []).append((record, event))
        for tp, offset in order.take_seeks().items():
            await app.consumer.seek(tp, offset)

        touched, triggers = [], []
        kafka_times: list[float] = []  # of the events behind this batch's recommendations
        loaded = {}
        rewound_below = getattr(app.tables.recovery, "rewound_below", None)
        for user_id, user_events in by_user.items():
            table_writes_go_with(user_events[-1][1])
            loaded[user_id] = engine.load_profile(user_id, profiles.get(user_id))
        # The gate learns from users as they were before this batch, once the batch's
        # recommendations are out: its cost stays off the latency path.
        learners = [u for u, evs in by_user.items() if isinstance(evs[0][0], BehaviorEvent)]
        gate_examples = engine.gate_examples(
            [loaded[u] for u in learners], [by_user[u][0][0].item_id for u in learners]
        )
        deleted_users: list[str] = []
        for user_id, user_events in by_user.items():
            # The table writes to the changelog partition of the "current event";
            # within a micro-batch that must be this user's own event.
            table_writes_go_with(user_events[-1][1])
            try:
                profile = loaded[user_id]
                engine.merge_long_term(profile)
                changed: str | None = None
                deleted = False
                for record, event in user_events:
                    source = record_source(event.message, rewound_below)
                    if isinstance(record, UserDeletion):
                        if profile.is_duplicate(record.event_id, source):
                            stats.duplicates += 1  # a replayed deletion must not wipe newer events
                            continue
                        # Forget everything so far; later events start a new profile, which
                        # remembers the deletion so that a replay of it is recognised.
                        profile, changed, deleted = engine.forget(user_id), None, True
                        profile.forgotten(record.event_id, source)
                        stats.users_deleted += 1
                        continue
                    if engine.apply(profile, record, source):
                        changed = record.event_id  # the latest applied event triggers
                        stats.events_applied += 1
                    else:
                        stats.duplicates += 1
                if deleted:
                    debounce.forget(user_id)
                    deleted_users.append(user_id)
                    if not changed and profiles.get(user_id) is not None:
                        del profiles[user_id]  # a tombstone on the changelog too
                if changed:
                    engine.note_activity(profile)
                    profiles[user_id] = engine.stored_form(profile)
                    times = [event.message.timestamp for _, event in user_events]
                    if debounce.admit(user_id, changed, times):
                        touched.append(profile)
                        triggers.append(changed)
                        kafka_times.extend(times)
            except Exception as exc:  # noqa: BLE001 - input must never kill the worker
                log.exception("processing failed for user %s", user_id)
                for _, event in user_events:
                    await send_dead_letter(event.message, "processing_error", repr(exc))
        ranking_started = time.perf_counter()
        stats.stage_seconds["apply"].observe(ranking_started - batch_started)
        for user_id in deleted_users:
            # A tombstone: consumers of the recommendations topic drop the user's list, and
            # compaction removes the earlier lists.
            await recommendations_topic.send(key=user_id.encode("utf-8"), value=None)
        if touched and not await _send_recommendations(touched, triggers, kafka_times):
            return  # no gate learning from a batch the ranker failed on
        gate_started = time.perf_counter()
        stats.stage_seconds["rank"].observe(gate_started - ranking_started)
        try:
            engine.learn_gate(*gate_examples)
        except Exception:  # noqa: BLE001 - the blend keeps its last weights
            log.exception("gate learning failed")
        stats.stage_seconds["gate"].observe(time.perf_counter() - gate_started)

    async def _send_recommendations(
        touched: list[UserProfile], triggers: list[str], kafka_times: list[float]
    ) -> bool:
        try:
            recommendations = engine.recommend(touched, triggers)
        except Exception:  # noqa: BLE001 - state is saved; the next change recommends again
            log.exception("ranking failed for %d users", len(touched))
            stats.ranking_errors += 1
            return False
        for recommendation in recommendations:
            await recommendations_topic.send(
                key=recommendation["user_id"].encode(),
                value=json.dumps(recommendation, separators=(",", ":")).encode(),
            )
        stats.recommendations_out += len(touched)
        stats.end_to_end_seconds.observe_ages(kafka_times)
        return True

    async def send_debounced() -> int:
        """Recommend the held users whose interval is over, from their stored state."""
        touched, triggers, kafka_times = [], [], []
        for user_id, trigger, times in debounce.due():
            stored = profiles.get(user_id)
            if stored is None:
                continue  # deleted, or its partition moved to another worker meanwhile
            touched.append(engine.load_profile(user_id, stored))
            triggers.append(trigger)
            kafka_times.extend(times)
        if touched:
            await _send_recommendations(touched, triggers, kafka_times)
        return len(touched)

    if settings.recommend_debounce_s > 0:

        @app.timer(max(settings.recommend_debounce_s / 4, 0.01))
        async def send_debounced_recommendations() -> None:
            await send_debounced()

    @app.agent(catalog_topic, name="validate-catalog")
    async def validate_catalog(stream: faust.StreamT) -> None:
        async for event in stream.events():
            if event.message.value is None and event.message.key:
                continue  # a tombstone deletes the item; the follower retires it
            try:
                parse_catalog_item(event.message.value, policy)
            except InvalidInput as exc:
                await send_dead_letter(event.message, exc.kind, exc.message)

    @app.task
    async def follow_catalog() -> None:
        await follower.run()

    @app.task
    async def hold_sends_for_fresh_metadata() -> None:
        """Broker restarts: no retried write may re-create a topic (stream_app/produce_gate.py)."""
        if not produce_gate.hold_faust_sends(app):
            log.warning("producer sends are not held for fresh metadata after reconnects")
        # The user endpoints route by the events topic's partitioner, which reads the
        # producer's metadata; a refresh only keeps topics the producer tracks.
        producer = getattr(app.producer, "_producer", None)
        if producer is not None:
            producer.client.add_topic(settings.topic_events)

    long_term_pace = TimeShare(settings.long_term_time_share)

    @app.timer(settings.long_term_interval_s)
    async def periodic_long_term_merge() -> None:
        """Re-embed stale users' histories off the event loop; agents merge the result.

        Paced to ``long_term_time_share``; users not refreshed stay stale for a later run.
        """
        if not long_term_pace.ready():
            return
        stale = engine.take_stale_users(LONG_TERM_USERS_PER_RUN)
        if not stale:
            return
        snapshot = [engine.load_profile(u, profiles.get(u)) for u in stale]
        loop = asyncio.get_running_loop()
        with long_term_pace.timed():
            merged = await loop.run_in_executor(BACKGROUND, engine.refresh_long_term, snapshot)
        stats.long_term_refreshes += merged
        stats.long_term_refresh_runs += 1
        stats.last_long_term_refresh_at = time.time()

    if settings.sequence_checkpoint:
        checkpoint = Path(settings.sequence_checkpoint)
        loaded_files = checkpoint_fingerprint(checkpoint)

        @app.timer(CHECKPOINT_WATCH_INTERVAL_S)
        async def reload_sequence_checkpoint() -> None:
            """Swap in a new checkpoint written to the same path; refuse a bad one."""
            nonlocal loaded_files
            files = checkpoint_fingerprint(checkpoint)
            if files == loaded_files:
                return
            loaded_files = files  # a refused checkpoint is tried again once it changes
            loop = asyncio.get_running_loop()
            scorer = await loop.run_in_executor(
                BACKGROUND, engine.candidate_sequence_model, checkpoint
            )
            if scorer is None:
                stats.sequence_checkpoints_refused += 1
                return
            engine.recommender.attach_sequence(scorer)
            stats.sequence_checkpoint_reloads += 1
            log.info("sequence model %s loaded from %s", scorer.version, checkpoint)

    if settings.sequence_finetune_interval_s > 0:

        @app.timer(settings.sequence_finetune_interval_s)
        async def periodic_sequence_finetune() -> None:
            loop = asyncio.get_running_loop()
            tuned = await loop.run_in_executor(BACKGROUND, engine.fine_tuned_sequence_model)
            if tuned is not None:
                engine.recommender.attach_sequence(tuned)
                stats.sequence_finetunes += 1
                stats.last_sequence_finetune_at = time.time()
                log.info("sequence model fine-tuned: %s", tuned.version)

    pipeline = Pipeline(
        app=app,
        engine=engine,
        stats=stats,
        events_topic=events_topic,
        catalog_topic=catalog_topic,
        recommendations_topic=recommendations_topic,
        dead_letters_topic=dead_letters_topic,
        profiles=profiles,
        agents={"process-events": process_events, "validate-catalog": validate_catalog},
        send_debounced=send_debounced,
        debounce=debounce,
    )
    register_views(app, settings, follower, pipeline)
    return pipeline


class CatalogFollower:
    """Reads every partition of the catalog topic from the start, without a group."""

    def __init__(
        self, settings: Settings, engine: Engine, policy: ValidationPolicy, stats: PipelineStats
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.policy = policy
        self.stats = stats
        self.caught_up = False  # read the catalog up to the high watermark at least once
        self._caught_up = asyncio.Event()

    async def wait_caught_up(self, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(self._caught_up.wait(), timeout_s)
        except asyncio.TimeoutError:
            log.warning("catalog not read after %.0fs; processing events anyway", timeout_s)

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **self.settings.security.kafka_python_kwargs(),
        )
        await consumer.start()
        try:
            assigned: set[int] = set()
            loop = asyncio.get_running_loop()
            while True:
                assigned = await self._assign_new_partitions(consumer, assigned)
                if not assigned:
                    await asyncio.sleep(1.0)
                    continue
                batches = await consumer.getmany(timeout_ms=1000, max_records=2000)
                items = {}
                for records in batches.values():
                    for record in records:
                        if record.value is None and record.key:
                            deleted = record.key.decode("utf-8", errors="replace")
                            items.pop(deleted, None)
                            self.engine.items.retire(deleted)
                            continue
                        try:
                            item = parse_catalog_item(record.value, self.policy)
                        except InvalidInput:
                            continue  # validate-catalog dead-letters it once
                        items[item.item_id] = item  # the latest version wins
                if items:
                    texts, vectors = await loop.run_in_executor(
                        BACKGROUND, self.engine.featurize, list(items.values())
                    )
                    self.engine.add_items(texts, vectors)
                    self.stats.catalog_items = len(self.engine.items)
                    log.info(
                        "catalog: %d items embedded, %d known", len(texts), len(self.engine.items)
                    )
                if not self.caught_up and await self._at_high_watermark(consumer):
                    self.caught_up = True
                    self._caught_up.set()
                    log.info("catalog: caught up")
        finally:
            await consumer.stop()

    @staticmethod
    async def _at_high_watermark(consumer: AIOKafkaConsumer) -> bool:
        # The Fetch high watermark, not ListOffsets: see BROKER-NOTES (Tansu quirk).
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None or highwater > await consumer.position(tp):
                return False
        return True

    async def _assign_new_partitions(self, consumer: AIOKafkaConsumer, assigned: set[int]):
        topic = self.settings.topic_catalog
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            await consumer._client.force_metadata_update()  # topic may not exist yet
            partitions = consumer.partitions_for_topic(topic)
        if not partitions or set(partitions) <= assigned:
            return assigned
        new = set(partitions) - assigned
        all_tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(all_tps)
        await consumer.seek_to_beginning(*[TopicPartition(topic, p) for p in sorted(new)])
        return set(partitions)
