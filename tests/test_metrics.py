"""Metrics, lag arithmetic, the dashboard feed and JSON logs, without a broker."""

import asyncio
import json
import logging
import logging.config
import sys
from collections import defaultdict
from types import SimpleNamespace

import numpy as np
import pytest
from faust.types import TP
from prometheus_client.parser import text_string_to_metric_families

from stream_app.app import build_app
from stream_app.lag_command import format_lag_table
from stream_app.logging_setup import JsonFormatter, worker_logging_config
from stream_app.metrics import PartitionLag, WindowedHistogram, WorkerLag, WorkerMetrics, total_lag
from stream_app.settings import ConfigError, Settings
from stream_app.web import dashboard_html
from tests.conftest import event, memory_pipeline

NOW_TS = 1_700_000_000.0


# -- histograms ---------------------------------------------------------------------------


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_histogram_bins_by_upper_bound_inclusive_and_skips_non_finite_values():
    histogram = WindowedHistogram([1, 2, 5])
    histogram.observe_many([0.5, 1.0, 1.5, 2.0, 4.0, 9.0, float("nan"), float("inf")])
    assert histogram.cumulative_buckets() == [
        ("1.0", 2.0),
        ("2.0", 4.0),
        ("5.0", 5.0),
        ("+Inf", 6.0),
    ]
    assert histogram.count == 6
    assert histogram.sum == pytest.approx(18.0)


def test_histogram_quantiles_interpolate_like_prometheus_and_forget_old_seconds():
    clock = FakeClock()
    histogram = WindowedHistogram([0.1, 0.2, 0.4], window_s=60, clock=clock)
    histogram.observe_many(np.full(50, 0.05))  # bucket (0, 0.1]
    histogram.observe_many(np.full(50, 0.15))  # bucket (0.1, 0.2]
    summary = histogram.quantiles(window_s=30)
    assert summary["count"] == 100
    assert summary["p50"] == pytest.approx(0.1)  # rank 50: the top of the first bucket
    assert summary["p95"] == pytest.approx(0.1 + 0.1 * 45 / 50)
    clock.now += 10
    histogram.observe_many([10.0])  # +Inf bucket: reported as the largest finite bound
    assert histogram.quantiles(window_s=5) == {"p50": 0.4, "p95": 0.4, "p99": 0.4, "count": 1}
    clock.now += 45
    assert histogram.quantiles(window_s=30)["count"] == 0  # the first 100 left the window
    assert histogram.count == 101  # while the cumulative counts keep everything


def test_histogram_reuses_a_slot_once_its_second_has_passed():
    clock = FakeClock()
    histogram = WindowedHistogram([1.0], window_s=4, clock=clock)
    histogram.observe(0.5)
    clock.now += 4  # same slot, a new second
    histogram.observe(0.5)
    assert histogram.quantiles(window_s=4)["count"] == 1


def test_ages_are_measured_from_epoch_timestamps_and_never_negative():
    histogram = WindowedHistogram([0.5, 1, 2])
    histogram.observe_ages([99.0, 100.5, 101.0], now=100.0)
    assert histogram.sum == pytest.approx(1.0)
    assert histogram.cumulative_buckets()[0] == ("0.5", 2.0)


# -- lag ------------------------------------------------------------------------------------


def test_partition_lag_counts_from_the_committed_offset_else_from_the_log_start():
    assert PartitionLag("g", "t", 0, committed=90, end=100).lag == 10
    assert PartitionLag("g", "t", 0, committed=None, end=100, log_start=40).lag == 60
    assert PartitionLag("g", "t", 0, committed=None, end=100).lag is None
    assert PartitionLag("g", "t", 0, committed=5, end=None).lag is None
    assert PartitionLag("g", "t", 0, committed=120, end=100).lag == 0  # watermark not yet seen
    rows = [PartitionLag("g", "t", 0, 90, 100), PartitionLag("g", "t", 1, None, 7)]
    assert total_lag(rows) == 10
    assert total_lag(rows[1:]) is None


def test_lag_table_has_kafka_consumer_groups_columns_and_a_total():
    table = format_lag_table(
        [
            PartitionLag("streamrec", "events", 0, 90, 100),
            PartitionLag("streamrec", "events", 1, None, 7),
        ]
    )
    lines = table.splitlines()
    assert lines[0].split() == [
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
    ]
    assert lines[1].split() == ["streamrec", "events", "0", "90", "100", "10"]
    assert lines[2].split() == ["streamrec", "events", "1", "-", "7", "-"]
    assert lines[-1] == "TOTAL LAG: 10"


