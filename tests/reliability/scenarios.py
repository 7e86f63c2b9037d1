"""The fault scenarios, parameterised so CI runs them small and the soak runs them long.

Each returns a report (plain dict, JSON-serialisable) with what was injected, what was
checked and what differed; the callers assert on it. Nothing here sleeps for a fixed
time to "let things settle": every wait polls a condition under a deadline.
"""

from __future__ import annotations

import logging
import random
import statistics
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.reliability.harness import (
    BulkSender,
    EventSource,
    Ledger,
    Producer,
    RecommendationWatcher,
    ResourceSampler,
    Scenario,
)

log = logging.getLogger("streamrec.reliability")


class SteadyProducer(threading.Thread):
    """Produces events from ``source`` at ``rate`` per second until stopped."""

    def __init__(self, producer: Producer, source: EventSource, rate: float) -> None:
        super().__init__(daemon=True)
        self.producer = producer
        self.source = source
        self.rate = rate
        self.sent = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        try:
            while not self._halt.is_set():
                ahead = self.sent / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    self._halt.wait(ahead)
                    continue
                self.producer.send(self.source.next())
                self.sent += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            self.error = exc

    def stop(self) -> None:
        self._halt.set()
        if self.ident is not None:
            self.join(timeout=30)
        if self.error is not None:
            raise self.error


def _wait_for(predicate, timeout: float, interval: float = 0.25) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


def crash_restart(
    workdir: Path,
    seed: int,
    trials: int = 5,
    rate: float = 150.0,
    n_users: int = 40,
    gap_s: tuple[float, float] = (1.0, 5.0),
    timeout_s: float = 240.0,
) -> dict[str, Any]:
    """``kill -9`` one worker at random moments mid-stream and restart it on the same data dir.

    After the last restart the stream stops and every user's state is audited against what
    was produced: ``events_applied`` equal (nothing lost, nothing counted twice), the last
    event time equal, recent items in produced order.
    """
    rng = random.Random(seed)
    scenario = Scenario(workdir / f"crash-{seed}", partitions=4)
    ledger = Ledger()
    report: dict[str, Any] = {"scenario": "crash_restart", "seed": seed, "faults": 0}
    watcher = RecommendationWatcher(scenario.settings)
    producer = Producer(scenario.settings, ledger)
    stream = SteadyProducer(producer, EventSource(seed, n_users), rate)
    try:
        scenario.start("w1")
        scenario.wait_ready("w1")
        watcher.start()
        stream.start()
        ready_s, recovery_s = [], []
        for trial in range(trials):
            time.sleep(rng.uniform(*gap_s))  # a random point mid-stream
            killed = scenario.kill9("w1")
            report["faults"] += 1
            log.info("trial %d: worker killed after %d events sent", trial, stream.sent)
            time.sleep(rng.uniform(0.0, 1.0))
            scenario.start("w1")
            if rng.random() < 0.3:  # now and then, again while it starts and restores its table
                time.sleep(rng.uniform(0.5, 4.0))
                if scenario.alive("w1"):
                    scenario.kill9("w1")
                    report["faults"] += 1
                    report["kills_during_startup"] = report.get("kills_during_startup", 0) + 1
                    scenario.start("w1")
            ready_s.append(scenario.wait_ready("w1", timeout=timeout_s) + time.monotonic() - killed)
            resumed = _wait_for(lambda k=killed: watcher.first_after(k, ledger.produced_at), 120)
            assert resumed, f"no recommendation after restart {trial}:\n{scenario.logs()}"
            recovery_s.append(resumed - killed)
        stream.stop()
        producer.flush()
        wrong = scenario.wait_consistent(ledger, timeout=timeout_s)
        report.update(
            events=ledger.total,
            users=len(ledger.users),
            wrong_users=wrong,
            lost_or_duplicated=len(wrong),
            recovery_s=_summary(recovery_s),
            ready_after_kill_s=_summary(ready_s),
        )
        return report
    finally:
        stream._halt.set()
        watcher.stop()
        producer.close()
        report["logs"] = scenario.logs() if report.get("lost_or_duplicated", 1) else ""
        scenario.stop_all()


