"""Outgoing webhooks: the endpoints admins register, and one delivery row per event each."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from taskapi.models.base import Base, UTCDateTime, string_enum, utcnow


class WebhookEndpoint(Base):
    """A receiver of task events. `cursor` is the last event id already turned into its
    deliveries (services/webhook_delivery.py); it starts at the log's head when the endpoint
    is created or enabled, so an endpoint gets the events from then on, never the past.

    The signing secret is stored as issued (`whsec_…`): signing needs the key itself, so a
    hash would not do. After a rotation the old one signs too until `previous_secret_until`.
    """

    __tablename__ = "webhook_endpoints"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    # Event types, or ["*"] for every type.
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    description: Mapped[str] = mapped_column(String(500), default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    secret: Mapped[str] = mapped_column(String(64))
    previous_secret: Mapped[str | None] = mapped_column(String(64), default=None)
    previous_secret_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    cursor: Mapped[int] = mapped_column(Integer, default=0)
    # Why the service disabled it (a 410 from the receiver); cleared when enabled again.
    disabled_reason: Mapped[str | None] = mapped_column(Text, default=None)
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # due at next_attempt_at (a first attempt or a retry)
    SENDING = "sending"  # claimed by a worker (claim_token); claimable again after the lease
    DELIVERED = "delivered"
    FAILED = "failed"  # gave up: the last retry failed, or the endpoint answered 410


class WebhookDelivery(Base):
    """One event for one endpoint: unique (endpoint_id, event_id), so a second fan-out of the
    same event (another worker, a rerun) records nothing. `body` is the JSON sent, fixed at
    fan-out: the event's payload is emptied after EVENTS_RETENTION, a pending retry's is not.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_deliveries_event"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_claim", "claim_token"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(Integer)
    event_type: Mapped[str] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[DeliveryStatus] = mapped_column(
        string_enum(DeliveryStatus, "webhook_delivery_status"), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=utcnow)
    claim_token: Mapped[str | None] = mapped_column(String(32), default=None)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    latency_ms: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
