"""Meta-tests over the route map.

The authorization sweep: ROUTES below is the one table of who may call what. Every rule of
`app.url_map` (each method, at its path and under /api/v1) must have an entry, and each is
called as every role: the allowed ones succeed, every other one is refused — 401 when
anonymous or not approved, else 403, or 404 where the design hides that the row exists — and
a refused call changes nothing.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from quart.testing.connections import WebsocketDisconnectError, WebsocketResponseError
from sqlalchemy import select

from taskapi.app import API_PREFIX
from taskapi.core import tokens
from taskapi.core.webhook_signing import new_secret
from taskapi.http.deps import ROLES_ATTRIBUTE
from taskapi.models import (
    AuthSession,
    DeliveryStatus,
    PasswordReset,
    PersonalToken,
    ReportRequest,
    Task,
    TaskComment,
    User,
    WebhookDelivery,
    WebhookEndpoint,
)
from taskapi.services import confirmations
from tests.support.values import PASSWORD

PROBLEM = "application/problem+json"
# "assignee": the employee the task in the URL is assigned to; "employee": any other one.
# "unapproved": a live token of an account that is not (or no longer) approved.
ROLES = ("anonymous", "unapproved", "employee", "assignee", "manager", "admin")
ANYONE = frozenset(ROLES)
SIGNED_IN = frozenset({"employee", "assignee", "manager", "admin"})
STAFF = frozenset({"manager", "admin"})
ADMIN = frozenset({"admin"})
_names = itertools.count(1)


@dataclass(frozen=True)
class Access:
    allowed: frozenset[str]
    body: Callable[[Any], Any] | None = None  # from the test's context
    hidden: frozenset[str] = frozenset()  # refused with 404 rather than 403
    ok: tuple[int, ...] = (200, 201, 202, 204)
    refused_as: int | None = None  # one status for every refused role (not a JWT gate)
    form: bool = False  # the body is form-encoded (OAuth2), not JSON
    transport: str = "http"  # "stream": an endless response; "websocket": an upgrade


def _new_account(_ctx: Any) -> dict[str, str]:
    n = next(_names)
    return {"username": f"newcomer{n}", "email": f"newcomer{n}@example.test",
            "password": "long enough password"}


PUBLIC_HOOK = "https://93.184.215.14/hook"  # a public address: no DNS, not refused
TASK_READERS = frozenset({"assignee", "manager", "admin"})
COMMENT_OWNERS = frozenset({"assignee", "admin"})
ROUTES: dict[tuple[str, str], Access] = {
    ("health.healthz", "GET"): Access(ANYONE),
    ("health.readyz", "GET"): Access(ANYONE),
    ("openapi", "GET"): Access(ANYONE),
    # No role opens it: only a client address in METRICS_ALLOW or METRICS_TOKEN (covered in
    # tests/test_metrics.py); every caller here, token or not, gets the unknown-URL 404.
    ("metrics.metrics", "GET"): Access(frozenset(), refused_as=404),
    ("docs.docs_page", "GET"): Access(ANYONE),
    ("docs.docs_init", "GET"): Access(ANYONE),
    ("docs.static", "GET"): Access(ANYONE),
    ("problem_pages.problem_page", "GET"): Access(ANYONE),
    ("auth.register", "POST"): Access(ANYONE, _new_account),
    ("auth.login", "POST"): Access(ANYONE, lambda c: {"email": c.other.email,
                                                      "password": PASSWORD}),
    ("auth.refresh", "POST"): Access(ANYONE, lambda c: {"refresh_token": c.other.refresh}),
    ("auth.confirm_email", "POST"): Access(ANYONE, lambda c: {"token": c.confirm_token}),
    ("auth.oauth_token", "POST"): Access(ANYONE, lambda c: {
        "grant_type": "password", "username": c.other.email, "password": PASSWORD}, form=True),
    ("auth.logout", "POST"): Access(SIGNED_IN),
    ("auth.me", "GET"): Access(SIGNED_IN),
    ("auth.update_me", "PUT"): Access(SIGNED_IN, lambda c: {"timezone": "Europe/Berlin"}),
    ("auth.change_password", "PUT"): Access(SIGNED_IN, lambda c: {
        "current_password": PASSWORD, "new_password": "another long password"}),
    ("account.forgot_password", "POST"): Access(ANYONE, lambda c: {"email": c.other.email}),
    ("account.reset_password", "POST"): Access(ANYONE, lambda c: {
        "token": c.reset_token, "new_password": "another long password"}),
    ("account.my_tokens", "GET"): Access(SIGNED_IN),
    ("account.create_token", "POST"): Access(SIGNED_IN, lambda c: {
        "name": "ci", "scopes": ["read"]}),
    # The token in the URL is the caller's own (another user's is a 404).
    ("account.revoke_token", "DELETE"): Access(SIGNED_IN),
    ("account.user_tokens", "GET"): Access(ADMIN),
    ("account.revoke_user_token", "DELETE"): Access(ADMIN),
    ("account.my_sessions", "GET"): Access(SIGNED_IN),
    # The session in the URL is the caller's own.
    ("account.end_session", "DELETE"): Access(SIGNED_IN),
    ("users.list_users", "GET"): Access(STAFF),
    ("users.pending_users", "GET"): Access(ADMIN),
    ("users.approve", "PUT"): Access(ADMIN),
    ("users.reject", "DELETE"): Access(ADMIN),
    ("users.get_user", "GET"): Access(ADMIN),
    ("users.get_user_alias", "GET"): Access(ADMIN),
    ("users.update_user", "PUT"): Access(ADMIN, lambda c: {"role": "manager"}),
    ("users.update_user_alias", "PUT"): Access(ADMIN, lambda c: {"role": "manager"}),
    ("users.delete_user", "DELETE"): Access(ADMIN),
    ("users.delete_user_alias", "DELETE"): Access(ADMIN),
    ("tasks.list_tasks", "GET"): Access(STAFF),
    ("tasks.my_tasks", "GET"): Access(SIGNED_IN),
    ("tasks.create_task", "POST"): Access(STAFF, lambda c: {"title": "new"}),
    ("tasks.get_task", "GET"): Access(TASK_READERS, hidden=frozenset({"employee"})),
    ("tasks.get_task_alias", "GET"): Access(TASK_READERS, hidden=frozenset({"employee"})),
    ("tasks.update_task", "PUT"): Access(STAFF, lambda c: {"title": "changed"}),
    ("tasks.update_task_alias", "PUT"): Access(STAFF, lambda c: {"title": "changed"}),
    ("tasks.set_status", "PUT"): Access(TASK_READERS, lambda c: {"status": "completed"},
                                        hidden=frozenset({"employee"})),
    ("tasks.set_status_alias", "PUT"): Access(TASK_READERS, lambda c: {"status": "completed"},
                                              hidden=frozenset({"employee"})),
    ("tasks.assign", "PUT"): Access(STAFF, lambda c: {"user_id": None}),
    ("tasks.assign_alias", "PUT"): Access(STAFF, lambda c: {"user_id": None}),
    ("tasks.delete_task", "DELETE"): Access(ADMIN),
    ("tasks.delete_task_alias", "DELETE"): Access(ADMIN),
    ("activity.history", "GET"): Access(TASK_READERS, hidden=frozenset({"employee"})),
    ("activity.history_alias", "GET"): Access(TASK_READERS, hidden=frozenset({"employee"})),
    ("activity.list_comments", "GET"): Access(TASK_READERS, hidden=frozenset({"employee"})),
    ("activity.list_comments_alias", "GET"): Access(TASK_READERS,
                                                    hidden=frozenset({"employee"})),
    ("activity.add_comment", "POST"): Access(TASK_READERS, lambda c: {"body": "hello"},
                                             hidden=frozenset({"employee"})),
    ("activity.add_comment_alias", "POST"): Access(TASK_READERS, lambda c: {"body": "hello"},
                                                   hidden=frozenset({"employee"})),
    # The comment in the URL is the assignee's: a manager sees it but may not change it.
    ("activity.edit_comment", "PUT"): Access(COMMENT_OWNERS, lambda c: {"body": "edited"},
                                             hidden=frozenset({"employee"})),
    ("activity.edit_comment_alias", "PUT"): Access(COMMENT_OWNERS, lambda c: {"body": "edited"},
                                                   hidden=frozenset({"employee"})),
    ("activity.delete_comment", "DELETE"): Access(COMMENT_OWNERS,
                                                  hidden=frozenset({"employee"})),
    ("activity.delete_comment_alias", "DELETE"): Access(COMMENT_OWNERS,
                                                        hidden=frozenset({"employee"})),
    ("stats.stats", "GET"): Access(STAFF),
    ("reports.request_report", "POST"): Access(STAFF),
    # The report in the URL is the manager's own (another manager's is a 404).
    ("reports.report_status", "GET"): Access(STAFF),
    ("events.events_ticket", "POST"): Access(SIGNED_IN),
    ("events.stream_events", "GET"): Access(SIGNED_IN, transport="stream"),
    ("ws.ws", "GET"): Access(SIGNED_IN, ok=(101,), transport="websocket"),
    ("webhooks.create_webhook", "POST"): Access(ADMIN, lambda c: {
        "url": PUBLIC_HOOK, "events": ["*"]}),
    ("webhooks.list_webhooks", "GET"): Access(ADMIN),
    ("webhooks.get_webhook", "GET"): Access(ADMIN),
    ("webhooks.update_webhook", "PUT"): Access(ADMIN, lambda c: {"enabled": False}),
    ("webhooks.delete_webhook", "DELETE"): Access(ADMIN),
    ("webhooks.rotate_secret", "POST"): Access(ADMIN),
    ("webhooks.list_deliveries", "GET"): Access(ADMIN),
    # The delivery in the URL has failed, so it can be redelivered.
    ("webhooks.redeliver", "POST"): Access(ADMIN),
}
_IMPLICIT = {"HEAD", "OPTIONS"}


def _operations(app: Any) -> dict[tuple[str, str], list[Any]]:
    found: dict[tuple[str, str], list[Any]] = {}
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - _IMPLICIT):
            found.setdefault((rule.endpoint.removeprefix("v1_"), method), []).append(rule)
    return found


async def test_every_route_has_an_entry_in_the_table(app) -> None:  # type: ignore[no-untyped-def]
    assert sorted(_operations(app)) == sorted(ROUTES)


async def test_every_api_route_is_mirrored_under_api_v1(app) -> None:  # type: ignore[no-untyped-def]
    rules = {(r.rule, tuple(sorted(r.methods or ()))) for r in app.url_map.iter_rules()}
    root_only = {"/healthz", "/readyz", "/docs", "/docs/init.js", "/openapi.json", "/metrics",
                 "/docs/static/<path:filename>",
                 "/problems/<code>"}
    missing = [rule for rule, methods in rules
               if not rule.startswith(API_PREFIX) and rule not in root_only
               and (API_PREFIX + rule, methods) not in rules]
    assert missing == []


@dataclass
class Context:
    """Fresh rows for one call: the caller, the task's assignee, a target user, a pending
    user, a task, the manager's report, and one more account (for login and refresh)."""

    caller: Any
    assignee: Any
    target: Any
    pending: Any
    other: Any
    admin: Any
    task_id: int
    job_id: str = ""
    comment_id: int = 0  # a comment by the assignee on the task
    confirm_token: str = ""  # an email confirmation token of the pending user
    reset_token: str = ""  # a password reset token of the other account
    token_id: int = 0  # a personal access token of the caller (for /me/tokens/{id})
    target_token_id: int = 0  # … of the target user (for /users/{id}/tokens/{id})
    session_id: str = ""  # the caller's login session
    webhook_id: int = 0  # a webhook endpoint …
    delivery_id: int = 0  # … and a failed delivery of it
    headers: dict[str, str] = field(default_factory=dict)


