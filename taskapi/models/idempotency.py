"""Stored answers of idempotent creates (the Idempotency-Key header)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from taskapi.models.base import Base, UTCDateTime, utcnow


class IdempotencyKey(Base):
    """One (scope, key): inserted in the write's own transaction, so a committed create always
    has its row and a retry replays it (decision 023). `state` is `in-flight` while the first
    request runs (a row a concurrent retry sees only once it commits, as `done`)."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("scope", "key", name="uq_idempotency_keys_scope_key"),
        Index("ix_idempotency_keys_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(80))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="in-flight")
    status: Mapped[int | None] = mapped_column(Integer, default=None)
    headers: Mapped[str] = mapped_column(Text, default="{}")
    body: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
