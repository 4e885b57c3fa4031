"""Live events over WebSocket: the events of GET /events as JSON text frames
{"id", "type", "data"}; the client may send {"type": "resume", "last_event_id": N}.

Authentication before the upgrade: `?ticket=` (browsers) or an Authorization header; a bad
one is a 401 problem instead of the upgrade. Without either, the first message must be
{"type": "auth", "token": "<access token>"} within AUTH_WAIT seconds (close 4401 otherwise).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from quart import Blueprint, Response, websocket

from taskapi.core.errors import APIError
from taskapi.http.live import hub, stream_actor
from taskapi.http.problems import problem
from taskapi.services.authstate import Actor
from taskapi.services.live import HEARTBEAT, REVOKED, SHUTDOWN, SLOW, Hub, Reset, Stream, items
from taskapi.services.live_events import Event, view_of

bp = Blueprint("ws", __name__)
AUTH_WAIT = 10.0
# Close codes: 1012 service restart (reconnect elsewhere), 1013 try again later (too slow),
# 4401 not (or no longer) signed in, 4400 a message that is not one of ours.
_CLOSE = {SHUTDOWN: 1012, SLOW: 1013, REVOKED: 4401}


def _bearer() -> str | None:
    scheme, _, token = websocket.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def _first_message_auth() -> Actor | None:
    await websocket.accept()
    try:
        async with asyncio.timeout(AUTH_WAIT):
            message = _parse(await websocket.receive())
        if message.get("type") != "auth" or not isinstance(message.get("token"), str):
            raise APIError(401, "not_authenticated", "Send {\"type\": \"auth\", \"token\": …} "
                           "first.")
        return await stream_actor(None, message["token"])
    except (TimeoutError, APIError):
        await websocket.close(4401, "not authenticated")
        return None


def _parse(raw: str | bytes) -> dict[str, Any]:
    try:
        message = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {}
    return message if isinstance(message, dict) else {}


async def _send(live: Hub, stream: Stream, after: int | None) -> None:
    async for item in items(live, stream, after):
        if isinstance(item, Event):
            view = view_of(stream.actor, item)
            if view is not None:
                await websocket.send(item.ws(view))
        elif isinstance(item, Reset):
            await websocket.send(json.dumps({"id": item.last_id, "type": "reset",
                                             "data": {"reason": item.reason}}))
        elif item == HEARTBEAT:
            await websocket.send('{"type":"heartbeat"}')


async def _converse(live: Hub, stream: Stream, after: int | None) -> None:
    """Send events; a resume message restarts the replay from its id."""
    sender = asyncio.create_task(_send(live, stream, after))
    try:
        while True:
            receiving = asyncio.ensure_future(websocket.receive())
            done, _ = await asyncio.wait({sender, receiving}, return_when=asyncio.FIRST_COMPLETED)
            if sender in done:
                receiving.cancel()
                if not sender.cancelled():  # cancelled: cut off (services/live.py Stream)
                    sender.result()
                return
            message = _parse(receiving.result())
            resume = message.get("last_event_id")
            if message.get("type") != "resume" or not isinstance(resume, int) or resume < 0:
                sender.cancel()
                await websocket.close(4400, "unknown message")
                return
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            sender = asyncio.create_task(_send(live, stream, resume))
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)


@bp.websocket("/ws")
async def ws() -> Response | None:
    """Live task events as WebSocket JSON frames."""
    ticket = websocket.args.get("ticket")
    after_arg = websocket.args.get("last_event_id", "")
    after = int(after_arg) if after_arg.isdigit() and len(after_arg) <= 16 else None
    try:
        caller = None
        if ticket is not None or _bearer() is not None:
            caller = await stream_actor(ticket, _bearer())
        live = hub()
        stream = live.open(caller) if caller is not None else None
    except APIError as error:
        # Instead of the upgrade (the ASGI websocket.http.response extension).
        return problem(error.status, error.code, error.detail, headers=error.headers)
    if caller is None:
        caller = await _first_message_auth()
        if caller is None:
            return None
        try:
            stream = live.open(caller)
        except APIError as error:
            await websocket.close(1013, error.code)
            return None
    assert stream is not None
    try:
        await websocket.accept()
        await _converse(live, stream, after)
        if stream.ended is not None:
            await websocket.close(_CLOSE.get(stream.ended, 1000), stream.ended)
    finally:
        stream.done = True
        live.release(stream)
    return None