class FakeConsumer:
    """The parts of Faust's consumer WorkerLag reads."""

    def __init__(self, assignment, committed, highwater, log_start):
        self._assignment = assignment
        self._committed_offset = defaultdict(lambda: None, committed)
        self._highwater = highwater
        self._log_start = log_start
        self.earliest_calls = []

    def assignment(self):
        return set(self._assignment)

    def highwater(self, tp):
        return self._highwater.get(tp)

    async def earliest_offsets(self, *tps):
        self.earliest_calls.append(tps)
        return {tp: self._log_start[tp] for tp in tps}


def test_worker_lag_reads_highwater_and_committed_offsets_of_input_topics_only():
    events0, events1 = TP("events", 0), TP("events", 1)
    changelog = TP("streamrec-user-profiles-changelog", 0)
    consumer = FakeConsumer(
        assignment=[events0, events1, changelog],
        committed={events0: 40},
        highwater={events0: 50, events1: 30, changelog: 999},
        log_start={events1: 10},
    )
    app = SimpleNamespace(conf=SimpleNamespace(id="streamrec"), consumer=consumer)
    lag = WorkerLag(app, ["events"])
    assert [(p.partition, p.lag) for p in lag.snapshot()] == [(0, 10), (1, None)]
    asyncio.run(lag.refresh_log_starts())
    asyncio.run(lag.refresh_log_starts())  # asked once per partition
    assert consumer.earliest_calls == [(events1,)]
    rows = lag.snapshot()
    assert [(p.topic, p.partition, p.committed, p.end, p.lag) for p in rows] == [
        ("events", 0, 40, 50, 10),
        ("events", 1, None, 30, 20),
    ]
    assert not consumer._committed_offset.get(events1)  # reading never inserts


# -- the pipeline's metrics -------------------------------------------------------------------


@pytest.fixture
def pipeline(tmp_path):
    return memory_pipeline(tmp_path)


async def _drain(agent, messages):
    async with agent.test_context() as context:
        for key, value in messages:
            await context.put(value=value, key=key)
        await asyncio.sleep(0.3)


