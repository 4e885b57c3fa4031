"""Tasks: create, read, update, status, assign, delete, and the two lists."""

from __future__ import annotations

from quart import Blueprint, Response, url_for
from quart_schema import (
    document_querystring,
    document_response,
    tag,
    validate_request,
    validate_response,
)

from taskapi.http.current import db_session, runtime
from taskapi.http.deps import actor, require_role
from taskapi.http.openapi import conditional, no_content
from taskapi.http.prefetch import prefetch, prefetched
from taskapi.http.responses import canonical_query, entry_response, parse_query
from taskapi.http.safe_writes import idempotent, if_match
from taskapi.models import Role
from taskapi.schemas.tasks import (
    MyTaskListQuery,
    TaskAssign,
    TaskCreate,
    TaskListQuery,
    TaskOut,
    TaskStatusUpdate,
    TaskUpdate,
)
from taskapi.services import tasks

bp = Blueprint("tasks", __name__)
tag_ = tag(["tasks"])
ADMIN, MANAGER = Role.ADMIN, Role.MANAGER
ANY = ()
Written = tuple[TaskOut, int, dict[str, str]]


def _created(task: TaskOut, etag: str) -> Written:
    return task, 201, {"Location": url_for(".get_task", task_id=task.id), "ETag": etag}


def _etagged(written: tuple[TaskOut, str]) -> Written:
    """A write's answer: the task and its new ETag (what GET answers next)."""
    task, etag = written
    return task, 200, {"ETag": etag}


def _query() -> TaskListQuery:
    return parse_query(TaskListQuery)


@bp.get("/tasks")
@prefetch(lambda _user_id, _args, query: tasks.all_spec(query))
@tag_
@require_role(ADMIN, MANAGER)
@document_querystring(TaskListQuery)
@document_response(list[TaskOut])
async def list_tasks() -> Response:
    """All tasks, filtered and sorted; keyset pages via `Link` rel=next, `X-Total-Count`."""
    entry = await tasks.list_tasks_cached(runtime(), actor(), canonical_query(), _query,
                                          mine=False, prefetched=prefetched())
    return entry_response(entry)


@bp.get("/tasks/mine")
@prefetch(lambda user_id, _args, query: tasks.mine_spec(user_id, query))
@tag_
@require_role(*ANY)
@document_querystring(MyTaskListQuery)
@document_response(list[TaskOut])
async def my_tasks() -> Response:
    """Your tasks: the filters of `GET /tasks` but `assigned_user_id` (always you)."""
    entry = await tasks.list_tasks_cached(runtime(), actor(), canonical_query(), _query,
                                          mine=True, prefetched=prefetched())
    return entry_response(entry)


@bp.post("/tasks")
@tag_
@require_role(ADMIN, MANAGER)
@validate_request(TaskCreate)
@idempotent(lambda created: _created(*created))
@validate_response(TaskOut, 201)
async def create_task(data: TaskCreate) -> Written:
    """Create a task, optionally assigned to an approved user (who is emailed)."""
    return _created(*await tasks.create_task(db_session(), runtime(), actor(), data))


@bp.get("/task/<int:task_id>")
@prefetch(lambda _user_id, args, _query: tasks.task_spec(args["task_id"]),
          serve_if=tasks.may_see_entry,
          build=lambda state, args: tasks.build_task_entry(state, args["task_id"]))
@tag_
@require_role(*ANY)
@document_response(TaskOut)
async def get_task(task_id: int) -> Response:
    """One task: its assignee, managers and admins (anyone else gets 404)."""
    entry = await tasks.get_task_cached(runtime(), actor(), task_id, prefetched())
    return entry_response(entry)


@bp.put("/task/<int:task_id>")
@tag_
@require_role(ADMIN, MANAGER)
@validate_request(TaskUpdate)
@validate_response(TaskOut)
@conditional
async def update_task(task_id: int, data: TaskUpdate) -> Written:
    """Change title, description or deadline (only the fields sent)."""
    return _etagged(await tasks.update_task(db_session(), runtime(), actor(), task_id, data,
                                            if_match()))


@bp.put("/task/<int:task_id>/status")
@tag_
@require_role(*ANY)
@validate_request(TaskStatusUpdate)
@validate_response(TaskOut)
@conditional
async def set_status(task_id: int, data: TaskStatusUpdate) -> Written:
    """Set the status (assignee, managers, admins); nothing else can change here."""
    return _etagged(await tasks.set_status(runtime(), actor(), task_id, data, if_match()))


@bp.put("/task/<int:task_id>/assign")
@tag_
@require_role(ADMIN, MANAGER)
@validate_request(TaskAssign)
@validate_response(TaskOut)
@conditional
async def assign(task_id: int, data: TaskAssign) -> Written:
    """Assign to an approved user (emailed), or unassign with null."""
    return _etagged(await tasks.assign_task(db_session(), runtime(), actor(), task_id, data,
                                            if_match()))


@bp.delete("/task/<int:task_id>")
@tag_
@require_role(ADMIN)
@no_content
@conditional
async def delete_task(task_id: int) -> tuple[str, int]:
    """Delete a task (admins)."""
    await tasks.delete_task(db_session(), runtime(), actor(), task_id, if_match())
    return "", 204
