"""Summary reports: requested over HTTP, built and emailed by the worker."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi import mail
from taskapi.config import Settings
from taskapi.core.db import Database
from taskapi.core.errors import not_found
from taskapi.core.state import AppState
from taskapi.models import (
    EmailOutbox,
    EmailStatus,
    ReportRequest,
    ReportSchedule,
    ReportStatus,
    ReportTrigger,
    Role,
    Task,
    TaskStatus,
    User,
    utcnow,
)
from taskapi.schemas.reports import ReportCreate, ReportOut
from taskapi.services import idempotency
from taskapi.services.authstate import Actor
from taskapi.services.authz import STAFF, require
from taskapi.services.enqueue import enqueue
from taskapi.services.local_time import user_zone
from taskapi.services.outbox import add_email, deliver

log = logging.getLogger("taskapi.reports")
SAME_REQUEST_WINDOW = timedelta(minutes=1)
STUCK_AFTER = timedelta(minutes=2)
OVERDUE_LISTED = 50


def _out(report: ReportRequest) -> ReportOut:
    return ReportOut(job_id=report.id, status=report.status, trigger=report.trigger,
                     period_days=report.period_days, period_start=report.period_start,
                     period_end=report.period_end, created_at=report.created_at,
                     finished_at=report.finished_at)


async def request_report(session: AsyncSession, ctx: AppState, actor: Actor,
                         data: ReportCreate) -> tuple[ReportOut, bool]:
    """(the report, created?) — the same ask within a minute returns the same job."""
    require(actor, *STAFF)
    now = utcnow()
    if ctx.db.engine.dialect.name != "sqlite":
        # One request at a time per requester (SQLite's write transaction already is).
        await session.execute(select(User.id).where(User.id == actor.id).with_for_update())
    recent = await session.scalar(
        select(ReportRequest).where(
            ReportRequest.requester_id == actor.id,
            ReportRequest.trigger == ReportTrigger.REQUESTED,
            ReportRequest.period_days == data.period_days,
            ReportRequest.created_at > now - SAME_REQUEST_WINDOW,
        ).order_by(ReportRequest.created_at.desc()).limit(1))
    if recent is not None:
        return _out(recent), False
    report = ReportRequest(id=uuid.uuid4().hex, requester_id=actor.id,
                           period_days=data.period_days, status=ReportStatus.QUEUED,
                           created_at=now)
    session.add(report)
    await session.flush()  # the column defaults (trigger) the answer shows
    await idempotency.settle(session, (_out(report), True))
    await session.commit()
    # If Redis cannot take it now, the sweeper finds the queued report and builds it.
    await enqueue(ctx.redis, "send_task_report", report.id, job_id=f"report:{report.id}")
    return _out(report), True


async def get_report(session: AsyncSession, actor: Actor, report_id: str) -> ReportOut:
    """The requester (a scheduled report's recipient) or an admin; anyone else gets 404."""
    require(actor, *STAFF)
    report = await session.get(ReportRequest, report_id)
    if report is None or (report.requester_id != actor.id and actor.role != Role.ADMIN):
        raise not_found("report")
    return _out(report)


async def _summary(session: AsyncSession, since: datetime, until: datetime,
                   now: datetime) -> dict[str, Any]:
    by_status = {status.value: 0 for status in TaskStatus}
    for status, count in await session.execute(
        select(Task.status, func.count(Task.id)).group_by(Task.status)
    ):
        by_status[TaskStatus(status).value] = int(count)
    completed_in_period = await session.scalar(
        select(func.count(Task.id)).where(Task.completed_at >= since,
                                          Task.completed_at < until)) or 0
    created_in_period = await session.scalar(
        select(func.count(Task.id)).where(Task.created_at >= since,
                                          Task.created_at < until)) or 0
    overdue_filter = and_(Task.status != TaskStatus.COMPLETED, Task.deadline < now)
    overdue_count = await session.scalar(select(func.count(Task.id)).where(overdue_filter)) or 0
    overdue = [
        {"id": row.id, "title": row.title, "assignee": row.username or "unassigned",
         "deadline": row.deadline.strftime("%Y-%m-%d %H:%M UTC")}
        for row in await session.execute(
            select(Task.id, Task.title, Task.deadline, User.username)
            .outerjoin(User, User.id == Task.assigned_user_id)
            .where(overdue_filter).order_by(Task.deadline, Task.id).limit(OVERDUE_LISTED))
    ]
    people: dict[str, dict[str, int]] = {}
    for username, status, count in await session.execute(
        select(User.username, Task.status, func.count(Task.id))
        .outerjoin(User, User.id == Task.assigned_user_id)
        .group_by(User.username, Task.status).order_by(User.username)
    ):
        row = people.setdefault(username or "unassigned",
                                {status.value: 0 for status in TaskStatus})
        row[TaskStatus(status).value] = int(count)
    return {"by_status": by_status, "total": sum(by_status.values()),
            "completed_in_period": int(completed_in_period),
            "created_in_period": int(created_in_period), "overdue_count": int(overdue_count),
            "overdue": overdue, "people": people}


def _refusal(requester: User | None, report: ReportRequest) -> str | None:
    """Why this report is no longer sent to its recipient, if it is not."""
    if requester is None:
        return "requester no longer exists"
    if requester.role not in STAFF:
        return "requester is no longer an admin or manager"
    if not requester.is_approved:
        return "requester is no longer approved"
    if report.trigger == ReportTrigger.SCHEDULED and requester.report_schedule in (
            None, ReportSchedule.OFF):
        return "scheduled reports were turned off"
    return None


def _email_context(report: ReportRequest, requester: User, settings: Settings,
                   now: datetime) -> dict[str, Any]:
    assert report.period_start is not None and report.period_end is not None
    zone = user_zone(requester.timezone, settings.timezone_info)
    start, end = report.period_start.astimezone(zone), report.period_end.astimezone(zone)
    if report.trigger == ReportTrigger.SCHEDULED:
        kind = "Daily" if report.period_days == 1 else "Weekly"
        title = (f"{kind} task report: {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} "
                 f"({zone.key})")
    else:
        title = f"Task report: last {report.period_days} days"
    hours = round((report.period_end - report.period_start).total_seconds() / 3600)
    period = (f"{start:%Y-%m-%d %H:%M %Z} to {end:%Y-%m-%d %H:%M %Z} ({zone.key}, {hours} h; "
              f"{report.period_start:%Y-%m-%d %H:%M} to {report.period_end:%Y-%m-%d %H:%M} UTC)")
    return {"title": title, "period": period, "report_id": report.id,
            "scheduled": report.trigger == ReportTrigger.SCHEDULED,
            "username": requester.username, "generated": now.strftime("%Y-%m-%d %H:%M UTC")}


async def _shared_summary(session: AsyncSession, report: ReportRequest, now: datetime,
                          summaries: dict[Any, dict[str, Any]] | None) -> dict[str, Any]:
    """The report's figures, computed once per period when `summaries` is given."""
    assert report.period_start is not None and report.period_end is not None
    span = (report.period_start, report.period_end)
    if summaries is not None and span in summaries:
        return summaries[span]
    summary = await _summary(session, *span, now)
    if summaries is not None:
        summaries[span] = summary
    return summary


async def record_report_email(db: Database, settings: Settings, report_id: str, *,
                              now: datetime | None = None,
                              summaries: dict[Any, dict[str, Any]] | None = None,
                              ) -> tuple[str | None, str]:
    """Build the report and record its email: (the outbox key to deliver, or None; what
    happened). Idempotent: a rerun finds the email already recorded and does not redo it.
    `summaries` shares the figures between reports of one run that cover the same period."""
    now = now or utcnow()
    async with db.transaction(write=True) as session:
        # Locked (PostgreSQL): a second builder of the same report waits, then finds it built.
        report = await session.get(ReportRequest, report_id, with_for_update=True)
        if report is None:
            return None, f"skipped: report {report_id} no longer exists"
        if report.status in (ReportStatus.COMPLETE, ReportStatus.FAILED):
            return None, f"report {report_id} already {report.status.value}"
        key = f"report:{report_id}"
        recorded = await session.scalar(
            select(EmailOutbox.status).where(EmailOutbox.dedupe_key == key))
        # Sent, the report not marked: its sender was killed between the two.
        if recorded == EmailStatus.SENT:
            report.status, report.finished_at = ReportStatus.COMPLETE, now
            return None, f"report {report_id} already sent"
        if recorded is None:
            requester = await session.get(User, report.requester_id)
            refusal = _refusal(requester, report)
            if refusal is not None:
                report.status, report.error, report.finished_at = ReportStatus.FAILED, refusal, now
                return None, f"report {report_id} failed: {refusal}"
            assert requester is not None  # _refusal said so
            report.status, report.started_at = ReportStatus.IN_PROGRESS, now
            if report.period_end is None:  # asked for: the days up to now
                report.period_start = now - timedelta(days=report.period_days)
                report.period_end = now
            summary = await _shared_summary(session, report, now, summaries)
            await add_email(session, settings, kind="report", dedupe_key=key,
                            to=requester.email, user_id=requester.id, template="report",
                            now=now, period_days=report.period_days,
                            **_email_context(report, requester, settings, now), **summary)
    return key, f"report {report_id} recorded"


async def build_and_send(db: Database, settings: Settings, mailer: mail.Mailer,
                         report_id: str) -> str:
    """Record the report's email (record_report_email) and send it."""
    key, note = await record_report_email(db, settings, report_id)
    if key is None:
        return note
    outcome = await deliver(db, settings, mailer, keys=[key])
    return f"report {report_id}: {dict(outcome) or 'email already sent or scheduled'}"


async def unfinished(db: Database, now: datetime | None = None) -> list[str]:
    """Reports queued or in progress for a while: their job was lost (Redis down, worker
    killed). The sweeper builds them; build_and_send is idempotent."""
    now = now or utcnow()
    async with db.session(write=False) as session:
        return list(await session.scalars(
            select(ReportRequest.id).where(
                ReportRequest.status.in_([ReportStatus.QUEUED, ReportStatus.IN_PROGRESS]),
                ReportRequest.created_at < now - STUCK_AFTER,
            ).order_by(ReportRequest.created_at).limit(100)))
