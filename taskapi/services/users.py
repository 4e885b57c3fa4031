"""User use cases."""

from __future__ import annotations

from sqlalchemy import select

from ..db import Database
from ..models import Role, User
from ..passwords import hash_password
from ..schemas.common import normalize_email

MIN_PASSWORD_LENGTH = 8


async def ensure_admin(
    db: Database, *, email: str, username: str, password: str
) -> tuple[int, bool]:
    """An approved admin with this email: created, or the existing user promoted.

    Returns (user id, created). Idempotent: a second call with the same email changes nothing
    but the role/approval of that user (the password is left as it is).
    """
    email = normalize_email(email)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    if not 3 <= len(username) <= 40:
        raise ValueError("username must be 3 to 40 characters")
    password_hash = await hash_password(password)
    async with db.transaction(write=True) as session:
        user = await session.scalar(select(User).where(User.email == email))
        if user is not None:
            user.role, user.is_approved = Role.ADMIN, True
            return user.id, False
        if await session.scalar(select(User.id).where(User.username == username)):
            raise ValueError(f"username {username!r} is taken by another account")
        user = User(email=email, username=username, password_hash=password_hash,
                    role=Role.ADMIN, is_approved=True)
        session.add(user)
        await session.flush()
        return user.id, True
