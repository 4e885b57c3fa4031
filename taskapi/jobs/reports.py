"""The report job."""

from __future__ import annotations

from typing import Any

from taskapi.jobs.emails import mailer_for
from taskapi.services.reports import build_and_send


async def send_task_report(ctx: dict[str, Any], report_id: str) -> str:
    """Build a requested summary and email it to the requester."""
    async with mailer_for(ctx, connections=1) as mailer:
        return await build_and_send(ctx["db"], ctx["settings"], mailer, report_id)
