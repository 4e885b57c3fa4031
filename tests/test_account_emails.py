"""Welcome and approval emails go through the real worker to a real SMTP server."""

from __future__ import annotations

import re
from email.message import EmailMessage

from sqlalchemy import select

from taskapi.app import create_app
from taskapi.models import EmailOutbox, EmailStatus
from tests.support.values import PASSWORD
from tests.support.worker import run_worker_burst


def _parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


async def test_welcome_and_approval_emails_arrive(make_settings, redis_sync, redis_url, make_user, smtp_sink) -> None:  # type: ignore[no-untyped-def]
    sink, port = smtp_sink
    settings = make_settings(smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False,
                             mail_from="taskapi <noreply@taskapi.example>")
    admin = await make_user("admin")
    app = create_app(settings)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        created = await client.post("/register", json={
            "username": "frank", "email": "frank@corp.example", "password": PASSWORD})
        assert created.status_code == 202
        pending = await (await client.get("/users/pending", headers=admin.headers)).get_json()
        [user_id] = [u["id"] for u in pending if u["email"] == "frank@corp.example"]
        worker = await run_worker_burst(settings, redis_url)
        assert worker.jobs_complete == 1 and worker.jobs_failed == 0
        assert len(sink.messages) == 1
        welcome = sink.messages[0]
        assert welcome["To"] == "frank@corp.example"
        assert welcome["From"] == "taskapi <noreply@taskapi.example>"
        assert welcome["Subject"] == "Welcome to taskapi, frank"
        assert welcome["Message-ID"].endswith("@taskapi.example>")
        text, html = _parts(welcome)
        assert "frank" in text and "<h1" in html
        assert PASSWORD not in text and PASSWORD not in html

        await client.put(f"/users/{user_id}/approve", headers=admin.headers)
        await client.put(f"/users/{user_id}/approve", headers=admin.headers)  # idempotent
        await run_worker_burst(settings, redis_url)
        assert len(sink.messages) == 2
        approved = sink.messages[1]
        assert approved["Subject"] == "Your taskapi account is approved"
        assert "frank@corp.example" in _parts(approved)[0]


async def test_without_smtp_host_mail_is_written_to_outbox(make_settings, redis_sync, redis_url) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings()
    app = create_app(settings)
    async with app.test_app() as test_app:
        await test_app.test_client().post("/register", json={
            "username": "gina", "email": "gina@example.test", "password": PASSWORD})
    await run_worker_burst(settings, redis_url)
    files = list((settings.data_dir / "outbox").glob("*.eml"))
    assert len(files) == 1
    content = files[0].read_text()
    assert "To: gina@example.test" in content and "Subject: Welcome to taskapi, gina" in content


async def test_sent_token_emails_keep_no_token_in_the_database(make_settings, redis_sync, redis_url, make_user, smtp_sink, db) -> None:  # type: ignore[no-untyped-def]
    # The welcome holds the confirmation token and the reset email a reset token, each shown
    # once; after sending, a copy of the database (a backup, a replica) must hold neither.
    sink, port = smtp_sink
    settings = make_settings(smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False)
    async with create_app(settings).test_app() as test_app:
        client = test_app.test_client()
        await client.post("/register", json={
            "username": "hana", "email": "hana@example.test", "password": PASSWORD})
        await run_worker_burst(settings, redis_url)
        user = await make_user("employee")
        await client.post("/password/forgot", json={"email": user.email})
        await run_worker_burst(settings, redis_url)
    tokens = [re.search(r"token=([A-Za-z0-9_-]{20,})", _parts(m)[0]) for m in sink.messages]
    assert len(tokens) == 2 and all(tokens)
    async with db.session(write=False) as session:
        rows = (await session.execute(
            select(EmailOutbox.kind, EmailOutbox.status, EmailOutbox.body_text,
                   EmailOutbox.body_html).order_by(EmailOutbox.id))).all()
    assert [(kind, status) for kind, status, _, _ in rows] == [
        ("welcome", EmailStatus.SENT), ("password_reset", EmailStatus.SENT)]
    for (_, _, text, html), match in zip(rows, tokens, strict=True):
        assert match is not None and match.group(1) not in text + html
        assert "single-use token" in text
