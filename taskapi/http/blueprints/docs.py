"""Swagger UI 5 on the assets bundled in swagger-ui-py: the docs need no internet access."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import swagger_ui
from quart import Blueprint, Response, url_for
from quart_schema import hide

from taskapi.http.headers import response_headers

STATIC_DIR = Path(swagger_ui.__file__).parent / "static"

bp = Blueprint("docs", __name__, static_folder=str(STATIC_DIR), static_url_path="/docs/static")

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>taskapi — API docs</title>
  <link rel="stylesheet" href="{css}">
  <link rel="icon" type="image/png" href="{icon}">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{bundle}"></script>
  <script src="{preset}"></script>
  <script src="{init}"></script>
</body>
</html>
"""

# The one inline style Swagger UI writes: the <style> of the top bar's logo (a literal in
# swagger-ui-standalone-preset.js; a test checks it is still there).
LOGO_STYLE = ".logo_small_svg__cls-2{fill:#fff}.logo_small_svg__cls-3{fill:#85ea2d}"
_LOGO_HASH = base64.b64encode(hashlib.sha256(LOGO_STYLE.encode()).digest()).decode()
# The page runs only its own files (no inline script: init.js is one), styles itself from its
# stylesheet (whose icons are data: URIs) and that logo, talks only to this API (the spec,
# "Try it out"), and no other site may frame it (clickjacking).
DOCS_POLICY = "; ".join((
    "default-src 'none'", "script-src 'self'", f"style-src 'self' 'sha256-{_LOGO_HASH}'",
    "img-src 'self' data:", "font-src 'self'", "connect-src 'self'", "base-uri 'none'",
    "form-action 'none'", "frame-ancestors 'none'",
))

_INIT = """window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "%s",
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout"
  });
};
"""


@bp.get("/docs")
@hide
@response_headers({"Content-Security-Policy": DOCS_POLICY, "X-Frame-Options": "DENY"})
async def docs_page() -> Response:
    """Interactive API documentation."""
    static = "docs.static"
    page = _PAGE.format(
        css=url_for(static, filename="swagger-ui.css"),
        icon=url_for(static, filename="favicon-32x32.png"),
        bundle=url_for(static, filename="swagger-ui-bundle.js"),
        preset=url_for(static, filename="swagger-ui-standalone-preset.js"),
        init=url_for("docs.docs_init"),
    )
    return Response(page, content_type="text/html; charset=utf-8")


@bp.get("/docs/init.js")
@hide
async def docs_init() -> Response:
    """Points Swagger UI at our spec (a script file, so the page needs no inline script)."""
    return Response(_INIT % url_for("openapi"), content_type="text/javascript; charset=utf-8")
