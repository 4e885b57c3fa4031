"""Scheduled reports: each approved admin and manager gets the summary report on their own
schedule (users.report_schedule): daily, or weekly on REPORT_WEEKDAY, once their local time
(their IANA zone, else TIMEZONE) reaches REPORT_HOUR; or not at all (off).

The cron runs every 15 minutes, as for reminders (services/local_time.py): a report is due at
the first tick at or after that local time, and one whose day has passed the hour without it
is sent at the next tick. Each period is one report_requests row whose id is derived from the
user, the schedule and the local date, and one outbox email keyed on that id, both inserted
"if absent": every run, rerun, second worker or `taskapi jobs run send_scheduled_reports`
sends each report once. A report covers the time since the previous scheduled one: from
REPORT_HOUR local a day (daily) or a week (weekly) before, to REPORT_HOUR local on its day
(across a DST change a day has 23 or 25 hours, so the periods never overlap or leave a gap).
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, select

from taskapi import mail
from taskapi.config import Settings
from taskapi.core.db import Database, insert_ignoring
from taskapi.models import ReportRequest, ReportSchedule, ReportStatus, ReportTrigger, User, utcnow
from taskapi.services.authz import STAFF
from taskapi.services.local_time import local_day_due, local_instant, user_zone
from taskapi.services.outbox import deliver
from taskapi.services.reports import record_report_email

log = logging.getLogger("taskapi.reports")
BATCH = 500
_IDS = uuid.UUID("4d1c0d8e-2f51-4a55-9d0b-7f3f5b0e6c21")  # namespace of scheduled report ids
_DAYS = {ReportSchedule.DAILY: 1, ReportSchedule.WEEKLY: 7}


@dataclass(frozen=True, slots=True)
class Due:
    report_id: str
    user_id: int
    days: int
    period_start: datetime
    period_end: datetime


def scheduled_report_id(user_id: int, schedule: ReportSchedule, day: date) -> str:
    """The report of this user, schedule and local date: the same id in every worker."""
    return uuid.uuid5(_IDS, f"{user_id}:{schedule.value}:{day.isoformat()}").hex


def due_report(user: Any, settings: Settings, now: datetime) -> Due | None:
    """The report this user should have by `now` (the current period's), if any."""
    schedule = ReportSchedule(user.report_schedule)
    days = _DAYS.get(schedule)
    if days is None:
        return None
    zone = user_zone(user.timezone, settings.timezone_info)
    day = local_day_due(now, zone, settings.report_hour)
    if day is None or (days == 7 and day.weekday() != settings.report_weekday_number):
        return None
    return Due(scheduled_report_id(user.id, schedule, day), user.id, days,
               local_instant(day - timedelta(days=days), settings.report_hour, zone),
               local_instant(day, settings.report_hour, zone))


async def send_scheduled_reports(db: Database, settings: Settings, mailer: mail.Mailer, *,
                                 now: datetime | None = None) -> Counter[str]:
    """Create, build and send every scheduled report due at `now` and not sent yet.

    Batches of BATCH users keep memory flat; each report's email is recorded before it is
    sent, so a worker killed mid-batch leaves it for the next run or the sweeper.
    """
    now = now or utcnow()
    totals: Counter[str] = Counter()
    summaries: dict[Any, dict[str, Any]] = {}  # reports covering the same period share them
    after = 0
    while True:
        async with db.session(write=False) as session:
            users = (await session.execute(
                select(User.id, User.timezone, User.report_schedule)
                .where(User.role.in_(STAFF), User.is_approved.is_(True), User.id > after,
                       User.report_schedule.in_(list(_DAYS)))
                .order_by(User.id).limit(BATCH)
            )).all()
        if not users:
            break
        after = users[-1].id
        due = [report for user in users if (report := due_report(user, settings, now))]
        if not due:
            continue
        created, todo = await _create(db, due, now)
        totals["created"] += created
        keys = []
        for report_id in todo:
            key, note = await record_report_email(db, settings, report_id, now=now,
                                                  summaries=summaries)
            if key is not None:
                keys.append(key)
            else:  # its user is no longer staff, approved or subscribed (or it was sent)
                totals["skipped"] += 1
                log.info("scheduled %s", note)
        if keys:
            totals.update(await deliver(db, settings, mailer, keys=keys, now=now))
    totals = +totals  # without the zero counts
    log.info("scheduled reports: %s", dict(totals) or "nothing due")
    return totals


async def _create(db: Database, due: Sequence[Due], now: datetime) -> tuple[int, list[str]]:
    """Insert the reports not there yet: (how many, the ids of those still to build or send)."""
    ids = [report.report_id for report in due]
    created = 0
    async with db.transaction(write=True) as session:
        existing: dict[str, ReportStatus] = dict((await session.execute(
            select(ReportRequest.id, ReportRequest.status).where(ReportRequest.id.in_(ids))
        )).all())
        rows = [
            {"id": report.report_id, "requester_id": report.user_id,
             "period_days": report.days, "trigger": ReportTrigger.SCHEDULED,
             "period_start": report.period_start, "period_end": report.period_end,
             "status": ReportStatus.QUEUED, "created_at": now}
            for report in due if report.report_id not in existing
        ]
        if rows:
            # Another worker may be inserting the same ids right now: theirs or ours wins.
            result = await session.execute(insert_ignoring(
                session.get_bind().dialect.name, ReportRequest, rows, ["id"]))
            created = cast(CursorResult[Any], result).rowcount
    finished = (ReportStatus.COMPLETE, ReportStatus.FAILED)
    return created, [i for i in ids if existing.get(i) not in finished]
