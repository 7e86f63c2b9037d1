"""Micro-batch size is a performance knob only: the same events give the same state."""

import asyncio
import json
import random

import numpy as np
import pytest

from tests.conftest import event, memory_pipeline

NOW_TS = 1_700_000_000.0


def _pipeline(tmp_path, batch_size: int, rerank: bool = False):
    # Gate learning off: SGD order follows batching by design; everything else must not.
    return memory_pipeline(
        tmp_path / f"{batch_size}-{rerank}",
        app_id=f"batching-{batch_size}",
        batch_size=batch_size,
        gate_learning=False,
        rerank=rerank,
    )[2]


def _stream(n_events: int = 240, seed: int = 5) -> list[dict]:
    rng = random.Random(seed)
    kinds = ["view", "click", "purchase", "like", "skip", "add_to_cart"]
    events = []
    for n in range(n_events):
        user = f"u{rng.randrange(12)}"
        item = f"i{rng.randrange(30)}"
        events.append(event(f"e{n}", user, item, NOW_TS + 7 * n, kind=rng.choice(kinds)))
    return events


async def _run(pipeline, events: list[dict]) -> None:
    async with pipeline.agents["process-events"].test_context() as context:
        for doc in events:
            await context.put(value=json.dumps(doc).encode(), key=doc["user_id"].encode())
        await asyncio.sleep(0.3)


@pytest.mark.asyncio
@pytest.mark.parametrize("rerank", [False, True])
async def test_state_and_rankings_do_not_depend_on_batch_size(tmp_path, rerank):
    events = _stream()
    one, many = _pipeline(tmp_path, 1, rerank), _pipeline(tmp_path, 64, rerank)
    await _run(one, events)
    await _run(many, events)
    assert one.stats.events_applied == many.stats.events_applied == len(events)
    assert many.stats.batch_sizes.count < len(events)  # it did take several events at once
    users = sorted({e["user_id"] for e in events})
    for user in users:
        # "s" is where the last event came from (its Kafka timestamp is the put() time).
        state_one = {k: v for k, v in json.loads(one.profiles[user]).items() if k != "s"}
        state_many = {k: v for k, v in json.loads(many.profiles[user]).items() if k != "s"}
        assert state_one == state_many, user
    # Same learned state → same ranking for every user (item rows may be in another order).
    profiles_one = [one.engine.load_profile(u, one.profiles[u]) for u in users]
    profiles_many = [many.engine.load_profile(u, many.profiles[u]) for u in users]
    for a, b in zip(
        one.engine.recommend(profiles_one, ["t"] * len(users)),
        many.engine.recommend(profiles_many, ["t"] * len(users)),
        strict=True,
    ):
        assert [i["item_id"] for i in a["items"]] == [i["item_id"] for i in b["items"]]
        np.testing.assert_allclose(
            [i["score"] for i in a["items"]], [i["score"] for i in b["items"]], rtol=1e-4, atol=1e-5
        )


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_debounce_holds_a_user_changed_within_the_interval_and_keeps_the_latest_trigger():
    from stream_app.pipeline import RecommendDebounce

    clock = _Clock()
    debounce = RecommendDebounce(1.0, clock=clock)
    assert debounce.admit("u1", "e1", [1.0])
    assert debounce.admit("u2", "e2", [1.0])
    clock.now += 0.4
    assert not debounce.admit("u1", "e3", [2.0])
    assert not debounce.admit("u1", "e4", [3.0])
    assert debounce.due() == []  # not yet
    clock.now += 0.6
    assert debounce.due() == [("u1", "e4", [2.0, 3.0])]  # the latest trigger, every event
    assert debounce.due() == []
    clock.now += 0.5
    assert not debounce.admit("u1", "e5", [4.0])  # sent by due() 0.5 s ago
    debounce.forget("u1")  # deleted: nothing held, nothing owed
    assert debounce.due() == []
    clock.now += 5.0
    debounce.due()
    assert not debounce._last  # memory: only users sent within the interval are kept
    assert RecommendDebounce(0.0, clock=clock).admit("u1", "e6", [])  # off: always now


