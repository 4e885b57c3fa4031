"""Whether a recorded email still holds when it is sent.

An email is recorded with the change it reports and sent later: seconds later, or hours
later after SMTP retries. By then its recipient may have been deleted, unapproved, demoted,
or the task reassigned. Every kind bound to its recipient's state has a rule here, and the
rules are checked for every claimed row right after its claim (`outbox._claim`), so every
first send and every retry sees the state as it is then; a row whose rule no longer holds is
cancelled (not failed, not retried) with the reason.

The rules, and why:
- welcome: the user still exists (a rejected registration is deleted: no "we will review
  your account" to an address that is gone from the system).
- approved: the user still exists and is still approved.
- assigned: the user still exists and is approved, and the task still exists and is still
  assigned to them by that same assignment (assign:{task}:{user}:{n}); a task reassigned
  elsewhere, deleted, or reassigned away and back (a new n, its own email) is not announced.
  A status or title change since is not a reason: the assignment itself still holds.
- reminder: the user still exists and is approved (the reminder lists their open tasks).
- report: the requester still exists, is approved and is still staff: the report is a
  summary of every task, which only staff may see.
- registration_attempt: the account whose address someone tried to register still exists.
- comment: the recipient (the task's assignee when the comment was made) still exists and
  is approved.
- password_reset: the user still exists and is approved (only approved users get one).
A kind not listed (rejected: its recipient is deleted by design) is sent without a check.
A row of a listed kind without a user is one whose user was deleted (the foreign key sets
it to NULL).

The kinds that hold a single-use token (welcome: the confirmation link; password_reset: the
reset link) keep no body once sent or cancelled (`scrubbed_bodies`): a copy of the database,
a backup or a replica, then holds no live token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.models import EmailOutbox, Role, Task, User
from taskapi.services.authz import STAFF


@dataclass(frozen=True, slots=True)
class Rule:
    approved: bool = False  # the recipient must still be approved
    roles: tuple[Role, ...] | None = None  # … and have one of these roles
    assignment: bool = False  # the task must still be assigned to them by this assignment


RULES: dict[str, Rule] = {
    "welcome": Rule(),
    "approved": Rule(approved=True),
    "assigned": Rule(approved=True, assignment=True),
    "reminder": Rule(approved=True),
    "report": Rule(approved=True, roles=STAFF),
    "registration_attempt": Rule(),
    "comment": Rule(approved=True),
    "password_reset": Rule(approved=True),
}


def assign_key(task_id: int, user_id: int, seq: int) -> str:
    """The dedupe key of an assignment email: each assignment (n) has its own."""
    return f"assign:{task_id}:{user_id}:{seq}"


def _assignment(key: str) -> tuple[int, int] | None:
    """(task id, n) of an assign:{task}:{user}:{n} key."""
    parts = key.split(":")
    if len(parts) == 4 and parts[0] == "assign" and all(p.isdigit() for p in parts[1:]):
        return int(parts[1]), int(parts[3])
    return None


def _reason(rule: Rule, row: EmailOutbox, user: Any, tasks: dict[int, Any]) -> str | None:
    if user is None:
        return "recipient no longer exists"
    if rule.approved and not user.is_approved:
        return "recipient not approved"
    if rule.roles is not None and user.role not in rule.roles:
        return "recipient no longer staff"
    if rule.assignment:
        task_id, seq = _assignment(row.dedupe_key) or (0, 0)
        task = tasks.get(task_id)
        if task is None:
            return "task no longer exists"
        if task.assigned_user_id != row.user_id or task.assign_seq != seq:
            return "task reassigned"
    return None


async def stale(session: AsyncSession, rows: Sequence[EmailOutbox]) -> dict[int, str]:
    """Row id -> why it must not be sent, for the rows whose rule no longer holds."""
    bound = [row for row in rows if row.kind in RULES]
    user_ids = {row.user_id for row in bound if row.user_id is not None}
    task_ids = {found[0] for row in bound if RULES[row.kind].assignment
                and (found := _assignment(row.dedupe_key))}
    users: dict[int, Any] = {}
    if user_ids:
        users = {user.id: user for user in await session.execute(
            select(User.id, User.is_approved, User.role).where(User.id.in_(user_ids)))}
    tasks: dict[int, Any] = {}
    if task_ids:
        tasks = {task.id: task for task in await session.execute(
            select(Task.id, Task.assigned_user_id, Task.assign_seq)
            .where(Task.id.in_(task_ids)))}
    reasons = {}
    for row in bound:
        user = users.get(row.user_id) if row.user_id is not None else None
        reason = _reason(RULES[row.kind], row, user, tasks)
        if reason is not None:
            reasons[row.id] = reason
    return reasons


TOKEN_KINDS = ("welcome", "password_reset")
SCRUBBED = "(Removed once sent: this email held a single-use token.)"


def scrubbed_bodies() -> dict[str, Any]:
    """UPDATE values that blank a token kind's bodies and keep every other kind's."""
    return {column: case((EmailOutbox.kind.in_(TOKEN_KINDS), SCRUBBED),
                         else_=getattr(EmailOutbox, column))
            for column in ("body_text", "body_html")}
