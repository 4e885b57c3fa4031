"""System statistics."""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import document_response, tag

from ..auth import actor, prefetch, prefetched, require_role
from ..models import Role
from ..runtime import runtime
from ..schemas.tasks import Stats
from ..services.stats import get_stats_cached, stats_spec
from .common import entry_response

bp = Blueprint("stats", __name__)


@bp.get("/stats")
@prefetch(lambda _user_id, _args, _query: stats_spec())
@tag(["stats"])
@require_role(Role.ADMIN, Role.MANAGER)
@document_response(Stats)
async def stats() -> Response:
    """Counts of users and tasks, per status, overdue, and pending approvals."""
    return entry_response(await get_stats_cached(runtime(), actor(), prefetched()))
