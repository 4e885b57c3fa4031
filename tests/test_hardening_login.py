"""Login hardening: password work waits in a bounded queue (503 busy beyond it). Real Redis,
real argon2."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from taskapi.app import create_app
from tests.support.values import PASSWORD

PROXY = "127.0.0.1"  # the test client's peer; trusted, so X-Forwarded-For names the client


async def _login(client: Any, email: str, password: str = "wrong password",
                 address: str = "203.0.113.1") -> tuple[Any, float]:
    started = time.perf_counter()
    response = await client.post("/login", json={"email": email, "password": password},
                                 headers={"X-Forwarded-For": address},
                                 scope_base={"client": (PROXY, 40000)})
    return response, time.perf_counter() - started


def _app(make_settings: Any, **overrides: Any) -> Any:
    values = {"trusted_proxies": "127.0.0.0/8"}
    return create_app(make_settings(**{**values, **overrides}))


async def _assert_busy(response: Any) -> None:
    assert response.status_code == 503
    assert response.content_type == "application/problem+json"
    assert (await response.get_json())["code"] == "busy"
    assert int(response.headers["Retry-After"]) >= 1


# --- finding 3: login CPU exhaustion -------------------------------------------------------

async def test_a_full_password_queue_answers_503_busy_at_once(make_settings, redis_sync) -> None:  # type: ignore[no-untyped-def]
    app = _app(make_settings, password_concurrency=2, password_queue=1, password_queue_wait=30)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        await _login(client, "warmup@example.test", address="198.51.100.99")  # reference hash
        results = await asyncio.gather(*(
            _login(client, f"nobody{i}@example.test", address=f"203.0.113.{i + 1}")
            for i in range(10)))
    statuses = [r.status_code for r, _ in results]
    # Two run, one waits: the other seven are refused without waiting for a check.
    assert 3 <= statuses.count(401) <= 5, statuses
    busy = [(r, took) for r, took in results if r.status_code == 503]
    for response, _ in busy:
        await _assert_busy(response)
    checked = [took for r, took in results if r.status_code == 401]
    assert max(took for _, took in busy) < min(checked)


async def test_a_waiter_gives_up_after_the_wait_limit(make_settings, redis_sync) -> None:  # type: ignore[no-untyped-def]
    app = _app(make_settings, password_concurrency=1, password_queue=50,
               password_queue_wait=0.05)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        await _login(client, "warmup@example.test", address="198.51.100.99")
        results = await asyncio.gather(*(
            _login(client, f"nobody{i}@example.test", address=f"203.0.113.{i + 1}")
            for i in range(6)))
    statuses = [r.status_code for r, _ in results]
    assert statuses.count(503) >= 4, statuses  # one check at a time, each longer than 50 ms
    for response, _ in results:
        if response.status_code == 503:
            await _assert_busy(response)


async def test_registration_and_password_change_fail_fast_when_busy(make_settings, redis_sync, make_user, db) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import func, select

    from taskapi.models import User

    user = await make_user("employee")
    app = _app(make_settings, password_concurrency=1, password_queue=4, password_queue_wait=30)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        await _login(client, "warmup@example.test", address="198.51.100.99")
        holders = [asyncio.create_task(_login(client, f"nobody{i}@example.test",
                                              address=f"203.0.113.{i + 1}"))
                   for i in range(5)]  # one running, four waiting: ~5 checks' time
        await asyncio.sleep(0.2)
        register = await client.post("/register", json={
            "username": "newcomer", "email": "newcomer@example.test",
            "password": "long enough password"})
        change = await client.put("/me/password", headers=user.headers, json={
            "current_password": PASSWORD, "new_password": "another long password"})
        await asyncio.gather(*holders)
        await _assert_busy(register)
        await _assert_busy(change)
        # Nothing changed: no account was made, and the old password still works.
        async with db.session(write=False) as session:
            assert await session.scalar(select(func.count()).select_from(User)
                                        .where(User.username == "newcomer")) == 0
        response, _ = await _login(client, user.email, PASSWORD, address="198.51.100.7")
        assert response.status_code == 200
