"""Account emails: what to send to whom (called by the worker jobs)."""

from __future__ import annotations

from settings import Settings

from .. import mail
from ..db import Database
from ..models import User


async def send_account_email(db: Database, settings: Settings, user_id: int, template: str) -> str:
    async with db.session(write=False) as session:
        user = await session.get(User, user_id)
    if user is None:
        return f"skipped: user {user_id} no longer exists"
    if template == "approved" and not user.is_approved:
        return f"skipped: user {user_id} is no longer approved"
    message = mail.build_message(settings, user.email, template, username=user.username,
                                 email=user.email, role=user.role.value)
    await mail.send(settings, message)
    return f"sent {template} to user {user_id}"
