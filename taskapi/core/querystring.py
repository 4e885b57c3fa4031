"""The one parser of query strings: cache keys, list filters and `next` links all read the
query through it, in Quart and before it (http/cached_reads.py), so a cache key can never
stand for a different query than the one its entry was built from."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from taskapi.core.errors import APIError

_NAME_SHOWN = 64  # characters of a parameter name quoted back


def query_pairs(raw: bytes) -> list[tuple[str, str]]:
    """(name, value) pairs in order; percent-escapes decoded as UTF-8 (invalid bytes become
    U+FFFD), blank values kept."""
    return parse_qsl(raw.decode("latin-1"), keep_blank_values=True, encoding="utf-8",
                     errors="replace")


def single_valued(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """The pairs as one value per name; 422 `repeated_parameter` for a name given twice.
    Every parameter here takes one value, so two would make the query ambiguous: a reader
    taking the first and a cache key covering both would read different queries."""
    values: dict[str, str] = {}
    for name, value in pairs:
        if name in values:
            shown = name[:_NAME_SHOWN]
            raise APIError(422, "repeated_parameter",
                           f"The query parameter {shown!r} is given more than once.",
                           errors=[{"loc": [shown], "msg": "given more than once",
                                    "type": "repeated_parameter"}], error_count=1)
        values[name] = value
    return values


def canonical(pairs: list[tuple[str, str]]) -> str:
    """The pairs in a canonical order (a cache key variant)."""
    return urlencode(sorted(pairs))


def link_next(path: str, pairs: list[tuple[str, str]], cursor: str) -> str:
    """`Link` to the next page: the same query with `cursor` replaced. A path-absolute
    reference, right behind any proxy whatever Host or scheme it saw."""
    query = urlencode([*((k, v) for k, v in pairs if k != "cursor"), ("cursor", cursor)])
    return f'<{path}?{query}>; rel="next"'
