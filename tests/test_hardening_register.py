"""Security issue #14, finding 6: /register must not confirm that an email has an account.

POST /register answers 202 `{username, email, status}` the same for a new and an existing
address; for an existing one nothing changes and the owner is told (at most once an hour).
The welcome email carries a single-use confirmation token (POST /email/confirm), and
REQUIRE_EMAIL_CONFIRMATION keeps unconfirmed accounts from being approved.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text, update

from taskapi.app import create_app
from taskapi.config import ConfigError, load_settings
from taskapi.core.db import create_engine
from taskapi.models import EmailOutbox, User
from taskapi.ops.migrate import upgrade
from tests.support.values import PASSWORD
from tests.support.worker import run_worker_burst

PROBLEM = "application/problem+json"
ACCEPTED = {"status": "pending_approval"}
TOKEN_RE = re.compile(r"confirm-email\?token=([A-Za-z0-9_-]+)")


def _account(name: str, email: str | None = None, password: str = PASSWORD) -> dict[str, str]:
    return {"username": name, "email": email or f"{name}@example.test", "password": password}


async def _users(db: Any) -> list[tuple[Any, ...]]:
    async with db.transaction(write=False) as session:
        rows = await session.execute(select(User.id, User.username, User.email, User.role,
                                            User.is_approved, User.password_hash,
                                            User.email_confirmed).order_by(User.id))
        return [tuple(row) for row in rows]


async def _outbox(db: Any) -> list[tuple[str, str, str]]:
    async with db.transaction(write=False) as session:
        rows = await session.execute(select(EmailOutbox.kind, EmailOutbox.to_address,
                                            EmailOutbox.body_text).order_by(EmailOutbox.id))
        return [tuple(row) for row in rows]  # type: ignore[misc]


async def _token_of(db: Any, email: str) -> str:
    """The confirmation token from the welcome email recorded for `email`."""
    bodies = [body for kind, to, body in await _outbox(db) if kind == "welcome" and to == email]
    assert len(bodies) == 1, bodies
    match = TOKEN_RE.search(bodies[0])
    assert match, bodies[0]
    return match.group(1)


def _header_names(response: Any) -> set[str]:
    return {name.lower() for name in response.headers.keys()}


# --- the 202 answer ---------------------------------------------------------------------------

async def test_new_email_is_202_pending_approval_without_id(client, db, redis_sync) -> None:  # type: ignore[no-untyped-def]
    response = await client.post("/register", json=_account("alice", "Alice@Example.TEST"))
    assert response.status_code == 202, await response.get_data()
    assert await response.get_json() == {"username": "alice", "email": "alice@example.test",
                                         **ACCEPTED}
    assert "location" not in _header_names(response)
    [user] = await _users(db)
    assert user[1:5] == ("alice", "alice@example.test", "employee", False)
    assert user[6] is False  # email_confirmed
    assert redis_sync.exists(f"arq:job:email:welcome:{user[0]}")


async def test_existing_email_gets_the_same_answer_and_changes_nothing(client, db, redis_sync) -> None:  # type: ignore[no-untyped-def]
    first = await client.post("/register", json=_account("owner", "owner@example.test"))
    users_before, outbox_before = await _users(db), await _outbox(db)

    again = await client.post("/register", json={
        **_account("intruder", "OWNER@example.test", "another password"), "role": "manager"})
    assert again.status_code == first.status_code == 202
    assert await again.get_json() == {"username": "intruder", "email": "owner@example.test",
                                      **ACCEPTED}
    assert _header_names(again) == _header_names(first)
    assert again.content_type == first.content_type
    assert await _users(db) == users_before  # no user, no new password, no role change
    after = await _outbox(db)
    assert after[:len(outbox_before)] == outbox_before
    [(kind, to, body)] = after[len(outbox_before):]
    assert (kind, to) == ("registration_attempt", "owner@example.test")
    assert "http://127.0.0.1:5000/login" in body and "http://127.0.0.1:5000/reset-password" in body
    assert "intruder" not in body  # nothing the caller chose reaches the owner's inbox
    assert redis_sync.keys("arq:job:email:registration_attempt:*")


async def test_owner_is_told_at_most_once_an_hour(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    from taskapi.services import notifications

    owner = await make_user("employee", name="busy")
    hours = {f"{datetime.now(UTC):%Y%m%d%H}"}
    for n in range(4):
        response = await client.post("/register", json=_account(f"spam{n}", owner.email))
        assert response.status_code == 202
    hours.add(f"{datetime.now(UTC):%Y%m%d%H}")  # two, if the clock passed an hour meanwhile
    assert [kind for kind, _, _ in await _outbox(db)] == ["registration_attempt"] * len(hours)

    # An hour later the next attempt tells the owner again.
    later = datetime.now(UTC) + timedelta(hours=1)
    async with db.transaction() as session:
        user = await session.get(User, owner.id)
        await notifications.registration_attempt(session, client.app.extensions["taskapi"]
                                                 .settings, user, now=later)
    assert [kind for kind, _, _ in await _outbox(db)] == (
        ["registration_attempt"] * (len(hours) + 1))


async def test_taken_username_is_409_whatever_the_email(client, db) -> None:  # type: ignore[no-untyped-def]
    await client.post("/register", json=_account("dave", "dave@example.test"))
    before = await _outbox(db)
    # The same answer with a new email and with the owner's: no email oracle either way.
    for email in ("other@example.test", "dave@example.test"):
        response = await client.post("/register", json=_account("dave", email))
        assert response.status_code == 409 and response.content_type == PROBLEM, email
        assert (await response.get_json())["code"] == "username_taken"
    assert len(await _users(db)) == 1
    assert await _outbox(db) == before


async def test_concurrent_registrations_of_one_email_make_one_account(app_with, db) -> None:  # type: ignore[no-untyped-def]
    # The password queue's wait is long enough for four hashes on a loaded machine: this test
    # is about one account, not about the queue (test_hardening_login.py tests that).
    async with app_with(password_queue_wait=60) as app:
        client = app.test_client()
        responses = await asyncio.gather(*(
            client.post("/register", json=_account(f"racer{n}", "race@example.test"))
            for n in range(4)))
    assert [r.status_code for r in responses] == [202] * 4
    users = await _users(db)
    assert [u[2] for u in users] == ["race@example.test"]
    kinds = sorted(kind for kind, _, _ in await _outbox(db))
    assert kinds == ["registration_attempt", "welcome"]


# --- confirming the email ---------------------------------------------------------------------

async def test_confirmation_token_confirms_once(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    admin = await make_user("admin")
    await client.post("/register", json=_account("erin"))
    token = await _token_of(db, "erin@example.test")
    assert len(token) >= 43  # secrets.token_urlsafe(32)
    [user] = [u for u in await _users(db) if u[1] == "erin"]

    pending = await (await client.get("/users/pending", headers=admin.headers)).get_json()
    assert [(u["id"], u["email_confirmed"]) for u in pending] == [(user[0], False)]

    confirmed = await client.post("/email/confirm", json={"token": token})
    assert confirmed.status_code == 204, await confirmed.get_data()
    one = await (await client.get(f"/users/{user[0]}", headers=admin.headers)).get_json()
    assert one["email_confirmed"] is True and one["is_approved"] is False
    pending = await (await client.get("/users/pending", headers=admin.headers)).get_json()
    assert [(u["id"], u["email_confirmed"]) for u in pending] == [(user[0], True)]

    reused = await client.post("/email/confirm", json={"token": token})
    assert reused.status_code == 400 and reused.content_type == PROBLEM
    assert (await reused.get_json())["code"] == "invalid_token"


async def test_token_is_stored_hashed_and_expires(make_settings, redis_sync, db) -> None:  # type: ignore[no-untyped-def]
    from taskapi.models import EmailConfirmation

    app = create_app(make_settings(email_confirmation_expires=3600))
    async with app.test_app() as test_app:
        client = test_app.test_client()
        await client.post("/register", json=_account("frank"))
        token = await _token_of(db, "frank@example.test")
        async with db.transaction(write=False) as session:
            row = (await session.scalars(select(EmailConfirmation))).one()
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert token not in (row.token_hash or "")
        lifetime = row.expires_at - row.created_at
        assert timedelta(minutes=59) < lifetime <= timedelta(hours=1)

        async with db.transaction() as session:
            await session.execute(update(EmailConfirmation).values(
                expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        expired = await client.post("/email/confirm", json={"token": token})
        assert expired.status_code == 400
        assert (await expired.get_json())["code"] == "invalid_token"
    assert [u[6] for u in await _users(db)] == [False]


@pytest.mark.parametrize("token", ["", "x", "A" * 43, "not a token at all!"])
async def test_unknown_token_is_400_invalid_token(client, token) -> None:  # type: ignore[no-untyped-def]
    response = await client.post("/email/confirm", json={"token": token})
    assert response.status_code == 400 and response.content_type == PROBLEM
    body = await response.get_json()
    assert body["code"] == "invalid_token"
    assert body["detail"] == "The confirmation link is invalid, used or expired."


async def test_confirm_refuses_other_bodies_with_422(client) -> None:  # type: ignore[no-untyped-def]
    for body in ({}, {"token": 5}, {"token": "x" * 300}, {"token": "abc", "user_id": 1}):
        response = await client.post("/email/confirm", json=body)
        assert response.status_code == 422 and response.content_type == PROBLEM, body


async def test_confirm_is_rate_limited_like_other_anonymous_routes(app_with) -> None:  # type: ignore[no-untyped-def]
    async with app_with(rate_limit_default="3/day") as app:
        client = app.test_client()
        statuses = [(await client.post("/email/confirm", json={"token": "nope"})).status_code
                    for _ in range(4)]
    assert statuses == [400, 400, 400, 429]


# --- approval -------------------------------------------------------------------------------

async def test_require_email_confirmation_blocks_approving_unconfirmed(app_with, db, make_user, redis_sync) -> None:  # type: ignore[no-untyped-def]
    admin = await make_user("admin")
    async with app_with(require_email_confirmation=True) as app:
        client = app.test_client()
        await client.post("/register", json=_account("gina"))
        [user_id] = [u[0] for u in await _users(db) if u[1] == "gina"]
        for call in (client.put(f"/users/{user_id}/approve", headers=admin.headers),
                     client.put(f"/users/{user_id}", headers=admin.headers,
                                json={"is_approved": True})):
            refused = await call
            assert refused.status_code == 409 and refused.content_type == PROBLEM
            assert (await refused.get_json())["code"] == "email_unconfirmed"
        assert not [u for u in await _users(db) if u[0] == user_id and u[4]]
        assert [k for k, _, _ in await _outbox(db)] == ["welcome"]  # no approval email

        token = await _token_of(db, "gina@example.test")
        assert (await client.post("/email/confirm", json={"token": token})).status_code == 204
        approved = await client.put(f"/users/{user_id}/approve", headers=admin.headers)
        assert approved.status_code == 200
        assert (await approved.get_json())["is_approved"] is True


async def test_without_the_setting_unconfirmed_accounts_can_be_approved(client, make_user) -> None:  # type: ignore[no-untyped-def]
    admin = await make_user("admin")
    pending = await make_user("employee", approved=False)
    response = await client.put(f"/users/{pending.id}/approve", headers=admin.headers)
    assert response.status_code == 200
    body = await response.get_json()
    assert body["is_approved"] is True and body["email_confirmed"] is False


# --- settings, links, the spec --------------------------------------------------------------

def test_public_url_setting(tmp_path: Path) -> None:
    base = {"data_dir": tmp_path, "_env_file": None}
    assert load_settings(**base).public_url == "http://127.0.0.1:5000"
    assert load_settings(**base, public_url="https://tasks.example.com/app/").public_url == (
        "https://tasks.example.com/app")
    assert load_settings(**base).email_confirmation_expires == 7 * 24 * 3600
    assert load_settings(**base).require_email_confirmation is False
    for bad in ("tasks.example.com", "ftp://tasks.example.com", "https://", "http://a b"):
        with pytest.raises(ConfigError, match="TASKAPI_PUBLIC_URL"):
            load_settings(**base, public_url=bad)


async def test_welcome_links_use_public_url(app_with, db) -> None:  # type: ignore[no-untyped-def]
    async with app_with(public_url="https://tasks.example.com/") as app:
        await app.test_client().post("/register", json=_account("henry"))
    [(_, _, body)] = await _outbox(db)
    token = await _token_of(db, "henry@example.test")
    assert f"https://tasks.example.com/confirm-email?token={token}" in body
    assert "POST /email/confirm" in body and f"\n    {token}\n" in body


async def test_openapi_documents_the_new_contract(client) -> None:  # type: ignore[no-untyped-def]
    spec = await (await client.get("/openapi.json")).get_json()
    register = spec["paths"]["/register"]["post"]
    assert "201" not in register["responses"]
    accepted = register["responses"]["202"]
    assert "Location" not in accepted.get("headers", {})
    schema = accepted["content"]["application/json"]["schema"]
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    assert set(schema["properties"]) == {"username", "email", "status"}
    assert "409" in register["responses"]

    confirm = spec["paths"]["/email/confirm"]["post"]
    assert "security" not in confirm
    assert confirm["summary"]
    assert {"204", "400", "413", "422", "429", "503"} <= set(confirm["responses"])
    approve = spec["paths"]["/users/{user_id}/approve"]["put"]
    assert "409" in approve["responses"]


# --- end to end: real SMTP, the real worker -------------------------------------------------

def _text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def _html(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


async def test_register_confirm_and_register_again_end_to_end(make_settings, redis_sync, redis_url, make_user, smtp_sink) -> None:  # type: ignore[no-untyped-def]
    sink, port = smtp_sink
    settings = make_settings(smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False,
                             public_url="https://tasks.example.com")
    admin = await make_user("admin")
    app = create_app(settings)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        created = await client.post("/register", json=_account("ivy", "ivy@corp.example"))
        assert created.status_code == 202
        await run_worker_burst(settings, redis_url)
        [welcome] = sink.messages
        assert welcome["To"] == "ivy@corp.example"
        match = TOKEN_RE.search(_text(welcome))
        assert match, _text(welcome)
        token = match.group(1)
        assert f'href="https://tasks.example.com/confirm-email?token={token}"' in _html(welcome)

        assert (await client.post("/email/confirm", json={"token": token})).status_code == 204
        pending = await (await client.get("/users/pending", headers=admin.headers)).get_json()
        [ivy] = [u for u in pending if u["email"] == "ivy@corp.example"]
        assert ivy["email_confirmed"] is True and ivy["username"] == "ivy"

        again = await client.post("/register", json=_account("ivy2", "ivy@corp.example",
                                                              "a different password"))
        assert again.status_code == 202
        assert await again.get_json() == {"username": "ivy2", "email": "ivy@corp.example",
                                          **ACCEPTED}
        await run_worker_burst(settings, redis_url)
        assert len(sink.messages) == 2  # the notice, and no second welcome
        notice = sink.messages[1]
        assert notice["To"] == "ivy@corp.example"
        assert notice["Subject"] == "Someone tried to register with your email address"
        body = _text(notice)
        assert "https://tasks.example.com/login" in body
        assert "https://tasks.example.com/reset-password" in body
        assert 'href="https://tasks.example.com/reset-password"' in _html(notice)
        pending = await (await client.get("/users/pending", headers=admin.headers)).get_json()
        assert pending == [ivy]  # nothing changed
        login = await client.post("/login", json={"email": "ivy@corp.example",
                                                  "password": "a different password"})
        assert login.status_code == 401  # the second password was not stored


# --- the migration --------------------------------------------------------------------------

async def _scratch_url(database_url: str, tmp_path: Path) -> tuple[str, Any]:
    """An empty database of the same kind as the test database, and how to drop it."""
    if database_url.startswith("sqlite"):
        return f"sqlite+aiosqlite:///{tmp_path / 'scratch.db'}", None
    base, _, name = database_url.rpartition("/")
    scratch = f"{name}_mig"
    admin = create_engine(database_url).execution_options(isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{scratch}"'))
        await conn.execute(text(f'CREATE DATABASE "{scratch}"'))

    async def drop() -> None:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)'))
        await admin.dispose()

    return f"{base}/{scratch}", drop


async def test_migration_0005_keeps_existing_users_unconfirmed(database_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url, drop = await _scratch_url(database_url, tmp_path)
    try:
        await asyncio.to_thread(upgrade, url, "0004")
        engine = create_engine(url)
        async with engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO users (username, email, password_hash, role, is_approved) VALUES "
                "('old', 'old@example.test', 'x', 'employee', false), "
                "('boss', 'boss@example.test', 'x', 'admin', true), "
                "('gone', 'gone@example.test', 'x', 'employee', false)"))
            await conn.execute(text("DELETE FROM users WHERE username = 'gone'"))
            await conn.execute(text(
                "INSERT INTO auth_sessions (id, user_id, refresh_jti, created_at, last_used_at, "
                "expires_at) VALUES ('s1', 2, 'j1', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, "
                "CURRENT_TIMESTAMP)"))
            await conn.execute(text(
                "INSERT INTO tasks (title, description, status, assigned_user_id, created_by, "
                "created_at, updated_at, assign_seq) VALUES ('t', '', 'pending', 1, 2, "
                "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 0)"))
        await asyncio.to_thread(upgrade, url, "0005")
        async with engine.begin() as conn:
            rows = (await conn.execute(text(
                "SELECT username, email_confirmed FROM users ORDER BY id"))).all()
            assert [(name, bool(flag)) for name, flag in rows] == [("old", False),
                                                                    ("boss", False)]
            # The users table is altered in place: what refers to it survives (a table copy
            # would cascade the drop of the old table), and ids are still never reused.
            assert await conn.scalar(text("SELECT count(*) FROM auth_sessions")) == 1
            assert await conn.scalar(text("SELECT assigned_user_id FROM tasks")) == 1
            new_id = await conn.scalar(text(
                "INSERT INTO users (username, email, password_hash, role, is_approved) VALUES "
                "('new', 'new@example.test', 'x', 'employee', false) RETURNING id"))
            assert new_id == 4
            count = await conn.scalar(select(func.count()).select_from(
                text("email_confirmations")))
            assert count == 0
            version = await conn.scalar(text("SELECT version_num FROM alembic_version"))
            assert version == "0005"
        await engine.dispose()
    finally:
        if drop is not None:
            await drop()
