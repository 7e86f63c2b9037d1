"""Fault-injection harness: a private broker, real worker processes, and the ground truth.

Every scenario owns its broker (so it can be stopped without disturbing other tests), starts
``streamrec worker`` processes exactly as an operator would, produces events whose ids are
unique, and records what each user must end up with (:class:`Ledger`). The audit compares
that with ``GET /users/{id}/state`` on the workers: ``events_applied`` must equal the number
of distinct events produced for the user — no loss, no double count.

Used by the pytest suite (``tests/reliability``) and by the soak command
(``python -m tests.reliability.soak``).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stream_app.broker import EmbeddedBroker, free_port
from stream_app.kafka_io import ensure_topics, make_consumer, make_producer
from stream_app.settings import Settings
from tests.conftest import WorkerProcess, genre_catalog

TOKEN = "reliability-token"
BASE_TS = 1_700_000_000.0  # event time of the first generated event

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (Linux ``/proc``); 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux ``/proc``)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            parts = stat.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def http_json(url: str, token: str | None = TOKEN, timeout: float = 10.0) -> tuple[int, Any]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body or b"null")
        except ValueError:
            return exc.code, body.decode(errors="replace")


@dataclass
class UserTruth:
    """What one user must end up with, by construction of the produced stream."""

    count: int = 0
    last_time: float = 0.0
    items: list[str] = field(default_factory=list)


@dataclass
class Ledger:
    """Ground truth of produced events: per user, in partition (= produce) order."""

    users: dict[str, UserTruth] = field(default_factory=lambda: defaultdict(UserTruth))
    produced_at: dict[str, float] = field(default_factory=dict)  # event id -> monotonic time
    deleted: set[str] = field(default_factory=set)

    def add(self, doc: dict, timestamp: float | None = None) -> None:
        """Record one produced event (``timestamp``: its epoch seconds, if not a number)."""
        user = str(doc["user_id"])
        truth = self.users[user]
        if doc["event_type"] == "delete_user":
            self.users[user] = UserTruth()
            self.deleted.add(user)
            return
        self.deleted.discard(user)
        truth.count += 1
        ts = float(doc["timestamp"]) if timestamp is None else timestamp
        truth.last_time = max(truth.last_time, ts)
        truth.items.append(doc["item_id"])

    @property
    def total(self) -> int:
        return sum(t.count for t in self.users.values())


class EventSource:
    """Generates valid events with unique ids over ``n_users`` users and the test catalog."""

    def __init__(self, seed: int, n_users: int = 40, prefix: str = "e") -> None:
        self.rng = random.Random(seed)
        self.users = [f"user-{n}" for n in range(n_users)]
        self.items = [c["item_id"] for c in genre_catalog()]
        self.prefix = prefix
        self.seq = 0

    def next(self) -> dict:
        self.seq += 1
        return {
            "event_id": f"{self.prefix}-{self.seq}",
            "user_id": self.rng.choice(self.users),
            "item_id": self.rng.choice(self.items),
            "event_type": self.rng.choice(("view", "click", "like", "purchase", "add_to_cart")),
            "timestamp": BASE_TS + self.seq,
        }


class Producer:
    """A kafka-python producer that records in the ledger only what the broker acknowledged."""

    def __init__(self, settings: Settings, ledger: Ledger, **overrides: Any) -> None:
        self.settings = settings
        self.ledger = ledger
        self.producer = make_producer(settings, **overrides)
        self.errors: list[BaseException] = []
        self.offsets: dict[int, int] = defaultdict(lambda: -1)  # partition -> max offset
        self._lock = threading.Lock()

    def send(self, doc: dict, key: str | None = None) -> None:
        key = doc["user_id"] if key is None else key
        future = self.producer.send(self.settings.topic_events, key=key, value=doc)
        self.ledger.produced_at[doc["event_id"]] = time.monotonic()

        def acked(metadata: Any, doc: dict = doc) -> None:
            with self._lock:
                self.offsets[metadata.partition] = max(
                    self.offsets[metadata.partition], metadata.offset
                )

        future.add_callback(acked)
        future.add_errback(self.errors.append)
        # Events of one user stay in order (max_in_flight=1), so the ledger can record now;
        # flush() below raises if anything was not acknowledged.
        self.ledger.add(doc)

    def flush(self, timeout: float = 60.0) -> None:
        self.producer.flush(timeout=timeout)
        if self.errors:
            raise RuntimeError(f"{len(self.errors)} events not acknowledged: {self.errors[0]!r}")

    def close(self) -> None:
        self.producer.close(timeout=10)

    def end_offsets(self) -> dict[int, int]:
        with self._lock:
            return {p: o + 1 for p, o in self.offsets.items()}


class BulkSender(threading.Thread):
    """Offers ready-encoded events as fast as the broker takes them (a flood).

    aiokafka record batches built per partition and sent whole: the per-record cost of a
    producer's ``send()`` would cap the offered rate near what the worker processes on two
    shared cores. Keys pick partitions with Kafka's default partitioner, as every other
    producer does, so state and routing are the same as for single sends.
    """

    def __init__(self, settings: Settings, ledger: Ledger, docs: list[dict]) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.records = [
            (str(d["user_id"]).encode(), json.dumps(d, separators=(",", ":")).encode())
            for d in docs
        ]
        self.acked: dict[int, int] = defaultdict(int)  # partition -> log end acknowledged
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        for doc in docs:  # in produce order; flush() raises if any batch was refused
            ledger.add(doc)

    def run(self) -> None:
        import asyncio

        try:
            asyncio.run(self._send_all())
        except BaseException as exc:  # noqa: BLE001 - reported by flush()
            self.error = exc

    async def _send_all(self) -> None:
        from aiokafka import AIOKafkaProducer

        topic = self.settings.topic_events
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.bootstrap_servers, acks="all", linger_ms=0
        )
        await producer.start()
        try:
            partitions = sorted(await producer.partitions_for(topic))
            by_partition: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
            for key, value in self.records:
                by_partition[producer._partitioner(key, partitions, partitions)].append(
                    (key, value)
                )
            pending = []
            cursors = dict.fromkeys(by_partition, 0)
            while cursors:  # round-robin over partitions, one batch each, a few in flight
                for partition in list(cursors):
                    records, start = by_partition[partition], cursors[partition]
                    batch = producer.create_batch()
                    end = start
                    while end < len(records) and batch.append(
                        key=records[end][0], value=records[end][1], timestamp=None
                    ):
                        end += 1
                    cursors[partition] = end
                    if end == len(records):
                        del cursors[partition]
                    sent = await producer.send_batch(batch, topic, partition=partition)
                    pending.append((sent, partition, end - start))
                    if len(pending) >= 8:
                        await self._acked(*pending.pop(0))
            for args in pending:
                await self._acked(*args)
        finally:
            await producer.stop()

    async def _acked(self, future: Any, partition: int, count: int) -> None:
        metadata = await future
        with self._lock:
            self.acked[partition] = max(self.acked[partition], metadata.offset + count)

    def end_offsets(self) -> dict[int, int]:
        with self._lock:
            return dict(self.acked)

    def flush(self, timeout: float = 120.0) -> None:
        self.join(timeout)
        if self.is_alive() or self.error is not None:
            raise RuntimeError(f"bulk send failed: {self.error!r}")


class RecommendationWatcher(threading.Thread):
    """Reads the recommendations topic in the background; remembers when each trigger arrived."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.arrivals: list[tuple[float, str, str | None]] = []  # (monotonic, user, trigger)
        self.tombstones: list[tuple[float, str]] = []
        self.error: BaseException | None = None
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        try:
            self._read()
        except BaseException as exc:  # noqa: BLE001 - surfaced by the test through .error
            self.error = exc

    def _read(self) -> None:
        from kafka import TopicPartition

        consumer = make_consumer(self.settings, [], consumer_timeout_ms=500)
        try:
            topic = self.settings.topic_recommendations
            while not self._halt.is_set():
                if topic in consumer.topics():  # topics() refreshes metadata
                    parts = consumer.partitions_for_topic(topic)
                    break
                time.sleep(0.2)
            else:
                return
            tps = [TopicPartition(topic, p) for p in parts]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            while not self._halt.is_set():
                for records in consumer.poll(timeout_ms=300).values():
                    now = time.monotonic()
                    with self._lock:
                        for record in records:
                            user = record.key.decode("utf-8", errors="replace")
                            if record.value is None:
                                self.tombstones.append((now, user))
                                continue
                            doc = json.loads(record.value)
                            self.arrivals.append((now, doc["user_id"], doc["trigger_event_id"]))
        finally:
            consumer.close()

    def first_after(self, moment: float, produced_at: dict[str, float]) -> float | None:
        """Arrival time of the first recommendation caused by an event produced after ``moment``."""
        with self._lock:
            for arrived, _, trigger in self.arrivals:
                if trigger is not None and produced_at.get(trigger, -1.0) > moment:
                    return arrived
        return None

    def first_per_user_after(self, moment: float, produced_at: dict[str, float]) -> dict:
        """Per user: arrival of their first recommendation caused by an event after ``moment``."""
        first: dict[str, float] = {}
        with self._lock:
            for arrived, user, trigger in self.arrivals:
                if trigger is not None and produced_at.get(trigger, -1.0) > moment:
                    first.setdefault(user, arrived)
        return first

    def snapshot(self) -> list[tuple[float, str, str | None]]:
        with self._lock:
            return list(self.arrivals)

    def stop(self) -> None:
        self._halt.set()
        if self.ident is not None:
            self.join(timeout=10)


