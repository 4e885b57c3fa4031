"""Password reset end to end: forgot → the real worker → a real SMTP server → reset."""

from __future__ import annotations

import re
import statistics
import time
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import update

from taskapi.app import create_app
from taskapi.models import PasswordReset, utcnow
from taskapi.services import confirmations
from tests.support.processes import cli_env, serve
from tests.support.values import PASSWORD
from tests.support.worker import run_worker_burst

NEW_PASSWORD = "a brand new password"
PUBLIC = "https://tasks.example.test"


def _text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def _token(message: EmailMessage) -> str:
    match = re.search(re.escape(PUBLIC) + r"/reset-password\?token=([A-Za-z0-9_-]+)",
                      _text(message))
    assert match, _text(message)
    return match.group(1)


def _mail_settings(make_settings: Any, port: int, **extra: Any) -> Any:
    return make_settings(smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False,
                         public_url=PUBLIC + "/", **extra)


async def test_reset_flow_end_to_end(make_settings, redis_sync, redis_url, make_user, smtp_sink) -> None:  # type: ignore[no-untyped-def]
    sink, port = smtp_sink
    settings = _mail_settings(make_settings, port)
    user = await make_user("employee")
    async with create_app(settings).test_app() as test_app:
        client = test_app.test_client()
        assert (await client.get("/me", headers=user.headers)).status_code == 200
        forgot = await client.post("/password/forgot", json={"email": user.email.upper()})
        assert forgot.status_code == 202
        await run_worker_burst(settings, redis_url)
        [message] = sink.messages
        assert message["To"] == user.email
        assert message["Subject"] == "Reset your taskapi password"
        token = _token(message)
        assert token in _text(message).split()  # the token itself, for API-only users
        html = message.get_body(preferencelist=("html",))
        assert html is not None and f"{PUBLIC}/reset-password?token={token}" in html.get_content()

        short = await client.post("/password/reset", json={"token": token, "new_password": "x"})
        assert short.status_code == 422  # nothing spent: the token still works below
        done = await client.post("/password/reset", json={"token": token,
                                                          "new_password": NEW_PASSWORD})
        assert done.status_code == 204
        # Every session ended; the new password works, the old one does not.
        assert (await client.get("/me", headers=user.headers)).status_code == 401
        refresh = await client.post("/token/refresh", json={"refresh_token": user.refresh})
        assert refresh.status_code == 401
        old = await client.post("/login", json={"email": user.email, "password": PASSWORD})
        assert old.status_code == 401
        new = await client.post("/login", json={"email": user.email, "password": NEW_PASSWORD})
        assert new.status_code == 200

        again = await client.post("/password/reset", json={"token": token,
                                                           "new_password": "yet another one"})
        assert again.status_code == 400
        assert again.content_type == "application/problem+json"
        assert (await again.get_json())["code"] == "invalid_token"


async def _invalid(client: Any, token: str) -> dict[str, Any]:
    response = await client.post("/password/reset", json={"token": token,
                                                          "new_password": NEW_PASSWORD})
    assert response.status_code == 400
    body = await response.get_json()
    body.pop("request_id")
    return dict(body)


async def test_used_expired_voided_and_unknown_tokens_fail_alike(make_settings, redis_sync, redis_url, make_user, smtp_sink, db) -> None:  # type: ignore[no-untyped-def]
    sink, port = smtp_sink
    settings = _mail_settings(make_settings, port)
    user = await make_user("employee")
    async with create_app(settings).test_app() as test_app:
        client = test_app.test_client()
        for _ in range(2):
            assert (await client.post("/password/forgot",
                                      json={"email": user.email})).status_code == 202
            await run_worker_burst(settings, redis_url)
        older, newer = (_token(m) for m in sink.messages)
        unknown = await _invalid(client, "no-such-token")
        assert await _invalid(client, older) == unknown  # voided by the newer request

        # A password change voids every token too.
        changed = await client.put("/me/password", headers=user.headers, json={
            "current_password": PASSWORD, "new_password": NEW_PASSWORD})
        assert changed.status_code == 204
        assert await _invalid(client, newer) == unknown

        await client.post("/password/forgot", json={"email": user.email})
        await run_worker_burst(settings, redis_url)
        expired = _token(sink.messages[-1])
        async with db.transaction() as session:
            await session.execute(
                update(PasswordReset)
                .where(PasswordReset.token_hash == confirmations.digest(expired))
                .values(expires_at=utcnow() - timedelta(seconds=1)))
        assert await _invalid(client, expired) == unknown


