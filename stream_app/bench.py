"""``streamrec bench``: the pipeline beside a no-op Faust worker, on a real broker.

For each workload (a replayed data set and/or a generated population) it

1. fills an events topic, then drains it with, in turn, a consume-only no-op Faust
   worker, a no-op that also sends one message per user per micro-batch, and the full
   streamrec worker (fresh consumer group and state each time); the sustained rate is
   the slope of committed offsets between 10% and 90% of the backlog;
2. offers events to a fresh pipeline worker at half its measured maximum and times each
   event from the moment it is produced until its recommendation arrives on the output
   topic (events that triggered a recommendation; one per user per micro-batch);
3. samples consumer lag (committed offsets against the producer's acknowledged end
   offsets, never ListOffsets: see BROKER-NOTES), CPU and RSS of the worker, and
   reads the table's changelog for the state bytes per user.

Component benchmarks (Transformer forward, BERT embedding, ranking) run in-process
afterwards, against batch size 1 as the baseline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stream_app.broker import EmbeddedBroker, free_port
from stream_app.settings import Settings, settings_to_env

SAMPLE_EVERY_S = 0.25


# --------------------------------------------------------------------------- workloads


@dataclass
class Workload:
    name: str
    events: list[dict[str, Any]]
    catalog: list[dict[str, Any]]


def generated_workload(
    users: int,
    items: int,
    events: int,
    skew: float = 1.1,
    seed: int = 7,
    end_ts: float | None = None,
) -> Workload:
    """A shop with Zipf-skewed user activity and item popularity, and per-user tastes.

    Each user prefers one of 50 categories; 70% of their actions fall in it.
    Timestamps end at ``end_ts`` (default: now), one event every 10 ms of event time.
    """
    rng = np.random.default_rng(seed)
    n_categories = 50
    item_category = rng.integers(0, n_categories, size=items)
    words = [
        "red", "quiet", "rapid", "golden", "hidden", "urban", "wild", "tiny", "grand", "lost",
        "silver", "brave", "secret", "modern", "ancient", "electric", "gentle", "bold",
    ]  # fmt: skip
    nouns = [
        "garden", "engine", "river", "castle", "lamp", "jacket", "novel", "guitar", "kettle",
        "camera", "island", "bicycle", "mirror", "tower", "planet", "forest", "harbor",
    ]  # fmt: skip
    catalog = [
        {
            "item_id": f"i{n}",
            "title": f"{words[n % len(words)]} {nouns[(n // len(words)) % len(nouns)]} {n}",
            "description": f"A {words[(n * 7) % len(words)]} thing from category {c}.",
            "categories": [f"cat-{c}"],
        }
        for n, c in enumerate(item_category)
    ]

    def zipf_weights(n: int) -> np.ndarray:
        weights = 1.0 / np.arange(1, n + 1) ** skew
        return weights / weights.sum()

    # Popularity ranks are shuffled so that id order carries no signal.
    user_of = rng.permutation(users)[rng.choice(users, size=events, p=zipf_weights(users))]
    item_rank = rng.permutation(items)
    by_category = [np.flatnonzero(item_category[item_rank] == c) for c in range(n_categories)]
    taste = rng.integers(0, n_categories, size=users)
    global_pick = item_rank[rng.choice(items, size=events, p=zipf_weights(items))]
    in_taste = rng.random(events) < 0.7
    kinds = ["view", "view", "view", "click", "click", "add_to_cart", "purchase", "like", "skip"]
    kind_of = rng.integers(0, len(kinds), size=events)
    start = (time.time() if end_ts is None else end_ts) - events * 0.01
    out = []
    for n in range(events):
        user = int(user_of[n])
        if in_taste[n] and len(by_category[taste[user]]):
            pool = by_category[taste[user]]
            # Popular items of the category come first: a skewed pick within it.
            item = int(item_rank[pool[min(int(rng.zipf(1.5)) - 1, len(pool) - 1)]])
        else:
            item = int(global_pick[n])
        out.append(
            {
                "event_id": f"g{seed}-{n}",
                "user_id": f"u{user}",
                "item_id": f"i{item}",
                "event_type": kinds[kind_of[n]],
                "timestamp": round(start + n * 0.01, 3),
            }
        )
    return Workload(f"generated ({users:,} users, {items:,} items)", out, catalog)


def replay_workload(path: Path) -> Workload:
    from stream_app.replay import load_dataset

    events, catalog = load_dataset(path)
    return Workload(f"replay {path.stem}", events, catalog)


# --------------------------------------------------------------------------- measurement


def rss_growth_per_100k_events(samples: Sequence[Sample], total: int) -> float:
    """Worker RSS growth (MB) per 100,000 events over the second half of a drain: the
    least-squares slope of RSS against events consumed, up to the first sample that saw
    them all. The first half is the warm-up (heap, caches, the first micro-batches); a
    worker whose memory is bounded shows ~0 here (a passing peak moves a slope little)."""
    half = [s for s in samples if s.consumed >= total / 2]
    done = next((n for n, s in enumerate(half) if s.consumed >= total), len(half) - 1)
    half = half[: done + 1]
    consumed = np.array([s.consumed for s in half], dtype=np.float64)
    if len(half) < 2 or np.ptp(consumed) == 0:
        return float("nan")
    slope = np.polyfit(consumed, np.array([s.rss_mb for s in half]), 1)[0]
    return float(slope * 100_000)


def sustained_rate(samples: Sequence[tuple[float, int]], total: int) -> float:
    """Events/s: slope of (time, consumed) between 10% and 90% of ``total``.

    Falls back to first progress → done when the middle has too few samples, and to the
    last sample before any progress → done when the whole drain fell between two samples
    (a fast worker on a small backlog; then the rate is a lower bound).
    """
    middle = [(t, n) for t, n in samples if 0.1 * total <= n <= 0.9 * total]
    if len({n for _, n in middle}) >= 3:
        times, counts = zip(*middle, strict=True)
        return float(np.polyfit(times, counts, 1)[0])
    moving = [(t, n) for t, n in samples if n > 0]
    if len({n for _, n in moving}) < 2:
        moving = [s for s in samples if s[1] == 0][-1:] + moving[:1]
    if len(moving) < 2:
        return float("nan")
    first = moving[0]
    done = next(s for s in moving if s[1] == moving[-1][1])  # not the idle samples after it
    if done[0] <= first[0]:
        return float("nan")
    return (done[1] - first[1]) / (done[0] - first[0])


def percentiles_ms(latencies_s: Sequence[float]) -> dict[str, float]:
    if not latencies_s:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    values = np.percentile(np.asarray(latencies_s) * 1000.0, [50, 95, 99])
    return {"p50": float(values[0]), "p95": float(values[1]), "p99": float(values[2])}


class EndOffsets:
    """Offsets the broker acknowledged to our producer: the true end of each partition."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_partition: dict[int, int] = {}

    def acked(self, metadata: Any) -> None:
        with self._lock:
            current = self.by_partition.get(metadata.partition, 0)
            self.by_partition[metadata.partition] = max(current, metadata.offset + 1)

    def snapshot(self) -> dict[int, int]:
        with self._lock:
            return dict(self.by_partition)


