"""Prometheus series of the live-event streams (services/live.py): open streams, events
published and delivered, and the delivery lag (from the event's commit to its send)."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import Counter, Gauge, Histogram

STREAMS = Gauge("taskapi_event_streams", "Open event streams (SSE and WebSocket).",
                multiprocess_mode="livesum")
EVENTS_PUBLISHED = Counter("taskapi_events_published", "Task writes whose events were "
                           "announced to the servers.")
EVENTS_DELIVERED = Counter("taskapi_events_delivered", "Events sent to a stream (replays "
                           "included).")
DELIVERY_LAG = Histogram("taskapi_event_delivery_lag_seconds",
                         "From an event's commit to its send on a live stream, seconds.",
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))


def observe_delivery(created_at: datetime) -> None:
    EVENTS_DELIVERED.inc()
    lag = (datetime.now(UTC) - created_at).total_seconds()
    DELIVERY_LAG.observe(max(0.0, lag))
