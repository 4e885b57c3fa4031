"""Live events: one hub per server process tails the event log and fans it out to streams.

A task write commits its event row (services/events.py), then `announce` publishes a poke on
one Redis channel. Each process holds ONE subscription; a poke makes its hub read the rows
after the last id it has seen, in id order (ids increase in commit order: decision 022), and
offer each event to its local streams. The hub also reads every POLL_INTERVAL (faster while
the subscription is down), so a lost poke delays an event, never drops it (decision 039).

Each stream has a bounded queue: a client that falls EVENTS_QUEUE events behind is cut off
(its transport sends `event: reset`). Every EVENTS_AUTH_CHECK seconds the hub re-reads each
stream's session and user state; a revoked session, a deleted, unapproved or re-roled user
ends the stream (decision 040).
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from taskapi.config import Settings
from taskapi.core import stream_metrics as metrics
from taskapi.core.db import Database
from taskapi.core.errors import APIError
from taskapi.core.event_channel import CHANNEL
from taskapi.core.heap_trim import HeapTrim
from taskapi.core.redis_client import GuardedRedis
from taskapi.services.authstate import Actor
from taskapi.services.live_auth import current_actors
from taskapi.services.live_events import REVOKED, SHUTDOWN, SLOW, Event, Stream, view_of
from taskapi.services.live_log import head as log_head
from taskapi.services.live_log import needs_reset, read_after

log = logging.getLogger("taskapi.live")
POLL_INTERVAL = 2.0  # seconds between safety reads while subscribed
POLL_INTERVAL_DOWN = 0.5  # while the subscription is down
PAGE = 500
RETRY_HINT_MS = 3000  # clients reconnect after about this long (jittered on shutdown)



class Hub:
    """The process's streams and its one Redis subscription."""

    def __init__(self, settings: Settings, db: Database, redis: GuardedRedis,
                 redis_url: str) -> None:
        self.settings, self.db, self.redis, self.redis_url = settings, db, redis, redis_url
        self.streams: set[Stream] = set()
        self.per_user: Counter[int] = Counter()
        self.head = -1  # the last event id read (-1: not read yet)
        self.stopping = False
        self._dirty = asyncio.Event()
        self._subscribed = False
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.heap = HeapTrim()

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            await self._find_head()
        except Exception:  # the database may be away: found on the first read
            log.warning("event log not readable at start; streams begin once it is")
        self._tasks = [asyncio.create_task(coro) for coro in
                       (self._listen(), self._read_loop(), self._auth_loop())]
        _register(self)

    async def close(self) -> None:
        _unregister(self)
        self.end_all(SHUTDOWN)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def end_all(self, reason: str) -> None:
        if reason == SHUTDOWN:
            self.stopping = True
        for stream in list(self.streams):
            stream.end(reason)

    def end_all_threadsafe(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.end_all, SHUTDOWN)

    # --- streams --------------------------------------------------------------------------

    def open(self, actor: Actor) -> Stream:
        """A new stream for `actor`, receiving every event read from now on; 503 past
        MAX_STREAMS in this process (or while it stops), 429 past MAX_STREAMS_PER_USER."""
        settings = self.settings
        if self.stopping or len(self.streams) >= settings.max_streams:
            raise APIError(503, "too_many_streams", "This server holds as many streams as it "
                           "may; retry shortly.", headers={"Retry-After": "5"})
        if self.per_user[actor.id] >= settings.max_streams_per_user:
            raise APIError(429, "too_many_streams", "You have as many open streams as you may.",
                           headers={"Retry-After": "30"})
        stream = Stream(actor, settings.events_queue)
        self.streams.add(stream)
        self.per_user[actor.id] += 1
        metrics.STREAMS.inc()
        return stream

    def release(self, stream: Stream) -> None:
        if stream in self.streams:
            self.streams.discard(stream)
            self.per_user[stream.actor.id] -= 1
            if self.per_user[stream.actor.id] <= 0:
                del self.per_user[stream.actor.id]
            metrics.STREAMS.dec()

    # --- reading the log ------------------------------------------------------------------

    async def _listen(self) -> None:
        """The one subscription: each message marks the log as having news."""
        while True:
            client = Redis.from_url(self.redis_url, socket_timeout=None,
                                    socket_connect_timeout=2.0, health_check_interval=30)
            try:
                async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    self._subscribed = True
                    self._dirty.set()  # catch up on what came while not subscribed
                    async for _message in pubsub.listen():
                        self._dirty.set()
            except (RedisError, OSError) as error:
                if self._subscribed:
                    log.warning("event subscription lost (%r): reading the log every %.1f s",
                                error, POLL_INTERVAL_DOWN)
            finally:
                self._subscribed = False
                await client.aclose()
            await asyncio.sleep(POLL_INTERVAL_DOWN)

    async def _read_loop(self) -> None:
        while True:
            interval = POLL_INTERVAL if self._subscribed else POLL_INTERVAL_DOWN
            try:
                async with asyncio.timeout(interval):
                    await self._dirty.wait()
            except TimeoutError:
                pass
            self._dirty.clear()
            try:
                await self.read_new()
            except Exception:
                log.exception("reading the event log failed")
                await asyncio.sleep(POLL_INTERVAL_DOWN)

    async def _find_head(self) -> None:
        self.head = await log_head(self.db)

    async def read_new(self) -> None:
        """Offer every event after `head` to the streams, in id order. With no stream open
        only the head moves (one index lookup instead of the rows)."""
        if self.head < 0:  # not known yet: live streams begin at the log's end
            await self._find_head()
        elif not self.streams:
            latest = await log_head(self.db)
            if not self.streams:  # still none (a stream opened meanwhile gets the rows)
                self.head = max(self.head, latest)
                return
        while True:
            rows = await read_after(self.db, self.head, PAGE)
            for event in rows:
                self.head = event.id
                for stream in list(self.streams):
                    stream.offer(event)
                # Let the streams write before the next event: a burst must not fill the
                # queue of a client that keeps up.
                await asyncio.sleep(0)
            if len(rows) < PAGE:
                return

    async def _auth_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.events_auth_check)
            await self.heap.tick(len(self.streams))  # after a burst (it never raises)
            if not self.streams:
                continue
            try:
                await self.check_auth()
            except Exception:
                log.exception("re-checking the streams' sessions failed")

    async def check_auth(self) -> None:
        """End the streams whose caller is no longer who they were when it opened."""
        wanted = {(s.actor.id, s.actor.sid) for s in self.streams if s.ended is None}
        now = await current_actors(self.db, self.redis, wanted)
        for stream in list(self.streams):
            if now.get((stream.actor.id, stream.actor.sid)) != stream.actor:
                stream.end(REVOKED)


