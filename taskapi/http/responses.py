"""Helpers shared by the HTTP layer: pagination headers, cached entries, ETags."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from quart import Response, request
from quart_schema import RequestSchemaValidationError

from taskapi.core.cache import Entry
from taskapi.core.pagination import Page
from taskapi.core.querystring import canonical, link_next, query_pairs, single_valued
from taskapi.http.problems import QueryValidationError

ListResponse = tuple[list[dict[str, Any]], int, dict[str, str]]
# Per-user data: browsers and proxies may store it but must revalidate (ETag → 304).
PRIVATE = {"Cache-Control": "private, no-cache", "Vary": "Authorization"}


def canonical_query() -> str:
    """The request's query string in a canonical order (a cache key variant); 422 for a
    repeated parameter, before any cache lookup (so no entry can answer an ambiguous query)."""
    pairs = query_pairs(request.query_string)
    single_valued(pairs)
    return canonical(pairs)


def next_link(cursor: str) -> str:
    return link_next(request.path, query_pairs(request.query_string), cursor)


def page_headers(page: Page[Any]) -> dict[str, str]:
    """`X-Total-Count` (when counted), and a `Link: <…>; rel="next"` while more rows remain."""
    headers = {} if page.total is None else {"X-Total-Count": str(page.total)}
    if page.next_cursor:
        headers["Link"] = next_link(page.next_cursor)
    return headers


def dump_list(items: list[BaseModel]) -> list[dict[str, Any]]:
    return [item.model_dump(mode="json") for item in items]


def whole_list(items: list[Any]) -> ListResponse:
    """A list answered whole (no pages): its rows and `X-Total-Count`, like every list."""
    return dump_list(items), 200, {"X-Total-Count": str(len(items))}


def not_modified(etag: str) -> bool:
    return request.if_none_match.contains_weak(etag.strip('"'))


def entry_response(entry: Entry) -> Response:
    """A cached JSON entry as a response: ETag/304, and list headers from its metadata."""
    headers = {"ETag": entry.etag, **PRIVATE}
    if "total" in entry.meta:
        headers["X-Total-Count"] = entry.meta["total"]
    if entry.meta.get("next"):
        headers["Link"] = next_link(entry.meta["next"])
    if not_modified(entry.etag):
        return Response("", status=304, headers=headers)
    return Response(entry.body, status=200, headers=headers, content_type="application/json")


M = TypeVar("M", bound=BaseModel)


async def optional_body(model: type[M]) -> M:
    """Like validate_request, but an empty body means the model's defaults."""
    raw = await request.get_data(as_text=True)
    if not raw.strip():
        return model()
    payload = await request.get_json(force=True)  # 400 if malformed, 413 if too many keys
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        raise RequestSchemaValidationError(error) from None


def parse_query(model: type[M]) -> M:
    """Validate the query string like validate_querystring (422 on a bad value or a repeated
    parameter), read as the cache key reads it."""
    values = single_valued(query_pairs(request.query_string))
    try:
        return model.model_validate(values)
    except ValidationError as error:
        raise QueryValidationError(error) from None
