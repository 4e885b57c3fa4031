"""Who may see a task, who may be assigned one, and the cache versions a task write moves."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.core.cache import mine_version, task_version, tasks_version
from taskapi.core.errors import APIError, not_found
from taskapi.core.event_channel import announce
from taskapi.core.state import AppState
from taskapi.models import Role, Task, User
from taskapi.services.authstate import Actor
from taskapi.services.authz import STAFF


def visible_to(actor: Actor, assignee: int | None) -> bool:
    """Staff see every task; anyone else only the tasks assigned to them."""
    return actor.role in STAFF or (assignee is not None and assignee == actor.id)


async def get_visible(session: AsyncSession, actor: Actor, task_id: int) -> Task:
    task = await session.get(Task, task_id)
    # Someone else's task is a 404, not a 403 that would confirm it exists.
    if task is None or not visible_to(actor, task.assigned_user_id):
        raise not_found("task")
    return task


# The seed's model: "only employees or managers can be assigned".
ASSIGNABLE_ROLES = frozenset({Role.EMPLOYEE, Role.MANAGER})


async def assignable(session: AsyncSession, user_id: int, field: str) -> User:
    """The user a task may be assigned to: approved, an employee or a manager. Anyone else
    (unknown, pending, an admin) is a 422 whose `errors` name `field`, the body field the
    client sent the id in."""
    user = await session.get(User, user_id)
    if user is not None and user.is_approved and user.role in ASSIGNABLE_ROLES:
        return user
    if user is not None and user.is_approved:
        msg = "an admin cannot be assigned tasks: pick an employee or a manager"
    else:
        msg = "no such approved user"
    raise APIError(422, "invalid_assignee",
                   "A task can be assigned only to an approved employee or manager.",
                   errors=[{"loc": [field], "msg": msg, "type": "value_error"}],
                   error_count=1)


async def after_write(ctx: AppState, task_id: int, *affected_users: int | None) -> None:
    # The versions move and the write's event reaches the live streams: one round trip.
    await announce(ctx.redis, tasks_version(), task_version(task_id),
                   *(mine_version(uid) for uid in affected_users if uid is not None))
