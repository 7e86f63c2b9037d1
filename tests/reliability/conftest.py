"""Reliability suite: fault injection on a real broker and real worker processes.

``STREAMREC_SOAK=N`` scales the fault tests N times (more trials, more events); the long
runs have their own command, ``python -m tests.reliability.soak``. Every scenario's report
(trials, faults injected, events checked, anything lost) is printed at the end of the run and,
with ``STREAMREC_RELIABILITY_REPORT=path.json``, written as JSON.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

SOAK = max(1, int(os.environ.get("STREAMREC_SOAK", "1") or 1))
REPORTS: list[dict] = []


@pytest.fixture
def record_report():
    """Keep a scenario report for the summary; returns it without its logs."""

    def record(report: dict) -> dict:
        REPORTS.append({k: v for k, v in report.items() if k != "logs"})
        return report

    return record


def assert_nothing_lost(report: dict) -> None:
    """The one verdict every scenario shares; the worker logs are shown when it fails."""
    assert report.get("lost_or_duplicated") == 0, (
        f"{report.get('scenario')}: {report.get('wrong_users') or report}\n"
        f"{report.get('logs', '')[-6000:]}"
    )


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not REPORTS:
        return
    write = terminalreporter.write_line
    terminalreporter.section("reliability report")
    totals = {"faults": 0, "events": 0, "lost_or_duplicated": 0}
    for report in REPORTS:
        for key in totals:
            totals[key] += int(report.get(key) or 0)
        shown = {k: v for k, v in report.items() if k not in ("wrong_users",)}
        write(json.dumps(shown, default=str)[:1500])
    write(
        f"scenarios {len(REPORTS)}, faults injected {totals['faults']}, events checked "
        f"{totals['events']}, users lost/double-counted {totals['lost_or_duplicated']}"
    )
    target = os.environ.get("STREAMREC_RELIABILITY_REPORT")
    if target:
        Path(target).write_text(json.dumps({"totals": totals, "scenarios": REPORTS}, indent=2))