@pytest.mark.asyncio
async def test_debounced_users_get_one_recommendation_reflecting_all_their_events(tmp_path):
    _, _, pipeline = memory_pipeline(
        tmp_path, app_id="debounce", recommend_debounce_s=30.0, gate_learning=False
    )
    send = pipeline.recommendations_topic.send
    events = [event(f"e{n}", "u1", f"i{n}", NOW_TS + n) for n in range(3)]
    async with pipeline.agents["process-events"].test_context() as context:
        for doc in events:  # one micro-batch each
            await context.put(value=json.dumps(doc).encode(), key=b"u1")
            await asyncio.sleep(0.1)
        assert pipeline.stats.events_applied == 3
        assert send.await_count == 1  # the first change; the next two wait
        assert json.loads(send.await_args.kwargs["value"])["trigger_event_id"] == "e0"
        assert await pipeline.send_debounced() == 0  # the interval is not over

        later = pipeline.debounce.clock() + 31.0
        pipeline.debounce.clock = lambda: later
        assert await pipeline.send_debounced() == 1
        assert send.await_count == 2
        held = json.loads(send.await_args.kwargs["value"])
        assert held["trigger_event_id"] == "e2"  # ranked from the state after all three
        assert not {"i0", "i1", "i2"} & {item["item_id"] for item in held["items"]}
        assert await pipeline.send_debounced() == 0  # sent once


def test_background_work_is_paced_to_its_share_of_wall_time():
    from stream_app.pipeline import TimeShare

    clock = _Clock()
    pace = TimeShare(0.25, clock=clock)
    assert pace.ready()
    with pace.timed():
        clock.now += 2.0  # a 2 s run at a 25 % share: 6 s of pause
    assert not pace.ready()
    clock.now += 5.9
    assert not pace.ready()
    clock.now += 0.2
    assert pace.ready()


def test_records_fetched_before_the_seek_wait_for_the_committed_offset():
    from types import SimpleNamespace

    from stream_app.pipeline import InputOrder

    def message(offset: int, partition: int = 0):
        return SimpleNamespace(
            tp=("events", partition), topic="events", partition=partition, offset=offset
        )

    order = InputOrder({("events", 0): 625}.get)
    # Records from the old position arrive first: held back, not processed.
    assert [order.admit(message(o)) for o in (1400, 1401)] == [False, False]
    # The seek's records, in order, then the held-back ones again.
    assert all(order.admit(message(o)) for o in range(625, 1402))
    assert order.held_back == 2
    assert order.admit(message(1402))
    assert order.take_seeks() == {}
    assert order.admit(message(7, partition=1))  # nothing committed yet: as it comes
    order.forget([("events", 0)])
    assert not order.admit(message(2000))  # a new assignment waits for its offset again

    order.MAX_EARLY = 1
    order.forget([("events", 0)])
    assert not order.admit(message(3000))
    assert order.admit(message(3001))  # the committed offset never came: go on


def test_a_gap_is_read_again_and_passed_only_if_the_log_lacks_it():
    from types import SimpleNamespace

    from stream_app.pipeline import InputOrder

    def message(offset: int):
        return SimpleNamespace(tp=("events", 0), topic="events", partition=0, offset=offset)

    order = InputOrder(lambda tp: None)
    assert all(order.admit(message(o)) for o in range(0, 143))
    # 143 and 144 skipped: hold back what follows and seek back to 143.
    assert [order.admit(message(o)) for o in (145, 146, 147)] == [False, False, False]
    assert order.take_seeks() == {("events", 0): 143}
    assert order.take_seeks() == {}  # asked for once
    assert all(order.admit(message(o)) for o in range(143, 150))  # the re-read, in order
    assert order.gaps_read_again == 1

    # A gap the log really has (a transaction marker): the re-read starts past it again.
    assert not order.admit(message(152))
    assert order.take_seeks() == {("events", 0): 150}
    assert not order.admit(message(153))  # fetched before the seek back
    assert order.admit(message(152))  # the re-read: 150..151 are not in the log
    assert order.admit(message(153))
    assert order.take_seeks() == {}
