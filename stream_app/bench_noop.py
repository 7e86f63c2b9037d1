"""The benchmark's baseline: a Faust worker that does nothing but consume.

It reads the events topic exactly the way ``process-events`` does (same app
settings, same ``take_batches`` micro-batches), so the gap between this worker and
the pipeline is the cost of streamrec's own work. ``--mode output`` also sends one
message per user per micro-batch, like the pipeline's recommendations.

Run as ``python -m stream_app.bench_noop --mode consume|output`` with the worker's
``STREAMREC_*`` environment; ``streamrec bench`` starts it.
"""

from __future__ import annotations

import argparse

import faust
from faust.web import Request, Response, View

from stream_app.app import faust_app, faust_worker
from stream_app.settings import Settings

MODES = ("consume", "output")


def build_noop_app(settings: Settings, mode: str) -> faust.App:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    app = faust_app(settings, store="memory://")
    events = app.topic(settings.topic_events, key_serializer="raw", value_serializer="raw")
    output = app.topic(settings.topic_recommendations, key_serializer="raw", value_serializer="raw")

    @app.agent(events, name="noop")
    async def noop(stream: faust.StreamT) -> None:
        batches = stream.take_batches(
            settings.batch_size, settings.batch_wait_s, settings.batch_idle_s
        )
        async for batch in batches:
            if mode == "output":
                # The user's latest event, echoed unparsed: the bench times it like a
                # recommendation (its event_id stands in for trigger_event_id).
                latest = {event.message.key: event.message.value for event in batch}
                for user, value in latest.items():
                    await output.send(key=user, value=value)

    @app.page("/ready")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            ready = bool(app.consumer.assignment()) and not app.rebalancing
            return self.json({"ready": ready}, status=200 if ready else 503)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=MODES, default="consume")
    args = parser.parse_args()
    settings = Settings.from_env()
    app = build_noop_app(settings, args.mode)
    faust_worker(app, settings).execute_from_commandline()


if __name__ == "__main__":
    main()
