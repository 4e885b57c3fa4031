"""Input limits the framework does not enforce by itself: ids within the database's range,
and JSON nested too deeply to parse. Both would otherwise end as a 500."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from quart import Quart
from werkzeug.routing import BaseConverter, IntegerConverter

from taskapi.core.errors import APIError, not_found
from taskapi.schemas.common import MAX_ID

# The request head. hypercorn buffers up to HEAD_BYTES of it (above that it answers a bare
# 431 itself); below, the app answers oversized parts with a problem it can explain.
HEAD_BYTES = 128 * 1024
MAX_QUERY_BYTES = 8 * 1024  # the longest legitimate list query is well under 2 KiB
MAX_HEADER_BYTES = 16 * 1024


def head_error(query_string: bytes, headers: Iterable[tuple[Any, Any]]) -> APIError | None:
    """414 for an over-long query string, 431 for oversized headers, else None."""
    if len(query_string) > MAX_QUERY_BYTES:
        return APIError(414, "uri_too_long",
                        f"The query string is longer than {MAX_QUERY_BYTES} bytes.")
    if sum(len(name) + len(value) for name, value in headers) > MAX_HEADER_BYTES:
        return APIError(431, "headers_too_large",
                        f"The request headers are larger than {MAX_HEADER_BYTES} bytes.")
    return None


class IdConverter(IntegerConverter):
    """`<int:…>` in a URL, documented as 1 to MAX_ID. The range is checked by `check_ids`,
    not here: werkzeug turns a converter's refusal into a 405 when the path has rules for
    other methods, where a 404 is the truth."""


def check_ids(view_args: dict[str, Any] | None) -> None:
    """404 for an id out of range: a larger number would overflow the driver (a 500)
    instead of finding nothing."""
    for value in (view_args or {}).values():
        if isinstance(value, int) and not 1 <= value <= MAX_ID:
            raise not_found()


class JobIdConverter(BaseConverter):
    """`<job:…>`: a report's job id (32 hex digits, as handed out); anything else is 404
    without a query (a NUL in a text parameter would fail in PostgreSQL)."""

    regex = "[0-9a-f]{32}"


CONVERTERS: dict[str, type[BaseConverter]] = {"int": IdConverter, "job": JobIdConverter}


def guard_json(app: Quart) -> None:
    """Wrap the app's JSON provider (quart-schema's, pydantic-aware) so that JSON nested too
    deeply is a ValueError like any malformed JSON (a 400), not a RecursionError (a 500)."""

    class Guarded(type(app.json)):  # type: ignore[misc]
        def loads(self, s: str | bytes, **kwargs: Any) -> Any:
            try:
                return super().loads(s, **kwargs)
            except RecursionError:
                raise ValueError("JSON nested too deeply") from None

    app.json = Guarded(app)
    app.json.sort_keys = False  # fields in model order
