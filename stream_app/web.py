"""HTTP views on each worker's web port: liveness and readiness."""

from __future__ import annotations

from typing import Any

import faust
from faust.web import Request, Response, View

from stream_app.settings import Settings


def register_views(app: faust.App, settings: Settings, follower: Any) -> None:
    @app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok"})

    @app.page("/ready")
    class Ready(View):
        """200 once partitions are assigned, tables recovered and the catalog read."""

        async def get(self, request: Request) -> Response:
            checks = {
                "partitions_assigned": bool(app.consumer.assignment()) if app.consumer else False,
                "tables_recovered": not app.rebalancing and app.tables.recovery.completed.is_set(),
                "catalog_caught_up": follower.caught_up,
            }
            ready = all(checks.values())
            return self.json({"ready": ready, **checks}, status=200 if ready else 503)
