"""Clients for the live-event streams of a real server: SSE (httpx) and WebSocket (wsproto
over asyncio streams; no extra dependency)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)


@dataclass
class SSEMessage:
    id: str | None = None
    event: str = "message"
    data: str = ""
    retry: int | None = None
    comment: bool = False

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class SSE:
    response: httpx.Response
    lines: AsyncIterator[str]
    retries: list[int] = field(default_factory=list)
    heartbeats: int = 0

    async def next(self, wait: float = 5.0) -> SSEMessage | None:
        """The next message with an event (retry hints and heartbeats are counted, not
        returned); None when the stream ended."""
        async with asyncio.timeout(wait):
            message = SSEMessage()
            async for line in self.lines:
                if line == "":
                    if message.comment and not message.data and message.id is None:
                        self.heartbeats += 1
                    elif message.retry is not None and not message.data:
                        self.retries.append(message.retry)
                    elif message.data or message.id is not None:
                        return message
                    message = SSEMessage()
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "":
                    message.comment = True
                elif name == "id":
                    message.id = value
                elif name == "event":
                    message.event = value
                elif name == "data":
                    message.data = value
                elif name == "retry":
                    message.retry = int(value)
            return None

    async def collect(self, n: int, wait: float = 5.0) -> list[SSEMessage]:
        out = []
        for _ in range(n):
            message = await self.next(wait)
            assert message is not None, f"stream ended after {out}"
            out.append(message)
        return out


@asynccontextmanager
async def sse(url: str, headers: dict[str, str] | None = None) -> AsyncIterator[SSE]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client:
        async with client.stream("GET", url, headers=headers or {}) as response:
            yield SSE(response, response.aiter_lines())


class WS:
    """A WebSocket client: `status` is 101 when upgraded, else the refusal's status."""

    def __init__(self) -> None:
        self.conn = WSConnection(ConnectionType.CLIENT)
        self.status = 0
        self.body = b""
        self.close_code: int | None = None
        self.messages: asyncio.Queue[Any] = asyncio.Queue()
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter

    async def open(self, url: str, headers: dict[str, str] | None = None) -> WS:
        parts = urlsplit(url)
        self.reader, self.writer = await asyncio.open_connection(parts.hostname, parts.port)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        extra = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        self.writer.write(self.conn.send(Request(host=parts.netloc, target=target,
                                                 extra_headers=extra)))
        await self.writer.drain()
        while self.status == 0 or (self.status != 101 and not self._done):
            await self._pump()
        if self.status == 101:
            self._task = asyncio.create_task(self._run())
        return self

    _done = False

    async def _pump(self) -> None:
        data = await self.reader.read(65536)
        self.conn.receive_data(data or None)
        for event in self.conn.events():
            if isinstance(event, AcceptConnection):
                self.status = 101
            elif isinstance(event, RejectConnection):
                self.status = event.status_code
                self._done = not event.has_body
            elif isinstance(event, RejectData):
                self.body += event.data
                self._done = event.body_finished
            elif isinstance(event, TextMessage):
                self.messages.put_nowait(json.loads(event.data))
            elif isinstance(event, BytesMessage):
                self.messages.put_nowait(event.data)
            elif isinstance(event, CloseConnection):
                self.close_code = event.code
                self.messages.put_nowait(None)
                self._done = True
        if not data:
            self._done = True
            self.messages.put_nowait(None)

    async def _run(self) -> None:
        while not self._done:
            await self._pump()

    async def send(self, message: Any) -> None:
        self.writer.write(self.conn.send(TextMessage(data=json.dumps(message))))
        await self.writer.drain()

    async def next(self, wait: float = 5.0, skip_heartbeats: bool = True) -> Any:
        async with asyncio.timeout(wait):
            while True:
                message = await self.messages.get()
                if not (skip_heartbeats and isinstance(message, dict)
                        and message.get("type") == "heartbeat"):
                    return message

    async def close(self) -> None:
        if not self._done:
            with contextlib.suppress(Exception):  # the server may have gone already
                self.writer.write(self.conn.send(CloseConnection(code=1000)))
                await self.writer.drain()
        self.writer.close()


@asynccontextmanager
async def ws(url: str, headers: dict[str, str] | None = None) -> AsyncIterator[WS]:
    client = await WS().open(url, headers)
    try:
        yield client
    finally:
        await client.close()
