"""A task's story: its history and its comments."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import (
    document_querystring,
    document_response,
    tag,
    validate_request,
    validate_response,
)

from taskapi.http.current import db_session, runtime
from taskapi.http.deps import actor, require_role
from taskapi.http.openapi import no_content, problems
from taskapi.http.responses import ListResponse, dump_list, page_headers, parse_query
from taskapi.http.safe_writes import idempotent
from taskapi.schemas.activity import CommentIn, CommentOut, HistoryEntry, PageQuery
from taskapi.services import comments
from taskapi.services.tasks.history import task_history

bp = Blueprint("activity", __name__)
tag_ = tag(["tasks"])
ANY = ()


@bp.get("/task/<int:task_id>/history")
@tag_
@require_role(*ANY)
@document_querystring(PageQuery)
@document_response(list[HistoryEntry])
async def history(task_id: int) -> ListResponse:
    """Every change to the task, oldest first (a deleted task's: admins); keyset pages."""
    page = await task_history(db_session(), actor(), task_id, parse_query(PageQuery))
    return dump_list(page.items), 200, page_headers(page)  # type: ignore[arg-type]


@bp.get("/task/<int:task_id>/comments")
@tag_
@require_role(*ANY)
@document_querystring(PageQuery)
@document_response(list[CommentOut])
async def list_comments(task_id: int) -> ListResponse:
    """The task's comments, oldest first; keyset pages via `Link` rel=next."""
    page = await comments.list_comments(db_session(), actor(), task_id, parse_query(PageQuery))
    return dump_list(page.items), 200, page_headers(page)  # type: ignore[arg-type]


@bp.post("/task/<int:task_id>/comments")
@tag_
@require_role(*ANY)
@validate_request(CommentIn)
@idempotent(lambda comment: _created(comment))
@validate_response(CommentOut, 201)
async def add_comment(task_id: int, data: CommentIn) -> tuple[CommentOut, int, dict[str, str]]:
    """Comment on a task you may see; its assignee is emailed (unless it is you)."""
    return _created(await comments.add_comment(db_session(), runtime(), actor(), task_id, data))


def _created(comment: CommentOut) -> tuple[CommentOut, int, dict[str, str]]:
    return comment, 201, {"Location": f"/task/{comment.task_id}/comments/{comment.id}"}


@bp.put("/task/<int:task_id>/comments/<int:comment_id>")
@tag_
@require_role(*ANY)
@validate_request(CommentIn)
@validate_response(CommentOut)
@problems(403)
async def edit_comment(task_id: int, comment_id: int, data: CommentIn) -> CommentOut:
    """Edit a comment (its author or an admin); it then carries `edited_at`."""
    return await comments.edit_comment(db_session(), actor(), task_id, comment_id, data)


@bp.delete("/task/<int:task_id>/comments/<int:comment_id>")
@tag_
@require_role(*ANY)
@no_content
@problems(403)
async def delete_comment(task_id: int, comment_id: int) -> tuple[str, int]:
    """Delete a comment (its author or an admin)."""
    await comments.delete_comment(db_session(), actor(), task_id, comment_id)
    return "", 204
