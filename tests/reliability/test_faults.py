"""Faults injected on a real broker and real ``streamrec worker`` processes.

Each test runs a scenario from :mod:`tests.reliability.scenarios` and checks its report.
The ground truth is what was produced (unique event ids); the audit is every user's
``GET /users/{id}/state``: ``events_applied`` counts distinct events, so nothing lost and
nothing counted twice is ``events_applied == produced`` for every user.
"""

from __future__ import annotations

import random

import pytest

from tests.reliability import scenarios
from tests.reliability.conftest import SOAK, assert_nothing_lost

pytestmark = pytest.mark.integration


def _seed() -> int:
    seed = random.SystemRandom().randrange(10**6)
    print(f"reliability seed: {seed}")  # shown with the failure; rerun the scenario with it
    return seed


def test_kill_9_at_random_points_loses_nothing_and_counts_nothing_twice(tmp_path, record_report):
    report = record_report(scenarios.crash_restart(tmp_path, _seed(), trials=5 * SOAK))
    assert report["faults"] >= 5 * SOAK
    assert_nothing_lost(report)
    assert report["events"] > 1000 * SOAK
    assert report["recovery_s"]["n"] == 5 * SOAK  # recommendations resumed after each trial


def test_survivor_takes_over_and_matches_a_crash_free_run(tmp_path, record_report):
    report = record_report(scenarios.failover(tmp_path, _seed()))
    assert_nothing_lost(report)
    assert report["survivor_recovered_all_partitions"], report
    assert not report["crash_free_run_wrong_users"], report
    assert report["differs_from_crash_free_run"] == 0, report["differences"]
    assert report["all_users_served_again_s"] is not None, report


def test_broker_outage_of_30_s_worker_survives_cli_retries_and_work_resumes(
    tmp_path, record_report
):
    report = record_report(scenarios.broker_outage(tmp_path, _seed(), outage_s=30.0))
    assert report["worker_alive_through_outage"] and report["worker_alive_at_end"]
    assert report["worker_cpu_during_outage_pct"] < 25, report  # waits, does not spin
    assert report["worker_log_lines_per_s_during_outage"] < 5, report
    assert report["cli_exit_code"] == 0, report["cli_output"]
    assert report["cli_peak_rss_mb"] < 300, report
    assert_nothing_lost(report)
    assert report["resumed_after_broker_restart_s"] is not None, report
    # A memory-only broker loses what it held: only what it acknowledged in the last
    # moment before it stopped, and the worker had not read yet, may be gone.
    assert report["lost_with_broker"] <= report["cli_events_sent"] * 0.05, report


def test_flood_grows_lag_not_memory_drops_nothing_and_drains(tmp_path, record_report):
    report = record_report(scenarios.flood(tmp_path, _seed(), events=60_000 * SOAK))
    assert report["worker_alive"]
    # Offered several times faster than it is processed (ready-made record batches), so the
    # backlog piles up in Kafka...
    assert report["offered_over_capacity"] >= 3, report
    assert report["lag_at_end_of_flood"] > 0.3 * report["events"], report
    # ...and drains once the flood stops, with every event applied exactly once.
    assert report["final_lag"] == 0, report
    assert_nothing_lost(report)
    # The backlog stays in Kafka, not in the worker: its memory is bounded by its buffers
    # (fetch, stream, RocksDB write buffers), whatever the backlog.
    assert report["rss_growth_mb"] < 150, report


def test_hostile_input_is_dead_lettered_with_reasons_and_valid_input_processed(
    tmp_path, record_report
):
    report = record_report(scenarios.hostile_input(tmp_path, _seed(), count=10_000 * SOAK))
    assert not report["accepted_hostile"], report["accepted_hostile"]
    assert report["refused_in_process"] == report["generated"] >= 10_000 * SOAK
    assert report["n_dead_letter_problems"] == 0, report["dead_letter_problems"]
    assert report["dead_letters"] == report["generated"], report
    assert_nothing_lost(report)
    assert report["worker_alive"]
    assert report["rss_growth_mb"] < 200, report
    assert not report["payload_content_in_log"]
