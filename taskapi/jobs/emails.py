"""Email delivery jobs: one message now, and the sweeper for everything else due."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from taskapi import mail
from taskapi.services import outbox, reports

log = logging.getLogger("taskapi.jobs")


@contextlib.asynccontextmanager
async def mailer_for(ctx: dict[str, Any], connections: int = 4) -> AsyncIterator[mail.Mailer]:
    """The worker's shared SMTP connections, or a short-lived set outside the worker."""
    shared = ctx.get("mailer")
    if shared is not None:
        yield shared
        return
    async with mail.Mailer(ctx["settings"], connections) as own:
        yield own


async def deliver_email(ctx: dict[str, Any], dedupe_key: str) -> str:
    """Send one recorded email (enqueued right after the request that created it)."""
    async with mailer_for(ctx) as mailer:
        outcome = await outbox.deliver(ctx["db"], ctx["settings"], mailer, keys=[dedupe_key])
    return f"{dedupe_key}: {dict(outcome) or 'nothing due (sent, claimed or waiting to retry)'}"


async def deliver_pending_emails(ctx: dict[str, Any]) -> str:
    """Sweeper: retries, emails whose enqueue was lost, stale claims, stuck reports."""
    db, settings = ctx["db"], ctx["settings"]
    rebuilt = broken = 0
    async with mailer_for(ctx) as mailer:
        for report_id in await reports.unfinished(db):
            try:
                await reports.build_and_send(db, settings, mailer, report_id)
                rebuilt += 1
            except Exception:  # one report must not hold back the others or the emails
                log.exception("report %s could not be built; retried at the next sweep",
                              report_id)
                broken += 1
    outcome = await outbox.deliver_due(db, settings)
    return (f"emails {dict(outcome) or 'none due'}; reports rebuilt {rebuilt}"
            + (f", {broken} failed to build" if broken else ""))