def broker_outage(
    workdir: Path,
    seed: int,
    outage_s: float = 30.0,
    events_before: int = 1000,
    events_after: int = 500,
    cli_rate: float = 40.0,
    n_users: int = 20,
) -> dict[str, Any]:
    """Stop the (memory-only) broker for ``outage_s`` while a worker runs and the CLI produces.

    - users ``a-*``: events produced and consumed before the outage, more after it. Their
      state lives on the worker's disk (RocksDB), so it must survive the broker losing
      everything, and the later events must be applied on top: exactly A + A2.
    - users ``c-*``: ``streamrec produce --rate`` runs across the outage. It must retry
      (bounded buffer) and exit 0. What the worker applied before the broker stopped, plus
      every event the restarted broker holds, must be in the state exactly once; events the
      old broker acknowledged but the worker had not read yet die with a memory-only broker,
      and are counted (``lost_with_broker``).
    """
    import json
    import subprocess

    from stream_app.settings import settings_to_env
    from tests.reliability.harness import BASE_TS, UserTruth, read_topic, rss_bytes

    rng = random.Random(seed)
    scenario = Scenario(workdir / f"outage-{seed}", partitions=4)
    report: dict[str, Any] = {"scenario": "broker_outage", "seed": seed, "outage_s": outage_s}
    ledger = Ledger()
    before = EventSource(seed, n_users, prefix="a")
    before.users = [f"a-{n}" for n in range(n_users)]
    cli_events = []
    for n in range(int(cli_rate * (outage_s + 15))):
        user = f"c-{rng.randrange(n_users)}"
        cli_events.append(
            {
                "event_id": f"c-{n}",
                "user_id": user,
                "item_id": rng.choice(before.items),
                "event_type": "view",
                "timestamp": BASE_TS + 10**6 + n,
            }
        )
    cli_file = scenario.workdir / "cli-events.jsonl"
    cli_file.write_text("".join(json.dumps(e) + "\n" for e in cli_events))
    sampler = None
    cli = None
    try:
        scenario.start("w1")
        scenario.wait_ready("w1")
        producer = Producer(scenario.settings, ledger)
        for _ in range(events_before):
            producer.send(before.next())
        producer.flush()
        producer.close()
        wrong = scenario.wait_consistent(ledger, timeout=120)
        assert not wrong, f"before the outage: {wrong}"

        worker = scenario.workers["w1"]
        sampler = ResourceSampler(lambda: worker.proc.pid)
        sampler.start()
        env = {**__import__("os").environ, **settings_to_env(scenario.worker_settings("w1"))}
        cli_log = open(scenario.workdir / "cli.log", "wb")  # noqa: SIM115
        script = Path(__import__("sys").executable).with_name("streamrec")
        cli = subprocess.Popen(
            [str(script), "produce", str(cli_file), "--rate", str(cli_rate), "--no-catalog"],
            env=env,
            stdout=cli_log,
            stderr=subprocess.STDOUT,
        )
        cli_rss = ResourceSampler(lambda: cli.pid if cli.poll() is None else None)
        cli_rss.start()
        time.sleep(5.0)  # the CLI is producing and the worker consuming

        log_lines_before = len(worker.log().splitlines())
        scenario.stop_broker()
        stopped = time.monotonic()
        report["faults"] = 1
        # What the worker applied before the broker went away (it cannot read more now).
        snapshot: dict[str, Any] = {}
        previous = None
        while time.monotonic() - stopped < outage_s / 2:
            snapshot = {}
            for n in range(n_users):
                status, state = scenario.state(f"c-{n}")
                snapshot[f"c-{n}"] = state if status == 200 else None
            if snapshot == previous:
                break
            previous = snapshot
            time.sleep(1.0)
        time.sleep(max(0.0, outage_s - (time.monotonic() - stopped)))
        outage_end = time.monotonic()
        assert scenario.alive("w1"), f"worker died during the outage:\n{scenario.logs()}"
        cpu = sampler.cpu_between(stopped, outage_end)
        log_lines = len(worker.log().splitlines()) - log_lines_before
        report.update(
            worker_alive_through_outage=True,
            worker_cpu_during_outage_pct=round(100 * cpu / (outage_end - stopped), 1),
            worker_log_lines_per_s_during_outage=round(log_lines / (outage_end - stopped), 1),
            worker_peak_rss_mb=round(sampler.peak_rss() / 2**20),
        )

        scenario.start_broker()
        restarted = time.monotonic()
        cli_rc = cli.wait(timeout=300)
        cli_rss.stop()
        cli_log.close()
        report.update(
            cli_exit_code=cli_rc,
            cli_output=(scenario.workdir / "cli.log").read_text(errors="replace")[-600:],
            cli_peak_rss_mb=round(cli_rss.peak_rss() / 2**20),
        )
        # Resume: new events for the a-users after the restart.
        watcher = RecommendationWatcher(scenario.settings)
        watcher.start()
        producer = Producer(scenario.settings, ledger)
        for _ in range(events_after):
            producer.send(before.next())
        producer.flush()
        producer.close()

        # Ground truth for the c-users: applied before + what the new broker holds, once each.
        on_new_broker = [
            json.loads(r.value)
            for r in read_topic(scenario.settings, scenario.settings.topic_events)
        ]
        lost = 0
        for n in range(n_users):
            user = f"c-{n}"
            seen = snapshot.get(user)
            truth = UserTruth()
            if seen:
                truth.count = seen["events_applied"]
                truth.last_time = seen["last_event_time"]
                truth.items = list(seen.get("recent_items", []))
            applied_until = truth.last_time
            fresh = [
                e for e in on_new_broker if e["user_id"] == user and e["timestamp"] > applied_until
            ]
            fresh_ids = {e["event_id"] for e in fresh}
            for event in sorted({e["event_id"]: e for e in fresh}.values(), key=_ts):
                truth.count += 1
                truth.last_time = max(truth.last_time, event["timestamp"])
                truth.items.append(event["item_id"])
            sent = [
                e for e in cli_events if e["user_id"] == user and e["timestamp"] > applied_until
            ]
            lost += sum(1 for e in sent if e["event_id"] not in fresh_ids)
            ledger.users[user] = truth
        wrong = scenario.wait_consistent(ledger, timeout=180)
        resumed = _wait_for(lambda: watcher.first_after(restarted, ledger.produced_at), 60)
        watcher.stop()
        report["watcher"] = {"arrivals": len(watcher.arrivals), "error": repr(watcher.error)}
        report["worker_counters"] = worker_counters(scenario, "w1")
        report.update(
            events=ledger.total,
            users=len(ledger.users),
            cli_events_sent=len(cli_events),
            cli_events_on_restarted_broker=sum(1 for e in on_new_broker if e["user_id"][0] == "c"),
            lost_with_broker=lost,
            wrong_users=wrong,
            lost_or_duplicated=len(wrong),
            resumed_after_broker_restart_s=round(resumed - restarted, 2) if resumed else None,
            worker_alive_at_end=scenario.alive("w1"),
            worker_rss_mb_at_end=round(rss_bytes(worker.proc.pid) / 2**20),
        )
        return report
    finally:
        if sampler is not None:
            sampler.stop()
        if cli is not None and cli.poll() is None:
            cli.kill()
        report["logs"] = scenario.logs() if report.get("lost_or_duplicated", 1) else ""
        scenario.stop_all()


