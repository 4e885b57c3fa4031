"""Password reset tokens and personal access tokens: only hashes are stored."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from taskapi.models.base import Base, UTCDateTime, utcnow
from taskapi.models.email_confirmation import EmailedToken


class PasswordReset(EmailedToken, Base):
    """A reset link. `used_at` is set when it is used, when a newer request for the user
    voids it, or when the password changes."""

    __tablename__ = "password_resets"
    __table_args__ = (Index("ix_password_resets_user", "user_id"),
                      {"sqlite_autoincrement": True})


class PersonalToken(Base):
    """A personal access token `tka_…` for scripts. The token names its id, user, scope and
    expiry under an HMAC (core/tokens.py), so a request needs no SQL to check it; this row
    (the token's SHA-256, never the token) is what revocation changes."""

    __tablename__ = "personal_tokens"
    __table_args__ = (Index("ix_personal_tokens_user", "user_id"),
                      {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    scope: Mapped[str] = mapped_column(String(8))  # "read" | "write" (write implies read)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
