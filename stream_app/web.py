"""HTTP views on each worker's web port.

- ``/health``: liveness; ``/ready``: partitions assigned, tables recovered, catalog read.
- ``/metrics``: Prometheus exposition (consumer lag, throughput, latency, models, tables).
- ``/dashboard``: a live page with charts; it polls ``/dashboard/data`` (JSON) every second.
- ``/model``: the ranking model, sequence checkpoint, text encoder and device serving now.
- ``/users/{user_id}/state`` and ``/users/{user_id}/recommendations``: user data, behind a
  bearer token (``STREAMREC_API_TOKEN``), routed to the worker that owns the user's
  partition. Without a configured token they always answer 401.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST

from stream_app.metrics import WorkerMetrics, model_info
from stream_app.settings import Settings


def authorized(request: Request, token: str | None) -> bool:
    """Constant-time bearer-token check; no configured token means no access."""
    if not token:
        return False
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        presented.strip().encode(), token.encode()
    )


@cache
def dashboard_html() -> str:
    """The dashboard page, installed beside this module as package data (pyproject.toml)."""
    return Path(__file__).with_name("dashboard.html").read_text(encoding="utf-8")


def readiness(app: faust.App, follower: Any) -> Mapping[str, bool]:
    return {
        "partitions_assigned": bool(app.consumer.assignment()),
        "tables_recovered": not app.rebalancing and app.tables.recovery.completed.is_set(),
        "catalog_caught_up": follower.caught_up,
    }


def register_views(app: faust.App, settings: Settings, follower: Any, pipeline: Any) -> None:
    engine, profiles = pipeline.engine, pipeline.profiles
    # User endpoints are routed by the events topic, not the table: Faust JSON-encodes
    # table keys, so hashing the table key picks another partition than the one the
    # user's events (and so their state) live on whenever workers share the partitions.
    metrics = WorkerMetrics(app, settings, pipeline, lambda: readiness(app, follower))

    @app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok"})

    @app.page("/ready")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            checks = readiness(app, follower)
            ready = all(checks.values())
            return self.json({"ready": ready, **checks}, status=200 if ready else 503)

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            await metrics.refresh()
            return self.bytes(metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/dashboard")
    class Dashboard(View):
        async def get(self, request: Request) -> Response:
            return self.html(dashboard_html(), headers={"Cache-Control": "no-cache"})

    @app.page("/dashboard/data")
    class DashboardData(View):
        async def get(self, request: Request) -> Response:
            await metrics.refresh()
            return self.json(metrics.dashboard_data(), headers={"Cache-Control": "no-store"})

    @app.page("/model")
    class Model(View):
        async def get(self, request: Request) -> Response:
            return self.json(model_info(pipeline, settings))

    def denied(view: View) -> Response:
        return view.json(
            {"error": "unauthorized: send 'Authorization: Bearer <STREAMREC_API_TOKEN>'"},
            status=401,
        )

    @app.page("/users/{user_id}/state")
    class UserState(View):
        """What streamrec holds about a user (audit: nothing lost, nothing counted twice)."""

        @app.topic_route(topic=pipeline.events_topic, match_info="user_id")
        async def get(self, request: Request, user_id: str) -> Response:
            if not authorized(request, settings.api_token):
                return denied(self)
            stored = profiles.get(user_id)
            if stored is None:
                return self.json({"error": f"unknown user {user_id}"}, status=404)
            profile = engine.load_profile(user_id, stored)
            return self.json(
                {
                    "user_id": user_id,
                    "events_applied": profile.events_applied,
                    "last_event_time": profile.last_event_time,
                    "recent_items": profile.items[-20:],
                    "long_term_refreshed_at_event": profile.long_term_at,
                }
            )

    @app.page("/users/{user_id}/recommendations")
    class UserRecommendations(View):
        """The user's current top-K, ranked now from their stored state."""

        @app.topic_route(topic=pipeline.events_topic, match_info="user_id")
        async def get(self, request: Request, user_id: str) -> Response:
            if not authorized(request, settings.api_token):
                return denied(self)
            profile = engine.load_profile(user_id, profiles.get(user_id))
            return self.json(engine.recommend([profile], ["api"])[0])
