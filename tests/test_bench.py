"""``streamrec bench``: its arithmetic, its workload, and one quick real run."""

import json
import subprocess
import sys

import numpy as np
import pytest

from schemas import ValidationPolicy, parse_event
from stream_app.bench import (
    Sample,
    generated_workload,
    latency_series,
    percentiles_ms,
    rss_growth_per_100k_events,
    sustained_rate,
)
from stream_app.bench_components import run_components


def test_sustained_rate_is_the_slope_of_the_middle_of_the_backlog():
    # Slow start (group join), then 1,000 events/s, then a tail: the middle decides.
    samples = [(0.0, 0), (1.0, 0), (2.0, 0)] + [(2.0 + t, 1000 * t) for t in range(1, 10)]
    samples.append((30.0, 10_000))
    assert sustained_rate(samples, 10_000) == pytest.approx(1000.0)


def test_sustained_rate_falls_back_to_first_and_last_progress():
    assert sustained_rate([(0.0, 0), (1.0, 50), (3.0, 100)], 100) == pytest.approx(25.0)
    # Samples taken after the backlog is done do not stretch the drain.
    assert sustained_rate([(0.0, 0), (1.0, 50), (3.0, 100), (9.0, 100)], 100) == 25.0
    # A drain between two samples is timed from the last sample before progress.
    samples = [(0.0, 0), (0.25, 0), (0.5, 100), (0.75, 100)]
    assert sustained_rate(samples, 100) == pytest.approx(400.0)
    assert np.isnan(sustained_rate([(0.0, 0)], 100))
    assert np.isnan(sustained_rate([(0.5, 100), (0.75, 100)], 100))


def test_rss_growth_is_measured_over_the_second_half_of_a_drain():
    def sample(t: float, consumed: int, rss: float) -> Sample:
        return Sample(t, consumed, {}, rss, 100.0)

    # Warm-up growth in the first half does not count; after the drain neither.
    samples = [sample(0, 0, 500), sample(1, 20_000, 900), sample(2, 50_000, 1000)]
    samples += [sample(3, 75_000, 1010), sample(4, 100_000, 1020), sample(5, 100_000, 2000)]
    assert rss_growth_per_100k_events(samples, 100_000) == pytest.approx(40.0)
    flat = [sample(t, 10_000 * t, 800) for t in range(11)]
    assert rss_growth_per_100k_events(flat, 100_000) == pytest.approx(0.0, abs=1e-9)
    assert np.isnan(rss_growth_per_100k_events([sample(0, 100, 800)], 100_000))


def test_latency_percentiles_and_series():
    latencies = [0.001 * n for n in range(1, 101)]  # 1..100 ms
    p = percentiles_ms(latencies)
    assert p["p50"] == pytest.approx(50.5) and p["p99"] == pytest.approx(99.01)
    series = latency_series([(0.2, 0.010), (0.7, 0.030), (1.5, 0.020)])
    assert [s for s, _, _ in series] == [0.0, 1.0]
    assert series[0][1] == pytest.approx(20.0)


def test_generated_workload_is_valid_seeded_and_skewed():
    size = dict(users=500, items=200, events=3000, seed=3, end_ts=1.7e9)
    workload, again = generated_workload(**size), generated_workload(**size)
    assert workload.events == again.events and workload.catalog == again.catalog
    assert len(workload.catalog) == 200 and len(workload.events) == 3000
    policy = ValidationPolicy()
    for doc in workload.events[:200]:
        parse_event(json.dumps(doc).encode(), policy)  # raises on anything invalid
    items = [e["item_id"] for e in workload.events]
    counts = sorted(np.unique(items, return_counts=True)[1], reverse=True)
    assert counts[0] > 10 * np.median(counts)  # a long tail, not uniform
    times = [e["timestamp"] for e in workload.events]
    assert times == sorted(times)


def test_component_benchmarks_report_every_batch_size():
    results = run_components("cpu", say=lambda _: None, quick=True)
    rows = results["transformer_user_updates_per_s"]
    assert [r["batch"] for r in rows] == [1, 64]
    assert all(r["per_s"] > 0 for r in rows) and rows[0]["speedup_vs_batch_1"] == 1.0
    assert results["bert_items_per_s"][0]["per_s"] > 0
    assert results["ranking_users_per_s"]["2000_items"][1]["per_s"] > 0


@pytest.mark.integration
def test_quick_bench_runs_end_to_end_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "stream_app.cli",
            "bench",
            "--quick",
            "--no-components",
            "--text-encoder",
            "hashing",
            "--latency-seconds",
            "8",
            "--json",
            str(out),
            "--plot",
            str(tmp_path / "bench.png"),
            "--workdir",
            str(tmp_path / "work"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(out.read_text())
    for key in ("pipeline_events_per_s", "noop_events_per_s", "ratio_to_noop"):
        assert report[key] > 0, key
    assert set(report["latency_ms"]) == {"p50", "p95", "p99"}
    assert 0 < report["state_bytes_per_user"] < 10_000
    assert report["peak_rss_mb"] > 50
    generated = report["workloads"]["generated"]
    assert generated["users_in_state"] > 0 and generated["latency_samples"] > 0
    assert (tmp_path / "bench.png").stat().st_size > 10_000
    assert "| workload |" in run.stdout
