"""Cached GET routes declare their cache entry, so the request's first Redis round trip
fetches it along with the auth state (and http/cached_reads.py can answer a hit directly)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from quart import g

from taskapi.core.cache import CacheSpec, Entry, Lookup
from taskapi.core.state import AppState
from taskapi.services.authstate import Actor

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
PREFETCH_ATTRIBUTE = "_taskapi_prefetch"

SpecFor = Callable[[int, Mapping[str, Any], str], CacheSpec]
ServeIf = Callable[[Actor, Entry], bool]
Build = Callable[[AppState, Mapping[str, Any]], Awaitable[Entry]]


@dataclass(frozen=True, slots=True)
class Prefetch:
    """A GET route's cached response: its spec from (caller id, path args, canonical query);
    for entries shared between callers, whether this caller may be given the entry; and
    optionally how to build the entry on a miss from (state, path args) alone, for an entry
    that needs nothing else of the request (then cached_reads.py answers misses too)."""

    spec_for: SpecFor
    serve_if: ServeIf | None = None
    build: Build | None = None


def prefetch(spec_for: SpecFor, serve_if: ServeIf | None = None,
             build: Build | None = None) -> Callable[[F], F]:
    """Declare the cached response a GET route may serve, so the request's first Redis round
    trip fetches it along with the auth state (and cached_reads.py can answer a hit directly)."""

    def decorator(func: F) -> F:
        setattr(func, PREFETCH_ATTRIBUTE, Prefetch(spec_for, serve_if, build))
        return func

    return decorator


def prefetched() -> Lookup | None:
    """The cache lookup made in the request's first round trip, if the route declared one."""
    lookup: Lookup | None = g.get("prefetch")
    return lookup
