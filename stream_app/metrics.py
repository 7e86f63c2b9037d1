"""Worker metrics: Prometheus exposition for ``/metrics`` and the ``/dashboard`` snapshot.

Counters and gauges are read at scrape time from what the pipeline already keeps
(:class:`~stream_app.pipeline.PipelineStats`, the engine, Faust's consumer), so the hot
path pays nothing for them. Latencies and batch sizes go into :class:`WindowedHistogram`,
fed once per micro-batch with all of the batch's values at once.

Consumer lag is the Fetch high watermark minus the group's committed offset, never
ListOffsets "latest" (wrong on Tansu after batched produce; see BROKER-NOTES). Names follow
kafka_exporter (``kafka_consumergroup_lag`` …) so existing Kafka dashboards and alerts
work unchanged. Each worker reports the partitions assigned to it; sum across workers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.registry import Collector

from schemas.validation import ERROR_KINDS

if TYPE_CHECKING:
    import faust

    from stream_app.pipeline import Pipeline
    from stream_app.settings import Settings

log = logging.getLogger(__name__)

# Upper bounds, 1-2-5 steps: wide enough for a cold start and a catch-up after downtime.
LATENCY_BUCKETS_S = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 60, 120, 300)
BATCH_SECONDS_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30)
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
QUANTILES = (0.5, 0.95, 0.99)
# Exported at 0 from the start, so rate() and increase() see a reason's first dead letter.
DEAD_LETTER_REASONS = (*ERROR_KINDS, "item_limit", "processing_error")


class WindowedHistogram:
    """A histogram observed in bulk, exported cumulatively and summarised over a window.

    ``observe_many`` bins a whole micro-batch with one ``searchsorted``, so per-event
    values cost a vector operation per batch. Besides the cumulative counts Prometheus
    scrapes, it keeps per-second counts for the last ``window_s`` seconds, from which
    :meth:`quantiles` estimates recent percentiles the way ``histogram_quantile`` does.
    """

    def __init__(
        self,
        upper_bounds: Sequence[float],
        window_s: int = 120,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.upper_bounds = np.asarray(sorted(upper_bounds), dtype=np.float64)
        self.counts = np.zeros(len(self.upper_bounds) + 1, dtype=np.int64)  # last: +Inf
        self.sum = 0.0
        self.window_s = window_s
        self._clock = clock
        self._recent = np.zeros((window_s, len(self.counts)), dtype=np.int64)
        self._recent_second = np.full(window_s, -1, dtype=np.int64)

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    def observe(self, value: float) -> None:
        self.observe_many((value,))

    def observe_many(self, values: Iterable[float] | np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64).ravel()
        values = values[np.isfinite(values)]
        if values.size == 0:
            return
        # side="left": a value equal to a bound belongs to that bound's bucket (le).
        buckets = np.searchsorted(self.upper_bounds, values, side="left")
        per_bucket = np.bincount(buckets, minlength=len(self.counts))
        self.counts += per_bucket
        self.sum += float(values.sum())
        second = int(self._clock())
        slot = second % self.window_s
        if self._recent_second[slot] != second:
            self._recent[slot] = 0
            self._recent_second[slot] = second
        self._recent[slot] += per_bucket

    def observe_ages(self, timestamps: Sequence[float], now: float | None = None) -> None:
        """Observe ``now - t`` for epoch timestamps (clock skew clamped to 0)."""
        if not timestamps:
            return
        now = time.time() if now is None else now
        self.observe_many(np.maximum(now - np.asarray(timestamps, dtype=np.float64), 0.0))

    def cumulative_buckets(self) -> list[tuple[str, float]]:
        """``(le, cumulative count)`` pairs for the exposition, ``+Inf`` last."""
        bounds = [_format_bound(b) for b in self.upper_bounds] + ["+Inf"]
        return list(zip(bounds, np.cumsum(self.counts).astype(float).tolist(), strict=True))

    def recent_counts(self, window_s: float) -> np.ndarray:
        """Per-bucket counts observed in the last ``window_s`` seconds (at most the window)."""
        now = int(self._clock())
        fresh = (self._recent_second > now - min(window_s, self.window_s)) & (
            self._recent_second >= 0
        )
        return self._recent[fresh].sum(axis=0)

    def quantiles(
        self, window_s: float, quantiles: Sequence[float] = QUANTILES
    ) -> dict[str, float | None]:
        """Estimated quantiles of the last ``window_s`` seconds, as ``{"p50": …}``; plus count."""
        counts = self.recent_counts(window_s)
        total = int(counts.sum())
        out: dict[str, float | None] = {f"p{round(q * 100):d}": None for q in quantiles}
        out["count"] = total
        if total == 0:
            return out
        cumulative = np.cumsum(counts)
        for q in quantiles:
            out[f"p{round(q * 100):d}"] = _bucket_quantile(q, self.upper_bounds, cumulative)
        return out


def _bucket_quantile(q: float, upper_bounds: np.ndarray, cumulative: np.ndarray) -> float:
    """Linear interpolation inside the bucket holding rank ``q * total``, as Prometheus does."""
    rank = q * cumulative[-1]
    index = int(np.searchsorted(cumulative, rank, side="left"))
    if index >= len(upper_bounds):  # in the +Inf bucket: the largest finite bound
        return float(upper_bounds[-1])
    lower = float(upper_bounds[index - 1]) if index > 0 else 0.0
    below = float(cumulative[index - 1]) if index > 0 else 0.0
    in_bucket = float(cumulative[index]) - below
    if in_bucket <= 0:
        return float(upper_bounds[index])
    return lower + (float(upper_bounds[index]) - lower) * (rank - below) / in_bucket


def _format_bound(bound: float) -> str:
    return repr(float(bound))


def latency_histogram() -> WindowedHistogram:
    return WindowedHistogram(LATENCY_BUCKETS_S)


def batch_seconds_histogram() -> WindowedHistogram:
    return WindowedHistogram(BATCH_SECONDS_BUCKETS)


def batch_size_histogram() -> WindowedHistogram:
    return WindowedHistogram(BATCH_SIZE_BUCKETS)


# -- consumer lag -----------------------------------------------------------------------


@dataclass(frozen=True)
class PartitionLag:
    """One partition's position for a consumer group, as ``kafka-consumer-groups`` shows it.

    ``committed`` is the group's committed offset (the next offset it will read), ``None``
    when the group never committed there; the lag then counts from ``log_start`` (the group
    starts at the earliest offset). ``end`` is the Fetch high watermark.
    """

    group: str
    topic: str
    partition: int
    committed: int | None
    end: int | None
    log_start: int | None = None

    @property
    def lag(self) -> int | None:
        if self.end is None:
            return None
        start = self.committed if self.committed is not None else self.log_start
        if start is None:
            return None
        return max(self.end - start, 0)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "lag": self.lag}


def total_lag(partitions: Iterable[PartitionLag]) -> int | None:
    """Sum of the known lags; ``None`` when no partition's lag is known."""
    known = [p.lag for p in partitions if p.lag is not None]
    return sum(known) if known else None


