"""Personal access tokens: create, use, scopes, list, revoke, and revocation on every worker."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from taskapi.core import tokens
from taskapi.models import PersonalToken, utcnow
from tests.support.processes import cli_env, serve


async def _create(client: Any, owner: Any, scopes: list[str], **extra: Any) -> dict[str, Any]:
    response = await client.post("/me/tokens", headers=owner.headers,
                                 json={"name": "ci script", "scopes": scopes, **extra})
    assert response.status_code == 201, await response.get_data()
    assert response.headers["Cache-Control"] == "no-store"
    return dict(await response.get_json())


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_token_works_like_a_login_with_the_users_current_role(client, make_user, db) -> None:  # type: ignore[no-untyped-def]
    admin = await make_user("admin")
    manager = await make_user("manager")
    created = await _create(client, manager, ["read", "write"], expires_in_days=7)
    assert created["token"].startswith("tka_") and created["scopes"] == ["read", "write"]
    assert created["expires_at"] is not None and created["name"] == "ci script"
    async with db.transaction(write=False) as session:
        row = await session.get(PersonalToken, created["id"])
        assert row is not None and created["token"] not in (row.token_hash, row.name)
        assert row.token_hash == tokens.token_digest(created["token"])
    pat = _bearer(created["token"])
    assert (await client.get("/users", headers=pat)).status_code == 200
    made = await client.post("/tasks", headers=pat, json={"title": "from a script"})
    assert made.status_code == 201

    listed = await (await client.get("/me/tokens", headers=manager.headers)).get_json()
    assert [t["id"] for t in listed] == [created["id"]]
    assert "token" not in listed[0] and listed[0]["last_used_at"] is not None

    demote = await client.put(f"/users/{manager.id}", headers=admin.headers,
                              json={"role": "employee"})
    assert demote.status_code == 200
    assert (await client.get("/users", headers=pat)).status_code == 403
    assert (await client.get("/me", headers=pat)).status_code == 200
    unapprove = await client.put(f"/users/{manager.id}", headers=admin.headers,
                                 json={"is_approved": False})
    assert unapprove.status_code == 200
    assert (await client.get("/me", headers=pat)).status_code == 401


async def test_read_scope_and_login_only_routes(client, make_user) -> None:  # type: ignore[no-untyped-def]
    user = await make_user("manager")
    read = _bearer((await _create(client, user, ["read"]))["token"])
    write = _bearer((await _create(client, user, ["read", "write"], expires_in_days=None))["token"])
    assert (await client.get("/tasks", headers=read)).status_code == 200
    assert (await client.head("/tasks", headers=read)).status_code == 200
    refused = await client.post("/tasks", headers=read, json={"title": "nope"})
    assert refused.status_code == 403
    assert (await refused.get_json())["code"] == "insufficient_scope"
    for method, path, body in (("POST", "/me/tokens", {"name": "x", "scopes": ["read"]}),
                               ("PUT", "/me/password", {"current_password": "whatever",
                                                        "new_password": "long enough pw"}),
                               ("POST", "/logout", None)):
        response = await client.open(path, method=method, headers=write, json=body)
        assert response.status_code == 403, path
        assert (await response.get_json())["code"] == "insufficient_scope"
    bad = await client.post("/me/tokens", headers=user.headers,
                            json={"name": "x", "scopes": ["write"]})
    assert bad.status_code == 422
    long = await client.post("/me/tokens", headers=user.headers,
                             json={"name": "x", "scopes": ["read"], "expires_in_days": 366})
    assert long.status_code == 422


async def test_forged_expired_and_revoked_tokens_are_refused(client, make_user, db, settings) -> None:  # type: ignore[no-untyped-def]
    user = await make_user("employee")
    other = await make_user("employee")
    created = await _create(client, user, ["read"])
    token = created["token"]
    forged = token.replace(".r.", ".w.")
    assert (await client.get("/me", headers=_bearer(forged))).status_code == 401
    someone_else = token.replace(f".{user.id}.", f".{other.id}.", 1)
    assert (await client.get("/me", headers=_bearer(someone_else))).status_code == 401

    async with db.transaction() as session:
        row = PersonalToken(user_id=user.id, name="old", scope="read",
                            token_hash=tokens.new_id() * 2,
                            expires_at=utcnow() - timedelta(seconds=5))
        session.add(row)
        await session.flush()
        expired_id = row.id
    expired = tokens.encode_pat(settings.signing_key(), token_id=expired_id, user_id=user.id,
                                scope="read", expires=int(time.time()) - 5)
    answer = await client.get("/me", headers=_bearer(expired))
    assert answer.status_code == 401 and (await answer.get_json())["code"] == "token_expired"

    assert (await client.get("/me", headers=_bearer(token))).status_code == 200
    assert (await client.delete(f"/me/tokens/{created['id']}",
                                headers=other.headers)).status_code == 404
    assert (await client.delete(f"/me/tokens/{created['id']}",
                                headers=user.headers)).status_code == 204
    assert (await client.get("/me", headers=_bearer(token))).status_code == 401
    # The revoked one is gone from the list; the expired one stays, with its expiry.
    listed = await (await client.get("/me/tokens", headers=user.headers)).get_json()
    assert [t["id"] for t in listed] == [expired_id]


async def test_admins_list_and_revoke_a_users_tokens_and_deleting_the_user_kills_them(client, make_user) -> None:  # type: ignore[no-untyped-def]
    admin = await make_user("admin")
    user = await make_user("employee")
    first = await _create(client, user, ["read"])
    second = await _create(client, user, ["read", "write"])
    listed = await (await client.get(f"/users/{user.id}/tokens", headers=admin.headers)).get_json()
    assert [t["id"] for t in listed] == [first["id"], second["id"]]
    assert (await client.get(f"/users/{user.id}/tokens", headers=user.headers)).status_code == 403
    assert (await client.get("/users/999999/tokens", headers=admin.headers)).status_code == 404
    revoke = await client.delete(f"/users/{user.id}/tokens/{first['id']}", headers=admin.headers)
    assert revoke.status_code == 204
    assert (await client.get("/me", headers=_bearer(first["token"]))).status_code == 401
    assert (await client.get("/me", headers=_bearer(second["token"]))).status_code == 200
    assert (await client.delete(f"/users/{user.id}", headers=admin.headers)).status_code == 204
    assert (await client.get("/me", headers=_bearer(second["token"]))).status_code == 401


async def test_revocation_expiry_and_deletion_apply_at_once_on_every_worker(tmp_path: Path, database_url: str, redis_url: str, redis_sync, make_user, db, settings) -> None:  # type: ignore[no-untyped-def]
    admin = await make_user("admin")
    user = await make_user("employee")
    env = cli_env(tmp_path / "data", TASKAPI_DATABASE_URL=database_url,
                  TASKAPI_REDIS_URL=redis_url)

    def statuses(token: str) -> set[int]:
        return {httpx.get(base + path, headers={**_bearer(token), "Connection": "close"})
                .status_code for path in ("/me", "/tasks/mine") for _ in range(8)}

    with serve(env, "--workers", "2", "--no-worker") as base:
        # Expires in a few seconds: the HMAC'd expiry is checked on every request.
        async with db.transaction() as session:
            row = PersonalToken(user_id=user.id, name="short", scope="read",
                                token_hash=tokens.new_id() * 2,
                                expires_at=utcnow() + timedelta(seconds=6))
            session.add(row)
            await session.flush()
            short_id = row.id
        short = tokens.encode_pat(settings.signing_key(), token_id=short_id, user_id=user.id,
                                  scope="read", expires=int(time.time()) + 6)
        short_expiry = int(time.time()) + 6
        made = [httpx.post(base + "/me/tokens", headers=user.headers,
                           json={"name": f"t{i}", "scopes": ["read"]}).json() for i in range(2)]
        assert statuses(made[0]["token"]) == {200} and statuses(short) == {200}
        revoke = httpx.delete(base + f"/me/tokens/{made[0]['id']}", headers=user.headers)
        assert revoke.status_code == 204
        assert statuses(made[0]["token"]) == {401}
        assert statuses(made[1]["token"]) == {200}
        time.sleep(max(0.0, short_expiry - time.time()) + 0.2)
        assert statuses(short) == {401}
        assert httpx.delete(base + f"/users/{user.id}", headers=admin.headers).status_code == 204
        assert statuses(made[1]["token"]) == {401}
