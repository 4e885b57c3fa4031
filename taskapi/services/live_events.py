"""An event as streams see it: who may see it, and its frames, encoded once per process."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from taskapi.services import events
from taskapi.services.authstate import Actor
from taskapi.services.tasks.access import visible_to

View = Literal["full", "brief"]


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
