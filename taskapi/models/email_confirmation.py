from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from taskapi.models.base import Base, UTCDateTime, utcnow


class EmailedToken:
    """The columns of a token sent by email: only its SHA-256 is stored, so a copy of the
    database redeems nothing. Single-use (`used_at`), valid until `expires_at`."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class EmailConfirmation(EmailedToken, Base):
    """A link sent to prove an address."""

    __tablename__ = "email_confirmations"
    __table_args__ = (Index("ix_email_confirmations_user", "user_id"),
                      {"sqlite_autoincrement": True})
