"""ARQ worker settings: `taskapi worker` runs them (it supplies the Redis connection).

arq reads these attributes from this class's own __dict__: do not subclass it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from arq import cron
from arq.cron import CronJob

from taskapi.config import load_settings
from taskapi.core.db import Database
from taskapi.core.logs import configure_logging
from taskapi.core.redis_client import QUEUE_NAME
from taskapi.jobs import (
    JOBS,
    db_maintenance,
    deliver_pending_emails,
    prune_idempotency_keys,
    send_daily_reminders,
    send_scheduled_reports,
)
from taskapi.jobs.events import prune_events
from taskapi.jobs.webhooks import prune_webhook_deliveries, webhook_pump
from taskapi.mail import Mailer
from taskapi.mail.check import check_smtp_in_background
from taskapi.services.webhook_send import new_client


async def startup(ctx: dict[str, Any]) -> None:
    settings = ctx.get("settings") or load_settings()
    configure_logging(settings.log_level, settings.log_format)
    ctx["settings"] = settings
    ctx["db"] = Database.from_url(settings.sqlalchemy_url, settings.db_lock_timeout)
    ctx["mailer"] = Mailer(settings, connections=4)
    # One line on what to change when the SMTP settings do not fit the server, without
    # holding up the start (an unreachable server costs the check, not the worker, its timeout).
    ctx["smtp_check"] = check_smtp_in_background(settings)
    # Webhooks: one sweep every WEBHOOK_POLL_INTERVAL, beside the jobs (decision 042).
    ctx["webhook_client"] = new_client(settings)
    ctx["webhook_pump"] = asyncio.create_task(webhook_pump(ctx))


async def shutdown(ctx: dict[str, Any]) -> None:
    for name in ("smtp_check", "webhook_pump"):  # the pump releases what it was sending
        task: asyncio.Task[None] | None = ctx.get(name)
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if (client := ctx.get("webhook_client")) is not None:
        await client.aclose()
    mailer: Mailer | None = ctx.get("mailer")
    if mailer is not None:
        await mailer.close()
    db: Database | None = ctx.get("db")
    if db is not None:
        await db.dispose()


def cron_jobs(sweep_interval: int = 60) -> list[CronJob]:
    """Cron jobs run once per tick across all workers: arq's job id is derived from the
    function name and the tick time, so a second worker finds the job already taken."""
    return [
        # Hourly: the live-event payloads past EVENTS_RETENTION (histories stay).
        cron(prune_events, minute={47}, unique=True, timeout=600),
        # Hourly: delivered and failed webhook deliveries past EVENTS_RETENTION.
        cron(prune_webhook_deliveries, minute={53}, unique=True, timeout=600),
        # Every 15 minutes: users whose local time reached the reminder hour get theirs.
        cron(send_daily_reminders, minute={0, 15, 30, 45}, unique=True, timeout=600),
        # Every 15 minutes: admins and managers whose local time reached REPORT_HOUR on a day
        # of their report schedule get that period's report.
        cron(send_scheduled_reports, minute={0, 15, 30, 45}, unique=True, timeout=600),
        # Every minute by default (TASKAPI_EMAIL_SWEEP_INTERVAL).
        cron(deliver_pending_emails, second=set(range(0, 60, sweep_interval)), unique=True,
             timeout=300),
        cron(db_maintenance, hour={3}, minute={17}, unique=True),
        # Hourly: Idempotency-Key answers past IDEMPOTENCY_TTL.
        cron(prune_idempotency_keys, minute={41}, unique=True),
    ]


class WorkerSettings:
    functions = list(JOBS.values())
    cron_jobs = cron_jobs()
    on_startup = startup
    on_shutdown = shutdown
    queue_name = QUEUE_NAME
    max_jobs = 20
    job_timeout = 300
    keep_result = 3600
    max_tries = 5
    # SIGTERM/SIGINT: no new jobs, running ones get this long to finish, then are cancelled
    # (and requeued). Keep the container's stop timeout longer.
    # Why: docs/decisions/017-job-completion-wait.md
    job_completion_wait = 25
    health_check_interval = 60