@dataclass
class Sample:
    t: float
    consumed: int
    lag: dict[int, int]
    rss_mb: float
    cpu_percent: float


class Monitor(threading.Thread):
    """Samples a consumer group's committed offsets and a worker's CPU and memory."""

    def __init__(self, settings: Settings, topic: str, ends: EndOffsets, pid: int) -> None:
        super().__init__(daemon=True)
        import psutil
        from kafka import KafkaAdminClient

        from stream_app.kafka_io import client_kwargs

        self.admin = KafkaAdminClient(client_id="streamrec-bench", **client_kwargs(settings))
        self.group = settings.app_id  # Faust's consumer group is the app id
        self.topic, self.ends = topic, ends
        self.process = psutil.Process(pid)
        self.process.cpu_percent()  # starts the CPU clock
        self.samples: list[Sample] = []
        self.started = time.monotonic()
        self._halt = threading.Event()

    def committed(self) -> dict[int, int]:
        offsets = self.admin.list_group_offsets(self.group).get(self.group, {})
        return {
            tp.partition: meta.offset
            for tp, meta in offsets.items()
            if tp.topic == self.topic and meta.offset >= 0
        }

    def run(self) -> None:
        import psutil

        while not self._halt.wait(SAMPLE_EVERY_S):
            try:
                committed = self.committed()
                rss = self.process.memory_info().rss / 2**20
                cpu = self.process.cpu_percent()
            except psutil.Error:
                return  # the worker is gone
            except Exception:  # noqa: BLE001 - a missed sample is not fatal
                continue
            ends = self.ends.snapshot()
            lag = {p: max(0, end - committed.get(p, 0)) for p, end in ends.items()}
            self.samples.append(
                Sample(time.monotonic() - self.started, sum(committed.values()), lag, rss, cpu)
            )

    def wait_consumed(self, total: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.samples and self.samples[-1].consumed >= total:
                return True
            time.sleep(SAMPLE_EVERY_S)
        return False

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)
        self.admin.close()


