"""Long-running variants of the reliability scenarios (the CI suite runs them small).

    python -m tests.reliability.soak --trials 50                 # everything, ~1 h on 2 cores
    python -m tests.reliability.soak --trials 200 --only crash   # just kill -9, 200 times
    python -m tests.reliability.soak --json soak.json --seed 7   # reproducible, with a report

``--trials`` is the number of kill -9s in the crash scenario; the failover and broker-outage
scenarios run ``--rounds`` times each (default: trials / 10), the flood offers
``--flood-events`` events and the hostile scenario ``--hostile`` generated payloads. Prints a
table (one line per scenario run) and exits non-zero if anything was lost or counted twice.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.reliability import scenarios

SCENARIOS = ("crash", "failover", "outage", "flood", "hostile")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=50, help="kill -9s in the crash scenario")
    parser.add_argument("--rounds", type=int, default=None, help="failover/outage runs")
    parser.add_argument("--flood-events", type=int, default=300_000)
    parser.add_argument("--hostile", type=int, default=50_000, help="hostile payloads")
    parser.add_argument("--outage-s", type=float, default=30.0)
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated subset")
    parser.add_argument("--seed", type=int, default=int(time.time()) % 10**6)
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs here")
    parser.add_argument("--json", type=Path, default=None, help="write the reports here")
    return parser.parse_args(argv)


def plan(args: argparse.Namespace) -> list[tuple[str, Any]]:
    rounds = args.rounds if args.rounds is not None else max(1, args.trials // 10)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenarios {sorted(unknown)}; choose from {SCENARIOS}")
    runs: list[tuple[str, Any]] = []
    if "crash" in chosen:
        runs.append(("crash", lambda d, s: scenarios.crash_restart(d, s, trials=args.trials)))
    for n in range(rounds if "failover" in chosen else 0):
        runs.append((f"failover-{n}", lambda d, s: scenarios.failover(d, s)))
    for n in range(rounds if "outage" in chosen else 0):
        runs.append(
            (f"outage-{n}", lambda d, s: scenarios.broker_outage(d, s, outage_s=args.outage_s))
        )
    if "flood" in chosen:
        runs.append(("flood", lambda d, s: scenarios.flood(d, s, events=args.flood_events)))
    if "hostile" in chosen:
        runs.append(("hostile", lambda d, s: scenarios.hostile_input(d, s, count=args.hostile)))
    return runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("streamrec.reliability").setLevel(logging.INFO)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="streamrec-soak-"))
    print(f"seed {args.seed}; logs under {workdir}", flush=True)
    reports = []
    header = f"{'scenario':<14}{'seed':>8}{'faults':>8}{'events':>9}{'lost/dup':>10}  details"
    print(header, flush=True)
    for n, (name, run) in enumerate(plan(args)):
        seed = args.seed + n
        started = time.monotonic()
        try:
            report = run(workdir, seed)
        except Exception as exc:  # noqa: BLE001 - one failed run is reported, the rest go on
            report = {"scenario": name, "seed": seed, "error": repr(exc), "lost_or_duplicated": -1}
        report["wall_s"] = round(time.monotonic() - started, 1)
        logs = report.pop("logs", "")
        if logs:
            (workdir / f"{name}-{seed}.failure.log").write_text(logs)
        reports.append(report)
        details = {
            k: report[k]
            for k in (
                "recovery_s",
                "all_users_served_again_s",
                "resumed_after_broker_restart_s",
                "lost_with_broker",
                "offered_over_capacity",
                "rss_growth_mb",
                "dead_letters",
                "error",
                "wall_s",
            )
            if k in report
        }
        print(
            f"{name:<14}{seed:>8}{report.get('faults', 0):>8}{report.get('events', 0):>9}"
            f"{report.get('lost_or_duplicated'):>10}  {json.dumps(details)}",
            flush=True,
        )
    failed = [r for r in reports if r.get("lost_or_duplicated") != 0]
    totals = {
        "runs": len(reports),
        "faults": sum(int(r.get("faults") or 0) for r in reports),
        "events": sum(int(r.get("events") or 0) for r in reports),
        "failed_runs": len(failed),
    }
    print(json.dumps(totals), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"totals": totals, "reports": reports}, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
