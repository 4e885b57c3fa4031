"""event_stream.py: GET /events opened below Quart must answer what Quart answers, head
included, and every request it does not open must reach Quart as if it were not there."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from taskapi.http.cached_reads import CachedReads
from taskapi.http.event_stream import EventStreams

# A request id of the client's: kept by both paths, so heads and bodies compare whole.
RID = {"X-Request-ID": "event-stream-test-1"}


def _layer(app: Any) -> EventStreams:
    outer = app.asgi_app
    assert isinstance(outer, CachedReads) and isinstance(outer.inner, EventStreams)
    return outer.inner


async def _call(asgi: Any, path: str, headers: dict[str, str],
                query: bytes = b"") -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Open `path` through `asgi`, read its head and first frame (or whole error body),
    then disconnect like a client that leaves."""
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
             "http_version": "1.1", "method": "GET", "scheme": "http", "path": path,
             "raw_path": path.encode(), "query_string": query, "root_path": "",
             "headers": [(k.lower().encode(), v.encode())
                         for k, v in {**RID, **headers}.items()],
             "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 5000),
             "extensions": {}, "state": {}}
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    inbox.put_nowait({"type": "http.request", "body": b"", "more_body": False})
    messages: list[dict[str, Any]] = []
    answered = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)
        if message["type"] == "http.response.body":
            answered.set()

    task = asyncio.create_task(asgi(scope, inbox.get, send))
    await asyncio.wait_for(answered.wait(), 10)
    inbox.put_nowait({"type": "http.disconnect"})
    await asyncio.wait_for(task, 10)
    start = messages[0]
    body = b"".join(m.get("body", b"") for m in messages[1:])
    return start["status"], list(start["headers"]), body


def _names(head: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    return dict(head)


async def _warm(client: Any, who: Any) -> None:
    """One request, so the caller's auth state is cached (as for any client but the first
    request of a session)."""
    assert (await client.get("/me", headers=who.headers)).status_code == 200


@pytest.mark.parametrize("path", ["/events", "/api/v1/events"])
async def test_a_stream_opened_below_quart_has_quarts_head(app, client, make_user, path) -> None:  # type: ignore[no-untyped-def]
    who = await make_user("employee")
    await _warm(client, who)
    layer = _layer(app)
    before = layer.served
    fast = await _call(app.asgi_app, path, who.headers)
    assert layer.served == before + 1
    slow = await _call(layer.inner, path, who.headers)  # Quart's own answer
    assert layer.served == before + 1
    assert fast[0] == slow[0] == 200
    assert fast[1] == slow[1]  # the same head, in the same order
    assert fast[2] == slow[2] == b"retry: 3000\n\n"
    live = app.extensions["taskapi.live"]
    for _ in range(50):  # both streams were released on the disconnect
        if not live.streams:
            break
        await asyncio.sleep(0.02)
    assert not live.streams


async def test_a_ticket_opens_a_stream_below_quart_once(app, client, make_user) -> None:  # type: ignore[no-untyped-def]
    who = await make_user("employee")
    await _warm(client, who)
    layer = _layer(app)
    ticket = (await (await client.post("/events/ticket", headers=who.headers)).get_json())
    before = layer.served
    status, _, _ = await _call(app.asgi_app, "/events", {},
                               f"ticket={ticket['ticket']}".encode())
    assert status == 200 and layer.served == before + 1
    used = await _call(app.asgi_app, "/events", {}, f"ticket={ticket['ticket']}".encode())
    assert used[0] == 401 and layer.served == before + 1  # Quart's answer, redeemed once
    again = await _call(layer.inner, "/events", {}, f"ticket={ticket['ticket']}".encode())
    assert used == again


@pytest.mark.parametrize("bearer, headers, query", [
    (False, {}, b""),  # no credentials: 401
    (False, {"Authorization": "Bearer not-a-token"}, b""),  # 401
    (True, {"Last-Event-ID": "x"}, b""),  # 422
    (True, {"Last-Event-ID": "12345678901234567"}, b""),
    (True, {}, b"last_event_id=-1"),
    (True, {}, b"last_event_id=1&last_event_id=2"),  # a repeated parameter
    (True, {}, b"surprise=1"),  # an unknown parameter
    (False, {}, b"ticket=nope"),  # 401: no such ticket
    (True, {}, b"ticket=nope"),  # a ticket wins over the bearer, as in Quart
])
async def test_what_it_does_not_open_quart_answers(app, client, make_user, bearer, headers, query) -> None:  # type: ignore[no-untyped-def]
    who = await make_user("employee")
    await _warm(client, who)
    layer = _layer(app)
    if bearer:
        headers = {**who.headers, **headers}
    before = layer.served
    fast = await _call(app.asgi_app, "/events", headers, query)
    slow = await _call(layer.inner, "/events", headers, query)
    assert layer.served == before
    assert fast[0] == slow[0] and fast[0] in (401, 422)
    assert _names(fast[1]) == _names(slow[1]) and fast[2] == slow[2]


async def test_stream_caps_are_quarts_answers(app_with, make_user) -> None:  # type: ignore[no-untyped-def]
    async with app_with(max_streams_per_user=1) as app:
        client = app.test_client()
        who = await make_user("employee")
        await _warm(client, who)
        layer = _layer(app)
        live = app.extensions["taskapi.live"]
        held = live.open(live_actor(live, who))
        try:
            fast = await _call(app.asgi_app, "/events", who.headers)
            slow = await _call(layer.inner, "/events", who.headers)
        finally:
            live.release(held)
        assert fast[0] == slow[0] == 429 and layer.served == 0
        assert _names(fast[1]) == _names(slow[1]) and fast[2] == slow[2]
        assert _names(fast[1])[b"retry-after"] == b"30"


def live_actor(live: Any, who: Any) -> Any:
    from taskapi.models import Role
    from taskapi.services.authstate import Actor

    return Actor(id=who.id, role=Role(who.role), sid="held", scope=None)
