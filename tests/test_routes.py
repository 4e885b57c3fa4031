"""Meta-tests over the route map: every route is either deliberately public or role-gated,
and every API route is mirrored under /api/v1."""

from __future__ import annotations

from taskapi.app import API_PREFIX
from taskapi.auth import ROLES_ATTRIBUTE, UNLIMITED_ENDPOINTS

PUBLIC = {"auth.register", "auth.login", "auth.refresh"}


async def test_every_route_is_public_by_decision_or_role_gated(app) -> None:  # type: ignore[no-untyped-def]
    ungated = []
    for rule in app.url_map.iter_rules():
        endpoint = rule.endpoint.removeprefix("v1_")
        view = app.view_functions[rule.endpoint]
        if endpoint in PUBLIC or endpoint in UNLIMITED_ENDPOINTS or endpoint == "static":
            continue
        if not getattr(view, ROLES_ATTRIBUTE, None):
            ungated.append(rule.rule)
    assert ungated == []


async def test_every_api_route_is_mirrored_under_api_v1(app) -> None:  # type: ignore[no-untyped-def]
    rules = {(r.rule, tuple(sorted(r.methods or ()))) for r in app.url_map.iter_rules()}
    root_only = {"/healthz", "/readyz", "/docs", "/docs/init.js", "/openapi.json", "/metrics",
                 "/docs/static/<path:filename>", "/static/<path:filename>"}
    missing = [rule for rule, methods in rules
               if not rule.startswith(API_PREFIX) and rule not in root_only
               and (API_PREFIX + rule, methods) not in rules]
    assert missing == []
