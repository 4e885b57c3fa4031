"""Live events over Server-Sent Events, and the tickets browsers use to open a stream."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import cast

from quart import Blueprint, Response, request
from quart_schema import document_querystring, tag, validate_response
from quart_schema.openapi import QUART_SCHEMA_SECURITY_ATTRIBUTE

from taskapi.core.errors import APIError
from taskapi.http.client import bearer_token
from taskapi.http.current import runtime
from taskapi.http.deps import BEARER, ROLES_ATTRIBUTE, actor, require_role
from taskapi.http.headers import no_store
from taskapi.http.live import CALLER_KEY, header_event_id, hub, retry_hint, stream_actor
from taskapi.http.openapi import EXTRA_ATTRIBUTE
from taskapi.http.responses import parse_query
from taskapi.models import Role
from taskapi.schemas.events import EventsQuery, TicketOut
from taskapi.services.authstate import Actor
from taskapi.services.live import HEARTBEAT, SHUTDOWN, Hub, Reset, Stream, items
from taskapi.services.live_events import Event, view_of
from taskapi.services.tickets import issue_ticket

bp = Blueprint("events", __name__)
tag_ = tag(["events"])
SSE = "text/event-stream"
_HEARTBEAT = b": heartbeat\n\n"


def last_event_id(query: EventsQuery) -> int | None:
    """The query's last_event_id, else the Last-Event-ID header (browsers send it when they
    reconnect); a header that is not an id is a 422 like a bad query value."""
    if query.last_event_id is not None:
        return query.last_event_id
    return header_event_id(request.headers.get("Last-Event-ID"))


def reset_frame(reset: Reset) -> bytes:
    data = json.dumps({"reason": reset.reason})
    return f"id: {reset.last_id}\nevent: reset\ndata: {data}\n\n".encode()


async def sse_body(live: Hub, stream: Stream, after: int | None) -> AsyncGenerator[bytes, None]:
    try:
        yield f"retry: {retry_hint()}\n\n".encode()
        async for item in items(live, stream, after):
            if isinstance(item, Event):
                view = view_of(stream.actor, item)
                if view is not None:
                    yield item.sse(view)
            elif isinstance(item, Reset):
                yield reset_frame(item)
            elif item == HEARTBEAT:
                yield _HEARTBEAT
        if stream.ended == SHUTDOWN:  # reconnect elsewhere, not all at once
            yield f"retry: {retry_hint(jitter=True)}\n\n".encode()
    finally:
        stream.done = True
        live.release(stream)


@bp.get("/events")
@tag_
@document_querystring(EventsQuery)
async def stream_events() -> Response:
    """Live task events (`text/event-stream`): `id`, `event` (the type), `data` (one line of
    JSON). `Last-Event-ID` (or `last_event_id`) replays the later events first; an id older
    than the retention gets `event: reset`. Bearer token, or `?ticket=` from
    POST /events/ticket for browsers' EventSource."""
    query = parse_query(EventsQuery)
    after = last_event_id(query)
    # The layer below Quart (http/event_stream.py) may have found the caller already.
    caller = cast(Actor | APIError | None, request.scope.get(CALLER_KEY))
    if isinstance(caller, APIError):
        raise caller
    if caller is None:
        caller = await stream_actor(query.ticket, None if query.ticket else bearer_token())
    live = hub()
    stream = live.open(caller)
    response = Response(sse_body(live, stream, after), mimetype=SSE)
    response.timeout = None  # Quart's RESPONSE_TIMEOUT would cut the stream
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    return response


_EXAMPLE = ('retry: 3000\n\nid: 42\nevent: task.status_changed\ndata: {"id":7,"title":"Ship",'
            '"status":"completed",…}\n\n: heartbeat\n\n')
setattr(stream_events, EXTRA_ATTRIBUTE, {
    "responses": {200: {
        "description": "An endless event stream. Each message: `id` (the event id), `event` "
                       "(task.created, task.updated, task.status_changed, task.assigned, "
                       "task.deleted, comment.created, or reset: refetch, then resume from "
                       "its id), `data` (one line of JSON: the task as GET /task/{id} returns "
                       "it; `{\"id\"}` for a deletion; `{\"id\", \"assigned_user_id\"}` "
                       "for a task taken away from you). A `: heartbeat` comment every "
                       "EVENTS_HEARTBEAT seconds.",
        "content": {SSE: {"schema": {"type": "string"}, "example": _EXAMPLE}},
        "headers": {"Cache-Control": {"schema": {"type": "string", "enum": ["no-cache"]}},
                    "X-Accel-Buffering": {"schema": {"type": "string", "enum": ["no"]}}},
    }},
    "parameters": [{"name": "Last-Event-ID", "in": "header", "required": False,
                    "description": "The last event id received (browsers send it when they "
                                   "reconnect): the later events are replayed first.",
                    "schema": {"type": "integer", "minimum": 0}}],
})
# Any signed-in user (by ticket or bearer): documented as bearer-protected, 401 included.
setattr(stream_events, ROLES_ATTRIBUTE, tuple(Role))
setattr(stream_events, QUART_SCHEMA_SECURITY_ATTRIBUTE, BEARER)


@bp.post("/events/ticket")
@tag_
@require_role()
@no_store
@validate_response(TicketOut)
async def events_ticket() -> TicketOut:
    """A single-use ticket, valid 60 s, to open GET /events or GET /ws from a browser
    (EventSource and WebSocket cannot send an Authorization header)."""
    ticket, ttl = await issue_ticket(runtime().redis, actor())
    return TicketOut(ticket=ticket, expires_in=ttl)
