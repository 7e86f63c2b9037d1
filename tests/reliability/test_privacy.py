"""Privacy: a ``delete_user`` event purges the user's state and recommendations, leaves
tombstones on the changelog and on the recommendations topic, survives a crash, and later
events start from nothing. No payload content is logged."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from models.events import USER_DELETION
from schemas.records import UserDeletion
from schemas.validation import InvalidInput, parse_event, parse_input
from stream_app.engine import Engine
from stream_app.settings import Settings
from tests.conftest import event, memory_pipeline
from tests.reliability.harness import EventSource, Ledger, Producer, Scenario, read_topic
from tests.reliability.hostile import PII

NOW_TS = 1_700_000_000.0


def deletion(event_id: str, user: str, ts: float = NOW_TS + 1000) -> dict:
    return {"event_id": event_id, "user_id": user, "event_type": USER_DELETION, "timestamp": ts}


def test_a_deletion_is_valid_input_without_an_item_but_never_a_behaviour():
    record = parse_input(json.dumps(deletion("d1", "u1")).encode())
    assert isinstance(record, UserDeletion) and record.user_id == "u1"
    with pytest.raises(InvalidInput) as refused:
        parse_input(json.dumps({"event_type": USER_DELETION, "event_id": "d"}).encode())
    assert refused.value.kind == "missing_field"
    with pytest.raises(InvalidInput) as refused:  # the evaluator's path: behaviours only
        parse_event(json.dumps(deletion("d1", "u1")).encode())
    assert refused.value.kind == "unknown_event_type"


def test_engine_forgets_what_it_holds_in_memory(tmp_path):
    from models.streaming import Interaction

    engine = Engine(
        Settings.from_env(
            env={},
            text_encoder="hashing",
            data_dir=str(tmp_path),
            sequence_finetune_interval_s=5,
            long_term_refresh_events=5,  # the 12 events below make the history stale
        )
    )

    class _Sequence:  # just enough of a sequence model for note_activity
        max_len = 8
        version = "stub"

    engine.recommender.sequence = _Sequence()
    profile = engine.load_profile("u1", None)
    for n in range(12):
        engine.apply(profile, Interaction("u1", f"i{n}", NOW_TS + n, "view", None, f"e{n}"), None)
        engine.note_activity(profile)
    engine._pending["u1"] = ("packed", 10)
    assert "u1" in engine._stale and engine._recent_sequences
    fresh = engine.forget("u1")
    assert fresh.events_applied == 0 and fresh.items == []
    assert "u1" not in engine._stale and "u1" not in engine._pending
    assert not [user for user, _ in engine._recent_sequences if user == "u1"]
    # A long-term refresh that was running when the user was deleted is dropped.
    engine._stale_taken_at = engine._forgotten_at["u1"] - 1
    engine.refresh_long_term([profile])
    assert "u1" not in engine._pending


@pytest.fixture
def pipeline(tmp_path):
    return memory_pipeline(tmp_path)[2]


async def _drain(agent, messages):
    async with agent.test_context() as context:
        for key, doc in messages:
            await context.put(value=json.dumps(doc).encode(), key=key.encode())
            await asyncio.sleep(0.05)  # one message per micro-batch: state carries over
        await asyncio.sleep(0.3)


@pytest.mark.asyncio
async def test_deletion_purges_state_emits_a_tombstone_and_later_events_start_fresh(pipeline):
    messages = [("u1", event(f"a{n}", "u1", f"i{n}", NOW_TS + n)) for n in range(3)]
    messages += [("u2", event("b0", "u2", "i1", NOW_TS))]
    messages += [("u1", deletion("d1", "u1"))]
    await _drain(pipeline.agents["process-events"], messages)
    assert pipeline.profiles.get("u1") is None
    assert pipeline.profiles.get("u2") is not None
    sent = [call.kwargs for call in pipeline.recommendations_topic.send.call_args_list]
    assert sent[-1] == {"key": b"u1", "value": None}  # the tombstone comes last
    assert pipeline.stats.users_deleted == 1
    assert pipeline.stats.dead_letters.total() == 0

    later = [("u1", event("a9", "u1", "i9", NOW_TS + 2000))]
    await _drain(pipeline.agents["process-events"], later)
    profile = pipeline.engine.load_profile("u1", pipeline.profiles.get("u1"))
    assert profile.events_applied == 1 and profile.items == ["i9"]


@pytest.mark.asyncio
async def test_deletion_and_new_events_in_one_batch(pipeline):
    messages = [
        ("u1", event("a0", "u1", "i0", NOW_TS)),
        ("u1", deletion("d1", "u1")),
        ("u1", event("a1", "u1", "i1", NOW_TS + 2000)),
    ]
    async with pipeline.agents["process-events"].test_context() as context:
        for key, doc in messages:  # no pause: one micro-batch
            await context.put(value=json.dumps(doc).encode(), key=key.encode())
        await asyncio.sleep(0.3)
    profile = pipeline.engine.load_profile("u1", pipeline.profiles.get("u1"))
    assert profile.items == ["i1"] and profile.events_applied == 1
    sent = [call.kwargs for call in pipeline.recommendations_topic.send.call_args_list]
    assert {"key": b"u1", "value": None} in sent
    assert sent[-1]["value"] is not None  # then the new list


@pytest.mark.asyncio
async def test_a_replayed_deletion_leaves_the_same_state(pipeline):
    """Retried within a batch it is recognised; replayed after a crash (in order, with the
    events after it) it empties the profile again and the events after it rebuild it."""
    first = [
        ("u1", event("a0", "u1", "i0", NOW_TS)),
        ("u1", deletion("d1", "u1")),
        ("u1", event("a1", "u1", "i1", NOW_TS + 2000)),
        ("u1", deletion("d1", "u1")),  # a producer retry of the same deletion
    ]
    async with pipeline.agents["process-events"].test_context() as context:
        for key, doc in first:  # no pause: one micro-batch
            await context.put(value=json.dumps(doc).encode(), key=key.encode())
        await asyncio.sleep(0.3)
    profile = pipeline.engine.load_profile("u1", pipeline.profiles.get("u1"))
    assert profile.items == ["i1"] and profile.events_applied == 1
    assert pipeline.stats.users_deleted == 1 and pipeline.stats.duplicates == 1

    await _drain(pipeline.agents["process-events"], first[1:3])  # replayed after a crash
    profile = pipeline.engine.load_profile("u1", pipeline.profiles.get("u1"))
    assert profile.items == ["i1"] and profile.events_applied == 1


@pytest.mark.integration
def test_deleted_user_is_gone_everywhere_also_after_a_crash(tmp_path, record_report):
    scenario = Scenario(tmp_path / "privacy", partitions=2)
    ledger = Ledger()
    source = EventSource(11, n_users=6)
    producer = Producer(scenario.settings, ledger)
    target = "user-3"
    try:
        scenario.start("w1")
        scenario.wait_ready("w1")
        for _ in range(300):
            doc = source.next()
            doc["context"] = {"email": PII}
            producer.send(doc)
        producer.flush()
        assert not scenario.wait_consistent(ledger, timeout=120)
        assert scenario.state(target)[0] == 200

        producer.send(deletion("forget-1", target, ts=time.time()))
        producer.flush()
        deadline = time.monotonic() + 60
        while scenario.state(target)[0] != 404:
            assert time.monotonic() < deadline, "state not deleted"
            time.sleep(0.5)
        assert not scenario.wait_consistent(ledger, timeout=60)  # the others are untouched

        # Crash right after the deletion: it must survive the restart (RocksDB + changelog).
        scenario.kill9("w1")
        scenario.start("w1")
        scenario.wait_ready("w1")
        assert scenario.state(target)[0] == 404

        def last_value(topic: str, key: bytes) -> tuple[bool, object]:
            found = [r for r in read_topic(scenario.settings, topic) if r.key == key]
            return bool(found), found[-1].value if found else None

        assert last_value(scenario.settings.topic_recommendations, target.encode()) == (True, None)
        changelog = f"{scenario.settings.app_id}-user-profiles-changelog"
        # Faust JSON-encodes table keys on the changelog.
        assert last_value(changelog, json.dumps(target).encode()) == (True, None)

        fresh = {"event_id": "after-1", "user_id": target, "item_id": "c1"}
        producer.send({**fresh, "event_type": "click", "timestamp": time.time()})
        producer.flush()
        assert not scenario.wait_consistent(ledger, timeout=60)
        status, state = scenario.state(target)
        assert status == 200 and state["events_applied"] == 1 and state["recent_items"] == ["c1"]

        log_text = "".join(p.read_text(errors="replace") for p in scenario.workdir.glob("w1.*"))
        assert PII not in log_text
        record_report(
            {
                "scenario": "user_deletion",
                "faults": 1,
                "events": ledger.total + 1,
                "deleted_user_state": 404,
                "tombstones": ["changelog", "recommendations"],
                "lost_or_duplicated": 0,
            }
        )
    finally:
        producer.close()
        scenario.stop_all()
