"""Worker coroutines: plain `async def job(ctx, ...)` functions calling the service layer.

`ctx` carries "settings", "db" (a Database), "redis" (arq's pool) and, in the worker,
"mailer" (shared SMTP connections); nothing else of arq leaks into job code, so a later
switch of queue library stays cheap.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from taskapi.jobs.accounts import start_password_reset
from taskapi.jobs.emails import deliver_email, deliver_pending_emails
from taskapi.jobs.events import prune_events
from taskapi.jobs.maintenance import db_maintenance, prune_idempotency_keys
from taskapi.jobs.reminders import send_daily_reminders
from taskapi.jobs.reports import send_scheduled_reports, send_task_report
from taskapi.jobs.webhooks import deliver_webhooks, prune_webhook_deliveries

Job = Callable[..., Awaitable[Any]]

# Every job the worker runs, by name (`taskapi jobs run NAME` looks them up here).
JOBS: dict[str, Job] = {
    job.__name__: job
    for job in (deliver_email, deliver_pending_emails, send_daily_reminders, send_task_report,
                send_scheduled_reports, db_maintenance, prune_idempotency_keys,
                start_password_reset)
}
JOBS[prune_events.__name__] = prune_events  # live events (issue 15)
JOBS[deliver_webhooks.__name__] = deliver_webhooks  # webhooks (issue 18)
JOBS[prune_webhook_deliveries.__name__] = prune_webhook_deliveries
