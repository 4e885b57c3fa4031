"""System statistics."""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import document_response, tag

from taskapi.http.current import runtime
from taskapi.http.deps import actor, require_role
from taskapi.http.prefetch import prefetch, prefetched
from taskapi.http.responses import entry_response
from taskapi.models import Role
from taskapi.schemas.tasks import Stats
from taskapi.services.stats import get_stats_cached, stats_spec

bp = Blueprint("stats", __name__)


@bp.get("/stats")
@prefetch(lambda _user_id, _args, _query: stats_spec())
@tag(["stats"])
@require_role(Role.ADMIN, Role.MANAGER)
@document_response(Stats)
async def stats() -> Response:
    """Counts of users and tasks, per status, overdue, and pending approvals."""
    return entry_response(await get_stats_cached(runtime(), actor(), prefetched()))
