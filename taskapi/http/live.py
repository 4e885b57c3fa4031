"""The process's live-event hub on the app (started and stopped with serving), and who is
opening a stream: a ticket (browsers), else a bearer token. Never a JWT in a query string."""

from __future__ import annotations

import random

from quart import Quart, current_app

from taskapi.core import tokens
from taskapi.core.errors import APIError, unauthorized
from taskapi.core.state import AppState
from taskapi.http.current import EXTENSION_KEY, runtime
from taskapi.services.authstate import Actor, resolve_actor
from taskapi.services.live import RETRY_HINT_MS, Hub
from taskapi.services.tickets import redeem_ticket

HUB_KEY = "taskapi.live"
# In the ASGI scope: the caller of GET /events (an Actor) or why not (an APIError), found by
# http/event_stream.py before it passed the request on to Quart.
CALLER_KEY = "taskapi.stream_caller"


def install_hub(app: Quart) -> None:
    @app.before_serving
    async def _start_hub() -> None:
        state = app.extensions[EXTENSION_KEY]
        hub = Hub(state.settings, state.db, state.redis, state.redis_url)
        await hub.start()
        app.extensions[HUB_KEY] = hub

    @app.after_serving
    async def _stop_hub() -> None:
        hub: Hub | None = app.extensions.pop(HUB_KEY, None)
        if hub is not None:
            await hub.close()


def hub() -> Hub:
    found: Hub | None = current_app.extensions.get(HUB_KEY)
    if found is None:
        raise APIError(503, "streams_unavailable", "This server is not serving streams now.",
                       headers={"Retry-After": "2"})
    return found


async def stream_actor(ticket: str | None, bearer: str | None,
                       state: AppState | None = None) -> Actor:
    """The caller of a stream, checked now against the database or the auth-state cache.
    `state`: the app's, for a caller outside Quart's request context (http/event_stream.py)."""
    state = state or runtime()
    if ticket is not None:
        return await redeem_ticket(state.db, state.redis, ticket)
    if bearer is None:
        raise unauthorized("not_authenticated", "A bearer token or a ticket "
                           "(POST /events/ticket) is required.")
    claims = tokens.decode_bearer(state.signing_key, bearer)  # a login's or a personal token
    return await resolve_actor(state.db, state.redis, claims, None, None, None)


def header_event_id(header: str | None) -> int | None:
    """The Last-Event-ID header (browsers send it when they reconnect): None when absent or
    blank; one that is not an id is a 422 like a bad query value."""
    if header is None or header.strip() == "":
        return None
    if not header.strip().isdigit() or len(header.strip()) > 16:
        raise APIError(422, "invalid_last_event_id", "Last-Event-ID must be an event id.")
    return int(header.strip())


def retry_hint(jitter: bool = False) -> int:
    """Milliseconds a client should wait before reconnecting; spread out when a server
    stops, so its clients do not all reconnect at the same instant."""
    return int(RETRY_HINT_MS * random.uniform(0.2, 1.0)) if jitter else RETRY_HINT_MS