class WorkerLag:
    """Lag of the partitions assigned to this worker, from its Faust consumer's own state.

    The high watermark comes with every Fetch response (``consumer.highwater``); the
    committed offsets are the ones this worker read at assignment and committed since.
    Neither needs a request to the broker. While a partition is paused (rebalance, full
    buffer) its high watermark is as old as its last fetch.
    """

    def __init__(self, app: faust.App, topics: Iterable[str]) -> None:
        self.app = app
        self.topics = frozenset(topics)
        self._log_start: dict[Any, int] = {}

    @property
    def group(self) -> str:
        return self.app.conf.id  # Faust's consumer group id is the app id

    def assigned(self) -> list[Any]:
        try:
            assignment = self.app.consumer.assignment()
        except Exception:  # noqa: BLE001 - consumer not started yet
            return []
        return sorted(tp for tp in assignment if tp.topic in self.topics)

    def _committed(self, tp: Any) -> int | None:
        # Faust's record of the group's committed offsets: read from the broker at
        # assignment, updated on each commit. ``.get``: it is a defaultdict.
        return self.app.consumer._committed_offset.get(tp)

    def _highwater(self, tp: Any) -> int | None:
        try:
            return self.app.consumer.highwater(tp)
        except Exception:  # noqa: BLE001 - not assigned in aiokafka (mid-rebalance)
            return None

    async def refresh_log_starts(self, timeout_s: float = 3.0) -> None:
        """Learn the log start of assigned partitions the group never committed on.

        ListOffsets "earliest" is reliable (only "latest" is not); asked once per partition.
        """
        missing = [
            tp
            for tp in self.assigned()
            if self._committed(tp) is None and tp not in self._log_start
        ]
        if not missing:
            return
        try:
            starts = await asyncio.wait_for(self.app.consumer.earliest_offsets(*missing), timeout_s)
        except Exception as exc:  # noqa: BLE001 - lag stays unknown until the next scrape
            log.debug("log start offsets unavailable: %r", exc)
            return
        self._log_start.update({tp: offset for tp, offset in starts.items() if offset is not None})

    def snapshot(self) -> list[PartitionLag]:
        return [
            PartitionLag(
                group=self.group,
                topic=tp.topic,
                partition=tp.partition,
                committed=self._committed(tp),
                end=self._highwater(tp),
                log_start=self._log_start.get(tp),
            )
            for tp in self.assigned()
        ]


