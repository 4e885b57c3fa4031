"""Daily reminders: each approved employee with open tasks gets one email per local day,
once their local time reaches REMINDER_HOUR (their own IANA zone, else TIMEZONE).

The cron runs every 15 minutes; the dedupe key reminder:{user}:{local date} makes every run,
rerun, second worker or manual `taskapi jobs run send_daily_reminders` send each reminder
once, across DST changes too (the local date and hour come from zoneinfo).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from datetime import date, datetime
from typing import Any

from sqlalchemy import exists, select

from taskapi import mail
from taskapi.config import Settings
from taskapi.core.db import Database
from taskapi.models import EmailOutbox, Role, Task, TaskStatus, User, utcnow
from taskapi.models.task import deadline_nulls_last
from taskapi.services.local_time import local_day_due, user_zone
from taskapi.services.notifications import link
from taskapi.services.outbox import deliver, email_row, insert_ignore

log = logging.getLogger("taskapi.reminders")
BATCH = 500


def _task_line(settings: Settings, task: Any, now: datetime) -> dict[str, Any]:
    return {
        "title": task.title,
        "url": link(settings, f"/tasks/{task.id}"),
        "status": TaskStatus(task.status).value,
        "deadline": task.deadline.strftime("%Y-%m-%d %H:%M UTC") if task.deadline else None,
        "overdue": task.deadline is not None and task.deadline < now,
    }


async def send_daily_reminders(db: Database, settings: Settings, *, now: datetime | None = None,
                               force: bool = False, connections: int = 8) -> Counter[str]:
    """Create the reminders that are due (all of today's with `force`) and send them.

    Batches of BATCH users keep memory flat; rows are committed before sending, so a worker
    killed mid-batch leaves them pending for the next run or the sweeper.
    """
    now = now or utcnow()
    default_zone = settings.timezone_info
    open_task = exists().where(Task.assigned_user_id == User.id,
                               Task.status != TaskStatus.COMPLETED)
    totals: Counter[str] = Counter()
    after = 0
    async with mail.Mailer(settings, connections) as mailer:
        while True:
            async with db.session(write=False) as session:
                users = (await session.execute(
                    select(User.id, User.email, User.username, User.timezone)
                    .where(User.role == Role.EMPLOYEE, User.is_approved.is_(True),
                           User.id > after, open_task)
                    .order_by(User.id).limit(BATCH)
                )).all()
            if not users:
                break
            after = users[-1].id
            due: dict[int, tuple[str, date, Any]] = {}
            for user in users:
                zone = user_zone(user.timezone, default_zone)
                # With `force`, hour 0: every user's local day has reached it.
                day = local_day_due(now, zone, 0 if force else settings.reminder_hour)
                if day is not None:
                    due[user.id] = (f"reminder:{user.id}:{day.isoformat()}", day, user)
            if not due:
                continue
            totals["created"] += await _create(db, settings, due, now)
            totals.update(await deliver(db, settings, mailer, now=now,
                                        keys=[key for key, _, _ in due.values()]))
    log.info("daily reminders: %s", dict(totals) or "nothing due")
    return totals


async def _create(db: Database, settings: Settings, due: dict[int, tuple[str, date, Any]],
                  now: datetime) -> int:
    keys = [key for key, _, _ in due.values()]
    async with db.transaction(write=True) as session:
        existing = set(await session.scalars(
            select(EmailOutbox.dedupe_key).where(EmailOutbox.dedupe_key.in_(keys))))
        todo = {uid: item for uid, item in due.items() if item[0] not in existing}
        if not todo:
            return 0
        tasks: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for task in await session.execute(
            select(Task.id, Task.assigned_user_id, Task.title, Task.status, Task.deadline)
            .where(Task.assigned_user_id.in_(list(todo)), Task.status != TaskStatus.COMPLETED)
            .order_by(Task.assigned_user_id, deadline_nulls_last(), Task.id)
        ):
            tasks[task.assigned_user_id].append(_task_line(settings, task, now))
        rows = [
            email_row(settings, kind="reminder", dedupe_key=key, to=user.email, user_id=uid,
                      template="reminder", now=now, username=user.username,
                      day=local_date.isoformat(), tasks=tasks[uid],
                      overdue=sum(t["overdue"] for t in tasks[uid]))
            for uid, (key, local_date, user) in todo.items() if tasks[uid]
        ]
        if rows:
            # Another worker may be inserting the same keys right now: theirs or ours wins.
            await session.execute(insert_ignore(session.get_bind().dialect.name, rows))
        return len(rows)