async def _context(client: Any, db: Any, make_user: Any, role: str, rule: Any) -> Context:
    admin = await make_user("admin")
    assignee = await make_user("employee")
    created = await client.post("/tasks", headers=admin.headers, json={
        "title": "Guarded", "assigned_user_id": assignee.id})
    callers = {"admin": admin, "assignee": assignee,
               "unapproved": await make_user("employee", approved=False)}
    caller = callers.get(role) or (None if role == "anonymous" else await make_user(role))
    ctx = Context(caller=caller, assignee=assignee, target=await make_user("employee"),
                  pending=await make_user("employee", approved=False),
                  other=await make_user("employee"), admin=admin,
                  task_id=(await created.get_json())["id"],
                  headers=caller.headers if caller else {})
    if "job_id" in rule.arguments:
        manager = caller if role == "manager" else await make_user("manager")
        report = await client.post("/reports", headers=manager.headers)
        ctx.job_id = (await report.get_json())["job_id"]
    if "comment_id" in rule.arguments:
        comment = await client.post(f"/task/{ctx.task_id}/comments", json={"body": "mine"},
                                    headers=assignee.headers)
        ctx.comment_id = (await comment.get_json())["id"]
    if "token_id" in rule.arguments:
        owner = caller or ctx.other
        async with db.transaction() as session:
            rows = [PersonalToken(user_id=user_id, name="t", scope="write",
                                  token_hash=tokens.new_id() * 2)
                    for user_id in (owner.id, ctx.target.id)]
            session.add_all(rows)
            await session.flush()
            ctx.token_id, ctx.target_token_id = rows[0].id, rows[1].id
    if "session_id" in rule.arguments:
        owner = caller or ctx.other
        ctx.session_id = tokens.decode(client.app.extensions["taskapi"].signing_key,
                                       owner.access, "access").sid
    if "webhook_id" in rule.arguments:
        async with db.transaction() as session:
            hook = WebhookEndpoint(url=PUBLIC_HOOK, events=["*"], secret=new_secret())
            session.add(hook)
            await session.flush()
            delivery = WebhookDelivery(endpoint_id=hook.id, event_id=1, event_type="task.created",
                                       body="{}", status=DeliveryStatus.FAILED, attempts=10)
            session.add(delivery)
            await session.flush()
            ctx.webhook_id, ctx.delivery_id = hook.id, delivery.id
    if rule.endpoint.endswith("account.reset_password"):
        ctx.reset_token = await _reset_token(db, ctx.other.id)
    if rule.endpoint.endswith("auth.confirm_email"):
        async with db.transaction() as session:
            ctx.confirm_token = confirmations.issue(session, client.app.extensions["taskapi"]
                                                    .settings, ctx.pending.id)
    return ctx


