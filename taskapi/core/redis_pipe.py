"""One Lua script called over one pipelined Redis connection per process: the request
gate's round trip (core/ratelimit.py), made by every request.

Through redis-py's pool each call checks a connection out (a lock, a readiness probe),
sends, waits for the answer under a timeout and checks it back in: about a tenth of a cached
read's CPU. Here the calls of one loop turn are written together and their answers, which
Redis sends in order, resolve the callers' futures as they arrive. Why: decision 048.

Failures are redis-py's exceptions, so callers handle both paths alike: ConnectionError when
the connection cannot be made or is lost (every call in flight fails), TimeoutError when the
oldest call has waited longer than the client's socket timeout (the connection is dropped),
ResponseError for an error reply. The next call connects again.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import hiredis
from redis.asyncio import ConnectionPool
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError, ResponseError, TimeoutError


def pack(*parts: bytes | str | int) -> bytes:
    """One command in RESP: an array of bulk strings."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Link(asyncio.Protocol):
    """The connection: replies matched to the waiting calls in order."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.outgoing: list[bytes] = []  # written together at the end of the loop turn
        self.watching = False  # a timeout check is scheduled

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        try:
            while (reply := self.reader.gets()) is not False:
                future, _ = self.waiting.popleft()
                if not future.done():  # a caller that gave up (cancelled) is skipped
                    future.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as error:
            self.fail(ConnectionError(f"Redis protocol error: {error!r}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(ConnectionError(f"Redis connection lost: {exc!r}"))

    def fail(self, error: Exception) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.abort()
        while self.waiting:
            future, _ = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)


class ScriptPipe:
    """`await pipe(keys, args)`: EVALSHA of `script` (EVAL once after a NOSCRIPT)."""

    def __init__(self, pool: ConnectionPool, script: str) -> None:
        self._kwargs = pool.connection_kwargs
        self._unix = pool.connection_class is UnixDomainSocketConnection
        self._timeout = float(self._kwargs.get("socket_timeout") or 5.0)
        self._script = script.encode()
        # The script's name in Redis (SCRIPT LOAD's digest), not a security measure.
        self._sha = hashlib.sha1(self._script, usedforsecurity=False).hexdigest().encode()
        self._link: _Link | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting: asyncio.Task[_Link] | None = None

    @staticmethod
    def supports(pool: ConnectionPool) -> bool:
        """Plain TCP or a Unix socket (TLS and other transports stay on redis-py)."""
        return pool.connection_class in (Connection, UnixDomainSocketConnection)

    async def __call__(self, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        reply = await self._send(pack(b"EVALSHA", self._sha, len(keys), *keys, *args))
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
            reply = await self._send(pack(b"EVAL", self._script, len(keys), *keys, *args))
        if isinstance(reply, hiredis.ReplyError):
            raise ResponseError(str(reply))
        return reply

    def close(self) -> None:
        """Drop the connection (calls in flight fail); a later call connects again."""
        if self._link is not None and not self._link.lost:
            self._link.fail(ConnectionError("closed"))

    async def _send(self, command: bytes) -> Any:
        link = await self._ready()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        link.waiting.append((future, time.monotonic()))
        if not link.outgoing:
            loop.call_soon(_flush, link)
        link.outgoing.append(command)
        if not link.watching:
            link.watching = True
            loop.call_later(self._timeout, self._watch, link)
        return await future

    def _watch(self, link: _Link) -> None:
        """The oldest call waited past the timeout: Redis is stuck (paused, overloaded) or
        the network is; drop the connection, so every call in flight fails now."""
        link.watching = False
        if link.lost or not link.waiting:
            return
        waited = time.monotonic() - link.waiting[0][1]
        if waited >= self._timeout:
            link.fail(TimeoutError(f"Redis did not answer within {self._timeout} s"))
            return
        link.watching = True
        asyncio.get_running_loop().call_later(self._timeout - waited, self._watch, link)

    async def _ready(self) -> _Link:
        """The live connection, made if there is none: by one task that every caller waits
        for, so a caller that is cancelled meanwhile does not cancel it for the others."""
        loop = asyncio.get_running_loop()
        link = self._link
        if link is not None and not link.lost and self._loop is loop:
            return link
        if self._connecting is None or self._loop is not loop:
            if link is not None and not link.lost:
                try:
                    link.fail(ConnectionError("event loop changed"))
                except RuntimeError:  # its loop is closed: nothing is waiting there
                    link.lost = True
            self._loop = loop
            self._connecting = loop.create_task(self._connect_once(loop))
            # Retrieved even when every caller has gone (they re-raise it themselves).
            self._connecting.add_done_callback(lambda done: done.cancelled() or done.exception())
        link = await asyncio.shield(self._connecting)
        if link.lost:  # lost between its connect and this caller's turn
            raise ConnectionError("Redis connection lost")
        return link

    async def _connect_once(self, loop: asyncio.AbstractEventLoop) -> _Link:
        try:
            link = await self._connect(loop)
            if self._connecting is asyncio.current_task():  # not replaced meanwhile
                self._link = link
            return link
        finally:
            if self._connecting is asyncio.current_task():
                self._connecting = None

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Link:
        kw = self._kwargs
        timeout = float(kw.get("socket_connect_timeout") or self._timeout)
        link: _Link | None = None
        try:
            async with asyncio.timeout(timeout):
                if self._unix:
                    _, link = await loop.create_unix_connection(_Link, kw["path"])
                else:
                    _, link = await loop.create_connection(
                        _Link, kw.get("host", "localhost"), int(kw.get("port", 6379)))
                setup = []
                if kw.get("password"):
                    setup.append(pack(b"AUTH", *([kw["username"]] if kw.get("username") else []),
                                      kw["password"]))
                if int(kw.get("db") or 0):
                    setup.append(pack(b"SELECT", int(kw["db"])))
                futures = [loop.create_future() for _ in setup]
                link.waiting.extend((f, time.monotonic()) for f in futures)
                if setup:
                    link.transport.write(b"".join(setup))  # type: ignore[union-attr]
                for reply in await asyncio.gather(*futures):
                    if isinstance(reply, hiredis.ReplyError):
                        raise ConnectionError(f"Redis refused the connection setup: {reply}")
        except BaseException as error:
            if link is not None:
                link.fail(ConnectionError("connection setup failed"))
            if isinstance(error, (OSError, asyncio.TimeoutError)):
                raise ConnectionError(f"cannot connect to Redis: {error!r}") from error
            raise
        return link


def _flush(link: _Link) -> None:
    data, link.outgoing = b"".join(link.outgoing), []
    if not link.lost and link.transport is not None:
        link.transport.write(data)