async def test_forgot_answers_alike_for_unknown_pending_and_approved(make_settings, redis_sync, redis_url, make_user, smtp_sink) -> None:  # type: ignore[no-untyped-def]
    sink, port = smtp_sink
    settings = _mail_settings(make_settings, port, rate_limit_login="1000/minute",
                              rate_limit_login_ip="1000/minute")
    approved = await make_user("employee")
    pending = await make_user("employee", approved=False)
    addresses = {"approved": approved.email, "pending": pending.email,
                 "unknown": "nobody@example.test"}
    async with create_app(settings).test_app() as test_app:
        client = test_app.test_client()
        answers: dict[str, set[Any]] = {}
        times: dict[str, list[float]] = {name: [] for name in addresses}
        for _ in range(7):
            for name, email in addresses.items():
                started = time.perf_counter()
                response = await client.post("/password/forgot", json={"email": email})
                times[name].append(time.perf_counter() - started)
                headers = {k: v for k, v in response.headers.items()
                           if k.lower() not in ("x-request-id", "date")}
                answers.setdefault(name, set()).add(
                    (response.status_code, await response.get_data(), tuple(sorted(headers.items()))))
        assert len({frozenset(a) for a in answers.values()}) == 1
        [(status, _body, _headers)] = answers["unknown"]
        assert status == 202
        medians = {name: statistics.median(t) for name, t in times.items()}
        # The same work for each (one job queued): no address stands out.
        assert max(medians.values()) < 2 * min(medians.values()) + 0.02, medians
        await run_worker_burst(settings, redis_url)
    assert {m["To"] for m in sink.messages} == {approved.email}


async def test_forgot_is_rate_limited_per_address_and_email(make_settings, redis_sync) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(rate_limit_login="3/minute")
    async with create_app(settings).test_app() as test_app:
        client = test_app.test_client()
        codes = [(await client.post("/password/forgot", json={"email": "a@example.test"}))
                 .status_code for _ in range(4)]
        assert codes == [202, 202, 202, 429]
        other = await client.post("/password/forgot", json={"email": "b@example.test"})
        assert other.status_code == 202


async def test_reset_ends_live_sessions_on_every_worker(tmp_path: Path, database_url: str, redis_url: str, redis_sync, make_user, db) -> None:  # type: ignore[no-untyped-def]
    user = await make_user("employee")
    token = "a-reset-token-for-the-process-test"
    async with db.transaction() as session:
        session.add(PasswordReset(user_id=user.id, token_hash=confirmations.digest(token),
                                  expires_at=utcnow() + timedelta(minutes=5)))
    env = cli_env(tmp_path / "data", TASKAPI_DATABASE_URL=database_url,
                  TASKAPI_REDIS_URL=redis_url)

    def statuses() -> set[int]:
        return {httpx.get(base + path, headers={**user.headers, "Connection": "close"})
                .status_code for path in ("/me", "/tasks/mine") for _ in range(8)}

    with serve(env, "--workers", "2", "--no-worker") as base:
        assert statuses() == {200}  # both workers have the session cached as live
        reset = httpx.post(base + "/password/reset",
                           json={"token": token, "new_password": NEW_PASSWORD})
        assert reset.status_code == 204
        assert statuses() == {401}


async def test_forgot_with_redis_down_records_the_email_for_the_sweeper(app_with, make_user, db) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from taskapi.models import EmailOutbox
    from tests.support.ports import free_port

    user = await make_user("employee")
    async with app_with(redis_url=f"redis://127.0.0.1:{free_port()}/0") as app:
        client = app.test_client()
        response = await client.post("/password/forgot", json={"email": user.email})
        assert response.status_code == 202
        unknown = await client.post("/password/forgot", json={"email": "no@example.test"})
        assert unknown.status_code == 202 and await unknown.get_data() == await response.get_data()
    async with db.transaction(write=False) as session:
        kinds = list(await session.scalars(select(EmailOutbox.kind).where(
            EmailOutbox.to_address == user.email)))
    assert kinds == ["password_reset"]


async def test_the_worker_log_never_names_the_address(make_settings, redis_sync, redis_url, make_user, smtp_sink, caplog) -> None:  # type: ignore[no-untyped-def]
    # arq logs every job with its arguments: the forgot job's argument is an address, and a
    # log of who asked for a reset (known or not) is a list of accounts and of their owners.
    sink, port = smtp_sink
    settings = _mail_settings(make_settings, port)
    user = await make_user("employee")
    unknown = "nobody-here@example.test"
    caplog.set_level("INFO")  # the shipped LOG_LEVEL
    async with create_app(settings).test_app() as test_app:
        client = test_app.test_client()
        for email in (user.email, unknown):
            assert (await client.post("/password/forgot", json={"email": email})).status_code == 202
        await run_worker_burst(settings, redis_url)
    assert [message["To"] for message in sink.messages] == [user.email]  # the jobs ran
    jobs = [r.getMessage() for r in caplog.records if "start_password_reset" in r.getMessage()]
    assert jobs, "the worker's job lines were not captured"
    ours = [r for r in caplog.records if not r.name.startswith("mail.")]  # not the SMTP sink's
    text = "\n".join(record.getMessage() for record in ours)
    assert user.email not in text and unknown not in text