async def _reset_token(db: Any, user_id: int) -> str:
    from datetime import timedelta

    from taskapi.models import utcnow

    token = tokens.new_id()
    async with db.transaction() as session:
        session.add(PasswordReset(user_id=user_id, token_hash=confirmations.digest(token),
                                  expires_at=utcnow() + timedelta(minutes=5)))
    return token


def _url(app: Any, rule: Any, method: str, ctx: Context) -> str:
    values: dict[str, Any] = {"task_id": ctx.task_id, "job_id": ctx.job_id,
                              "comment_id": ctx.comment_id,
                              "filename": "swagger-ui.css", "code": "not_found",
                              "session_id": ctx.session_id, "webhook_id": ctx.webhook_id,
                              "delivery_id": ctx.delivery_id,
                              "token_id": (ctx.target_token_id if "user_id" in rule.arguments
                                           else ctx.token_id)}
    pending_target = rule.endpoint.endswith(("users.approve", "users.reject"))
    values["user_id"] = ctx.pending.id if pending_target else ctx.target.id
    args = {name: values[name] for name in rule.arguments}
    return str(app.url_map.bind("localhost").build(rule.endpoint, args, method=method))


async def _snapshot(db: Any) -> tuple[Any, ...]:
    async with db.transaction(write=False) as session:
        tasks = (await session.execute(select(
            Task.id, Task.title, Task.status, Task.assigned_user_id, Task.deadline))).all()
        users = (await session.execute(select(
            User.id, User.role, User.is_approved, User.timezone, User.password_hash))).all()
        reports = (await session.execute(select(ReportRequest.id))).all()
        comments = (await session.execute(select(TaskComment.id, TaskComment.body))).all()
        pats = (await session.execute(select(PersonalToken.id, PersonalToken.revoked_at))).all()
        sessions = (await session.execute(select(AuthSession.id, AuthSession.revoked_at))).all()
        hooks = (await session.execute(select(
            WebhookEndpoint.id, WebhookEndpoint.enabled, WebhookEndpoint.secret))).all()
        deliveries = (await session.execute(select(WebhookDelivery.id,
                                                   WebhookDelivery.status))).all()
    return (sorted(tasks), sorted(users), sorted(reports), sorted(comments), sorted(pats),
            sorted(sessions), sorted(hooks), sorted(deliveries))