@dataclass(frozen=True, slots=True)
class Reset:
    """The client must refetch: events it missed are gone (`expired`) or it fell behind
    (`slow`). `last_id`: the id to resume from after refetching."""

    last_id: int
    reason: str


# What a transport receives: an Event, a Reset, HEARTBEAT; the iterator ends with the stream.
HEARTBEAT = "heartbeat"
Item = Event | Reset | str


async def items(hub: Hub, stream: Stream, last_id: int | None) -> AsyncIterator[Item]:
    """The stream's items: the replay after `last_id` (or a Reset), then live events, with
    a HEARTBEAT every EVENTS_HEARTBEAT seconds (the first one jittered, then on a fixed
    beat, so a broadcast does not line every stream's heartbeat up). Ends when the stream
    ends; a slow stream gets a Reset first."""
    stream.task = asyncio.current_task()
    sent = 0
    if last_id is not None:
        if await needs_reset(hub.db, last_id, hub.settings.events_retention):
            yield Reset(max(hub.head, 0), "expired")  # then every live event from now on
        else:
            sent = last_id
            while True:
                page = await read_after(hub.db, sent, PAGE)
                for event in page:
                    sent = event.id
                    if view_of(stream.actor, event) is not None:
                        metrics.EVENTS_DELIVERED.inc()
                        yield event
                if len(page) < PAGE:
                    break
    beat = hub.settings.events_heartbeat
    next_beat = time.monotonic() + beat * random.uniform(0.5, 1.0)
    while True:
        while stream.queue:
            event = stream.queue.pop(0)  # at most EVENTS_QUEUE long
            if event.id > sent:
                sent = event.id
                metrics.observe_delivery(event.created_at)
                yield event
        if stream.ended is not None:
            if stream.ended == SLOW:
                yield Reset(max(hub.head, 0), SLOW)
            return
        if not await stream.wait(max(0.0, next_beat - time.monotonic())):
            next_beat += beat
            yield HEARTBEAT


# The hubs of this process (one per served app), for a stop signal from another thread.
_hubs: list[Hub] = []
_lock = threading.Lock()


def _register(hub: Hub) -> None:
    with _lock:
        _hubs.append(hub)


def _unregister(hub: Hub) -> None:
    with _lock:
        if hub in _hubs:
            _hubs.remove(hub)


def end_streams_threadsafe(*_: Any) -> None:
    """The server process is stopping (called from any thread): end every stream now, so
    the graceful drain of ordinary requests does not wait for them."""
    with _lock:
        hubs = list(_hubs)
    for hub in hubs:
        hub.end_all_threadsafe()
