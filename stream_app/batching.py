"""Micro-batches that close when the backlog is drained, not after a fixed wait.

Faust's ``take_events(max_, within)`` starts its ``within`` wait only after the previous
batch was processed, and while a batch is processed nothing new enters the buffer. A
worker therefore idles ``within`` between any two batches short of ``max_``: measured at
half load on the generated workload, 52 ms of every 186 ms batch cycle, added to every
event's latency.

``take_batches`` keeps Faust's buffering (a processor fills the buffer while the stream is
consumed passively; events are acked once their batch was processed) and cuts a batch
when any of these holds:
- it holds ``max_`` events;
- no event arrived for ``idle`` seconds: what was waiting has been taken;
- its first event has waited ``within`` seconds.
Under a backlog the buffer keeps growing, so batches stay full; at moderate load a batch
goes as soon as the events that came in during the previous one are in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import faust
from faust.types import EventT
from mode.utils.aiter import aiter


class BatchingStream(faust.Stream):
    """The app's stream class (``faust.App(Stream=...)``), adding :meth:`take_batches`."""

    async def take_batches(
        self, max_: int, within: float, idle: float
    ) -> AsyncIterator[list[EventT]]:
        idle = min(idle, within)
        events: list[EventT] = []
        arrived = asyncio.Event()  # an event entered the buffer
        full = asyncio.Event()
        drained = asyncio.Event()  # set while the buffer may be filled
        drained.set()

        async def add_to_buffer(value: Any) -> Any:
            await drained.wait()  # not while a batch is being processed
            event = self.current_event
            if event is None:
                raise RuntimeError("take_batches: the stream has no current event")
            events.append(event)
            arrived.set()
            if len(events) >= max_:
                full.set()
                drained.clear()  # never more than max_ in one batch
            return value

        acks_before = self.enable_acks
        self.enable_acks = False  # acked below, once the batch was processed
        self.add_processor(add_to_buffer)
        self._enable_passive(aiter(self.channel))
        try:
            while not self.should_stop:
                if not events:  # sleep until the first event, not in idle-long steps
                    arrived.clear()
                    await self.wait_for_stopped(arrived)  # type: ignore[arg-type]
                    continue
                await self._wait_for_batch(events, full, max_, within, idle)
                drained.clear()
                batch = events.copy()
                events.clear()
                try:
                    yield batch
                finally:
                    for event in batch:
                        await self.ack(event)
                    full.clear()
                    drained.set()
        finally:
            self.enable_acks = acks_before
            self._processors.remove(add_to_buffer)

    async def _wait_for_batch(
        self, events: list[EventT], full: asyncio.Event, max_: int, within: float, idle: float
    ) -> None:
        """Return when the buffer is full, has stopped growing, or its oldest event waited
        ``within``; or at once when the stream stops."""
        first_seen = time.monotonic()  # the first event came just now (or while processing)
        while not self.should_stop and len(events) < max_:
            before = len(events)
            await self.wait_for_stopped(full, timeout=idle)  # type: ignore[arg-type]
            if len(events) == before or time.monotonic() - first_seen >= within:
                return