# --------------------------------------------------------------------------- processes


class WorkerProcess:
    """A worker child process (pipeline or no-op) with its own settings and log."""

    def __init__(self, settings: Settings, argv: list[str], log_path: Path) -> None:
        self.settings = settings
        env = {**os.environ, **settings_to_env(settings)}
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", *argv], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout_s: float = 300.0) -> None:
        url = f"http://127.0.0.1:{self.settings.web_port}/ready"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited ({self.proc.returncode}); see {self.log_path}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"worker not ready after {timeout_s:.0f}s; see {self.log_path}")

    def dashboard(self) -> dict[str, Any] | None:
        """The worker's own view (``/dashboard/data``): its batch and latency quantiles."""
        url = f"http://127.0.0.1:{self.settings.web_port}/dashboard/data"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def produce(
    settings: Settings,
    topic: str,
    records: Sequence[dict[str, Any]],
    key_field: str,
    ends: EndOffsets | None = None,
    rate: float | None = None,
    sent_at: dict[str, float] | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Send ``records`` (paced to ``rate`` if given), noting when each event was sent."""
    from stream_app.kafka_io import make_producer

    producer = make_producer(settings, max_in_flight_requests_per_connection=5)
    payloads = [
        (str(r[key_field]).encode(), json.dumps(r, separators=(",", ":")).encode()) for r in records
    ]
    started = time.monotonic()
    sent = 0
    try:
        for (key, value), record in zip(payloads, records, strict=True):
            if stop is not None and stop.is_set():
                break
            if rate:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0.002:
                    time.sleep(ahead)
            if sent_at is not None:
                sent_at[record["event_id"]] = time.monotonic()
            future = producer.send(topic, key=key, value=value)
            if ends is not None:
                future.add_callback(ends.acked)
            sent += 1
        producer.flush()
    finally:
        producer.close()
    return sent


def read_topic(settings: Settings, topic: str, idle_s: float = 2.0) -> list[Any]:
    """Every message on ``topic`` (read until nothing new arrives for ``idle_s``)."""
    from kafka import TopicPartition

    from stream_app.kafka_io import make_consumer

    consumer = make_consumer(settings, [], consumer_timeout_ms=500)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in partitions]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        messages: list[Any] = []
        last_new = time.monotonic()
        while time.monotonic() - last_new < idle_s:
            batch = consumer.poll(timeout_ms=300)
            for records in batch.values():
                messages.extend(records)
                last_new = time.monotonic()
    finally:
        consumer.close()
    return messages


def state_bytes_per_user(settings: Settings, app_id: str) -> tuple[float, int]:
    """Mean stored bytes (key + latest value) per user in the profile table's changelog."""
    latest: dict[bytes, int] = {}
    for message in read_topic(settings, f"{app_id}-user-profiles-changelog"):
        if message.value is None:
            latest.pop(message.key, None)
        else:
            latest[message.key] = len(message.key) + len(message.value)
    if not latest:
        return float("nan"), 0
    return sum(latest.values()) / len(latest), len(latest)


class RecommendationClock(threading.Thread):
    """Reads the output topic as it is written and times each trigger event."""

    def __init__(self, settings: Settings, topic: str, sent_at: dict[str, float]) -> None:
        super().__init__(daemon=True)
        from stream_app.kafka_io import make_consumer

        self.consumer = make_consumer(settings, [], consumer_timeout_ms=200, fetch_max_wait_ms=10)
        self.topic, self.sent_at = topic, sent_at
        self.latencies: list[tuple[float, float]] = []  # (arrival since start, seconds)
        self.started = time.monotonic()
        self.received = 0
        self._halt = threading.Event()

    def run(self) -> None:
        from kafka import TopicPartition

        partitions = None
        while not partitions and not self._halt.is_set():
            partitions = self.consumer.partitions_for_topic(self.topic)
            time.sleep(0.2)
        tps = [TopicPartition(self.topic, p) for p in partitions or ()]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        while not self._halt.is_set():
            for records in self.consumer.poll(timeout_ms=100).values():
                arrived = time.monotonic()
                for record in records:
                    self.received += 1
                    try:
                        doc = json.loads(record.value)
                        # A no-op worker echoes the event itself.
                        trigger = doc.get("trigger_event_id") or doc["event_id"]
                    except (ValueError, KeyError, TypeError, AttributeError):
                        continue
                    sent = self.sent_at.get(trigger)
                    if sent is not None:
                        self.latencies.append((arrived - self.started, arrived - sent))
        self.consumer.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


# --------------------------------------------------------------------------- runs


@dataclass
class RunResult:
    name: str
    events: int
    events_per_s: float
    outputs: int = 0
    outputs_per_s: float = 0.0
    peak_rss_mb: float = 0.0
    rss_growth_mb_per_100k_events: float = float("nan")
    mean_cpu_percent: float = 0.0
    completed: bool = True
    lag: list[tuple[float, int]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("lag")
        return data


LATENCY_WARMUP_SHARE = 0.1  # of the offered-load run, not timed


@dataclass
class BenchConfig:
    data: Path | None = None
    generated: bool = True
    users: int = 100_000
    items: int = 20_000
    events: int = 150_000
    skew: float = 1.1
    partitions: int = 4
    latency_seconds: float = 60.0
    text_encoder: str = "bert"
    device: str = "cpu"
    sequence_checkpoint: str = ""
    components: bool = True
    quick: bool = False
    seed: int = 7
    drain_timeout_s: float = 900.0


class Bench:
    """One embedded broker; workloads and runs against it; results collected here."""

    def __init__(
        self, config: BenchConfig, base: Settings, workdir: Path, say: Callable[[str], None]
    ) -> None:
        self.config = config
        self.base = base
        self.workdir = workdir
        self.say = say
        self.broker: EmbeddedBroker | None = None

    def settings(self, tag: str, **overrides: Any) -> Settings:
        assert self.broker is not None
        values: dict[str, Any] = dict(
            kafka_bootstrap=self.broker.bootstrap,
            app_id=f"bench-{tag}",
            data_dir=str(self.workdir / f"data-{tag}"),
            web_port=free_port(),
            partitions=self.config.partitions,
            commit_interval_s=0.5,  # finer progress samples; same for every worker
            log_level="warning",
            text_encoder=self.config.text_encoder,
            device=self.config.device,
        )
        values.update(overrides)
        return self.base.with_overrides(**values)

    # -- one workload ------------------------------------------------------------
    def run_workload(self, key: str, workload: Workload) -> dict[str, Any]:
        from stream_app.kafka_io import ensure_topics

        topics = dict(
            topic_events=f"{key}-events",
            topic_catalog=f"{key}-catalog",
            topic_dead_letters=f"{key}-dlq",
        )
        base = self.settings(key, **topics, topic_recommendations=f"{key}-unused")
        ensure_topics(base)
        size = f"{len(workload.events):,} events, {len(workload.catalog):,} items"
        self.say(f"[{workload.name}] {size}")
        pipeline_extra = self.prepare_models(key, workload, base)
        produce(base, base.topic_catalog, workload.catalog, "item_id")
        ends = EndOffsets()
        started = time.monotonic()
        produce(base, base.topic_events, workload.events, "user_id", ends=ends)
        self.say(f"  events topic filled in {time.monotonic() - started:.1f}s")
        total = sum(ends.snapshot().values())

        runs: dict[str, RunResult] = {}
        state: tuple[float, int] = (float("nan"), 0)
        for name, argv, extra in (
            ("noop_consume", ["stream_app.bench_noop", "--mode", "consume"], {}),
            ("noop_output", ["stream_app.bench_noop", "--mode", "output"], {}),
            ("pipeline", ["stream_app.cli", "worker"], pipeline_extra),
        ):
            tag = f"{key}-{name}"
            settings = self.settings(tag, **topics, topic_recommendations=f"{tag}-out", **extra)
            ensure_topics(settings)
            runs[name] = self.drain(name, settings, argv, ends, total)
            if name == "pipeline":
                state = state_bytes_per_user(settings, settings.app_id)
            self.say(
                f"  {name:<13} {runs[name].events_per_s:8,.0f} events/s  "
                f"peak RSS {runs[name].peak_rss_mb:6.0f} MB"
            )

        pipeline_rate = runs["pipeline"].events_per_s
        rate = 0.5 * pipeline_rate if np.isfinite(pipeline_rate) else 100.0
        latency = self.offered_load(key, workload, topics, pipeline_extra, rate)
        noop = runs["noop_consume"].events_per_s
        return {
            "workload": workload.name,
            "events": total,
            "pipeline_events_per_s": pipeline_rate,
            "noop_events_per_s": noop,
            "noop_output_events_per_s": runs["noop_output"].events_per_s,
            "ratio_to_noop": pipeline_rate / noop if noop else float("nan"),
            "recommendations_per_s": runs["pipeline"].outputs_per_s,
            "latency_ms": latency["latency_ms"],
            "latency_ms_with_warmup": latency["latency_ms_with_warmup"],
            "latency_worker_view": latency["worker_view"],
            "offered_load_events_per_s": rate,
            "latency_samples": latency["samples"],
            "state_bytes_per_user": state[0],
            "users_in_state": state[1],
            "peak_rss_mb": max(runs["pipeline"].peak_rss_mb, latency["peak_rss_mb"]),
            "rss_growth_after_warmup_mb": latency["rss_growth_mb"],
            "rss_growth_mb_per_100k_events": runs["pipeline"].rss_growth_mb_per_100k_events,
            "worker_cpu_percent": runs["pipeline"].mean_cpu_percent,
            "runs": {name: run.summary() for name, run in runs.items()},
            "series": {
                "lag": {name: run.lag for name, run in runs.items()}
                | {"latency_run": latency["lag"]},
                "latency": latency["series"],
            },
        }

    def prepare_models(self, key: str, workload: Workload, settings: Settings) -> dict[str, Any]:
        """Embedding cache and sequence checkpoint for the pipeline workers of a workload.

        Without a given checkpoint the bench writes a seeded, untrained one of the default
        architecture over the workload's items: it costs what a trained one costs.
        """
        from schemas import CatalogItem
        from stream_app.engine import Engine, save_embeddings, text_key

        extra: dict[str, Any] = {}
        if workload.catalog and self.config.text_encoder != "none":
            engine = Engine(settings.with_overrides(embedding_cache="", sequence_checkpoint=""))
            started = time.monotonic()
            texts, vectors = engine.featurize([CatalogItem(**c) for c in workload.catalog])
            seconds = time.monotonic() - started
            cache = self.workdir / f"{key}-embeddings.npz"
            save_embeddings(cache, [text_key(t, engine.featurizer.name) for t in texts], vectors)
            extra["embedding_cache"] = str(cache)
            self.say(
                f"  catalog embedded with {engine.featurizer.name}: {len(texts):,} items in "
                f"{seconds:.1f}s ({len(texts) / seconds:,.0f} items/s)"
            )
        checkpoint = self.config.sequence_checkpoint
        if not checkpoint:
            checkpoint = str(self.workdir / f"{key}-sequence")
            write_untrained_checkpoint(
                Path(checkpoint), [str(e) for e in _item_ids(workload)], self.config.seed
            )
        extra["sequence_checkpoint"] = checkpoint
        return extra

    def drain(
        self, name: str, settings: Settings, argv: list[str], ends: EndOffsets, total: int
    ) -> RunResult:
        worker = WorkerProcess(settings, argv, self.workdir / f"{settings.app_id}.log")
        monitor = None
        try:
            monitor = Monitor(settings, settings.topic_events, ends, worker.proc.pid)
            monitor.start()
            completed = monitor.wait_consumed(total, self.config.drain_timeout_s)
        finally:
            worker.stop()
            if monitor is not None:
                monitor.stop()
        samples = monitor.samples
        rate = sustained_rate([(s.t, s.consumed) for s in samples], total)
        outputs = len(read_topic(settings, settings.topic_recommendations, idle_s=1.0))
        moving = [s for s in samples if 0 < s.consumed < total]
        return RunResult(
            name=name,
            events=total,
            events_per_s=rate,
            outputs=outputs,
            outputs_per_s=outputs * rate / total if np.isfinite(rate) else float("nan"),
            peak_rss_mb=max((s.rss_mb for s in samples), default=0.0),
            rss_growth_mb_per_100k_events=rss_growth_per_100k_events(samples, total),
            mean_cpu_percent=float(np.mean([s.cpu_percent for s in moving])) if moving else 0.0,
            completed=completed,
            lag=[(round(s.t, 2), sum(s.lag.values())) for s in samples],
        )

    def offered_load(
        self,
        key: str,
        workload: Workload,
        topics: dict[str, str],
        extra: dict[str, Any],
        rate: float,
    ) -> dict[str, Any]:
        """A fresh pipeline worker fed at ``rate`` events/s; produced → recommended times."""
        from stream_app.kafka_io import ensure_topics

        tag = f"{key}-latency"
        settings = self.settings(
            tag,
            **{**topics, "topic_events": f"{tag}-events"},
            topic_recommendations=f"{tag}-recs",
            **extra,
        )
        ensure_topics(settings)
        count = min(len(workload.events), int(rate * self.config.latency_seconds))
        # Fresh event ids: the same events again would be a different stream.
        events = [{**e, "event_id": f"lat-{e['event_id']}"} for e in workload.events[:count]]
        self.say(f"  latency run: {count:,} events offered at {rate:,.0f}/s")
        worker = WorkerProcess(settings, ["stream_app.cli", "worker"], self.workdir / f"{tag}.log")
        ends = EndOffsets()
        sent_at: dict[str, float] = {}
        clock = RecommendationClock(settings, settings.topic_recommendations, sent_at)
        monitor = None
        worker_view: dict[str, Any] = {}
        try:
            worker.wait_ready()
            monitor = Monitor(settings, settings.topic_events, ends, worker.proc.pid)
            monitor.start()
            clock.start()
            produce(settings, settings.topic_events, events, "user_id", ends, rate, sent_at)
            monitor.wait_consumed(len(events), self.config.drain_timeout_s)
            time.sleep(1.0)  # the last recommendations are on their way
            worker_view = worker.dashboard() or {}
        finally:
            worker.stop()
            clock.stop()
            if monitor is not None:
                monitor.stop()
        samples = monitor.samples if monitor else []
        # Warm-up: the first third of the run (first batches, allocator, caches).
        warm = [s.rss_mb for s in samples if s.t >= samples[-1].t / 3] if samples else []
        # Warm-up: events sent in the first tenth of the run (a new worker's first sends
        # wait for topic metadata: seen as seconds of latency in its first two seconds).
        first_sent = min(sent_at.values(), default=0.0)
        warm_from = first_sent + LATENCY_WARMUP_SHARE * self.config.latency_seconds
        timed = [lat for at, lat in clock.latencies if clock.started + at - lat >= warm_from]
        series = latency_series(clock.latencies, clock_offset=0.0)
        result = {
            "latency_ms": percentiles_ms(timed),
            "latency_ms_with_warmup": percentiles_ms([lat for _, lat in clock.latencies]),
            "samples": len(timed),
            "lag": [(round(s.t, 2), sum(s.lag.values())) for s in samples],
            "series": series,
            "peak_rss_mb": max((s.rss_mb for s in samples), default=0.0),
            "rss_growth_mb": (max(warm) - warm[0]) if warm else float("nan"),
            # Where the time goes, as the worker saw its last 30 s: batch sizes, time per
            # batch, and event → recommendation sent (the clock above adds the output read).
            "worker_view": {
                "latency_s": worker_view.get("latency_s"),
                "batch_size": worker_view.get("batch_size"),
            },
        }
        lat, cold = result["latency_ms"], result["latency_ms_with_warmup"]
        self.say(
            f"  latency p50 {lat['p50']:.0f} ms  p95 {lat['p95']:.0f} ms  p99 {lat['p99']:.0f} ms"
            f"  ({len(timed):,} recommendations timed after warm-up;"
            f" p99 {cold['p99']:.0f} ms with it)"
        )
        return result

    # -- everything ----------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg = self.config
        results: dict[str, Any] = {"workloads": {}}
        self.broker = EmbeddedBroker(log_path=self.workdir / "broker.log").start()
        try:
            if cfg.data is not None:
                replayed = replay_workload(cfg.data)
                results["workloads"]["replay"] = self.run_workload("replay", replayed)
            if cfg.generated:
                workload = generated_workload(cfg.users, cfg.items, cfg.events, cfg.skew, cfg.seed)
                results["workloads"]["generated"] = self.run_workload("generated", workload)
        finally:
            self.broker.stop()
        if cfg.components:
            from stream_app.bench_components import run_components

            results["components"] = run_components(cfg.device, self.say, quick=cfg.quick)
        return results


def _item_ids(workload: Workload) -> list[str]:
    ids = {str(c["item_id"]) for c in workload.catalog}
    ids.update(str(e["item_id"]) for e in workload.events)
    return sorted(ids)


def write_untrained_checkpoint(directory: Path, item_ids: Sequence[str], seed: int) -> None:
    import torch

    from models.sequence_model import SequenceModel, SequenceModelConfig
    from models.sequence_training import save_checkpoint

    torch.manual_seed(seed)
    model = SequenceModel(SequenceModelConfig(n_items=len(item_ids)))
    save_checkpoint(directory, model, item_ids, version="bench-untrained")


def latency_series(
    latencies: Sequence[tuple[float, float]], clock_offset: float = 0.0
) -> list[tuple[float, float, float]]:
    """(second, p50 ms, p99 ms) per second of arrival time."""
    by_second: dict[int, list[float]] = {}
    for arrived, latency in latencies:
        by_second.setdefault(int(arrived + clock_offset), []).append(latency * 1000.0)
    return [
        (float(s), float(np.percentile(v, 50)), float(np.percentile(v, 99)))
        for s, v in sorted(by_second.items())
    ]
