"""The pieces the fault tests rely on, one at a time: replay detection in user state, the
producer's bounded buffer and delivery errors, holding sends for fresh metadata after a
broker restart, true log ends on the embedded broker, and outage log throttling."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from models.profile import UserProfile
from stream_app.broker import EmbeddedBroker
from stream_app.kafka_io import DeliveryError, make_producer
from stream_app.log_throttle import RepeatThrottle
from stream_app.settings import Settings
from stream_app.table_recovery import log_end_offsets
from tests.reliability.harness import read_topic


def _applied(profile: UserProfile, event_id: str, source: tuple) -> bool:
    if profile.is_duplicate(event_id, source):
        return False
    profile.record(event_id, "i", "view", 1.7e9, 1.0, source, 100, 32)
    return True


def test_a_replayed_record_is_skipped_a_record_of_a_new_log_is_not():
    profile = UserProfile("u")
    assert _applied(profile, "e1", (0, 10, 1000))
    assert _applied(profile, "e2", (0, 11, 1001))
    assert not _applied(profile, "e1", (0, 10, 1000))  # replay after a crash
    assert not _applied(profile, "e0", (0, 5, 900))  # older record, beyond the id window too
    # The broker lost its data: offsets start again at 0, records are newer.
    assert _applied(profile, "e3", (0, 0, 5000))
    assert _applied(profile, "e4", (0, 1, 5001))
    assert not _applied(profile, "e4", (0, 1, 5001))
    assert not _applied(profile, "e3", (1, 99, 9999))  # a producer retry on another offset
    assert profile.events_applied == 4
    # Profiles stored before record timestamps were kept still read, and dedup by offset.
    old = UserProfile.from_dict({**profile.to_dict(), "s": [0, 50]})
    assert old.last_source == (0, 50) and old.is_duplicate("new", (0, 40, 10**12))


@pytest.fixture
def broker():
    with EmbeddedBroker() as running:
        yield running


def test_producer_buffer_is_bounded_and_undelivered_records_are_reported(broker):
    settings = Settings.from_env(env={}, kafka_bootstrap=broker.bootstrap)
    producer = make_producer(
        settings,
        max_buffered_bytes=100_000,
        max_block_ms=1500,
        delivery_timeout_ms=4000,
        request_timeout_ms=2000,
    )
    try:
        for n in range(50):
            producer.send("bounded", key="k", value={"n": n})
        producer.flush()
        assert producer.acknowledged == 50 and producer.buffered_bytes == 0
        broker.stop()
        started, sent = time.monotonic(), 0
        with pytest.raises(DeliveryError, match="still unacknowledged"):
            while True:
                producer.send("bounded", key="k", value={"pad": "x" * 1000})
                sent += 1
        assert 1.4 < time.monotonic() - started < 10  # blocked max_block_ms, then gave up
        assert producer.buffered_bytes < 100_000 + 2_000  # bounded: at most one record over
        with pytest.raises(DeliveryError, match=r"\d+ record\(s\) were not acknowledged"):
            producer.flush()
        assert producer.failed == sent
    finally:
        producer.close(timeout=1)


def test_records_in_flight_through_a_broker_restart_land_intact(broker, tmp_path):
    """Tansu re-creates a topic from a retried Produce with broken offsets; the gate avoids it."""
    settings = Settings.from_env(env={}, kafka_bootstrap=broker.bootstrap, topic_events="t")
    producer = make_producer(settings)
    for n in range(100):
        producer.send("t", key=str(n % 7), value={"n": n})
    producer.flush()
    broker.stop()
    for n in range(100, 200):  # buffered and retried across the restart
        producer.send("t", key=str(n % 7), value={"n": n})
    time.sleep(2)
    restarted = EmbeddedBroker(broker.port, log_path=tmp_path / "broker.log").start()
    try:
        producer.flush()
        later = make_producer(settings)
        for n in range(200, 260):
            later.send("t", key=str(n % 7), value={"n": n})
        later.flush()
        later.close()
        records = read_topic(settings, "t")
        offsets = [(r.partition, r.offset) for r in records]
        assert len(offsets) == len(set(offsets)) == 160  # no offset reused, nothing lost
        assert "AlreadyExists" not in (tmp_path / "broker.log").read_text()
    finally:
        producer.close(timeout=1)
        restarted.stop()


def test_log_ends_come_from_fetch_high_watermarks(broker):
    """ListOffsets on Tansu stops at the newest batch's base offset + 1; fetch does not."""
    settings = Settings.from_env(env={}, kafka_bootstrap=broker.bootstrap)
    producer = make_producer(settings, linger_ms=200)
    for n in range(30):  # one batch per partition
        producer.send("ends", key=str(n), value={"n": n})
    producer.flush()
    producer.close()
    from faust.types import TP

    counts = {}
    for record in read_topic(settings, "ends"):
        counts[record.partition] = counts.get(record.partition, 0) + 1
    ends = asyncio.run(log_end_offsets(settings, [TP("ends", p) for p in counts]))
    assert {tp.partition: end for tp, end in ends.items()} == counts


def test_outage_log_lines_are_throttled_per_kind():
    clock = [0.0]
    throttle = RepeatThrottle(interval_s=10.0, clock=lambda: clock[0])
    logger = logging.getLogger("streamrec.test.throttle")
    passed = []

    class Keep(logging.Handler):
        def emit(self, record):
            passed.append(record.getMessage())

    logger.addHandler(Keep())
    logger.addFilter(throttle)
    logger.propagate = False
    for n in range(100):
        clock[0] = n * 0.1
        logger.error("Unable connect to node with id %s: %s", 1, "refused")
        if n == 50:
            logger.error("a different problem")
    clock[0] = 10.5
    logger.error("Unable connect to node with id %s: %s", 1, "refused")
    assert passed[0] == "Unable connect to node with id 1: refused"
    assert passed[1] == "a different problem"
    assert passed[2].endswith("[99 more like this in 10s]")
    assert len(passed) == 3


def test_worker_producer_writes_after_a_broker_restart_reach_a_real_topic(broker, tmp_path):
    """An idle aiokafka producer writes with stale metadata after the broker restarted: the
    embedded broker acknowledges, yet no topic holds the records. Held for fresh metadata
    (which re-creates the topic properly), they land."""
    from aiokafka import AIOKafkaProducer

    from stream_app.produce_gate import hold_aiokafka_sends

    settings = Settings.from_env(env={}, kafka_bootstrap=broker.bootstrap)

    async def scenario() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        try:
            assert hold_aiokafka_sends(producer)
            await (await producer.send("worker-out", b"before", key=b"k"))
            broker.stop()
            await asyncio.sleep(2)
            restarted = EmbeddedBroker(broker.port, log_path=tmp_path / "broker.log").start()
            try:
                await asyncio.sleep(2)  # idle: nothing told the producer
                sent = [await producer.send("worker-out", b"after", key=b"k") for _ in range(5)]
                await asyncio.wait_for(asyncio.gather(*sent), 60)
                return len(read_topic(settings, "worker-out", timeout=15))
            finally:
                restarted.stop()
        finally:
            await producer.stop()

    assert asyncio.run(scenario()) == 5