class Worker(WorkerProcess):
    """``streamrec worker`` started through the installed console script, as an operator would."""

    def start(self) -> Worker:
        from stream_app.settings import settings_to_env

        script = Path(sys.executable).with_name("streamrec")
        command = (
            [str(script), "worker"]
            if script.exists()
            else [sys.executable, "-c", "from stream_app.cli import main; main()", "worker"]
        )
        env = {**os.environ, **settings_to_env(self.settings)}
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        return self


class Scenario:
    """One private broker, its topics, and any number of named worker processes."""

    def __init__(
        self,
        workdir: Path,
        partitions: int = 4,
        catalog: Iterable[dict] | None = None,
        **overrides: Any,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.broker = EmbeddedBroker(log_path=self.workdir / "broker.log").start()
        tag = f"{os.getpid()}-{int(time.time() * 1000) % 10**8}"
        values: dict[str, Any] = dict(
            kafka_bootstrap=self.broker.bootstrap,
            app_id=f"streamrec-rel-{tag}",
            topic_events=f"events-{tag}",
            topic_catalog=f"catalog-{tag}",
            topic_recommendations=f"recs-{tag}",
            topic_dead_letters=f"dlq-{tag}",
            partitions=partitions,
            text_encoder="hashing",
            api_token=TOKEN,
            batch_wait_s=0.05,
            data_dir=str(self.workdir / "data"),
        )
        values.update(overrides)
        self.settings = Settings.from_env(env={}, **values)
        self.catalog = list(catalog) if catalog is not None else genre_catalog()
        self.workers: dict[str, Worker] = {}
        self._worker_settings: dict[str, Settings] = {}
        self._starts = 0
        self.publish_catalog()

    # -- broker ------------------------------------------------------------------------
    def publish_catalog(self) -> None:
        ensure_topics(self.settings)
        producer = make_producer(self.settings)
        try:
            for item in self.catalog:
                producer.send(self.settings.topic_catalog, key=item["item_id"], value=item)
            producer.flush(timeout=30)
        finally:
            producer.close()

    def stop_broker(self) -> None:
        self.broker.stop()

    def start_broker(self) -> None:
        """Start the broker again on the same port (memory-only: it comes back empty)."""
        self.broker = EmbeddedBroker(self.broker.port, log_path=self.workdir / "broker.log")
        self.broker.start()

    # -- workers -----------------------------------------------------------------------
    def worker_settings(self, name: str, **overrides: Any) -> Settings:
        """Settings of worker ``name``: its own web port and data dir, kept across restarts."""
        if name not in self._worker_settings:
            port = free_port()
            self._worker_settings[name] = self.settings.with_overrides(
                web_port=port, data_dir=str(self.workdir / f"data-{name}"), **overrides
            )
        return self._worker_settings[name]

    def start(self, name: str = "w1", **overrides: Any) -> Worker:
        settings = self.worker_settings(name, **overrides)
        self._starts += 1
        worker = Worker(settings, self.workdir / f"{name}.{self._starts}.log").start()
        self.workers[name] = worker
        return worker

    def kill9(self, name: str = "w1") -> float:
        """SIGKILL the worker (no shutdown code runs); returns the monotonic kill time."""
        worker = self.workers[name]
        assert worker.proc is not None and worker.proc.poll() is None, f"{name} not running"
        worker.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        worker.proc.wait(timeout=30)
        worker._log.close()
        return killed

    def url(self, name: str, path: str) -> str:
        return f"http://127.0.0.1:{self.worker_settings(name).web_port}{path}"

    def ready(self, name: str) -> bool:
        status, _ = http_json(self.url(name, "/ready"), token=None, timeout=3)
        return status == 200

    def wait_ready(self, name: str = "w1", timeout: float = 180.0) -> float:
        """Seconds until ``/ready`` says partitions assigned, tables recovered, catalog read."""
        started = time.monotonic()
        deadline = started + timeout
        worker = self.workers[name]
        while time.monotonic() < deadline:
            assert worker.proc.poll() is None, f"{name} exited:\n{worker.log()[-4000:]}"
            try:
                if self.ready(name):
                    return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"{name} not ready after {timeout}s:\n{worker.log()[-4000:]}")

    def alive(self, name: str) -> bool:
        worker = self.workers.get(name)
        return worker is not None and worker.proc is not None and worker.proc.poll() is None

    def stop_all(self) -> None:
        for worker in self.workers.values():
            if worker.proc is not None and worker.proc.poll() is None:
                worker.stop()
        self.broker.stop()

    def logs(self) -> str:
        return "\n".join(
            f"===== {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.workdir.glob("*.log"))
            if path.name != "broker.log"
        )

    # -- audit -------------------------------------------------------------------------
    def state(self, user: str, via: str | None = None) -> tuple[int, Any]:
        name = via or next(n for n in self.workers if self.alive(n))
        quoted = urllib.parse.quote(user, safe="")
        return http_json(self.url(name, f"/users/{quoted}/state"))

    def audit(self, ledger: Ledger, via: str | None = None) -> dict[str, str]:
        """Users whose stored state differs from the ledger, with what differs (empty: all ok)."""
        wrong = {}
        for user, truth in ledger.users.items():
            try:
                status, state = self.state(user, via)
            except OSError as exc:
                wrong[user] = f"unreachable: {exc!r}"
                continue
            if truth.count == 0:
                if status != 404:
                    wrong[user] = f"expected no state (404), got {status} {state}"
                continue
            if status != 200:
                wrong[user] = f"HTTP {status}: {state}"
                continue
            problems = []
            if state["events_applied"] != truth.count:
                problems.append(f"events_applied {state['events_applied']} != {truth.count}")
            if state["last_event_time"] != truth.last_time:
                problems.append(f"last_event_time {state['last_event_time']} != {truth.last_time}")
            recent = state.get("recent_items")
            if recent is not None and recent != truth.items[-len(recent) :]:
                problems.append("recent_items differ from the produced order")
            if problems:
                wrong[user] = "; ".join(problems)
        return wrong

    def wait_consistent(
        self,
        ledger: Ledger,
        timeout: float = 180.0,
        via: str | None = None,
        on_tick: Callable[[], None] | None = None,
    ) -> dict[str, str]:
        """Poll until every user's state matches the ledger; returns the last differences.

        A user counted *more* often than produced can never recover, so that ends the wait.
        """
        deadline = time.monotonic() + timeout
        wrong: dict[str, str] = {"": "not checked"}
        while time.monotonic() < deadline:
            wrong = self.audit(ledger, via)
            if not wrong or any(over_counted(problem) for problem in wrong.values()):
                return wrong
            if on_tick:
                on_tick()
            time.sleep(0.5)
        return wrong


