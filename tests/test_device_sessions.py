"""GET /me/sessions and DELETE /me/sessions/{id}; POST /token (OAuth2 password grant)."""

from __future__ import annotations

from typing import Any

from tests.support.values import PASSWORD


async def _login(client: Any, email: str, agent: str) -> dict[str, Any]:
    response = await client.post("/login", json={"email": email, "password": PASSWORD},
                                 headers={"User-Agent": agent})
    assert response.status_code == 200
    return dict(await response.get_json())


def _auth(pair: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {pair['access_token']}"}


async def test_list_and_end_sessions(client, make_user) -> None:  # type: ignore[no-untyped-def]
    user = await make_user("employee")
    other = await make_user("employee")
    laptop = await _login(client, user.email, "Laptop/1.0")
    phone = await _login(client, user.email, "Phone/2.0")
    answer = await client.get("/me/sessions", headers=_auth(phone))
    listed = await answer.get_json()
    assert answer.headers["X-Total-Count"] == str(len(listed))
    agents = {s["user_agent"]: s for s in listed}
    assert {"Laptop/1.0", "Phone/2.0"} <= set(agents)
    assert len(listed) == 3  # and the one make_user made (no device recorded)
    assert agents["Phone/2.0"]["current"] is True
    assert [s["current"] for s in listed].count(True) == 1
    assert agents["Laptop/1.0"]["ip"] and set(agents["Laptop/1.0"]) == {
        "id", "created_at", "last_used_at", "user_agent", "ip", "current"}

    mine = agents["Laptop/1.0"]["id"]
    assert (await client.delete(f"/me/sessions/{mine}", headers=other.headers)).status_code == 404
    ended = await client.delete(f"/me/sessions/{mine}", headers=_auth(phone))
    assert ended.status_code == 204
    assert (await client.get("/me", headers=_auth(laptop))).status_code == 401
    refresh = await client.post("/token/refresh", json={"refresh_token": laptop["refresh_token"]})
    assert refresh.status_code == 401
    assert (await client.get("/me", headers=_auth(phone))).status_code == 200
    again = await client.delete(f"/me/sessions/{mine}", headers=_auth(phone))
    assert again.status_code == 404
    assert (await client.delete("/me/sessions/not-an-id", headers=_auth(phone))).status_code == 404
    left = await (await client.get("/me/sessions", headers=_auth(phone))).get_json()
    assert mine not in {s["id"] for s in left}


async def test_oauth2_password_grant(client, make_user) -> None:  # type: ignore[no-untyped-def]
    user = await make_user("employee")
    pending = await make_user("employee", approved=False)
    ok = await client.post("/token", form={"grant_type": "password", "username": user.email,
                                           "password": PASSWORD, "scope": ""})
    assert ok.status_code == 200
    assert ok.headers["Cache-Control"] == "no-store"
    body = await ok.get_json()
    assert body["token_type"] == "bearer" and body["expires_in"] > 0 and body["refresh_token"]
    assert (await client.get("/tasks/mine", headers=_auth(body))).status_code == 200

    async def error(form: dict[str, str], status: int = 400) -> str:
        response = await client.post("/token", form=form)
        assert response.status_code == status, await response.get_data()
        assert response.content_type == "application/json"
        answer = await response.get_json()
        assert set(answer) == {"error", "error_description"}
        return str(answer["error"])

    assert await error({"grant_type": "password", "username": user.email,
                        "password": "wrong password"}) == "invalid_grant"
    assert await error({"grant_type": "password", "username": pending.email,
                        "password": PASSWORD}) == "invalid_grant"
    assert await error({"grant_type": "client_credentials"}) == "unsupported_grant_type"
    assert await error({"username": user.email, "password": PASSWORD}) == "invalid_request"
    assert await error({"grant_type": "password", "username": user.email}) == "invalid_request"


async def test_oauth2_password_grant_shares_the_login_rate_limit(app_with, make_user) -> None:  # type: ignore[no-untyped-def]
    user = await make_user("employee")
    async with app_with(rate_limit_login="2/minute") as app:
        client = app.test_client()
        form = {"grant_type": "password", "username": user.email, "password": "wrong one"}
        codes = [(await client.post("/token", form=form)).status_code for _ in range(2)]
        assert codes == [400, 400]
        limited = await client.post("/token", form=form)
        assert limited.status_code == 429 and limited.headers["Retry-After"]
        assert limited.content_type == "application/problem+json"  # as on every route
        login = await client.post("/login", json={"email": user.email, "password": PASSWORD})
        assert login.status_code == 429  # one budget for both ways in
