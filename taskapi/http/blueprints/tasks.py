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
from taskapi.http.openapi import no_content
from taskapi.http.prefetch import prefetch, prefetched
from taskapi.http.responses import canonical_query, entry_response, parse_query
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
@validate_response(TaskOut, 201)
async def create_task(data: TaskCreate) -> tuple[TaskOut, int, dict[str, str]]:
    """Create a task, optionally assigned to an approved user (who is emailed)."""
    task = await tasks.create_task(db_session(), runtime(), actor(), data)
    return task, 201, {"Location": url_for(".get_task", task_id=task.id)}


@bp.get("/task/<int:task_id>")
@prefetch(lambda _user_id, args, _query: tasks.task_spec(args["task_id"]),
          serve_if=tasks.may_see_entry)
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
async def update_task(task_id: int, data: TaskUpdate) -> TaskOut:
    """Change title, description or deadline (only the fields sent)."""
    return await tasks.update_task(db_session(), runtime(), actor(), task_id, data)


@bp.put("/task/<int:task_id>/status")
@tag_
@require_role(*ANY)
@validate_request(TaskStatusUpdate)
@validate_response(TaskOut)
async def set_status(task_id: int, data: TaskStatusUpdate) -> TaskOut:
    """Set the status (assignee, managers, admins); nothing else can change here."""
    return await tasks.set_status(runtime(), actor(), task_id, data)


@bp.put("/task/<int:task_id>/assign")
@tag_
@require_role(ADMIN, MANAGER)
@validate_request(TaskAssign)
@validate_response(TaskOut)
async def assign(task_id: int, data: TaskAssign) -> TaskOut:
    """Assign to an approved user (emailed), or unassign with null."""
    return await tasks.assign_task(db_session(), runtime(), actor(), task_id, data)


@bp.delete("/task/<int:task_id>")
@tag_
@require_role(ADMIN)
@no_content
async def delete_task(task_id: int) -> tuple[str, int]:
    """Delete a task (admins)."""
    await tasks.delete_task(db_session(), runtime(), actor(), task_id)
    return "", 204
