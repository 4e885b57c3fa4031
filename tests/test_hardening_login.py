"""Login hardening: password work waits in a bounded queue (503 busy beyond it), a login
limit per client address, limits without window edges, and a per-account backoff that slows
guessing without locking the owner out. Real Redis, real argon2."""

from __future__ import annotations

import asyncio
import math
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
    values = {"trusted_proxies": "127.0.0.0/8", "rate_limit_login_ip": "1000/minute"}
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
        from taskapi.core import passwords

        async def queue_full() -> None:
            """One check running and four queued (each login reads the database first, which
            on PostgreSQL took longer than a fixed sleep; a finished check frees a place)."""
            for _ in range(500):
                slots = passwords._slots
                if slots._running == 1 and len(slots._waiters) == 4:
                    return
                await asyncio.sleep(0.01)
            raise AssertionError("the password queue never filled")

        await queue_full()
        register, change = await asyncio.gather(  # both while it is full
            client.post("/register", json={
                "username": "newcomer", "email": "newcomer@example.test",
                "password": "long enough password"}),
            client.put("/me/password", headers=user.headers, json={
                "current_password": PASSWORD, "new_password": "another long password"}))
        await asyncio.gather(*holders)
        await _assert_busy(register)
        await _assert_busy(change)
        # Nothing changed: no account was made, and the old password still works.
        async with db.session(write=False) as session:
            assert await session.scalar(select(func.count()).select_from(User)
                                        .where(User.username == "newcomer")) == 0
        response, _ = await _login(client, user.email, PASSWORD, address="198.51.100.7")
        assert response.status_code == 200


async def test_login_limit_per_client_address(make_settings, redis_sync) -> None:  # type: ignore[no-untyped-def]
    app = _app(make_settings, rate_limit_login_ip="3/minute")
    async with app.test_app() as test_app:
        client = test_app.test_client()
        for i in range(3):  # a new email each time: the address + email limit never fills
            response, _ = await _login(client, f"nobody{i}@example.test", address="203.0.113.5")
            assert response.status_code == 401
        refused, _ = await _login(client, "nobody9@example.test", address="203.0.113.5")
        assert refused.status_code == 429
        assert refused.content_type == "application/problem+json"
        assert int(refused.headers["Retry-After"]) >= 1
        other, _ = await _login(client, "nobody9@example.test", address="203.0.113.6")
        assert other.status_code == 401


# --- finding 9: login limit bursts ---------------------------------------------------------

async def test_the_login_limit_holds_across_a_window_edge(make_settings, redis_sync, make_user) -> None:  # type: ignore[no-untyped-def]
    user = await make_user("employee")
    app = _app(make_settings, rate_limit_login="10/second", password_queue=100,
               password_queue_wait=60, login_backoff_after=1, login_backoff_max=1.0)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        # Three failures first: the attempts below then wait 1 s before their checks, so no
        # check takes the CPU while the two bursts arrive.
        for _ in range(3):
            assert (await _login(client, user.email))[0].status_code == 401
        await asyncio.sleep((0.8 - time.time() % 1) % 1 or 1)  # 0.2 s before a second begins
        first_sent = time.monotonic()
        first = [asyncio.create_task(_login(client, user.email)) for _ in range(10)]
        await asyncio.sleep(1.02 - time.time() % 1)  # just after it began
        second_sent = time.monotonic()
        second = [asyncio.create_task(_login(client, user.email)) for _ in range(10)]
        results = await asyncio.gather(*first, *second)
    statuses = [r.status_code for r, _ in results]
    assert set(statuses) <= {401, 429}
    # 10 at once, then one per 100 ms: the second burst gets what the elapsed time earned.
    earned = math.ceil((second_sent - first_sent) * 10) + 1
    assert statuses.count(401) <= 10 + earned, statuses
    assert statuses[:10] == [401] * 10


async def test_failures_slow_the_account_but_its_owner_still_logs_in(make_settings, redis_sync, make_user) -> None:  # type: ignore[no-untyped-def]
    user = await make_user("employee")
    app = _app(make_settings, rate_limit_login="6/hour", login_backoff_after=2,
               login_backoff_max=2.0, password_queue=20, password_queue_wait=60)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        took = []
        for _ in range(6):  # one guesser, up to its address + email limit
            response, seconds = await _login(client, user.email, address="203.0.113.66")
            assert response.status_code == 401
            took.append(seconds)
        # Failures 3..6 waited 0.25, 0.5, 1 and 2 s (capped) before their check.
        assert took[5] >= 2.0, took
        # Guessing goes on from two more addresses while the owner logs in from their own.
        guesses = [asyncio.create_task(_login(client, user.email, address=f"203.0.113.{n}"))
                   for n in (67, 68) for _ in range(3)]
        owner, seconds = await _login(client, user.email, PASSWORD, address="198.51.100.20")
        assert owner.status_code == 200  # slowed down, never locked out
        assert 2.0 <= seconds < 2.0 + 5.0  # the capped delay, then one check
        assert {r.status_code for r, _ in await asyncio.gather(*guesses)} == {401}
        # The limits stay hard per address: the first guesser is refused at once.
        refused, seconds = await _login(client, user.email, address="203.0.113.66")
        assert refused.status_code == 429 and seconds < 1.0


async def test_unknown_emails_are_slowed_like_known_ones(make_settings, redis_sync) -> None:  # type: ignore[no-untyped-def]
    app = _app(make_settings, login_backoff_after=1, login_backoff_max=2.0)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        took = [(await _login(client, "nobody@example.test"))[1] for _ in range(5)]
    assert took[4] >= 2.0, took  # the delay does not tell which accounts exist
