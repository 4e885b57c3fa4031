"""Helpers shared by the HTTP layer."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from pydantic import BaseModel
from quart import request

from ..pagination import Page

ListResponse = tuple[list[dict[str, Any]], int, dict[str, str]]


def page_headers(page: Page[Any]) -> dict[str, str]:
    """`X-Total-Count`, and a `Link: <…>; rel="next"` while more rows remain."""
    headers = {"X-Total-Count": str(page.total)}
    if page.next_cursor:
        params = {k: v for k, v in request.args.items(multi=True) if k != "cursor"}
        query = urlencode([*params.items(), ("cursor", page.next_cursor)])
        # A path-absolute reference: right behind any proxy, whatever Host or scheme it saw.
        headers["Link"] = f'<{request.path}?{query}>; rel="next"'
    return headers


def dump_list(items: list[BaseModel]) -> list[dict[str, Any]]:
    return [item.model_dump(mode="json") for item in items]
