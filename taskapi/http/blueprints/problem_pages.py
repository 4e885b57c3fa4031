"""`GET /problems/<code>`: the short human page a problem's `type` points at."""

from __future__ import annotations

import html
import re

from quart import Blueprint, Response
from quart_schema import hide

from taskapi.core.errors import not_found
from taskapi.core.problem_catalog import CATALOG
from taskapi.http.headers import response_headers

bp = Blueprint("problem_pages", __name__)

# Plain HTML, nothing to load or run: no script, style, image or frame, from anywhere.
PAGE_POLICY = ("default-src 'none'; base-uri 'none'; form-action 'none'; "
               "frame-ancestors 'none'")
_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title} — taskapi problem</title>
</head>
<body>
  <h1>{title}</h1>
  <p>HTTP status {status} · code <code>{code}</code></p>
  <p>{text}</p>
  <p>Every error of this API is <code>application/problem+json</code> with this page as its
  <code>type</code>; the <code>request_id</code> in it finds the request in the log.</p>
</body>
</html>
"""
_CODE_SPAN = re.compile(r"`([^`]+)`")


def render(code: str) -> str:
    entry = CATALOG[code]
    # Escape first, then mark `spans` as code: nothing from the text is ever markup.
    text = _CODE_SPAN.sub(r"<code>\1</code>", html.escape(entry.text))
    return _PAGE.format(title=html.escape(entry.title), status=entry.status,
                        code=html.escape(code), text=text)


@bp.get("/problems/<code>")
@hide
@response_headers({"Content-Security-Policy": PAGE_POLICY, "X-Frame-Options": "DENY"})
async def problem_page(code: str) -> Response:
    """What a problem code means, for people."""
    if code not in CATALOG:
        raise not_found("problem type")
    return Response(render(code), content_type="text/html; charset=utf-8")