# -- tables, models ----------------------------------------------------------------------


def table_key_count(table: Any) -> int:
    """Keys this worker holds for its active partitions of ``table``.

    RocksDB: the store's own estimate (exact counting would scan every key at each scrape).
    """
    store = table.data
    if hasattr(store, "_dbs_for_actives"):
        estimates = [getattr(db, "property_int_value", None) for db in store._dbs_for_actives()]
        if all(estimates):
            return sum(int(get("rocksdb.estimate-num-keys") or 0) for get in estimates)
    return len(table)


def device_kind(device: str) -> str:
    return "gpu" if device.startswith("cuda") else "cpu"


def model_info(pipeline: Pipeline, settings: Settings) -> dict[str, Any]:
    """What is serving now: ranking model, sequence checkpoint, text encoder, device, refreshes."""
    engine, stats = pipeline.engine, pipeline.stats
    recommender = engine.recommender
    sequence = recommender.sequence
    return {
        "model_name": recommender.version.split("+")[0],
        "model_version": recommender.version,
        "signals": list(recommender.config.signals),
        "sequence": {
            "version": sequence.version if sequence is not None else None,
            "checkpoint": settings.sequence_checkpoint or None,
            "finetune_interval_s": settings.sequence_finetune_interval_s,
        },
        "text_encoder": {
            "setting": settings.text_encoder,
            "name": engine.featurizer.name,
            "dim": engine.featurizer.dim,
        },
        "device": engine.device,
        "device_kind": device_kind(engine.device),
        "catalog_items": len(engine.items),
        "uncataloged_items": engine.items.id_only,
        "transitions": recommender.transitions.memory(),
        "refreshes": {
            "long_term": {
                "runs": stats.long_term_refresh_runs,
                "users": stats.long_term_refreshes,
                "last_at": stats.last_long_term_refresh_at,
            },
            "sequence_finetune": {
                "runs": stats.sequence_finetunes,
                "last_at": stats.last_sequence_finetune_at,
            },
        },
    }


# -- the collector ----------------------------------------------------------------------


