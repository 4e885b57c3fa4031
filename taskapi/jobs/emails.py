"""Email jobs."""

from __future__ import annotations

from typing import Any

from ..services.notifications import deliver_assignment_email, send_account_email


async def send_welcome_email(ctx: dict[str, Any], user_id: int) -> str:
    """Welcome a newly registered user."""
    return await send_account_email(ctx["db"], ctx["settings"], user_id, "welcome")


async def send_approval_email(ctx: dict[str, Any], user_id: int) -> str:
    """Tell a user their account was approved."""
    return await send_account_email(ctx["db"], ctx["settings"], user_id, "approved")


async def send_assignment_email(ctx: dict[str, Any], task_id: int, user_id: int,
                                seq: int) -> str:
    """Tell a user about a task assigned to them."""
    return await deliver_assignment_email(ctx["db"], ctx["settings"], task_id, user_id, seq)
