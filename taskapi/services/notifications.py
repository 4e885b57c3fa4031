"""Account emails: what to send to whom (called by the worker jobs)."""

from __future__ import annotations

from settings import Settings

from .. import mail
from ..db import Database
from ..models import Task, User


async def send_account_email(db: Database, settings: Settings, user_id: int, template: str) -> str:
    async with db.session(write=False) as session:
        user = await session.get(User, user_id)
    if user is None:
        return f"skipped: user {user_id} no longer exists"
    if template == "approved" and not user.is_approved:
        return f"skipped: user {user_id} is no longer approved"
    message = mail.build_message(settings, user.email, template, username=user.username,
                                 email=user.email, role=user.role.value)
    await mail.send(settings, message)
    return f"sent {template} to user {user_id}"


async def deliver_assignment_email(db: Database, settings: Settings, task_id: int, user_id: int,
                                seq: int) -> str:
    """Only while the task is still assigned to that user by that assignment."""
    async with db.session(write=False) as session:
        task = await session.get(Task, task_id)
        user = await session.get(User, user_id)
    if task is None or user is None:
        return f"skipped: task {task_id} or user {user_id} no longer exists"
    if task.assigned_user_id != user_id or task.assign_seq != seq:
        return f"skipped: task {task_id} was reassigned"
    deadline = task.deadline.strftime("%Y-%m-%d %H:%M UTC") if task.deadline else None
    message = mail.build_message(settings, user.email, "assigned", username=user.username,
                                 title=task.title, status=task.status.value, deadline=deadline,
                                 description=task.description)
    await mail.send(settings, message)
    return f"sent assignment of task {task_id} to user {user_id}"
