"""The daily reminder job."""

from __future__ import annotations

from typing import Any

from taskapi.services.reminders import send_daily_reminders as run_reminders


async def send_daily_reminders(ctx: dict[str, Any]) -> str:
    """Send the reminders that are due. From the cron every 15 minutes: users whose local
    time has reached the reminder hour; run by hand (`taskapi jobs run`): all of today's."""
    outcome = await run_reminders(ctx["db"], ctx["settings"], force=bool(ctx.get("run_now")))
    return f"reminders {dict(outcome) or 'none due'}"
