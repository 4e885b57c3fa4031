"""Comments on a task: by anyone who may see it; edited or deleted by their author or an
admin. A new comment is in the task's history (and the event log) and emails the assignee."""

from __future__ import annotations

from pydantic import TypeAdapter
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.core.errors import forbidden, not_found
from taskapi.core.event_channel import announce
from taskapi.core.pagination import Page, decode_cursor, encode_cursor
from taskapi.core.state import AppState
from taskapi.models import Role, TaskComment, User, utcnow
from taskapi.schemas.activity import CommentIn, CommentOut, PageQuery
from taskapi.schemas.common import Id
from taskapi.schemas.tasks import TaskOut
from taskapi.services import events, idempotency, notifications
from taskapi.services.authstate import Actor
from taskapi.services.tasks.access import get_visible

_CURSOR = TypeAdapter(tuple[Id])


async def add_comment(session: AsyncSession, ctx: AppState, actor: Actor, task_id: int,
                      data: CommentIn) -> CommentOut:
    task = await get_visible(session, actor, task_id)
    comment = TaskComment(task_id=task.id, author_id=actor.id, body=data.body)
    session.add(comment)
    await session.flush()
    out = CommentOut.model_validate(comment)
    email_key = None
    if task.assigned_user_id is not None and task.assigned_user_id != actor.id:
        assignee = await session.get(User, task.assigned_user_id)
        author = await session.scalar(select(User.username).where(User.id == actor.id))
        if assignee is not None and assignee.is_approved:
            email_key = await notifications.commented(
                session, ctx.settings, task, assignee, author or "someone", comment.id,
                comment.body)
    await idempotency.settle(session, out)
    await events.record(session, events.values(
        events.COMMENTED, task.id, actor.id, [task.assigned_user_id],
        {**events.snapshot(TaskOut.model_validate(task)),
         "comment": out.model_dump(mode="json")},
        {"comment": {"from": None, "to": comment.id}}))
    await session.commit()
    await announce(ctx.redis)
    if email_key:
        await notifications.dispatch(ctx.redis, email_key)
    return out


async def list_comments(session: AsyncSession, actor: Actor, task_id: int,
                        query: PageQuery) -> Page[CommentOut]:
    """Oldest first, keyset pages by id."""
    await get_visible(session, actor, task_id)
    where = [TaskComment.task_id == task_id]
    total = await session.scalar(select(func.count(TaskComment.id)).where(*where)) or 0
    if query.cursor:
        (after,) = decode_cursor(query.cursor, _CURSOR)
        where.append(TaskComment.id > after)
    rows = list(await session.scalars(
        select(TaskComment).where(*where).order_by(TaskComment.id).limit(query.limit + 1)))
    more = len(rows) > query.limit
    items = [CommentOut.model_validate(row) for row in rows[: query.limit]]
    return Page(items, encode_cursor([items[-1].id]) if more else None, total)


async def _own_comment(session: AsyncSession, actor: Actor, task_id: int,
                       comment_id: int) -> TaskComment:
    """A comment on a task the caller may see (else 404), by them or they are an admin
    (else 403: the comment itself is visible to them)."""
    await get_visible(session, actor, task_id)
    comment = await session.get(TaskComment, comment_id)
    if comment is None or comment.task_id != task_id:
        raise not_found("comment")
    if comment.author_id != actor.id and actor.role != Role.ADMIN:
        raise forbidden("Only the author or an admin may change a comment.")
    return comment


async def edit_comment(session: AsyncSession, actor: Actor, task_id: int, comment_id: int,
                       data: CommentIn) -> CommentOut:
    comment = await _own_comment(session, actor, task_id, comment_id)
    if comment.body != data.body:
        comment.body, comment.edited_at = data.body, utcnow()
    await session.commit()
    return CommentOut.model_validate(comment)


async def delete_comment(session: AsyncSession, actor: Actor, task_id: int,
                         comment_id: int) -> None:
    comment = await _own_comment(session, actor, task_id, comment_id)
    await session.delete(comment)
    await session.commit()
