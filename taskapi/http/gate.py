"""The request gate (before_request): verify the bearer token, then one pipelined Redis round
trip that reads the caller's auth state, counts the request against its rate limit (the
user's for a token that checks out, else the client address's) and looks up the route's
cached response. JWT verification is CPU only. See services/authstate.py for the auth-state
cache rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from quart import current_app, g, request
from redis.exceptions import RedisError

from taskapi.core import ratelimit, tokens
from taskapi.core.cache import CacheSpec, Lookup, decode_entry
from taskapi.core.errors import APIError
from taskapi.core.querystring import canonical, query_pairs
from taskapi.core.state import AppState
from taskapi.http.client import bearer_token, client_ip
from taskapi.http.current import runtime
from taskapi.http.prefetch import PREFETCH_ATTRIBUTE, Prefetch
from taskapi.services.authstate import (
    actor_from_state,
    load_state,
    queue_fill,
    session_key,
    user_key,
)

# Where cached_reads.py leaves its FirstTrip in the ASGI scope for Quart to pick up.
FIRST_TRIP_KEY = "taskapi.first_trip"
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


@dataclass(slots=True)
class FirstTrip:
    """The request's first Redis round trip: what was asked and what came back."""

    claims: tokens.Claims | None
    user_limit: ratelimit.Limit | None
    ip_limit: ratelimit.Limit
    spec: CacheSpec | None
    result: ratelimit.TripResult
    counted: bool = False  # its cache lookup was counted (cached_reads.py looked or built)

    @property
    def charged_limit(self) -> ratelimit.Limit:
        return (self.user_limit if self.result.charged == "user" and self.user_limit
                else self.ip_limit)


def request_limits(state: AppState, claims: tokens.Claims | None,
                   ip: str) -> tuple[ratelimit.Limit | None, ratelimit.Limit]:
    """The user's limit (with a token) and the client address's. The round trip counts the
    request against the user's only when the token checks out (core/ratelimit.py): a revoked
    token must not use up its owner's budget."""
    count, period = state.settings.default_rate()
    user = ratelimit.limit("req", f"u{claims.user_id}", count, period) if claims else None
    return user, ratelimit.limit("req", f"ip{ip}", count, period)


async def make_first_trip(state: AppState, claims: tokens.Claims | None,
                          spec: CacheSpec | None, ip: str) -> FirstTrip | None:
    """None when Redis is down (callers fail open: no limit, state from the database)."""
    user_limit, ip_limit = request_limits(state, claims, ip)
    auth = (user_key(claims.user_id), session_key(claims.sid), claims.user_id) if claims else None
    result = await state.gate(user_limit, ip_limit, auth, spec)
    return None if result is None else FirstTrip(claims, user_limit, ip_limit, spec, result)


async def settle_uncached(state: AppState, trip: FirstTrip, claims: tokens.Claims) -> None:
    """The auth state was not cached, so the round trip counted nothing: read it from the
    database, then fill the cache and count the request against the limit it deserves, in
    one more round trip (the one the fill always took). Redis failing: no limit."""
    result = trip.result
    user_state, session_state = await load_state(state.db, claims)
    result.user, result.session = user_state.encode(), session_state.encode()
    try:
        actor_from_state(claims, user_state, session_state)
        result.charged = "user"
    except APIError:
        result.charged = "ip"
    redis = state.redis
    if redis.guard.down:
        return
    try:
        async with redis.pipeline(transaction=False) as pipe:
            queue_fill(pipe, claims, result.epoch, user_state, session_state)
            await ratelimit.queue_take(redis, pipe, trip.charged_limit)
            *_, (wait, _, _) = await pipe.execute()
    except (RedisError, OSError) as error:
        redis.guard.failed(error)
        return
    result.wait_ms = int(wait)


async def identify_and_limit() -> None:
    """before_request: verify the token (if any), then one Redis round trip that counts the
    request, reads the caller's auth state and looks up the route's cached response.

    When cached_reads.py already made that round trip (and could not answer from it), its result
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
        token = bearer_token()
        if token is not None:
            try:
                identity.claims = tokens.decode_bearer(state.signing_key, token)
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
    if not result.charged and trip.claims is not None:
        await settle_uncached(state, trip, trip.claims)
    identity.cached_user, identity.cached_session = result.user, result.session
    identity.epoch = result.epoch
    if trip.spec is not None:
        g.prefetch = Lookup(trip.spec.key, result.version, decode_entry(result.entry),
                            counted=trip.counted)
    ratelimit.check(trip.charged_limit, result.wait_ms)
