"""Rate limits in real Redis; X-Forwarded-For believed only from trusted proxies."""

from __future__ import annotations

from taskapi.app import create_app
from tests.support.ports import free_port
from tests.support.values import PASSWORD


async def _login(client, email: str, password: str = "wrong password", xff: str | None = None):  # type: ignore[no-untyped-def]
    headers = {"X-Forwarded-For": xff} if xff else {}
    return await client.post("/login", json={"email": email, "password": password},
                             headers=headers, scope_base={"client": ("127.0.0.1", 40000)})


async def test_login_limit_429_with_retry_after(make_settings, redis_sync, make_user) -> None:  # type: ignore[no-untyped-def]
    user = await make_user("employee")
    app = create_app(make_settings(rate_limit_login="3/minute"))
    async with app.test_app() as test_app:
        client = test_app.test_client()
        statuses = [(await _login(client, user.email)).status_code for _ in range(3)]
        assert statuses == [401, 401, 401]
        blocked = await _login(client, user.email, PASSWORD)  # even the right password
        assert blocked.status_code == 429
        assert blocked.content_type == "application/problem+json"
        assert 1 <= int(blocked.headers["Retry-After"]) <= 61
        # The limit is per (client IP, email): another account from this IP is unaffected.
        assert (await _login(client, "someone@example.test")).status_code == 401


async def test_spoofed_forwarded_for_from_untrusted_peer_is_ignored(make_settings, redis_sync, make_user) -> None:  # type: ignore[no-untyped-def]
    user = await make_user("employee")
    app = create_app(make_settings(rate_limit_login="2/hour"))  # no trusted proxies
    async with app.test_app() as test_app:
        client = test_app.test_client()
        for i in range(2):
            assert (await _login(client, user.email, xff=f"10.0.0.{i}")).status_code == 401
        # A new made-up address per attempt does not open a fresh bucket.
        assert (await _login(client, user.email, xff="10.9.9.9")).status_code == 429


async def test_forwarded_for_from_trusted_proxy_keys_the_limit(make_settings, redis_sync, make_user) -> None:  # type: ignore[no-untyped-def]
    user = await make_user("employee")
    app = create_app(make_settings(rate_limit_login="2/hour", trusted_proxies="127.0.0.0/8"))
    async with app.test_app() as test_app:
        client = test_app.test_client()
        for _ in range(2):
            assert (await _login(client, user.email, xff="203.0.113.7")).status_code == 401
        assert (await _login(client, user.email, xff="203.0.113.7")).status_code == 429
        # Another client behind the same proxy has its own bucket; a client-supplied hop
        # left of the real one does not change which client the proxy saw.
        assert (await _login(client, user.email, xff="198.51.100.1")).status_code == 401
        spoof = await _login(client, user.email, xff="1.2.3.4, 203.0.113.7")
        assert spoof.status_code == 429


async def test_default_limit_per_user(make_settings, redis_sync, make_user) -> None:  # type: ignore[no-untyped-def]
    user = await make_user("employee")
    other = await make_user("employee")
    app = create_app(make_settings(rate_limit_default="5/minute"))
    async with app.test_app() as test_app:
        client = test_app.test_client()
        codes = [(await client.get("/me", headers=user.headers)).status_code for _ in range(6)]
        assert codes == [200] * 5 + [429]
        assert (await client.get("/me", headers=other.headers)).status_code == 200
        # Probes are never limited.
        assert (await client.get("/healthz")).status_code == 200



async def test_redis_down_auth_from_database_and_revocation_holds(make_settings, redis_sync, make_user, caplog) -> None:  # type: ignore[no-untyped-def]
    user = await make_user("employee")
    other = await make_user("employee")
    app = create_app(make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0",
                                   rate_limit_login="1/minute"))
    async with app.test_app() as test_app:
        client = test_app.test_client()
        assert (await client.get("/me", headers=user.headers)).status_code == 200
        # Rate limiting fails open (twice over a limit of 1) and says so once.
        for _ in range(2):
            assert (await _login(client, user.email, PASSWORD)).status_code == 200
        assert (await client.post("/logout", headers=user.headers)).status_code == 204
        assert (await client.get("/me", headers=user.headers)).status_code == 401
        assert (await client.get("/me", headers=other.headers)).status_code == 200
    warnings = [r for r in caplog.records if "rate limiting fails open" in r.getMessage()]
    assert len(warnings) == 1
