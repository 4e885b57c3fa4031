"""Input limits the framework does not enforce by itself: ids within the database's range,
JSON nested too deeply to parse (both would otherwise end as a 500), and JSON bodies with
more keys than any request has (each unknown key would cost a validation error)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
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
# Keys in a JSON body. The largest request has 4 fields; each key over is one validation error
# (~12 us of CPU and ~90 bytes of 422), so a 1 MiB body could cost 60,000 of them.
MAX_KEYS_PER_OBJECT = 100
MAX_JSON_MEMBERS = 1000  # objects and keys in one body (so `[{}, {}, …]` counts too)


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


class SessionIdConverter(JobIdConverter):
    """`<sid:…>`: a login session's id (32 hex digits, as GET /me/sessions lists them)."""


CONVERTERS: dict[str, type[BaseConverter]] = {"int": IdConverter, "job": JobIdConverter,
                                              "sid": SessionIdConverter}


def _bounded_objects() -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    """An object_pairs_hook for one document: 413 as soon as it has too many keys, 400 for
    an object that repeats a key, while it is being parsed (before pydantic sees any of it)."""
    members = 0

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal members
        members += 1 + len(pairs)
        if len(pairs) > MAX_KEYS_PER_OBJECT or members > MAX_JSON_MEMBERS:
            raise APIError(413, "too_many_keys",
                           f"The JSON body has more keys than allowed: at most "
                           f"{MAX_KEYS_PER_OBJECT} in one object and {MAX_JSON_MEMBERS} "
                           f"objects and keys in all.")
        result = dict(pairs)
        if len(result) != len(pairs):  # which value counts would be up to the parser
            keys = [key for key, _ in pairs]
            repeated = next(key for n, key in enumerate(keys) if key in keys[:n])
            raise APIError(400, "malformed_request",
                           f"The JSON body repeats the key {repeated[:100]!r} in one object: "
                           "send each key once.")
        return result

    return hook


def guard_json(app: Quart) -> None:
    """Wrap the app's JSON provider (quart-schema's, pydantic-aware) so that JSON nested too
    deeply is a ValueError like any malformed JSON (a 400), not a RecursionError (a 500); and
    give request bodies a provider of their own that also bounds their keys (a 413)."""

    class Guarded(type(app.json)):  # type: ignore[misc]
        def loads(self, s: str | bytes, **kwargs: Any) -> Any:
            try:
                return super().loads(s, **kwargs)
            except RecursionError:
                raise ValueError("JSON nested too deeply") from None

    class BodyJSON(Guarded):
        def loads(self, s: str | bytes, **kwargs: Any) -> Any:
            return super().loads(s, object_pairs_hook=_bounded_objects(), **kwargs)

    body_json = BodyJSON(app)

    class Request(app.request_class):  # type: ignore[name-defined]
        async def get_json(self, force: bool = False, silent: bool = False,
                           cache: bool = True) -> Any:
            # The request context sets json_module to app.json, which also parses responses
            # (in tests): only a request's body is bounded.
            self.json_module = body_json
            return await super().get_json(force=force, silent=silent, cache=cache)

    app.json = Guarded(app)
    app.json.sort_keys = False  # fields in model order
    app.request_class = Request