def failover(
    workdir: Path,
    seed: int,
    rate: float = 150.0,
    n_users: int = 40,
    before_kill_s: tuple[float, float] = (3.0, 8.0),
    after_kill_s: float = 6.0,
    timeout_s: float = 240.0,
) -> dict[str, Any]:
    """Two workers share the group; one is killed (-9) mid-stream and never comes back.

    The survivor must take over the victim's partitions, restore their table from the
    changelog, and end with exactly the state of a crash-free run: a third worker in a
    group of its own reads the same events without faults, and the two are compared user by
    user (and both against the ledger).
    """
    rng = random.Random(seed)
    scenario = Scenario(workdir / f"failover-{seed}", partitions=4)
    ledger = Ledger()
    report: dict[str, Any] = {"scenario": "failover", "seed": seed, "faults": 0}
    watcher = RecommendationWatcher(scenario.settings)
    producer = Producer(scenario.settings, ledger)
    stream = SteadyProducer(producer, EventSource(seed, n_users), rate)
    try:
        for name in ("w1", "w2"):
            scenario.start(name)
        for name in ("w1", "w2"):
            scenario.wait_ready(name)
        watcher.start()
        stream.start()
        time.sleep(rng.uniform(*before_kill_s))
        victim, survivor = rng.sample(["w1", "w2"], 2)
        survivor_log = len(scenario.workers[survivor].log())
        killed = scenario.kill9(victim)
        report.update(faults=1, victim=victim, events_before_kill=stream.sent)
        time.sleep(after_kill_s)
        stream.stop()
        producer.flush()
        wrong = scenario.wait_consistent(ledger, timeout=timeout_s, via=survivor)
        # A batch's recommendations go out after its state is written: give the last ones time.
        _wait_for(
            lambda: (
                len(watcher.first_per_user_after(killed, ledger.produced_at)) == len(ledger.users)
            ),
            30,
        )
        served = watcher.first_per_user_after(killed, ledger.produced_at)
        recovery = scenario.workers[survivor].log()[survivor_log:]
        report.update(
            events=ledger.total,
            users=len(ledger.users),
            wrong_users=wrong,
            lost_or_duplicated=len(wrong),
            survivor_recovered_all_partitions=all(
                f"user-profiles-changelog[{p}]=" in recovery.split("Changelog ends (active)")[-1]
                for p in range(scenario.settings.partitions)
            ),
            users_served_again=len(served),
            all_users_served_again_s=round(max(served.values()) - killed, 2)
            if len(served) == len(ledger.users)
            else None,
        )
        # The crash-free run of the same events: another group, another table.
        scenario.start("reference", app_id=scenario.settings.app_id + "-reference")
        scenario.wait_ready("reference")
        reference_wrong = scenario.wait_consistent(ledger, timeout=timeout_s, via="reference")
        differs = {}
        for user in ledger.users:
            _, ours = scenario.state(user, via=survivor)
            _, theirs = scenario.state(user, via="reference")
            fields = ("events_applied", "last_event_time", "recent_items")
            if [ours.get(f) for f in fields] != [theirs.get(f) for f in fields]:
                differs[user] = {"survivor": ours, "crash_free": theirs}
        report.update(
            crash_free_run_wrong_users=reference_wrong,
            differs_from_crash_free_run=len(differs),
            differences=dict(list(differs.items())[:3]),
        )
        return report
    finally:
        stream._halt.set()
        watcher.stop()
        producer.close()
        failed = report.get("lost_or_duplicated", 1) or report.get("differs_from_crash_free_run", 1)
        report["logs"] = scenario.logs() if failed else ""
        scenario.stop_all()


