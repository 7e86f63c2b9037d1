"""HTTP views on each worker's web port.

- ``/health``: liveness; ``/ready``: partitions assigned, tables recovered, catalog read.
- ``/users/{user_id}/state`` and ``/users/{user_id}/recommendations``: user data, behind a
  bearer token (``STREAMREC_API_TOKEN``), routed to the worker that owns the user's
  partition. Without a configured token they always answer 401.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

import faust
from faust.web import Request, Response, View

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


def register_views(app: faust.App, settings: Settings, follower: Any, pipeline: Any) -> None:
    engine, profiles = pipeline.engine, pipeline.profiles

    @app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok"})

    @app.page("/ready")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            checks = {
                "partitions_assigned": bool(app.consumer.assignment()),
                "tables_recovered": not app.rebalancing and app.tables.recovery.completed.is_set(),
                "catalog_caught_up": follower.caught_up,
            }
            ready = all(checks.values())
            return self.json({"ready": ready, **checks}, status=200 if ready else 503)

    def denied(view: View) -> Response:
        return view.json(
            {"error": "unauthorized: send 'Authorization: Bearer <STREAMREC_API_TOKEN>'"},
            status=401,
        )

    @app.page("/users/{user_id}/state")
    class UserState(View):
        """What streamrec holds about a user (audit: nothing lost, nothing counted twice)."""

        @app.table_route(table=profiles, match_info="user_id")
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

        @app.table_route(table=profiles, match_info="user_id")
        async def get(self, request: Request, user_id: str) -> Response:
            if not authorized(request, settings.api_token):
                return denied(self)
            profile = engine.load_profile(user_id, profiles.get(user_id))
            recommendation = engine.recommend([profile], ["api"])[0]
            return self.json(json.loads(recommendation.dumps()))
