"""Admission control: a request is admitted once its body has arrived, and a bounded number
of admitted requests run at once in each server process."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from taskapi.core.errors import APIError
from taskapi.http.openapi import BODY_METHODS

# Set in the ASGI scope when the body did not arrive within BODY_TIMEOUT; the app then
# answers `body_error` (app.py's before_request) without reading anything.
BODY_TIMED_OUT_KEY = "taskapi.body_timed_out"

# The live-event stream (GET /events): open for hours, it must not hold a request slot.
STREAM_PATHS = frozenset({"/events", "/api/v1/events"})

Receive = Callable[[], Awaitable[dict[str, Any]]]


class ConcurrencyLimit:
    """At most `limit` HTTP requests of this process run at once; the others wait, in order
    of arrival, before the app sees them (a waiting request holds no database connection)
    (decision 007).

    A request's body is read before it waits for a slot, for at most `body_timeout` seconds
    and `max_body` bytes, then handed to the app from memory: a client sending its body
    slowly, or never, holds no slot while it does (decision 020).
    """

    def __init__(self, app: Any, limit: int, *, max_body: int, body_timeout: float) -> None:
        self.app = app
        self.slots = asyncio.Semaphore(limit)
        self.max_body = max_body
        self.body_timeout = body_timeout

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in STREAM_PATHS:
            # Streams (and WebSockets) hold no slot: they are capped by MAX_STREAMS instead.
            await self.app(scope, receive, send)
            return
        if _has_body_to_read(scope, self.max_body):
            replay = await self._read_body(scope, receive)
            if replay is None:
                return  # the client went away before its body was complete
            receive = replay
        async with self.slots:
            await self.app(scope, receive, send)

    async def _read_body(self, scope: dict[str, Any], receive: Receive) -> Receive | None:
        """The body, replayed as one message; it stops at max_body + 1 bytes (Quart then
        answers 413, as for any body over the limit). None: the client disconnected."""
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    chunk = message.get("body", b"")
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > self.max_body or not message.get("more_body", False):
                        break
        except TimeoutError:
            scope[BODY_TIMED_OUT_KEY] = True
            chunks = []
        return _Replay(b"".join(chunks), receive)


class _Replay:
    """An ASGI `receive` that gives the buffered body first, then what the server sends
    (the disconnect the app watches for)."""

    def __init__(self, body: bytes, receive: Receive) -> None:
        self.first: dict[str, Any] | None = {"type": "http.request", "body": body,
                                             "more_body": False}
        self.receive = receive

    async def __call__(self) -> dict[str, Any]:
        message, self.first = self.first, None
        return message if message is not None else await self.receive()


def _has_body_to_read(scope: dict[str, Any], max_body: int) -> bool:
    """Whether the request comes with a body worth reading ahead. One announced over the
    limit is not read: Quart answers 413 from the Content-Length alone."""
    if scope.get("http_version", "1.1") not in ("1.0", "1.1"):
        return bool(scope["method"] in BODY_METHODS)  # HTTP/2 needs no header for a body
    for name, value in scope["headers"]:
        if name == b"transfer-encoding":
            return True
        if name == b"content-length":
            return value.isdigit() and 0 < int(value) <= max_body
    return False


def body_error(scope: Mapping[str, Any]) -> APIError | None:
    """408 when the request's body did not arrive in time, else None. The rest of the body
    stays unread, so the server closes the connection: the answer says so."""
    if not scope.get(BODY_TIMED_OUT_KEY):
        return None
    return APIError(408, "request_timeout", "The request body did not arrive in time.",
                    headers={"Connection": "close"})
