"""Request authentication, rate limiting and role checks (the Quart side of auth).

One pipelined Redis round trip per request does both the rate-limit hit and the auth-state
read; JWT verification is CPU only. See services/authstate.py for the cache rules.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar, cast

from quart import current_app, g, request
from quart_schema.openapi import QUART_SCHEMA_SECURITY_ATTRIBUTE

from . import ratelimit, tokens
from .cache import CacheSpec, Entry, Lookup, decode_entry
from .context import AppContext
from .exceptions import APIError, forbidden, unauthorized
from .models import Role
from .querystring import canonical, query_pairs
from .runtime import runtime
from .services.authstate import Actor, resolve_actor, session_key, user_key

# Where fastpath.py leaves its FirstTrip in the ASGI scope for Quart to pick up.
FIRST_TRIP_KEY = "taskapi.first_trip"

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
ROLES_ATTRIBUTE = "_taskapi_roles"
PREFETCH_ATTRIBUTE = "_taskapi_prefetch"
BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]
# Probes, docs and metrics are neither authenticated by JWT nor rate limited (metrics has
# its own gate, may_scrape).
UNLIMITED_ENDPOINTS = frozenset({"health.healthz", "health.readyz", "docs.docs_page",
                                 "docs.docs_init", "docs.static", "openapi",
                                 "metrics.metrics"})


@dataclass(slots=True)
class Identity:
    claims: tokens.Claims | None = None
    error: APIError | None = None
    cached_user: bytes | None = None
    cached_session: bytes | None = None
    epoch: str | None = None  # None: Redis was not reached


def client_ip() -> str:
    """The peer address, or the client named in X-Forwarded-For when the peer is a trusted
    proxy. The list is read right to left, skipping trusted hops, so a client cannot spoof
    its way around a rate limit by sending the header itself."""
    peer = request.remote_addr or "unknown"
    networks = runtime().settings.trusted_networks
    if not networks or not _trusted(peer, networks):
        return peer
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, networks):
            return hop if _valid_ip(hop) else peer
    return hops[0] if hops else peer


def _valid_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _trusted(address: str, networks: tuple[Any, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    # A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d.
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return any(ip in network or (mapped is not None and mapped in network)
               for network in networks)


def may_scrape() -> bool:
    """/metrics: the client address is in METRICS_ALLOW, or the request carries the metrics
    token (compared in constant time)."""
    settings = runtime().settings
    expected, token = settings.metrics_bearer, _bearer()
    if expected is not None and token is not None and hmac.compare_digest(
            token.encode(), expected.encode()):
        return True
    return _trusted(client_ip(), settings.metrics_networks)


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


SpecFor = Callable[[int, Mapping[str, Any], str], CacheSpec]
ServeIf = Callable[[Actor, Entry], bool]


@dataclass(frozen=True, slots=True)
class Prefetch:
    """A GET route's cached response: its spec from (caller id, path args, canonical query),
    and, for entries shared between callers, whether this caller may be given the entry."""

    spec_for: SpecFor
    serve_if: ServeIf | None = None


def prefetch(spec_for: SpecFor, serve_if: ServeIf | None = None) -> Callable[[F], F]:
    """Declare the cached response a GET route may serve, so the request's first Redis round
    trip fetches it along with the auth state (and fastpath.py can answer a hit directly)."""

    def decorator(func: F) -> F:
        setattr(func, PREFETCH_ATTRIBUTE, Prefetch(spec_for, serve_if))
        return func

    return decorator


def prefetched() -> Lookup | None:
    """The cache lookup made in the request's first round trip, if the route declared one."""
    lookup: Lookup | None = g.get("prefetch")
    return lookup


@dataclass(slots=True)
class FirstTrip:
    """The request's first Redis round trip: what was asked and what came back."""

    claims: tokens.Claims | None
    win: ratelimit.Window
    spec: CacheSpec | None
    result: ratelimit.TripResult


def request_window(state: AppContext, claims: tokens.Claims | None, ip: str) -> ratelimit.Window:
    limit, period = state.settings.default_rate()
    scope = f"u{claims.user_id}" if claims else f"ip{ip}"
    return ratelimit.window("req", scope, limit, period)


async def make_first_trip(state: AppContext, claims: tokens.Claims | None,
                          spec: CacheSpec | None, ip: str) -> FirstTrip | None:
    """None when Redis is down (callers fail open: no limit, state from the database)."""
    win = request_window(state, claims, ip)
    auth_keys = (user_key(claims.user_id), session_key(claims.sid)) if claims else None
    result = await state.gate(win, auth_keys, spec)
    return None if result is None else FirstTrip(claims, win, spec, result)


async def identify_and_limit() -> None:
    """before_request: verify the token (if any), then one Redis round trip that counts the
    request, reads the caller's auth state and looks up the route's cached response.

    When fastpath.py already made that round trip (and could not answer from it), its result
    arrives in the ASGI scope and is used as is: the request is counted once."""
    if request.endpoint in UNLIMITED_ENDPOINTS:
        return
    state = runtime()
    trip = cast(FirstTrip | None, request.scope.get(FIRST_TRIP_KEY))
    identity = Identity()
    g.identity = identity
    if trip is not None:
        identity.claims = trip.claims
    else:
        token = _bearer()
        if token is not None:
            try:
                identity.claims = tokens.decode(state.signing_key, token, "access")
            except APIError as error:
                identity.error = error
        claims = identity.claims
        spec = None
        if claims is not None and request.method == "GET":
            declared: Prefetch | None = getattr(
                current_app.view_functions.get(request.endpoint or ""), PREFETCH_ATTRIBUTE, None)
            if declared is not None and state.cache.enabled:
                spec = declared.spec_for(claims.user_id, request.view_args or {},
                                         canonical(query_pairs(request.query_string)))
        trip = await make_first_trip(state, claims, spec, client_ip())
        if trip is None:  # Redis down: no limit, auth state and responses from the database
            return
    result = trip.result
    identity.cached_user, identity.cached_session = result.user, result.session
    identity.epoch = result.epoch
    if trip.spec is not None:
        g.prefetch = Lookup(trip.spec.key, result.version, decode_entry(result.entry))
    ratelimit.check(trip.win, result.count)


async def current_actor() -> Actor:
    actor: Actor | None = g.get("actor")
    if actor is not None:
        return actor
    identity: Identity | None = g.get("identity")
    if identity is None:  # endpoint exempt from identification: do it now
        await identify_and_limit()
        identity = g.get("identity") or Identity()
    if identity.error is not None:
        raise identity.error
    if identity.claims is None:
        raise unauthorized("not_authenticated", "A bearer access token is required.")
    state = runtime()
    actor = await resolve_actor(state.db, state.redis, identity.claims,
                                identity.cached_user, identity.cached_session, identity.epoch)
    g.actor = actor
    return actor


def require_role(*roles: Role) -> Callable[[F], F]:
    """Authenticate, then 403 unless the caller has one of `roles` (none given: any user).

    Services check again; this decorator is the early, uniform gate and marks the operation
    as bearer-protected in the OpenAPI spec.
    """

    def decorator(func: F) -> F:
        @wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            actor = await current_actor()
            if roles and actor.role not in roles:
                raise forbidden()
            return await func(*args, **kwargs)

        setattr(wrapper, QUART_SCHEMA_SECURITY_ATTRIBUTE, BEARER)
        setattr(wrapper, ROLES_ATTRIBUTE, tuple(roles) or tuple(Role))
        return cast(F, wrapper)

    return decorator


def actor() -> Actor:
    """The caller, inside a handler decorated with require_role."""
    value: Actor = g.actor
    return value
