"""The report jobs: one requested report, and the scheduled ones that are due."""

from __future__ import annotations

from typing import Any

from taskapi.jobs.emails import mailer_for
from taskapi.services import scheduled_reports
from taskapi.services.reports import build_and_send


async def send_task_report(ctx: dict[str, Any], report_id: str) -> str:
    """Build a requested summary and email it to the requester."""
    async with mailer_for(ctx, connections=1) as mailer:
        return await build_and_send(ctx["db"], ctx["settings"], mailer, report_id)


async def send_scheduled_reports(ctx: dict[str, Any]) -> str:
    """Send the scheduled reports that are due (cron every 15 minutes, or `taskapi jobs run`):
    admins and managers whose local time reached REPORT_HOUR on a day of their schedule and
    who have no report for that period yet."""
    async with mailer_for(ctx) as mailer:
        outcome = await scheduled_reports.send_scheduled_reports(ctx["db"], ctx["settings"],
                                                                 mailer)
    return f"scheduled reports {dict(outcome) or 'none due'}"