def _samples(exposition: bytes) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(exposition.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _metrics_of(settings, app, pipeline, partitions=()):
    metrics = WorkerMetrics(app, settings, pipeline, lambda: {"partitions_assigned": True})
    metrics.lag.snapshot = lambda: list(partitions)
    return metrics


def test_exposition_reports_counters_histograms_models_and_lag(pipeline, caplog):
    settings, app, pipeline = pipeline
    good = [
        (
            f"u{n % 4}".encode(),
            json.dumps(event(f"e{n}", f"u{n % 4}", f"i{n}", NOW_TS + n)).encode(),
        )
        for n in range(40)
    ]
    bad = [(b"u1", b"{broken"), (b"u2", json.dumps({"event_id": "x", "user_id": "u2"}).encode())]
    with caplog.at_level(logging.DEBUG, logger="stream_app"):
        asyncio.run(_drain(pipeline.agents["process-events"], good + bad))
    # No per-event logging on the hot path, and no event contents in what is logged.
    assert len([r for r in caplog.records if r.name.startswith("stream_app")]) <= 2
    assert not any("i1" in r.getMessage() or "e1" in r.getMessage() for r in caplog.records)

    partitions = [PartitionLag(app.conf.id, settings.topic_events, 0, 30, 42)]
    samples = _samples(_metrics_of(settings, app, pipeline, partitions).exposition())
    assert samples[("streamrec_events_in_total", ())] == 42
    assert samples[("streamrec_events_applied_total", ())] == 40
    assert samples[("streamrec_recommendations_out_total", ())] >= 4
    assert samples[("streamrec_dead_letters_total", (("reason", "invalid_json"),))] == 1
    assert samples[("streamrec_dead_letters_total", (("reason", "missing_field"),))] == 1
    # Every applied event's latency is observed; batches once each.
    assert samples[("streamrec_end_to_end_latency_seconds_count", ())] == 40
    batches = samples[("streamrec_batch_size_events_count", ())]
    assert batches >= 1
    assert samples[("streamrec_batch_size_events_sum", ())] == 42
    assert samples[("streamrec_batch_processing_seconds_count", ())] == batches
    labels = dict(next(labels for name, labels in samples if name == "streamrec_model_info"))
    assert labels["model_version"].startswith("streamrec-interest/")
    assert labels["text_encoder"] == "hashing-256" and labels["device"] == "cpu"
    assert samples[("streamrec_device_info", (("device", "cpu"), ("kind", "cpu")))] == 1
    group, topic = app.conf.id, settings.topic_events
    lag_labels = (("consumergroup", group), ("partition", "0"), ("topic", topic))
    assert samples[("kafka_consumergroup_lag", lag_labels)] == 12
    assert samples[("kafka_consumergroup_current_offset", lag_labels)] == 30
    assert (
        samples[("kafka_topic_partition_current_offset", (("partition", "0"), ("topic", topic)))]
        == 42
    )
    assert (
        samples[("kafka_consumergroup_lag_sum", (("consumergroup", group), ("topic", topic)))] == 12
    )
    assert samples[("streamrec_table_keys", (("table", "user-profiles"),))] == 4
    assert samples[("streamrec_worker_ready", ())] == 1
    assert ("process_resident_memory_bytes", ()) in samples or sys.platform != "linux"


def test_dashboard_data_is_json_with_lag_counters_latency_and_model(pipeline):
    settings, app, pipeline = pipeline
    messages = [
        (b"u1", json.dumps(event(f"e{n}", "u1", f"i{n}", NOW_TS + n)).encode()) for n in range(5)
    ]
    asyncio.run(_drain(pipeline.agents["process-events"], messages))
    pipeline.stats.last_long_term_refresh_at = 1.0
    partitions = [PartitionLag("g", "events", 0, 3, 5), PartitionLag("g", "events", 1, None, 2)]
    data = json.loads(json.dumps(_metrics_of(settings, app, pipeline, partitions).dashboard_data()))
    assert data["lag"]["total"] == 2
    assert data["lag"]["partitions"][0] == {
        "group": "g",
        "topic": "events",
        "partition": 0,
        "committed": 3,
        "end": 5,
        "log_start": None,
        "lag": 2,
    }
    assert data["counters"]["events_in"] == 5
    assert data["latency_s"]["end_to_end"]["count"] == 5
    assert data["latency_s"]["end_to_end"]["p95"] > 0
    assert data["model"]["device"] == "cpu"
    assert data["model"]["refreshes"]["long_term"]["last_at"] == 1.0
    assert data["tables"] == {"user-profiles": 1}


def test_two_apps_in_one_process_have_separate_registries(tmp_path):
    settings = Settings.from_env(env={}, text_encoder="none", data_dir=str(tmp_path))
    (app_a, pipe_a), (app_b, pipe_b) = (build_app(settings, "memory://") for _ in range(2))
    a = _metrics_of(settings, app_a, pipe_a)
    b = _metrics_of(settings, app_b, pipe_b)
    pipe_a.stats.events_in = 7
    assert _samples(a.exposition())[("streamrec_events_in_total", ())] == 7
    assert _samples(b.exposition())[("streamrec_events_in_total", ())] == 0


def test_dashboard_page_is_self_contained_and_polls_its_data_endpoint():
    html = dashboard_html()
    assert "/data" in html and "<canvas" in html
    assert "http://" not in html and "https://" not in html  # no CDN: works offline


# -- logs ------------------------------------------------------------------------------------


def test_json_formatter_writes_one_object_per_record_with_extras_and_traceback():
    formatter = JsonFormatter(service="streamrec-test")
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "stream_app.pipeline",
            logging.ERROR,
            __file__,
            1,
            "failed for user %s",
            ("u1",),
            sys.exc_info(),
        )
    record.partition = 3
    line = formatter.format(record)
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["message"] == "failed for user u1"
    assert doc["level"] == "error" and doc["logger"] == "stream_app.pipeline"
    assert doc["service"] == "streamrec-test" and doc["partition"] == 3
    assert "ValueError: boom" in doc["exception"]
    assert doc["time"].endswith("+00:00")


def test_log_format_setting_selects_the_worker_logging_config(capsys):
    assert worker_logging_config(Settings.from_env(env={})) is None
    with pytest.raises(ConfigError):
        Settings.from_env(env={"STREAMREC_LOG_FORMAT": "xml"})
    config = worker_logging_config(Settings.from_env(env={"STREAMREC_LOG_FORMAT": "json"}))
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logging.config.dictConfig(config)
        logging.getLogger("stream_app.test").info("hello %s", "world")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["message"] == "hello world"
