"""GET /events without the framework: an ASGI layer below cached_reads.py, in front of
admission control and Quart.

A stream is held for hours, so what each one keeps alive is what a server's memory per
stream is made of. Quart keeps, for every held response, its Request (a Body with two
asyncio Events), the request context, the Response and its encoded headers, a task watching
for the disconnect and the frames of its ASGI handler: about a third of what a stream costs
(decision 043). This layer opens the stream itself and writes the frames of
`blueprints/events.sse_body` straight to ASGI `send`, with the response head Quart sends.

It answers only a stream it can open. Anything unusual (CORS, a root path, a repeated
header, a body, a query or Last-Event-ID Quart would refuse, no hub) goes to Quart
unchanged, which then produces every error. Once it has counted the request (the gate's
round trip) or redeemed a ticket, the result travels in the ASGI scope so Quart continues
where this layer stopped: counted once, a ticket redeemed once (`FIRST_TRIP_KEY`,
`CALLER_KEY`). The route in Quart stays: the OpenAPI documentation and the fallback.

The access log line is hypercorn's, written for this response as for any other.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, overload

from pydantic import ValidationError
from quart import Quart

from taskapi.core import metrics, tokens
from taskapi.core.errors import APIError
from taskapi.core.logs import request_id_for
from taskapi.core.querystring import query_pairs, single_valued
from taskapi.core.state import AppState
from taskapi.http.admission import STREAM_PATHS
from taskapi.http.blueprints.events import SSE, sse_body
from taskapi.http.cached_reads import STARTED_KEY, plain_headers, scope_client_ip
from taskapi.http.gate import FIRST_TRIP_KEY, make_first_trip
from taskapi.http.live import CALLER_KEY, HUB_KEY, header_event_id, stream_actor
from taskapi.schemas.events import EventsQuery
from taskapi.services.live import Hub
from taskapi.services.live_events import Stream

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
# Quart's head for the stream, in its order (the route's, then app.py's after_request).
_HEAD = [(b"content-type", f"{SSE}; charset=utf-8".encode()),
         (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
_NOSNIFF = (b"x-content-type-options", b"nosniff")
_ENDPOINTS = {"/events": "events.stream_events", "/api/v1/events": "v1_events.stream_events"}


class EventStreams:
    """ASGI middleware: serve the streams of GET /events it can open, pass the rest on."""

    def __init__(self, app: Quart, state: AppState, inner: Any) -> None:
        self.app, self.state, self.inner = app, state, inner
        self.cors = bool(state.settings.cors_origins)
        self.served = 0  # streams opened here (tests)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and scope["method"] == "GET"
                and scope["path"] in STREAM_PATHS and not scope.get("root_path")):
            scope.setdefault(STARTED_KEY, time.perf_counter())
            opened = await self._open(scope)
            if opened is not None:
                await self._serve(scope, receive, send, *opened)
                return
        await self.inner(scope, receive, send)

    async def _open(self, scope: dict[str, Any]
                    ) -> tuple[Hub, Stream, int | None, str] | None:
        """The stream opened for this request, or None: Quart answers."""
        headers = plain_headers(scope, self.cors)
        if headers is None:
            return None
        try:
            query = EventsQuery.model_validate(
                single_valued(query_pairs(scope.get("query_string", b""))))
            after = query.last_event_id
            if after is None:
                after = header_event_id(_text(headers, b"last-event-id"))
        except (APIError, ValidationError):
            return None  # Quart answers the 422
        live: Hub | None = self.app.extensions.get(HUB_KEY)
        if live is None or live.stopping:
            return None  # Quart answers the 503
        state = self.state
        scheme, _, token = _text(headers, b"authorization", "").partition(" ")
        bearer = token.strip() if scheme.lower() == "bearer" and token.strip() else None
        claims = None
        if bearer is not None:
            try:
                claims = tokens.decode_bearer(state.signing_key, bearer)
            except APIError:
                pass  # counted against the address, as in the gate; the 401 comes below
        trip = await make_first_trip(state, claims, None, scope_client_ip(scope, headers, state))
        if trip is None:
            return None  # Redis down: Quart answers as the gate then does
        scope[FIRST_TRIP_KEY] = trip  # counted: Quart must not count it again
        if trip.result.wait_ms or (not trip.result.charged and claims is not None):
            return None  # over the limit (Quart's 429), or the state to read first
        try:
            caller = await stream_actor(query.ticket, None if query.ticket else bearer, state)
        except APIError as error:
            scope[CALLER_KEY] = error  # a ticket is redeemed once: Quart answers this
            return None
        scope[CALLER_KEY] = caller
        try:
            stream = live.open(caller)
        except APIError:
            return None  # Quart opens it again and answers the 429 or 503
        return live, stream, after, _text(headers, b"x-request-id", "")

    async def _serve(self, scope: dict[str, Any], receive: Receive, send: Send, live: Hub,
                     stream: Stream, after: int | None, incoming_id: str) -> None:
        request_id = request_id_for(incoming_id)
        scope.pop(FIRST_TRIP_KEY, None)  # what Quart would have needed: not held for hours
        head = [*_HEAD, (b"x-request-id", request_id.encode()), _NOSNIFF]
        body = sse_body(live, stream, after)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": head})
        except BaseException:
            live.release(stream)
            raise
        self.served += 1
        metrics.observe_request(_ENDPOINTS[scope["path"]], "GET", 200,
                                time.perf_counter() - scope[STARTED_KEY])
        task = asyncio.current_task()
        left = asyncio.ensure_future(_disconnected(receive))
        left.add_done_callback(lambda done: None if done.cancelled() or task is None
                               or stream.done else task.cancel())
        try:
            async for frame in body:
                await send({"type": "http.response.body", "body": frame, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            # The client left (as Quart, stop writing), or the stream was cut (CUT_GRACE).
            if task is None or not (left.done() or stream.ended is not None):
                raise
            task.uncancel()
        finally:
            left.cancel()
            await body.aclose()  # releases the stream, had it not ended


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


@overload
def _text(headers: dict[bytes, bytes], name: bytes) -> str | None: ...
@overload
def _text(headers: dict[bytes, bytes], name: bytes, default: str) -> str: ...
def _text(headers: dict[bytes, bytes], name: bytes, default: str | None = None) -> str | None:
    """A header's value as Quart reads it (latin-1)."""
    value = headers.get(name)
    return default if value is None else value.decode("latin-1")
