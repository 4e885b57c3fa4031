"""Request authentication, rate limiting and role checks (the Quart side of auth).

One pipelined Redis round trip per request does both the rate-limit hit and the auth-state
read; JWT verification is CPU only. See services/authstate.py for the cache rules.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar, cast

from quart import current_app, g, request
from quart_schema.openapi import QUART_SCHEMA_SECURITY_ATTRIBUTE

from . import ratelimit, tokens
from .cache import CacheSpec, Lookup, decode_entry
from .exceptions import APIError, forbidden, unauthorized
from .models import Role
from .runtime import runtime
from .services.authstate import Actor, resolve_actor, session_key, user_key

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
ROLES_ATTRIBUTE = "_taskapi_roles"
PREFETCH_ATTRIBUTE = "_taskapi_prefetch"
BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]
# Probes and docs are neither authenticated nor rate limited.
UNLIMITED_ENDPOINTS = frozenset({"health.healthz", "health.readyz", "docs.docs_page",
                                 "docs.docs_init", "docs.static", "openapi"})


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
    return any(ip in network for network in networks)


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def prefetch(spec_for: Callable[[int], CacheSpec]) -> Callable[[F], F]:
    """Declare the cached response a GET route may serve (spec from the caller's user id),
    so the request's first Redis round trip fetches it along with the auth state."""

    def decorator(func: F) -> F:
        setattr(func, PREFETCH_ATTRIBUTE, spec_for)
        return func

    return decorator


def prefetched() -> Lookup | None:
    """The cache lookup made in the request's first round trip, if the route declared one."""
    lookup: Lookup | None = g.get("prefetch")
    return lookup


async def identify_and_limit() -> None:
    """before_request: verify the token (if any), then one Redis round trip that counts the
    request, reads the caller's auth state and looks up the route's cached response."""
    if request.endpoint in UNLIMITED_ENDPOINTS:
        return
    state = runtime()
    identity = Identity()
    token = _bearer()
    if token is not None:
        try:
            identity.claims = tokens.decode(state.signing_key, token, "access")
        except APIError as error:
            identity.error = error
    g.identity = identity

    claims = identity.claims
    spec = None
    if claims is not None and request.method == "GET":
        spec_for = getattr(current_app.view_functions.get(request.endpoint or ""),
                           PREFETCH_ATTRIBUTE, None)
        spec = spec_for(claims.user_id) if spec_for else None
    limit, period = state.settings.default_rate()
    scope = f"u{claims.user_id}" if claims else f"ip{client_ip()}"
    win = ratelimit.window("req", scope, limit, period)
    auth_keys = (user_key(claims.user_id), session_key(claims.sid)) if claims else None
    trip = await state.gate(win, auth_keys, spec)
    if trip is None:  # Redis down: no limit, auth state and responses from the database
        return
    identity.cached_user, identity.cached_session = trip.user, trip.session
    identity.epoch = trip.epoch
    if spec is not None:
        g.prefetch = Lookup(spec.key, trip.version, decode_entry(trip.entry))
    ratelimit.check(win, trip.count)


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