def over_counted(problem: str) -> bool:
    if not problem.startswith("events_applied"):
        return False
    got, expected = problem.split(";")[0].removeprefix("events_applied ").split(" != ")
    return int(got) > int(expected)


class ResourceSampler(threading.Thread):
    """Samples a process's RSS and CPU time every ``interval`` seconds."""

    def __init__(self, pid_of: Callable[[], int | None], interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid_of = pid_of
        self.interval = interval
        self.samples: list[tuple[float, int, float]] = []  # (monotonic, rss, cpu seconds)
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            pid = self.pid_of()
            if pid:
                self.samples.append((time.monotonic(), rss_bytes(pid), cpu_seconds(pid)))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        if self.ident is not None:
            self.join(timeout=5)

    def peak_rss(self, since: float = 0.0) -> int:
        return max((rss for t, rss, _ in self.samples if t >= since), default=0)

    def cpu_between(self, start: float, end: float) -> float:
        inside = [(t, cpu) for t, _, cpu in self.samples if start <= t <= end]
        if len(inside) < 2:
            return 0.0
        return inside[-1][1] - inside[0][1]


def read_topic(settings: Settings, topic: str, timeout: float = 60.0) -> list[Any]:
    """Every record now on ``topic`` (kafka-python ConsumerRecords), read to the high watermark.

    The high watermark comes from Fetch responses, not ListOffsets (see BROKER-NOTES).
    """
    from kafka import TopicPartition

    consumer = make_consumer(settings, [], consumer_timeout_ms=500)
    try:
        deadline = time.monotonic() + timeout
        while topic not in consumer.topics():  # topics() refreshes the metadata
            if time.monotonic() > deadline:
                return []
            time.sleep(0.2)
        parts = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=300).values():
                records.extend(batch)
            marks = [consumer.highwater(tp) for tp in tps]
            if all(m is not None for m in marks) and all(
                consumer.position(tp) >= mark for tp, mark in zip(tps, marks, strict=True)
            ):
                return records
        raise TimeoutError(f"could not read {topic} to its end in {timeout}s")
    finally:
        consumer.close()


def events_read(scenario: Scenario, name: str) -> int | None:
    """Events the worker has read so far (``streamrec_events_in_total`` on ``/metrics``)."""
    request = urllib.request.Request(scenario.url(name, "/metrics"))
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("streamrec_events_in_total"):
            return int(float(line.split()[-1]))
    return None


def collect_topic(settings: Settings, topic: str, count: int, timeout: float) -> list[Any]:
    """Read ``topic`` from the beginning until ``count`` records arrived or ``timeout``."""
    from kafka import TopicPartition

    consumer = make_consumer(settings, [], consumer_timeout_ms=500, max_poll_records=5000)
    try:
        deadline = time.monotonic() + timeout
        while topic not in consumer.topics():
            if time.monotonic() > deadline:
                return []
            time.sleep(0.2)
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        while len(records) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        for batch in consumer.poll(timeout_ms=1000).values():  # and any extra (duplicates)
            records.extend(batch)
        return records
    finally:
        consumer.close()