async def _open_stream(client: Any, url: str, headers: dict[str, str]) -> tuple[int, str]:
    """An endless response: its status and type once the first chunk is in, then hang up."""
    async with client.request(url, headers=headers) as connection:
        await connection.send_complete()
        await asyncio.wait_for(connection.receive(), 5)
        status, content_type = connection.status_code, connection.headers["Content-Type"]
        await connection.disconnect()
    return status, content_type.split(";")[0]


async def _open_websocket(client: Any, url: str, headers: dict[str, str]) -> tuple[int, str]:
    """101 when upgraded (and, with no Authorization header, the first message's token
    taken), else the refusal's status and type."""
    async with client.websocket(url, headers=headers) as socket:
        try:
            if "Authorization" not in headers:
                await socket.send('{"type": "auth", "token": "not a token"}')
            await asyncio.wait_for(socket.receive(), 0.3)
        except TimeoutError:
            return 101, ""
        except WebsocketResponseError as refused:
            return refused.response.status_code, refused.response.content_type
        except WebsocketDisconnectError as closed:  # closed after the first message
            return {4401: 401}.get(closed.args[0], closed.args[0]), PROBLEM
    raise AssertionError("the WebSocket neither stayed open nor was refused")


@pytest.mark.parametrize("operation", sorted(ROUTES), ids=[f"{m} {e}" for e, m in sorted(ROUTES)])
async def test_only_the_listed_roles_get_through(app, client, make_user, db, operation) -> None:  # type: ignore[no-untyped-def]
    _endpoint, method = operation
    access = ROUTES[operation]
    rules = _operations(app).get(operation, [])
    assert rules, "the table names a route that does not exist"
    for rule, role in itertools.product(rules, ROLES):
        ctx = await _context(client, db, make_user, role, rule)
        url = _url(app, rule, method, ctx)
        before = await _snapshot(db)
        body = {"form" if access.form else "json": access.body(ctx)} if access.body else {}
        if access.transport == "http":
            response = await client.open(url, method=method, headers=ctx.headers, **body)
            status, content_type = response.status_code, response.content_type
        else:
            opener = _open_stream if access.transport == "stream" else _open_websocket
            status, content_type = await opener(client, url, ctx.headers)
        where = (role, method, url, status)
        if role in access.allowed:
            assert status in access.ok, where
            continue
        expected = access.refused_as or (401 if role in ("anonymous", "unapproved") else (
            404 if role in access.hidden else 403))
        assert status == expected, where
        assert content_type == PROBLEM, where
        assert await _snapshot(db) == before, where  # a refused call changes nothing


