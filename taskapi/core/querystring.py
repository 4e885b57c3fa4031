"""The one parser of query strings: cache keys, list filters and `next` links all read the
query through it, in Quart and before it (http/cached_reads.py), so a cache key can never
stand for a different query than the one its entry was built from."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode


def query_pairs(raw: bytes) -> list[tuple[str, str]]:
    """(name, value) pairs in order; percent-escapes decoded as UTF-8 (invalid bytes become
    U+FFFD), blank values kept."""
    return parse_qsl(raw.decode("latin-1"), keep_blank_values=True, encoding="utf-8",
                     errors="replace")


def canonical(pairs: list[tuple[str, str]]) -> str:
    """The pairs in a canonical order (a cache key variant)."""
    return urlencode(sorted(pairs))


def link_next(path: str, pairs: list[tuple[str, str]], cursor: str) -> str:
    """`Link` to the next page: the same query with `cursor` replaced. A path-absolute
    reference, right behind any proxy whatever Host or scheme it saw."""
    query = urlencode([*((k, v) for k, v in pairs if k != "cursor"), ("cursor", cursor)])
    return f'<{path}?{query}>; rel="next"'
