"""``BatchingStream.take_batches``: when a micro-batch closes, and that no event is lost."""

import asyncio
import time

import faust
import pytest

from stream_app.batching import BatchingStream


def _batching_agent(max_: int, within: float, idle: float):
    """A memory app whose one agent records (values, seconds since start) per batch."""
    app = faust.App("take-batches", Stream=BatchingStream, store="memory://", autodiscover=False)
    batches: list[tuple[list[int], float]] = []
    started = time.monotonic()

    @app.agent()
    async def batcher(stream):
        async for batch in stream.take_batches(max_, within, idle):
            batches.append(([e.value for e in batch], time.monotonic() - started))

    app.finalize()
    app.conf.store = "memory://"
    app.flow_control.resume()
    return batcher, batches


async def _wait_until(condition, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_a_backlog_is_cut_into_full_batches_in_order():
    # A quiet time far above the gaps between puts, even on a busy machine.
    agent, batches = _batching_agent(max_=4, within=5.0, idle=0.5)
    async with agent.test_context() as context:
        for n in range(10):
            await context.put(n)
        await _wait_until(lambda: len(batches) == 3, timeout_s=3.0)
    assert [values for values, _ in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


@pytest.mark.asyncio
async def test_a_batch_goes_once_events_stop_arriving_not_after_the_longest_wait():
    # Faust's take_events would hold these three events for the whole 5 s.
    agent, batches = _batching_agent(max_=100, within=5.0, idle=0.02)
    async with agent.test_context() as context:
        for n in range(3):
            await context.put(n)
        await _wait_until(lambda: bool(batches), timeout_s=2.0)
    assert [values for values, _ in batches] == [[0, 1, 2]]
    assert batches[0][1] < 2.5


@pytest.mark.asyncio
async def test_a_steady_trickle_is_cut_when_its_first_event_has_waited_long_enough():
    # Events arrive faster than ``idle``: only ``within`` can close a batch.
    agent, batches = _batching_agent(max_=1000, within=0.15, idle=0.05)
    async with agent.test_context() as context:
        for n in range(120):
            await context.put(n)
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.3)
    assert len(batches) >= 2
    assert [v for values, _ in batches for v in values] == list(range(120))
