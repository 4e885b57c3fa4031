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
    ReportRequest,
    ReportStatus,
    Role,
    Task,
    TaskStatus,
    User,
    utcnow,
)
from taskapi.schemas.reports import ReportCreate, ReportOut
from taskapi.services.authstate import Actor
from taskapi.services.authz import STAFF, require
from taskapi.services.enqueue import enqueue
from taskapi.services.outbox import add_email, deliver

log = logging.getLogger("taskapi.reports")
SAME_REQUEST_WINDOW = timedelta(minutes=1)
STUCK_AFTER = timedelta(minutes=2)
OVERDUE_LISTED = 50


def _out(report: ReportRequest) -> ReportOut:
    return ReportOut(job_id=report.id, status=report.status, period_days=report.period_days,
                     created_at=report.created_at, finished_at=report.finished_at)


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
            ReportRequest.period_days == data.period_days,
            ReportRequest.created_at > now - SAME_REQUEST_WINDOW,
        ).order_by(ReportRequest.created_at.desc()).limit(1))
    if recent is not None:
        return _out(recent), False
    report = ReportRequest(id=uuid.uuid4().hex, requester_id=actor.id,
                           period_days=data.period_days, status=ReportStatus.QUEUED,
                           created_at=now)
    session.add(report)
    await session.commit()
    # If Redis cannot take it now, the sweeper finds the queued report and builds it.
    await enqueue(ctx.redis, "send_task_report", report.id, job_id=f"report:{report.id}")
    return _out(report), True


async def get_report(session: AsyncSession, actor: Actor, report_id: str) -> ReportOut:
    """The requester or an admin; anyone else gets 404."""
    require(actor, *STAFF)
    report = await session.get(ReportRequest, report_id)
    if report is None or (report.requester_id != actor.id and actor.role != Role.ADMIN):
        raise not_found("report")
    return _out(report)


async def _summary(session: AsyncSession, period_days: int, now: datetime) -> dict[str, Any]:
    since = now - timedelta(days=period_days)
    by_status = {status.value: 0 for status in TaskStatus}
    for status, count in await session.execute(
        select(Task.status, func.count(Task.id)).group_by(Task.status)
    ):
        by_status[TaskStatus(status).value] = int(count)
    completed_in_period = await session.scalar(
        select(func.count(Task.id)).where(Task.completed_at >= since)) or 0
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
            "completed_in_period": int(completed_in_period), "overdue_count": int(overdue_count),
            "overdue": overdue, "people": people}


async def build_and_send(db: Database, settings: Settings, mailer: mail.Mailer,
                         report_id: str) -> str:
    """Idempotent: a rerun finds the email already recorded (or sent) and does not redo it."""
    now = utcnow()
    async with db.transaction(write=True) as session:
        report = await session.get(ReportRequest, report_id)
        if report is None:
            return f"skipped: report {report_id} no longer exists"
        if report.status in (ReportStatus.COMPLETE, ReportStatus.FAILED):
            return f"report {report_id} already {report.status.value}"
        requester = await session.get(User, report.requester_id)
        if requester is None:
            report.status, report.error, report.finished_at = (
                ReportStatus.FAILED, "requester no longer exists", now)
            return f"report {report_id} failed: requester gone"
        key = f"report:{report_id}"
        recorded = await session.scalar(select(EmailOutbox.id).where(EmailOutbox.dedupe_key == key))
        if recorded is None:
            report.status, report.started_at = ReportStatus.IN_PROGRESS, now
            summary = await _summary(session, report.period_days, now)
            await add_email(session, settings, kind="report", dedupe_key=key,
                            to=requester.email, user_id=requester.id, template="report",
                            username=requester.username, period_days=report.period_days,
                            generated=now.strftime("%Y-%m-%d %H:%M UTC"), **summary)
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
