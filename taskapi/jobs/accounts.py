"""Account jobs: the password reset that POST /password/forgot queued."""

from __future__ import annotations

from typing import Any

from taskapi.services import password_reset


async def start_password_reset(ctx: dict[str, Any], email: str) -> str:
    """Issue a reset token and its email if the address has an approved account."""
    sent = await password_reset.start(ctx["db"], ctx["settings"], ctx["redis"], email)
    # Which outcome is not logged with the address: the log must not list who has an account.
    return "reset email recorded" if sent else "no approved account: nothing sent"
