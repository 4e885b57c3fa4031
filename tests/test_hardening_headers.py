"""Security headers (hardening issue #14, finding 10): responses that carry tokens are never
stored by a cache (`Cache-Control: no-store`), at the root and under /api/v1, and every route
whose response model holds a token or a secret says so; the docs page has a Content Security
Policy that matches its local assets and cannot be framed. A real headless Chromium loads
/docs from a real `taskapi serve` with no CSP violation and renders the operations."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from quart import Quart
from quart_schema.validation import QUART_SCHEMA_RESPONSE_ATTRIBUTE

from taskapi.http.blueprints.docs import LOGO_STYLE, STATIC_DIR
from taskapi.http.headers import DECLARED_HEADERS_ATTRIBUTE
from taskapi.http.openapi import API_PREFIX
from tests.support.processes import cli_env, serve
from tests.support.values import PASSWORD

CHROMIUM = next((path for name in ("chromium", "chromium-browser")
                 if (path := shutil.which(name))), None)
CREDENTIAL_FIELD = re.compile(r"(^|_)(token|secret)$")


@pytest.mark.parametrize("prefix", ["", API_PREFIX])
async def test_token_responses_are_not_stored(client, make_user, prefix) -> None:  # type: ignore[no-untyped-def]
    user = await make_user("employee")
    login = await client.post(f"{prefix}/login", json={"email": user.email,
                                                       "password": PASSWORD})
    assert login.status_code == 200
    assert login.headers.get("Cache-Control") == "no-store"
    pair = await login.get_json()
    refreshed = await client.post(f"{prefix}/token/refresh",
                                  json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 200
    assert refreshed.headers.get("Cache-Control") == "no-store"


def _credential_fields(func: Any) -> set[str]:
    """The fields of the route's response models that are named like a credential."""
    fields: set[str] = set()
    for model, *_rest in getattr(func, QUART_SCHEMA_RESPONSE_ATTRIBUTE, {}).values():
        names = getattr(model, "model_fields", {})
        fields |= {name for name in names if CREDENTIAL_FIELD.search(name)}
    return fields


async def test_every_route_answering_a_credential_is_not_stored(app: Quart, client) -> None:  # type: ignore[no-untyped-def]
    """A new token route gets the header by declaring `@no_store`; this finds one that
    forgot (any response model with a field named *token or *secret)."""
    credential_routes = {}
    for rule in app.url_map.iter_rules():
        func = app.view_functions[rule.endpoint]
        if _credential_fields(func):
            declared = getattr(func, DECLARED_HEADERS_ATTRIBUTE, {})
            credential_routes[rule.rule] = declared.get("Cache-Control")
    assert "/login" in credential_routes and f"{API_PREFIX}/token/refresh" in credential_routes
    assert {rule: cc for rule, cc in credential_routes.items() if cc != "no-store"} == {}


async def test_docs_page_has_a_csp_and_cannot_be_framed(client) -> None:  # type: ignore[no-untyped-def]
    response = await client.get("/docs")
    assert response.status_code == 200
    assert response.headers.get("X-Frame-Options") == "DENY"
    policy = dict(part.strip().split(" ", 1)
                  for part in response.headers.get("Content-Security-Policy", "").split(";")
                  if part.strip())
    assert policy.get("default-src") == "'none'"
    assert policy.get("script-src") == "'self'"  # no inline script, no eval, no CDN
    assert policy.get("frame-ancestors") == "'none'"
    assert "unsafe" not in response.headers["Content-Security-Policy"]
    # The one inline style it allows by hash is still the one the bundled Swagger UI writes.
    assert LOGO_STYLE in (STATIC_DIR / "swagger-ui-standalone-preset.js").read_text()
    # The spec and the assets are not HTML documents: no policy needed there.
    assert (await client.get("/openapi.json")).status_code == 200


def _chromium(url: str, profile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",  # type: ignore[list-item]
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=15000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_a_real_browser_renders_the_docs_with_no_csp_violation(  # type: ignore[no-untyped-def]
        tmp_path, database_url, redis_url, redis_sync) -> None:
    env = cli_env(tmp_path / "data", TASKAPI_DATABASE_URL=database_url,
                  TASKAPI_REDIS_URL=redis_url)
    with serve(env, "--no-worker") as base:
        assert "Content-Security-Policy" in httpx.get(f"{base}/docs").headers
        # The deep link opens one operation, so its schemas and examples render too.
        run = _chromium(f"{base}/docs#/auth/login", tmp_path / "profile")
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    assert [line for line in console if "Content Security Policy" in line] == []
    assert [line for line in console if "rror" in line] == []  # Error, error: none at all
    paths = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', run.stdout))
    assert {"/login", "/token/refresh", "/tasks", "/healthz"} <= paths, run.stdout[-2000:]
    assert re.search(r'class="opblock opblock-post is-open" id="operations-auth-login"',
                     run.stdout)
    assert "Request body" in run.stdout and "application/problem+json" in run.stdout
    # The body's example is the model's own (issue 20), not Swagger's "string" placeholders.
    assert "ada@example.com" in run.stdout and "correct horse battery" in run.stdout
    assert "additionalProp1" not in run.stdout
