"""Which emails a change produces. Each is recorded in the outbox inside the caller's
transaction and handed to the worker after commit (`dispatch`). Each kind has its rule in
`outbox_checks` (what must still hold when it is sent); subjects come out of `mail.render`
on one line, whatever user text (a task title, a username) they carry."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.config import Settings
from taskapi.models import Task, User, utcnow
from taskapi.services.enqueue import enqueue
from taskapi.services.outbox import add_email
from taskapi.services.outbox_checks import assign_key


def link(settings: Settings, path: str, **query: str) -> str:
    """An absolute link for an email: PUBLIC_URL + path (+ query)."""
    return settings.public_url + path + (f"?{urlencode(query)}" if query else "")


def _duration(seconds: int) -> str:
    """7 days, 36 hours, 90 minutes: the largest unit that divides it (else minutes)."""
    if seconds % 86400 == 0:
        count, unit = seconds // 86400, "day"
    elif seconds % 3600 == 0:
        count, unit = seconds // 3600, "hour"
    else:
        count, unit = max(1, round(seconds / 60)), "minute"
    return f"{count} {unit}{'' if count == 1 else 's'}"


async def welcome(session: AsyncSession, settings: Settings, user: User, token: str) -> str:
    """The welcome, with the email confirmation link and its token (for API-only users)."""
    return await add_email(session, settings, kind="welcome", dedupe_key=f"welcome:{user.id}",
                           to=user.email, user_id=user.id, template="welcome",
                           username=user.username, role=user.role.value, token=token,
                           confirm_url=link(settings, "/confirm-email", token=token),
                           login_url=link(settings, "/login"),
                           valid_for=_duration(settings.email_confirmation_expires))


async def registration_attempt(session: AsyncSession, settings: Settings, user: User, *,
                               now: datetime | None = None) -> str:
    """Tell an owner that someone registered with their address. The dedupe key names the
    hour, so the route can send an address at most one such notice an hour."""
    now = now or utcnow()
    return await add_email(
        session, settings, kind="registration_attempt",
        dedupe_key=f"registration_attempt:{user.id}:{now:%Y%m%d%H}", to=user.email,
        user_id=user.id, template="registration_attempt", now=now, username=user.username,
        login_url=link(settings, "/login"), reset_url=link(settings, "/reset-password"),
    )


async def approved(session: AsyncSession, settings: Settings, user: User) -> str:
    return await add_email(session, settings, kind="approved", dedupe_key=f"approved:{user.id}",
                           to=user.email, user_id=user.id, template="approved",
                           username=user.username, email=user.email,
                           login_url=link(settings, "/login"))


async def assigned(session: AsyncSession, settings: Settings, task: Task, user: User,
                   assigner_id: int, *, now: datetime | None = None) -> str:
    """The assignment: who assigned it, and "overdue since …" when its deadline has passed."""
    now = now or utcnow()
    assigner = await session.get(User, assigner_id)
    deadline = task.deadline.strftime("%Y-%m-%d %H:%M UTC") if task.deadline else None
    overdue = task.deadline is not None and as_utc(task.deadline) <= now
    return await add_email(
        session, settings, kind="assigned",
        dedupe_key=assign_key(task.id, user.id, task.assign_seq), to=user.email,
        user_id=user.id, template="assigned", username=user.username, title=task.title,
        status=task.status.value, deadline=deadline, description=task.description,
        assigner=assigner.username if assigner is not None else "someone", overdue=overdue,
        task_id=task.id, task_url=link(settings, f"/tasks/{task.id}"),
    )


async def commented(session: AsyncSession, settings: Settings, task: Task, user: User,
                    author: str, comment_id: int, body: str) -> str:
    """Tell the assignee about a comment on their task: one email per comment."""
    return await add_email(
        session, settings, kind="comment", dedupe_key=f"comment:{comment_id}", to=user.email,
        user_id=user.id, template="comment", username=user.username, author=author,
        title=task.title, body=body, url=link(settings, f"/task/{task.id}/comments"),
    )


def as_utc(value: datetime) -> datetime:
    """A stored datetime as aware UTC (SQLite hands some back naive)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def password_reset(session: AsyncSession, settings: Settings, user: User, reset_id: int,
                         token: str) -> str:
    """The reset link and its token (for API-only users); one email per request."""
    return await add_email(session, settings, kind="password_reset",
                           dedupe_key=f"password_reset:{reset_id}", to=user.email,
                           user_id=user.id, template="password_reset", username=user.username,
                           token=token, reset_url=link(settings, "/reset-password", token=token),
                           valid_for=_duration(settings.password_reset_expires))


async def rejected(session: AsyncSession, settings: Settings, user: User) -> str:
    """A short, polite no to a registration an admin rejected (recorded before the delete)."""
    return await add_email(session, settings, kind="rejected", dedupe_key=f"rejected:{user.id}",
                           to=user.email, user_id=user.id, template="rejected",
                           username=user.username)


async def dispatch(redis: ArqRedis, *keys: str) -> None:
    """After commit: ask the worker to send now. If Redis cannot take the job, the rows are
    still pending in the database and the sweeper sends them within a minute or two."""
    for key in keys:
        await enqueue(redis, "deliver_email", key, job_id=f"email:{key}")
