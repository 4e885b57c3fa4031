"""Live events: the stream's query and the ticket."""

from __future__ import annotations

from pydantic import BaseModel, Field

from taskapi.schemas.common import component
from taskapi.schemas.users import Strict


class EventsQuery(Strict):
    ticket: str | None = Field(None, max_length=128,
                               description="A ticket from POST /events/ticket (browsers).")
    last_event_id: int | None = Field(None, ge=0, le=2**53,
                                      description="Replay the events after this id first "
                                                  "(as the Last-Event-ID header).")


class TicketOut(BaseModel):
    model_config = component("StreamTicket", {"ticket": "q3Zt7m1Kx0bV9cR2yH5wLd8sPfA4uJ6e",
                                              "expires_in": 30})

    ticket: str = Field(description="Single use, for GET /events?ticket=… or GET /ws?ticket=….")
    expires_in: int = Field(description="Seconds it stays valid.")
