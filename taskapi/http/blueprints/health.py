"""Liveness and readiness probes (root only, not mirrored under /api/v1)."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import tag, validate_response

from taskapi.core.errors import APIError
from taskapi.http.current import runtime
from taskapi.http.openapi import problems
from taskapi.schemas.health import Health, Readiness
from taskapi.services.health import check_dependencies

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@tag(["health"])
@validate_response(Health)
async def healthz() -> Health:
    """The process is up and serving."""
    return Health(status="ok")


@bp.get("/readyz")
@tag(["health"])
@validate_response(Readiness)
@problems(503)
async def readyz() -> Readiness:
    """The database and Redis both answer; 503 names what is down."""
    state = runtime()
    checks = await check_dependencies(state.db, state.redis)
    down = sorted(name for name, result in checks.items() if result != "ok")
    if down:
        raise APIError(503, "dependency_down", f"Not ready: {', '.join(down)} down.",
                       checks=checks)
    return Readiness(status="ok", checks=checks)
