"""HTTP only: each module parses input, calls one service function, returns a model."""

from quart import Blueprint

from taskapi.http.blueprints import (
    account,
    activity,
    auth,
    docs,
    events,
    health,
    metrics,
    problem_pages,
    reports,
    stats,
    tasks,
    users,
    webhooks,
    ws,
)

# Served at the root only.
ROOT_BLUEPRINTS: list[Blueprint] = [health.bp, docs.bp, metrics.bp, problem_pages.bp]
# Served at the root and mirrored under /api/v1.
API_BLUEPRINTS: list[Blueprint] = [auth.bp, account.bp, users.bp, tasks.bp, activity.bp,
                                  stats.bp, reports.bp, events.bp, ws.bp, webhooks.bp]
