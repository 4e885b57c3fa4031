"""An event as streams see it (who may see it, its frames encoded once per process), and one
client's stream with its bounded queue."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from taskapi.services import events
from taskapi.services.authstate import Actor
from taskapi.services.tasks.access import visible_to

View = Literal["full", "brief"]
CUT_GRACE = 5.0  # seconds an ended stream may take to write its last frames
# Why a stream ended (sent to WebSocket clients as the close reason).
REVOKED, SLOW, SHUTDOWN = "revoked", "slow", "shutdown"


@dataclass(eq=False, slots=True)
class Event:
    id: int
    type: str
    task_id: int
    audience: frozenset[int]
    data: dict[str, Any]
    created_at: datetime
    _frames: dict[tuple[str, View], bytes] = field(default_factory=dict)

    def payload(self, view: View) -> dict[str, Any]:
        if view == "brief":  # a task taken away from the caller: only that it left
            return {"id": self.data.get("id", self.task_id),
                    "assigned_user_id": self.data.get("assigned_user_id")}
        return self.data

    def sse(self, view: View) -> bytes:
        """`id:`/`event:`/`data:` (one line of JSON), encoded once per process and view."""
        frame = self._frames.get(("sse", view))
        if frame is None:
            data = json.dumps(self.payload(view), separators=(",", ":"))
            frame = f"id: {self.id}\nevent: {self.type}\ndata: {data}\n\n".encode()
            self._frames["sse", view] = frame
        return frame

    def ws(self, view: View) -> str:
        """The WebSocket text frame {"id", "type", "data"}."""
        frame = self._frames.get(("ws", view))
        if frame is None:
            frame = json.dumps({"id": self.id, "type": self.type, "data": self.payload(view)},
                               separators=(",", ":")).encode()
            self._frames["ws", view] = frame
        return frame.decode()


def view_of(actor: Actor, event: Event) -> View | None:
    """What `actor` may see of `event`: the rule GET /task/{id} uses (access.visible_to) on
    the task as the event left it; an employee it concerned before the change (the previous
    assignee) also sees the task leave them ("brief") and the deletion of their task."""
    if visible_to(actor, event.data.get("assigned_user_id")):
        return "full"
    if actor.id in event.audience:
        return "brief" if event.type == events.ASSIGNED else "full"
    return None


@dataclass(eq=False, slots=True)
class Stream:
    """One client's stream: its caller, its queue, and why it ended (None while open).

    Thousands are held per process, so it keeps no asyncio.Event and no deque (each allocates
    ~0.7 KiB): a plain list, and a future only while the transport waits (decision 043)."""

    actor: Actor
    limit: int
    queue: list[Event] = field(default_factory=list)
    ended: str | None = None
    # The task writing to the client, and whether the transport has finished with it.
    task: asyncio.Task[Any] | None = None
    done: bool = False
    waiter: asyncio.Future[bool] | None = None  # while the transport waits: wake it

    def offer(self, event: Event) -> None:
        if self.ended is not None or view_of(self.actor, event) is None:
            return
        if len(self.queue) >= self.limit:
            self.end(SLOW)
            self.queue.clear()
            return
        self.queue.append(event)
        self._wake()

    def end(self, reason: str) -> None:
        """Wake the transport to finish the stream; one stuck writing to a client that reads
        nothing is cancelled after CUT_GRACE seconds (its connection is then dropped)."""
        if self.ended is None:
            self.ended = reason
            asyncio.get_running_loop().call_later(CUT_GRACE, self._cut)
        self._wake()

    async def wait(self, seconds: float) -> bool:
        """Until offered an event or ended (True), or `seconds` pass (False)."""
        loop = asyncio.get_running_loop()
        waiter = self.waiter = loop.create_future()
        timer = loop.call_later(seconds, _settle, waiter, False)
        try:
            return await waiter
        finally:
            timer.cancel()
            self.waiter = None

    def _wake(self) -> None:
        if self.waiter is not None:
            _settle(self.waiter, True)

    def _cut(self) -> None:
        if not self.done and self.task is not None:
            self.task.cancel()


def _settle(waiter: asyncio.Future[bool], woken: bool) -> None:
    if not waiter.done():
        waiter.set_result(woken)