def flood(
    workdir: Path,
    seed: int,
    events: int = 60_000,
    n_users: int = 200,
    pad_bytes: int = 900,
    timeout_s: float = 300.0,
) -> dict[str, Any]:
    """Offer events as fast as the broker takes them — many times what the worker processes.

    Lag must grow (the worker cannot keep up), the worker's memory must stay bounded (it
    must not buffer the backlog: each event carries ``pad_bytes`` of context, so holding
    the backlog would show), nothing may be dropped, and the backlog must drain.
    """
    from tests.reliability.harness import events_read, rss_bytes

    scenario = Scenario(workdir / f"flood-{seed}", partitions=4)
    ledger = Ledger()
    source = EventSource(seed, n_users, prefix="f")
    source.users = [f"f-{n}" for n in range(n_users)]
    report: dict[str, Any] = {"scenario": "flood", "seed": seed, "faults": 0}
    sampler = None
    try:
        worker = scenario.start("w1")
        scenario.wait_ready("w1")
        baseline = rss_bytes(worker.proc.pid)
        sampler = ResourceSampler(lambda: worker.proc.pid, interval=0.2)
        sampler.start()
        pad = "x" * pad_bytes
        sender = BulkSender(
            scenario.settings,
            ledger,
            [dict(source.next(), context={"pad": pad}) for _ in range(events)],
        )
        lag_samples: list[tuple[float, int]] = []

        def lag() -> int:
            """Events produced (acknowledged) but not read by the worker yet."""
            read = events_read(scenario, "w1")
            return sum(sender.end_offsets().values()) - (read or 0)

        started = time.monotonic()
        sender.start()
        while sender.is_alive():
            sender.join(1.0)
            lag_samples.append((time.monotonic() - started, lag()))
        sender.flush()
        produced_s = time.monotonic() - started
        report["faults"] = 1
        flood_end_lag = lag()
        lag_samples.append((produced_s, flood_end_lag))
        # Drain: wait for the lag to reach 0, then audit every user.
        while time.monotonic() - started < timeout_s:
            current = lag()
            lag_samples.append((time.monotonic() - started, current))
            if current == 0:
                break
            time.sleep(1.0)
        drained_s = time.monotonic() - started
        wrong = scenario.wait_consistent(ledger, timeout=120)
        sampler.stop()
        processing_rate = events / max(drained_s, 1e-9)
        peak = sampler.peak_rss()
        report.update(
            events=ledger.total,
            users=len(ledger.users),
            backlog_mb=round(events * (pad_bytes + 150) / 2**20, 1),
            produced_per_s=round(events / produced_s),
            processed_per_s=round(processing_rate),
            offered_over_capacity=round((events / produced_s) / processing_rate, 1),
            max_lag=max(lag for _, lag in lag_samples),
            lag_at_end_of_flood=flood_end_lag,
            drained_after_s=round(drained_s - produced_s, 1),
            final_lag=lag_samples[-1][1],
            rss_baseline_mb=round(baseline / 2**20),
            rss_peak_mb=round(peak / 2**20),
            rss_growth_mb=round((peak - baseline) / 2**20),
            # (seconds, lag, worker RSS MB): memory against backlog over the run
            lag_and_rss=[
                (round(t), lag_value, round(_rss_at(sampler, started + t) / 2**20))
                for t, lag_value in lag_samples[:: max(1, len(lag_samples) // 12)]
            ],
            worker_alive=scenario.alive("w1"),
            wrong_users=wrong,
            lost_or_duplicated=len(wrong),
        )
        return report
    finally:
        if sampler is not None:
            sampler.stop()
        report["logs"] = scenario.logs() if report.get("lost_or_duplicated", 1) else ""
        scenario.stop_all()


def hostile_input(
    workdir: Path, seed: int, count: int = 10_000, valid_every: int = 5, timeout_s: float = 300.0
) -> dict[str, Any]:
    """``count`` generated hostile payloads interleaved with valid (adversarial) events.

    Checked: the validator refuses every hostile payload with a named reason (in-process);
    the worker dead-letters exactly those messages — each once, with that reason, the source
    partition/offset and the original bytes — and applies every valid event; it stays up,
    its memory stays bounded, and no payload content reaches its log.
    """
    import base64
    import json

    from schemas.validation import ERROR_KINDS, InvalidInput, parse_input
    from stream_app.kafka_io import make_producer
    from tests.reliability.harness import collect_topic, rss_bytes
    from tests.reliability.hostile import PII, generate_hostile, valid_event

    rng = random.Random(seed)
    report: dict[str, Any] = {"scenario": "hostile_input", "seed": seed, "faults": 0}
    generated = generate_hostile(count, seed)
    expected_kind: list[str] = []
    accepted = []
    for kind, payload in generated:
        try:
            parse_input(payload)
            accepted.append((kind, payload[:300]))
        except InvalidInput as exc:
            assert exc.kind in ERROR_KINDS, exc
            expected_kind.append(exc.kind)
    report.update(
        generated=len(generated),
        generated_by_kind=dict(sorted(Counter(k for k, _ in generated).items())),
        refused_in_process=len(expected_kind),
        accepted_hostile=[repr(p) for _, p in accepted[:5]],
    )
    if accepted:
        return report

    scenario = Scenario(workdir / f"hostile-{seed}", partitions=4)
    ledger = Ledger()
    sampler = None
    try:
        worker = scenario.start("w1")
        scenario.wait_ready("w1")
        baseline = rss_bytes(worker.proc.pid)
        sampler = ResourceSampler(lambda: worker.proc.pid, interval=0.5)
        sampler.start()
        producer = make_producer(scenario.settings)
        topic = scenario.settings.topic_events
        bad_futures = []
        valid_sent = 0
        for n, (_, payload) in enumerate(generated):
            key = rng.choice([None, b"victim-1", bytes(rng.randrange(256) for _ in range(8))])
            bad_futures.append((payload, producer.send(topic, key=key, value=payload)))
            if n % valid_every == 0:
                doc, ts = valid_event(valid_sent, rng)
                user = str(doc["user_id"])
                if valid_sent % 17 == 0:  # keyed wrongly: re-keyed once by the worker
                    user = doc["user_id"] = "rerouted-user"
                    key = b"not-the-user"
                else:
                    key = user.encode()
                raw = json.dumps(doc, ensure_ascii=False).encode()
                producer.send(topic, key=key, value=raw)
                ledger.add(doc, timestamp=ts)
                valid_sent += 1
        producer.flush()
        producer.close()
        report["faults"] = len(generated)
        sources = {}
        for payload, future in bad_futures:
            meta = future.get(timeout=30)
            sources[(meta.partition, meta.offset)] = payload
        kind_at = {source: kind for source, kind in zip(sources, expected_kind, strict=True)}

        letters = [
            json.loads(r.value)
            for r in collect_topic(
                scenario.settings, scenario.settings.topic_dead_letters, len(sources), timeout_s
            )
        ]
        problems = []
        seen = Counter()
        for letter in letters:
            source = (letter["source_partition"], letter["source_offset"])
            seen[source] += 1
            if letter["source_topic"] != topic or source not in sources:
                problems.append(f"dead letter for a message that was not hostile: {source}")
                continue
            original = sources[source]
            kept = base64.b64decode(letter["payload_b64"])
            if kept != original[: len(kept)] or (
                not letter["payload_truncated"] and kept != original
            ):
                problems.append(f"{source}: payload differs from the original bytes")
            if letter["error_kind"] != kind_at[source] or not letter["error_message"]:
                problems.append(f"{source}: reason {letter['error_kind']!r} != {kind_at[source]!r}")
        missing = [s for s in sources if s not in seen]
        twice = [s for s, n in seen.items() if n > 1]
        wrong = scenario.wait_consistent(ledger, timeout=timeout_s)
        sampler.stop()
        log_text = "\n".join(
            p.read_text(errors="replace") for p in scenario.workdir.glob("w1.*.log")
        )
        report.update(
            valid_events=valid_sent,
            valid_users=len(ledger.users),
            dead_letters=len(letters),
            dead_letters_by_reason=dict(sorted(Counter(d["error_kind"] for d in letters).items())),
            hostile_not_dead_lettered=len(missing),
            not_dead_lettered_examples=[
                (source, kind_at[source], sources[source][:80]) for source in missing[:5]
            ],
            worker_counters=worker_counters(scenario, "w1"),
            dead_lettered_twice=len(twice),
            dead_letter_problems=problems[:10],
            n_dead_letter_problems=len(problems),
            wrong_users=wrong,
            lost_or_duplicated=len(wrong) + len(missing) + len(twice),
            worker_alive=scenario.alive("w1"),
            rss_baseline_mb=round(baseline / 2**20),
            rss_peak_mb=round(sampler.peak_rss() / 2**20),
            rss_growth_mb=round((sampler.peak_rss() - baseline) / 2**20),
            payload_content_in_log=PII in log_text,
        )
        return report
    finally:
        if sampler is not None:
            sampler.stop()
        report["logs"] = scenario.logs() if report.get("lost_or_duplicated", 1) else ""
        scenario.stop_all()


def _rss_at(sampler: ResourceSampler, moment: float) -> int:
    before = [rss for t, rss, _ in sampler.samples if t <= moment]
    return before[-1] if before else 0


def worker_counters(scenario: Scenario, name: str) -> dict[str, Any]:
    """The worker's pipeline counters (``/dashboard/data``), for the report; {} if unavailable."""
    from tests.reliability.harness import http_json

    try:
        status, data = http_json(scenario.url(name, "/dashboard/data"), token=None)
    except OSError:
        return {}
    return data.get("counters", {}) if status == 200 and isinstance(data, dict) else {}


def _ts(event: dict) -> float:
    return event["timestamp"]


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "n": len(values),
        "min": round(min(values), 2),
        "median": round(statistics.median(values), 2),
        "max": round(max(values), 2),
    }


__all__ = ["broker_outage", "crash_restart", "failover", "flood", "hostile_input"]
