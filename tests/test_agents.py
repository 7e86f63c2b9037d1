"""Agent behaviour through Faust's ``test_context`` (no broker; memory store)."""

import asyncio
import json

import pytest

from schemas import Recommendation
from tests.conftest import event, memory_pipeline

NOW_TS = 1_700_000_000.0


@pytest.fixture
def pipeline(tmp_path):
    return memory_pipeline(tmp_path)[2]


async def _drain(agent, payloads, keys):
    async with agent.test_context() as context:
        for payload, key in zip(payloads, keys, strict=False):
            await context.put(value=payload, key=key)
        await asyncio.sleep(0.3)  # let the micro-batch window close


def _sent(mock):
    return [call.kwargs for call in mock.call_args_list]


@pytest.mark.asyncio
async def test_events_update_state_and_emit_one_recommendation_per_user(pipeline):
    payloads = [
        json.dumps(event(f"e{n}", f"u{n % 2}", f"i{n}", NOW_TS + n)).encode() for n in range(6)
    ]
    keys = [f"u{n % 2}".encode() for n in range(6)]
    await _drain(pipeline.agents["process-events"], payloads, keys)
    recs = _sent(pipeline.recommendations_topic.send)
    assert sorted(r["key"] for r in recs) == [b"u0", b"u1"]
    assert pipeline.stats.events_applied == 6
    stages = pipeline.stats.stage_seconds  # each batch times its stages
    assert all(stages[s].count >= 1 for s in ("apply", "rank", "gate"))
    for rec in recs:
        value = Recommendation.loads(rec["value"])  # the published bytes fit the schema
        assert value.user_id == rec["key"].decode() and value.trigger_event_id in {"e4", "e5"}
        assert {item.item_id for item in value.items}.isdisjoint(
            {f"i{n}" for n in range(6) if f"u{n % 2}" == value.user_id}
        )


@pytest.mark.asyncio
async def test_bad_input_is_dead_lettered_and_valid_input_still_processed(pipeline):
    good = json.dumps(event("ok", "u1", "i1", NOW_TS)).encode()
    bad = [b"{broken", json.dumps(event("x", "u1", "i1", NOW_TS, kind="teleport")).encode()]
    await _drain(pipeline.agents["process-events"], [bad[0], good, bad[1]], [b"u1"] * 3)
    letters = [c["value"] for c in _sent(pipeline.dead_letters_topic.send)]
    assert [d.error_kind for d in letters] == ["invalid_json", "unknown_event_type"]
    assert letters[0].payload == "{broken"
    assert pipeline.stats.events_applied == 1
    assert len(_sent(pipeline.recommendations_topic.send)) == 1


@pytest.mark.asyncio
async def test_events_past_the_uncataloged_item_limit_are_dead_lettered(tmp_path):
    pipeline = memory_pipeline(tmp_path, max_uncataloged_items=2)[2]
    items = ["i1", "i2", "i1", "i3", "i2", "i4"]  # i3 and i4 would be a third and fourth
    payloads = [
        json.dumps(event(f"e{n}", f"u{n % 2}", item, NOW_TS + n)).encode()
        for n, item in enumerate(items)
    ]
    await _drain(
        pipeline.agents["process-events"], payloads, [f"u{n % 2}".encode() for n in range(6)]
    )
    letters = [c["value"] for c in _sent(pipeline.dead_letters_topic.send)]
    assert [(d.error_kind, json.loads(d.payload)["item_id"]) for d in letters] == [
        ("item_limit", "i3"),
        ("item_limit", "i4"),
    ]
    assert "catalog" in letters[0].error_message
    assert pipeline.stats.events_applied == 4
    assert pipeline.engine.items.id_only == 2


@pytest.mark.asyncio
async def test_events_keyed_by_something_else_are_rekeyed_by_user(pipeline):
    payload = json.dumps(event("e", "u9", "i1", NOW_TS)).encode()
    await _drain(pipeline.agents["process-events"], [payload], [None])
    sent = _sent(pipeline.events_topic.send)
    assert sent == [{"key": b"u9", "value": payload}]
    assert pipeline.stats.rerouted == 1 and pipeline.stats.events_applied == 0