# Only a login session may do these; a personal access token of any scope gets a 403.
LOGIN_ONLY = frozenset({("account.create_token", "POST"), ("auth.change_password", "PUT"),
                        ("account.end_session", "DELETE"), ("auth.logout", "POST")})


async def _pat(client: Any, owner: Any, scopes: list[str]) -> dict[str, str]:
    created = await client.post("/me/tokens", headers=owner.headers,
                                json={"name": "table", "scopes": scopes})
    assert created.status_code == 201
    return {"Authorization": f"Bearer {(await created.get_json())['token']}"}


@pytest.mark.parametrize("scope", ["read", "write"])
@pytest.mark.parametrize("operation", sorted(ROUTES), ids=[f"{m} {e}" for e, m in sorted(ROUTES)])
async def test_personal_tokens_by_scope(app, client, make_user, db, operation, scope) -> None:  # type: ignore[no-untyped-def]
    """The table again, as an admin's personal access token: a read token is refused (403
    insufficient_scope, nothing changed) on every route that is not a GET, a write token
    only where a login session is needed; else the token does what its owner may."""
    _endpoint, method = operation
    access = ROUTES[operation]
    for rule in _operations(app)[operation]:
        if getattr(app.view_functions[rule.endpoint], ROLES_ATTRIBUTE, None) is None:
            continue  # public (or /metrics): no token involved
        ctx = await _context(client, db, make_user, "admin", rule)
        ctx.headers = await _pat(client, ctx.caller, ["read", "write"][: 1 + (scope == "write")])
        url = _url(app, rule, method, ctx)
        before = await _snapshot(db)
        body = {"form" if access.form else "json": access.body(ctx)} if access.body else {}
        refused = (scope == "read" and method != "GET") or operation in LOGIN_ONLY
        if access.transport != "http":  # a stream or a WebSocket: a personal token opens it
            opener = _open_stream if access.transport == "stream" else _open_websocket
            status, _ = await opener(client, url, ctx.headers)
            assert not refused and status in access.ok, (scope, method, url, status)
            continue
        response = await client.open(url, method=method, headers=ctx.headers, **body)
        where = (scope, method, url, response.status_code)
        if not refused:
            assert response.status_code in access.ok, (*where, await response.get_data())
            continue
        assert response.status_code == 403, where
        assert (await response.get_json())["code"] == "insufficient_scope", where
        assert await _snapshot(db) == before, where
