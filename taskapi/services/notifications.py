"""Which emails a change produces. Each is recorded in the outbox inside the caller's
transaction and handed to the worker after commit (`dispatch`)."""

from __future__ import annotations

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.config import Settings
from taskapi.models import Task, User
from taskapi.services.enqueue import enqueue
from taskapi.services.outbox import add_email


async def welcome(session: AsyncSession, settings: Settings, user: User) -> str:
    return await add_email(session, settings, kind="welcome", dedupe_key=f"welcome:{user.id}",
                           to=user.email, user_id=user.id, template="welcome",
                           username=user.username, role=user.role.value)


async def approved(session: AsyncSession, settings: Settings, user: User) -> str:
    return await add_email(session, settings, kind="approved", dedupe_key=f"approved:{user.id}",
                           to=user.email, user_id=user.id, template="approved",
                           username=user.username, email=user.email)


async def assigned(session: AsyncSession, settings: Settings, task: Task, user: User) -> str:
    deadline = task.deadline.strftime("%Y-%m-%d %H:%M UTC") if task.deadline else None
    return await add_email(
        session, settings, kind="assigned",
        dedupe_key=f"assign:{task.id}:{user.id}:{task.assign_seq}", to=user.email,
        user_id=user.id, template="assigned", username=user.username, title=task.title,
        status=task.status.value, deadline=deadline, description=task.description,
    )


async def dispatch(redis: ArqRedis, *keys: str) -> None:
    """After commit: ask the worker to send now. If Redis cannot take the job, the rows are
    still pending in the database and the sweeper sends them within a minute or two."""
    for key in keys:
        await enqueue(redis, "deliver_email", key, job_id=f"email:{key}")