class StreamrecCollector(Collector):
    """Builds every streamrec family at scrape time from the pipeline's live state."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Any]:
        m = self.metrics
        stats, engine = m.pipeline.stats, m.pipeline.engine
        yield from self._lag_families(m.lag.snapshot())

        counters = (
            ("streamrec_events_in", "Events read from the events topic.", stats.events_in),
            (
                "streamrec_events_applied",
                "Events applied to user state.",
                stats.events_applied,
            ),
            (
                "streamrec_events_duplicate",
                "Events skipped as replays of already applied ones.",
                stats.duplicates,
            ),
            (
                "streamrec_events_rerouted",
                "Events re-published keyed by their user.",
                stats.rerouted,
            ),
            (
                "streamrec_recommendations_out",
                "Recommendations published.",
                stats.recommendations_out,
            ),
            (
                "streamrec_ranking_errors",
                "Micro-batches whose ranking failed (state kept, next batch ranks again).",
                stats.ranking_errors,
            ),
            (
                "streamrec_long_term_users_refreshed",
                "User histories re-embedded by the long-term refresh.",
                stats.long_term_refreshes,
            ),
        )
        for name, doc, value in counters:
            yield CounterMetricFamily(name, doc, value=value)

        dead = CounterMetricFamily(
            "streamrec_dead_letters", "Messages sent to the dead-letter topic.", labels=["reason"]
        )
        for reason in sorted(set(DEAD_LETTER_REASONS) | set(stats.dead_letters)):
            dead.add_metric([reason], stats.dead_letters.get(reason, 0))
        yield dead

        histograms = (
            (
                "streamrec_end_to_end_latency_seconds",
                "Kafka timestamp of an event to its recommendation being sent.",
                stats.end_to_end_seconds,
            ),
            (
                "streamrec_batch_processing_seconds",
                "Time to process one micro-batch of events.",
                stats.batch_seconds,
            ),
            (
                "streamrec_batch_size_events",
                "Events per micro-batch.",
                stats.batch_sizes,
            ),
        )
        for name, doc, histogram in histograms:
            family = HistogramMetricFamily(name, doc)
            family.add_metric([], histogram.cumulative_buckets(), histogram.sum)
            yield family
        stages = HistogramMetricFamily(
            "streamrec_batch_stage_seconds",
            "Time per micro-batch in each stage (apply, rank, gate), and between two batches.",
            labels=["stage"],
        )
        for stage, histogram in stats.stage_seconds.items():
            stages.add_metric([stage], histogram.cumulative_buckets(), histogram.sum)
        yield stages

        info = model_info(m.pipeline, m.settings)
        model = InfoMetricFamily("streamrec_model", "The ranking model serving now.")
        model.add_metric(
            [],
            {
                "model_version": info["model_version"],
                "sequence_version": info["sequence"]["version"] or "",
                "text_encoder": info["text_encoder"]["name"],
                "device": info["device"],
            },
        )
        yield model
        device = InfoMetricFamily("streamrec_device", "The device models run on.")
        device.add_metric([], {"device": info["device"], "kind": info["device_kind"]})
        yield device

        refreshes = CounterMetricFamily(
            "streamrec_model_refreshes", "Model refresh runs by kind.", labels=["kind"]
        )
        last = GaugeMetricFamily(
            "streamrec_model_last_refresh_timestamp_seconds",
            "When each kind of model refresh last completed (Unix time).",
            labels=["kind"],
        )
        for kind, refresh in info["refreshes"].items():
            refreshes.add_metric([kind], refresh["runs"])
            if refresh["last_at"] is not None:
                last.add_metric([kind], refresh["last_at"])
        yield refreshes
        yield last

        yield GaugeMetricFamily(
            "streamrec_catalog_items", "Items this worker can rank.", value=len(engine.items)
        )
        tables = GaugeMetricFamily(
            "streamrec_table_keys",
            "Keys in this worker's active partitions of each table (RocksDB estimate).",
            labels=["table"],
        )
        for name, table in m.tables.items():
            tables.add_metric([name], table_key_count(table))
        yield tables
        yield GaugeMetricFamily(
            "streamrec_worker_ready",
            "1 when partitions are assigned, tables recovered and the catalog read.",
            value=1.0 if all(m.readiness().values()) else 0.0,
        )

    @staticmethod
    def _lag_families(partitions: list[PartitionLag]) -> Iterable[Any]:
        lag = GaugeMetricFamily(
            "kafka_consumergroup_lag",
            "High watermark minus committed offset, per partition assigned to this worker.",
            labels=["consumergroup", "topic", "partition"],
        )
        lag_sum = GaugeMetricFamily(
            "kafka_consumergroup_lag_sum",
            "Lag summed over the partitions of a topic assigned to this worker.",
            labels=["consumergroup", "topic"],
        )
        committed = GaugeMetricFamily(
            "kafka_consumergroup_current_offset",
            "The group's committed offset (next offset to read).",
            labels=["consumergroup", "topic", "partition"],
        )
        end = GaugeMetricFamily(
            "kafka_topic_partition_current_offset",
            "High watermark from the latest Fetch response (the log end offset).",
            labels=["topic", "partition"],
        )
        assigned = GaugeMetricFamily(
            "streamrec_assigned_partitions",
            "Partitions of each input topic assigned to this worker.",
            labels=["topic"],
        )
        sums: dict[tuple[str, str], int] = {}
        per_topic: dict[str, int] = {}
        for p in partitions:
            labels = [p.group, p.topic, str(p.partition)]
            per_topic[p.topic] = per_topic.get(p.topic, 0) + 1
            if p.committed is not None:
                committed.add_metric(labels, p.committed)
            if p.end is not None:
                end.add_metric([p.topic, str(p.partition)], p.end)
            if p.lag is not None:
                lag.add_metric(labels, p.lag)
                key = (p.group, p.topic)
                sums[key] = sums.get(key, 0) + p.lag
        for (group, topic), value in sorted(sums.items()):
            lag_sum.add_metric([group, topic], value)
        for topic, count in sorted(per_topic.items()):
            assigned.add_metric([topic], count)
        yield from (lag, lag_sum, committed, end, assigned)


class WorkerMetrics:
    """One registry per app (tests build several apps in one process), and the dashboard feed."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        pipeline: Pipeline,
        readiness: Callable[[], Mapping[str, bool]],
    ) -> None:
        self.app = app
        self.settings = settings
        self.pipeline = pipeline
        self.readiness = readiness
        self.tables = {"user-profiles": pipeline.profiles}
        self.lag = WorkerLag(app, (settings.topic_events, settings.topic_catalog))
        self.registry = CollectorRegistry()
        self.registry.register(StreamrecCollector(self))
        ProcessCollector(registry=self.registry)  # CPU, memory, open files of this worker

    async def refresh(self) -> None:
        await self.lag.refresh_log_starts()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def dashboard_data(self, window_s: float = 30.0) -> dict[str, Any]:
        """Everything ``/dashboard`` draws; the page keeps the time series itself."""
        stats = self.pipeline.stats
        partitions = self.lag.snapshot()
        return {
            "time": time.time(),
            "group": self.lag.group,
            "worker": str(self.app.conf.canonical_url),
            "ready": dict(self.readiness()),
            "lag": {
                "total": total_lag(partitions),
                "partitions": [p.as_dict() for p in partitions],
            },
            "counters": {
                "events_in": stats.events_in,
                "events_applied": stats.events_applied,
                "duplicates": stats.duplicates,
                "rerouted": stats.rerouted,
                "recommendations_out": stats.recommendations_out,
                "ranking_errors": stats.ranking_errors,
                "dead_letters": dict(stats.dead_letters),
            },
            "window_s": window_s,
            "latency_s": {
                "end_to_end": stats.end_to_end_seconds.quantiles(window_s),
                "batch_processing": stats.batch_seconds.quantiles(window_s),
                "batch_stages": {
                    stage: histogram.quantiles(window_s)
                    for stage, histogram in stats.stage_seconds.items()
                },
            },
            "batch_size": stats.batch_sizes.quantiles(window_s),
            "tables": {name: table_key_count(table) for name, table in self.tables.items()},
            "model": model_info(self.pipeline, self.settings),
        }
