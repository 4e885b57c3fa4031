"""Prometheus metrics (root only, not mirrored under /api/v1, not in the OpenAPI spec)."""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import hide
from werkzeug.exceptions import NotFound

from taskapi.core.metrics import CONTENT_TYPE, render
from taskapi.http.client import may_scrape
from taskapi.http.current import runtime
from taskapi.services.monitoring import scrape

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
@hide
async def metrics() -> Response:
    """Prometheus text format, summed over all worker processes; anyone not allowed gets the
    same 404 as an unknown URL."""
    if not may_scrape():
        raise NotFound()
    state = runtime()
    body = render(await scrape(state.db, state.redis))
    return Response(body, content_type=CONTENT_TYPE)
