"""Registration, approval, login, tokens, sessions — against real Redis and the database."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from sqlalchemy import func, select

from taskapi.models import User
from tests.support.values import PASSWORD, TEST_SECRET

PROBLEM = "application/problem+json"


async def _count_users(db: Any) -> int:
    async with db.transaction(write=False) as session:
        return int(await session.scalar(select(func.count(User.id))) or 0)


def _job_queued(redis_sync: Any, job_id: str) -> bool:
    return bool(redis_sync.exists(f"arq:job:{job_id}"))


# --- registration ---------------------------------------------------------------------------

async def test_register_creates_pending_user_and_queues_welcome(client, db, redis_sync) -> None:  # type: ignore[no-untyped-def]
    response = await client.post("/register", json={
        "username": "alice", "email": "Alice@Example.TEST", "password": "s3cret-pass"})
    assert response.status_code == 202
    body = await response.get_json()
    assert body == {"username": "alice", "email": "alice@example.test",
                    "status": "pending_approval"}
    async with db.transaction(write=False) as session:
        user = (await session.scalars(select(User))).one()
    assert user.role == "employee" and user.is_approved is False
    assert _job_queued(redis_sync, f"email:welcome:{user.id}")


@pytest.mark.parametrize("email", ["bob@mail.example", "bob@corp.test", "b.o+b@sub.example.com"])
async def test_reserved_domains_are_valid(client, db, email: str) -> None:  # type: ignore[no-untyped-def]
    response = await client.post("/register", json={
        "username": "bob", "email": email, "password": "s3cret-pass", "role": "manager"})
    assert response.status_code == 202, await response.get_data()
    async with db.transaction(write=False) as session:
        assert (await session.scalars(select(User.role))).one() == "manager"


@pytest.mark.parametrize("payload", [
    {"role": "admin"},
    {"password": "short"},
    {"email": "not-an-email"},
    {"email": "a@b"},
    {"username": "ab"},
    {"username": "x" * 41},
    {"username": "bad name!"},
    {"is_approved": True},
    {"role": "superuser"},
], ids=lambda p: next(iter(p)) + "=" + str(next(iter(p.values())))[:12])
async def test_invalid_registration_is_422_and_creates_nothing(client, db, payload) -> None:  # type: ignore[no-untyped-def]
    body = {"username": "carol", "email": "carol@example.test", "password": "s3cret-pass"}
    body.update(payload)
    response = await client.post("/register", json=body)
    assert response.status_code == 422 and response.content_type == PROBLEM
    assert (await response.get_json())["errors"]
    assert await _count_users(db) == 0


async def test_duplicate_username_is_409_duplicate_email_is_202(client, db) -> None:  # type: ignore[no-untyped-def]
    base = {"username": "dave", "email": "dave@example.test", "password": "s3cret-pass"}
    assert (await client.post("/register", json=base)).status_code == 202
    response = await client.post("/register", json={**base, "email": "other@example.test"})
    assert response.status_code == 409 and response.content_type == PROBLEM
    # An email with an account gets the new account's answer (tests/test_hardening_register.py).
    response = await client.post("/register", json={**base, "username": "dave2",
                                                     "email": "DAVE@example.test"})
    assert response.status_code == 202
    assert await _count_users(db) == 1


# --- approval and login ---------------------------------------------------------------------

async def _login(client, email: str, password: str = PASSWORD, **kw: Any):  # type: ignore[no-untyped-def]
    return await client.post("/login", json={"email": email, "password": password}, **kw)


async def test_approval_flow_end_to_end(client, make_user, redis_sync) -> None:  # type: ignore[no-untyped-def]
    admin = await make_user("admin")
    created = await client.post("/register", json={
        "username": "erin", "email": "erin@example.test", "password": PASSWORD})
    assert created.status_code == 202

    pending_login = await _login(client, "erin@example.test")
    assert pending_login.status_code == 403
    assert (await pending_login.get_json())["code"] == "account_pending"

    pending = await (await client.get("/users/pending", headers=admin.headers)).get_json()
    assert [u["username"] for u in pending] == ["erin"]
    erin_id = pending[0]["id"]

    approved = await client.put(f"/users/{erin_id}/approve", headers=admin.headers)
    assert approved.status_code == 200 and (await approved.get_json())["is_approved"] is True
    assert _job_queued(redis_sync, f"email:approved:{erin_id}")
    assert await (await client.get("/users/pending", headers=admin.headers)).get_json() == []

    login = await _login(client, "ERIN@example.test")
    assert login.status_code == 200
    pair = await login.get_json()
    assert pair["token_type"] == "bearer" and pair["expires_in"] == 900
    claims = jwt.decode(pair["access_token"], TEST_SECRET, algorithms=["HS256"])
    assert {"sub", "jti", "iat", "exp", "type", "sid"} <= claims.keys()
    assert claims["type"] == "access" and claims["sub"] == str(erin_id)
    me = await client.get("/me", headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert (await me.get_json())["username"] == "erin"


async def test_reject_removes_pending_user_only(client, make_user) -> None:  # type: ignore[no-untyped-def]
    admin = await make_user("admin")
    pending = await make_user("employee", approved=False)
    approved = await make_user("employee")
    assert (await client.delete(f"/users/{pending.id}/reject", headers=admin.headers)).status_code == 204
    assert (await client.get(f"/users/{pending.id}", headers=admin.headers)).status_code == 404
    response = await client.delete(f"/users/{approved.id}/reject", headers=admin.headers)
    assert response.status_code == 409
    assert (await client.get(f"/users/{approved.id}", headers=admin.headers)).status_code == 200


async def test_wrong_password_and_unknown_email_look_the_same(client, make_user) -> None:  # type: ignore[no-untyped-def]
    user = await make_user("employee")
    timings: dict[str, float] = {}
    bodies = {}
    for label, email, password in (("wrong", user.email, "wrong password"),
                                   ("unknown", "nobody@example.test", "wrong password")):
        start = time.perf_counter()
        response = await _login(client, email, password)
        timings[label] = time.perf_counter() - start
        assert response.status_code == 401 and response.content_type == PROBLEM
        body = await response.get_json()
        body.pop("request_id")
        bodies[label] = body
    assert bodies["wrong"] == bodies["unknown"]
    # Both verify one argon2 hash; an unknown email must not answer in a fraction of the time.
    assert timings["unknown"] > timings["wrong"] / 3


async def test_password_hash_is_upgraded_on_login(client, make_user, db) -> None:  # type: ignore[no-untyped-def]
    from pwdlib.hashers.argon2 import Argon2Hasher

    user = await make_user("employee")
    weak = Argon2Hasher(time_cost=1, memory_cost=8192).hash(PASSWORD)
    async with db.transaction() as session:
        (await session.get(User, user.id)).password_hash = weak
    assert (await _login(client, user.email)).status_code == 200
    async with db.transaction(write=False) as session:
        upgraded = (await session.get(User, user.id)).password_hash
    assert upgraded != weak and "m=65536" in upgraded


# --- tokens ---------------------------------------------------------------------------------

def _forge(payload: dict[str, Any], key: str = TEST_SECRET, alg: str = "HS256") -> str:
    return jwt.encode(payload, key, algorithm=alg)


async def test_bad_tokens_are_401_problem(client, make_user) -> None:  # type: ignore[no-untyped-def]
    user = await make_user("admin")
    claims = jwt.decode(user.access, TEST_SECRET, algorithms=["HS256"])
    header, payload, signature = user.access.split(".")
    unsigned = jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]
    cases = {
        "tampered": f"{header}.{payload}.{signature[:-4]}AAAA",
        "alg-none": unsigned,
        "alg-none-no-sig": unsigned.rstrip("."),
        "other-key": _forge(claims, key="another-secret-key-of-sufficient-length-123"),
        "hs512": _forge(claims, alg="HS512"),
        "expired": _forge({**claims, "iat": int(time.time()) - 7200,
                           "exp": int(time.time()) - 3600}),
        "refresh-as-access": user.refresh,
        "no-sid": _forge({k: v for k, v in claims.items() if k != "sid"}),
        "garbage": "not.a.jwt",
    }
    for label, token in cases.items():
        response = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, label
        assert response.content_type == PROBLEM, label
        assert "Bearer" in response.headers["WWW-Authenticate"]
    missing = await client.get("/me")
    assert missing.status_code == 401
    assert (await missing.get_json())["code"] == "not_authenticated"
    assert (await client.get("/me", headers=user.headers)).status_code == 200


async def test_refresh_rotates_and_replay_revokes_the_family(client, make_user) -> None:  # type: ignore[no-untyped-def]
    user = await make_user("employee")
    first = await client.post("/token/refresh", json={"refresh_token": user.refresh})
    assert first.status_code == 200
    pair = await first.get_json()
    new_headers = {"Authorization": f"Bearer {pair['access_token']}"}
    assert (await client.get("/me", headers=new_headers)).status_code == 200

    replay = await client.post("/token/refresh", json={"refresh_token": user.refresh})
    assert replay.status_code == 401
    assert (await replay.get_json())["code"] == "token_reused"
    # The whole family is gone: the rotated pair and the old access token.
    assert (await client.get("/me", headers=new_headers)).status_code == 401
    assert (await client.get("/me", headers=user.headers)).status_code == 401
    again = await client.post("/token/refresh", json={"refresh_token": pair["refresh_token"]})
    assert again.status_code == 401


async def test_access_token_is_not_a_refresh_token(client, make_user) -> None:  # type: ignore[no-untyped-def]
    user = await make_user("employee")
    response = await client.post("/token/refresh", json={"refresh_token": user.access})
    assert response.status_code == 401


async def test_logout_revokes_access_and_refresh(client, make_user) -> None:  # type: ignore[no-untyped-def]
    user = await make_user("employee")
    other = await make_user("employee")
    assert (await client.post("/logout", headers=user.headers)).status_code == 204
    response = await client.get("/me", headers=user.headers)
    assert response.status_code == 401
    assert (await response.get_json())["code"] == "token_revoked"
    refresh = await client.post("/token/refresh", json={"refresh_token": user.refresh})
    assert refresh.status_code == 401
    assert (await client.get("/me", headers=other.headers)).status_code == 200


async def test_password_change_revokes_other_sessions(client, make_user) -> None:  # type: ignore[no-untyped-def]
    user = await make_user("employee")
    second = await (await _login(client, user.email)).get_json()
    second_headers = {"Authorization": f"Bearer {second['access_token']}"}
    wrong = await client.put("/me/password", headers=user.headers, json={
        "current_password": "nope-nope", "new_password": "brand new password"})
    assert wrong.status_code == 422
    ok = await client.put("/me/password", headers=user.headers, json={
        "current_password": PASSWORD, "new_password": "brand new password"})
    assert ok.status_code == 204
    assert (await client.get("/me", headers=user.headers)).status_code == 200
    assert (await client.get("/me", headers=second_headers)).status_code == 401
    assert (await _login(client, user.email)).status_code == 401
    assert (await _login(client, user.email, "brand new password")).status_code == 200


async def test_me_timezone_update(client, make_user) -> None:  # type: ignore[no-untyped-def]
    user = await make_user("employee")
    response = await client.put("/me", headers=user.headers, json={"timezone": "Europe/Berlin"})
    assert (await response.get_json())["timezone"] == "Europe/Berlin"
    bad = await client.put("/me", headers=user.headers, json={"timezone": "Mars/Base"})
    assert bad.status_code == 422
    sneaky = await client.put("/me", headers=user.headers, json={"role": "admin"})
    assert sneaky.status_code == 422
    assert (await (await client.get("/me", headers=user.headers)).get_json())["role"] == "employee"


# --- live tokens follow the user's current state --------------------------------------------

async def test_role_change_applies_to_live_token(client, make_user) -> None:  # type: ignore[no-untyped-def]
    admin = await make_user("admin")
    manager = await make_user("manager")
    assert (await client.get("/users", headers=manager.headers)).status_code == 200
    demote = await client.put(f"/users/{manager.id}", headers=admin.headers,
                              json={"role": "employee"})
    assert demote.status_code == 200
    assert (await client.get("/users", headers=manager.headers)).status_code == 403
    promote = await client.put(f"/users/{manager.id}", headers=admin.headers, json={"role": "admin"})
    assert promote.status_code == 200
    assert (await client.get(f"/users/{admin.id}", headers=manager.headers)).status_code == 200


async def test_unapproval_and_deletion_apply_to_live_token(client, make_user) -> None:  # type: ignore[no-untyped-def]
    admin = await make_user("admin")
    one, two = await make_user("employee"), await make_user("employee")
    await client.get("/me", headers=one.headers)  # warm the cache with "approved"
    response = await client.put(f"/users/{one.id}", headers=admin.headers,
                                json={"is_approved": False})
    assert response.status_code == 200
    assert (await client.get("/me", headers=one.headers)).status_code == 401
    await client.get("/me", headers=two.headers)
    assert (await client.delete(f"/users/{two.id}", headers=admin.headers)).status_code == 204
    assert (await client.get("/me", headers=two.headers)).status_code == 401
    refresh = await client.post("/token/refresh", json={"refresh_token": two.refresh})
    assert refresh.status_code == 401


@pytest.mark.parametrize("method,path,body", [
    ("put", "/users/{id}", {"role": "manager"}),
    ("put", "/users/{id}", {"is_approved": False}),
    ("delete", "/users/{id}", None),
])
async def test_admin_cannot_demote_unapprove_or_delete_self(client, make_user, method, path, body) -> None:  # type: ignore[no-untyped-def]
    admin = await make_user("admin")
    response = await getattr(client, method)(path.format(id=admin.id), headers=admin.headers,
                                             json=body)
    assert response.status_code == 409
    assert (await response.get_json())["code"] == "cannot_modify_self"
    me = await (await client.get("/me", headers=admin.headers)).get_json()
    assert me["role"] == "admin" and me["is_approved"] is True


async def test_user_update_refuses_unknown_fields(client, make_user, db) -> None:  # type: ignore[no-untyped-def]
    admin = await make_user("admin")
    user = await make_user("employee")
    response = await client.put(f"/users/{user.id}", headers=admin.headers,
                                json={"role": "manager", "password_hash": "x"})
    assert response.status_code == 422
    async with db.transaction(write=False) as session:
        assert (await session.get(User, user.id)).role.value == "employee"


# --- lists ----------------------------------------------------------------------------------

async def test_users_list_is_keyset_paginated(client, make_user) -> None:  # type: ignore[no-untyped-def]
    admin = await make_user("admin")
    for _ in range(6):
        await make_user("employee")
    seen: list[int] = []
    url: str | None = "/users?limit=3&role=employee"
    pages = 0
    while url:
        response = await client.get(url, headers=admin.headers)
        assert response.headers["X-Total-Count"] == "6"
        seen += [u["id"] for u in await response.get_json()]
        link = response.headers.get("Link")
        url = link.split(";")[0].strip("<>") if link else None
        assert url is None or url.startswith("/users?")
        pages += 1
    assert pages == 2 and seen == sorted(seen) and len(set(seen)) == 6
    bad = await client.get("/users?cursor=garbage!", headers=admin.headers)
    assert bad.status_code == 422
    too_big = await client.get("/users?limit=1000", headers=admin.headers)
    assert too_big.status_code == 422


async def test_openapi_marks_protected_operations(client) -> None:  # type: ignore[no-untyped-def]
    spec = await (await client.get("/openapi.json")).get_json()
    for path, op in (("/me", "get"), ("/users", "get"), ("/users/{user_id}", "delete"),
                     ("/logout", "post")):
        # Either a bearer token or the docs' OAuth2 password login (POST /token).
        assert spec["paths"][path][op]["security"] == [{"bearerAuth": []},
                                                       {"oauth2Password": []}], path
    flow = spec["components"]["securitySchemes"]["oauth2Password"]["flows"]["password"]
    assert flow["tokenUrl"] == "/token"
    for path in ("/login", "/register", "/token/refresh", "/token", "/password/forgot",
                 "/password/reset"):
        assert "security" not in spec["paths"][path]["post"]
    assert not [p for p in spec["paths"] if p.startswith("/api/v1")]
