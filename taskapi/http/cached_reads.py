"""Cache hits without the framework: a thin ASGI layer in front of Quart.

A GET on a route declared with `@prefetch` (the task lists, one task, /stats) needs, when its
response is cached, nothing beyond what the request's first Redis round trip fetches: the
rate-limit count, the caller's auth state and the stored entry. This layer makes that round
trip itself and, when every check passes, sends the stored body at once. A route whose entry
needs nothing of the request but its path (one task) also declares its build: a miss of it is
built here, shared and stored exactly as in Quart. In every other case (no or bad token,
revoked or unknown auth state, wrong role, over the limit, a miss without a build, a failed
build, Redis down, CORS, anything unusual) it passes the request to Quart unchanged, with the
round trip's result in the ASGI scope so Quart continues exactly where this layer stopped: the
request is counted once and looked up once. Quart then produces every error and the other
misses.

Nothing here is a second source of truth: routes come from the app's own URL map, roles from
`require_role`, cache keys and the per-entry check from `@prefetch`, auth rules from
services/authstate.py, query parsing from querystring.py (decision 015).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from quart import Quart
from werkzeug.exceptions import HTTPException
from werkzeug.http import parse_etags
from werkzeug.routing import MapAdapter, RequestRedirect

from taskapi.core import metrics, tokens
from taskapi.core.cache import Entry, Lookup, cached, decode_entry
from taskapi.core.errors import APIError
from taskapi.core.logs import request_id_for
from taskapi.core.querystring import canonical, link_next, query_pairs, single_valued
from taskapi.core.state import AppState
from taskapi.http.client import resolve_client_ip
from taskapi.http.deps import ROLES_ATTRIBUTE
from taskapi.http.gate import FIRST_TRIP_KEY, FirstTrip, make_first_trip
from taskapi.http.limits import head_error
from taskapi.http.prefetch import PREFETCH_ATTRIBUTE, Prefetch
from taskapi.http.responses import PRIVATE
from taskapi.models import Role
from taskapi.services import personal_tokens
from taskapi.services.authstate import actor_from_state

_FIXED = [*((k.lower().encode(), v.encode()) for k, v in PRIVATE.items()),
          (b"x-content-type-options", b"nosniff")]
_JSON = (b"content-type", b"application/json")
# When this layer passed a request on, the time it first saw it (Quart's latency includes it).
STARTED_KEY = "taskapi.started"


def plain_headers(scope: Mapping[str, Any], cors: bool) -> dict[bytes, bytes] | None:
    """The request's headers, one value each, when nothing in its head needs Quart: no
    repeated header, no head error (limits.head_error), no Origin while CORS is on, no body.
    None otherwise: Quart answers (also for the layer below, http/event_stream.py)."""
    headers: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name in headers:  # a repeated header: let Quart interpret it
            return None
        headers[name] = value
    if head_error(scope.get("query_string", b""), scope["headers"]) is not None:
        return None
    if ((cors and b"origin" in headers) or b"content-length" in headers
            or b"transfer-encoding" in headers):
        return None
    return headers


def scope_client_ip(scope: Mapping[str, Any], headers: Mapping[bytes, bytes],
                    state: AppState) -> str:
    """The client's address as the gate counts it (Quart's request.remote_addr, then the
    trusted proxies' X-Forwarded-For)."""
    peer = (scope.get("client") or ("<local>",))[0]
    return resolve_client_ip(peer, headers.get(b"x-forwarded-for", b"").decode("latin-1"),
                             state.settings.trusted_networks)


