"""Response headers a route declares: `@no_store` on every route whose answer carries a
credential, `@response_headers(...)` for anything else (the docs page's policy). Declared
on the view, so the /api/v1 mirror, which registers the same view, gets them too; set on
every answer of the route, errors included, in app.py's after_request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from quart import Response, current_app, request

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
DECLARED_HEADERS_ATTRIBUTE = "_taskapi_headers"


def response_headers(headers: Mapping[str, str]) -> Callable[[F], F]:
    """Set these headers on every response of the route."""

    def decorator(func: F) -> F:
        declared = {**getattr(func, DECLARED_HEADERS_ATTRIBUTE, {}), **headers}
        setattr(func, DECLARED_HEADERS_ATTRIBUTE, declared)
        return func

    return decorator


# A response with tokens or secrets: no cache, shared or the browser's, may keep a copy
# (RFC 6749 §5.1). tests/test_hardening_headers.py finds a route that forgets it.
no_store = response_headers({"Cache-Control": "no-store"})


def add_declared_headers(response: Response) -> None:
    view = current_app.view_functions.get(request.endpoint or "")
    declared: Mapping[str, str] | None = getattr(view, DECLARED_HEADERS_ATTRIBUTE, None)
    if declared:
        response.headers.update(declared)
