"""The live-event log's retention."""

from __future__ import annotations

from typing import Any

from taskapi.services.event_retention import prune_event_payloads


async def prune_events(ctx: dict[str, Any]) -> int:
    """Empty the stream payload of events older than EVENTS_RETENTION (histories stay)."""
    return await prune_event_payloads(ctx["db"], ctx["settings"].events_retention)