class CachedReads:
    """ASGI middleware: answer cache hits of `@prefetch` routes, pass everything else on."""

    def __init__(self, app: Quart, state: AppState, inner: Any,
                 slots: asyncio.Semaphore | None = None) -> None:
        self.app = app
        self.slots = slots or asyncio.Semaphore(state.settings.max_concurrency)
        self.state = state
        self.inner = inner
        self.cors = bool(state.settings.cors_origins)
        self.served = 0  # responses sent from here (tests, metrics)
        self._adapter: MapAdapter | None = None
        self._routes: dict[str, tuple[str, Prefetch, tuple[Role, ...]] | None] = {}

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Awaitable[Any]],
                       send: Callable[..., Awaitable[Any]]) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path"):
            scope[STARTED_KEY] = time.perf_counter()
            if await self._try(scope, send):
                return
        await self.inner(scope, receive, send)

    def _route(self, path: str
               ) -> tuple[str, Prefetch, tuple[Role, ...], Mapping[str, Any]] | None:
        if self._adapter is None:
            self._adapter = self.app.url_map.bind("localhost")
        try:
            endpoint, args = self._adapter.match(path, "GET")
        except (HTTPException, RequestRedirect):
            return None
        if endpoint not in self._routes:
            view = self.app.view_functions.get(endpoint)
            declared = getattr(view, PREFETCH_ATTRIBUTE, None)
            roles = getattr(view, ROLES_ATTRIBUTE, None)
            self._routes[endpoint] = (endpoint, declared, roles) if declared and roles else None
        route = self._routes[endpoint]
        return None if route is None else (*route, args)

    async def _try(self, scope: dict[str, Any], send: Callable[..., Awaitable[Any]]) -> bool:
        """True when the response was sent from the cache."""
        if not self.state.cache.enabled:
            return False
        headers = plain_headers(scope, self.cors)
        if headers is None:
            return False  # Quart answers
        authorization = headers.get(b"authorization", b"")
        if authorization[:7].lower() != b"bearer ":
            return False
        route = self._route(scope["path"])
        if route is None:
            return False
        endpoint, declared, roles, args = route
        state = self.state
        try:
            claims = tokens.decode_bearer(state.signing_key,
                                          authorization[7:].decode().strip())
        except (APIError, UnicodeDecodeError):
            return False
        pairs = query_pairs(scope.get("query_string", b""))
        try:
            single_valued(pairs)
        except APIError:
            return False  # a repeated parameter: Quart answers the 422
        spec = declared.spec_for(claims.user_id, args, canonical(pairs))
        trip = await make_first_trip(state, claims, spec, scope_client_ip(scope, headers, state))
        if trip is None:
            return False  # Redis down: Quart answers from the database
        scope[FIRST_TRIP_KEY] = trip
        status = await self._answer(trip, declared, roles, args, scope, headers, pairs, send)
        if status:
            metrics.observe_request(endpoint, "GET", status,
                                    time.perf_counter() - scope[STARTED_KEY])
        return bool(status)

    async def _entry(self, trip: FirstTrip, declared: Prefetch,
                     args: Mapping[str, Any]) -> Entry | None:
        """The entry to answer with: the one the round trip found (a hit), or, for a route
        that declares a build, one built here on a miss, shared and stored as in Quart. None:
        Quart answers (a miss without a build, a stale entry this process is not rebuilding,
        a failed build, whose error Quart produces)."""
        result, spec, cache = trip.result, trip.spec, self.state.cache
        if spec is None or result.version is None:
            return None
        entry = decode_entry(result.entry)
        if entry is not None:
            if entry.stale and not cache.refreshing(spec.key, result.version):
                return None  # Quart answers it and starts the one rebuild (decision 038)
            metrics.count_cache(spec.key, hit=True)
            trip.counted = True
            return entry
        if declared.build is None:
            return None
        build = declared.build
        trip.counted = True  # cached() counts the miss; Quart, answering after, does not

        async def admitted() -> Entry:  # under admission control, as in Quart (decision 007)
            async with self.slots:
                return await build(self.state, args)

        try:
            return await cached(cache, spec, admitted, Lookup(spec.key, result.version, None))
        except Exception:  # a 404, the database away: Quart says which
            return None

    async def _answer(self, trip: FirstTrip, declared: Prefetch, roles: tuple[Role, ...],
                      args: Mapping[str, Any], scope: dict[str, Any],
                      headers: dict[bytes, bytes], pairs: list[tuple[str, str]],
                      send: Callable[..., Awaitable[Any]]) -> int:
        """The status sent (200 or 304), or 0 when Quart must answer."""
        result = trip.result
        if (result.wait_ms or result.user is None or result.session is None
                or trip.claims is None):
            return 0
        try:
            actor = actor_from_state(trip.claims, result.user.decode(), result.session.decode())
        except APIError:
            return 0
        if actor.role not in roles:
            return 0
        if actor.scope is not None:
            await personal_tokens.note_use(self.state.redis, actor)
        entry = await self._entry(trip, declared, args)
        if entry is None or (
                declared.serve_if is not None and not declared.serve_if(actor, entry)):
            return 0

        request_id = request_id_for(headers.get(b"x-request-id", b"").decode("latin-1"))
        out = [(b"etag", entry.etag.encode()), *_FIXED, (b"x-request-id", request_id.encode())]
        if "total" in entry.meta:
            out.append((b"x-total-count", entry.meta["total"].encode()))
        if entry.meta.get("next"):
            link = link_next(scope["path"], pairs, entry.meta["next"])
            out.append((b"link", link.encode()))
        if_none_match = headers.get(b"if-none-match")
        if if_none_match is not None and parse_etags(if_none_match.decode("latin-1")) \
                .contains_weak(entry.etag.strip('"')):
            await send({"type": "http.response.start", "status": 304, "headers": out})
            await send({"type": "http.response.body", "body": b""})
            self.served += 1
            return 304
        body = entry.body.encode()
        out += [_JSON, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": out})
        await send({"type": "http.response.body", "body": body})
        self.served += 1
        return 200
