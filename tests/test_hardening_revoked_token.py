"""A token that does not check out is counted against its client address, never against the
user it names: a revoked token cannot use up its owner's per-user budget. Real logouts, real
Redis, through the cached-reads layer and Quart alike."""

from __future__ import annotations

from typing import Any

from taskapi.app import create_app
from tests.support.values import PASSWORD


async def _revoked_token(client: Any, email: str) -> dict[str, str]:
    """A second session of the user, logged out: its access token is revoked."""
    response = await client.post("/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200
    headers = {"Authorization": f"Bearer {(await response.get_json())['access_token']}"}
    assert (await client.post("/logout", headers=headers)).status_code == 204
    return headers


async def test_a_revoked_token_does_not_use_up_its_owners_budget(make_settings, redis_sync, make_user) -> None:  # type: ignore[no-untyped-def]
    user = await make_user("employee")
    app = create_app(make_settings(rate_limit_default="5/minute"))
    async with app.test_app() as test_app:
        client = test_app.test_client()
        revoked = await _revoked_token(client, user.email)  # /logout: 1 of the user's 5
        # Quart's gate (/me) and the cached-reads layer (/tasks/mine) alike.
        codes = [(await client.get(path, headers=revoked)).status_code
                 for path in ("/me", "/tasks/mine", "/me", "/tasks/mine")]
        assert codes == [401] * 4
        assert (await client.get("/me", headers=user.headers)).status_code == 200
        # The revoked token is limited by its address (the login, then 4 of 5)...
        assert (await client.get("/me", headers=revoked)).status_code == 429
        # ...and the live session still has its own budget: 2 used, 3 left.
        codes = [(await client.get("/tasks/mine", headers=user.headers)).status_code
                 for _ in range(4)]
        assert codes == [200, 200, 200, 429]


async def test_state_read_from_the_database_is_charged_the_same_way(make_settings, redis_sync, make_user) -> None:  # type: ignore[no-untyped-def]
    """When the auth state is not cached (expired, or a new epoch), the request is charged
    once the database has said whether the token is good."""
    user = await make_user("employee")
    app = create_app(make_settings(rate_limit_default="5/minute"))

    def forget_auth_state() -> None:
        for key in redis_sync.scan_iter("auth:*"):
            redis_sync.delete(key)

    async with app.test_app() as test_app:
        client = test_app.test_client()
        revoked = await _revoked_token(client, user.email)
        for _ in range(4):
            forget_auth_state()
            assert (await client.get("/me", headers=revoked)).status_code == 401
        codes = []
        for _ in range(5):
            forget_auth_state()
            codes.append((await client.get("/me", headers=user.headers)).status_code)
        # The logout took 1 of the user's 5; the revoked token's requests took none.
        assert codes == [200, 200, 200, 200, 429]
