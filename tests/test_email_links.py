"""Every email links into the app at PUBLIC_URL; a rejected registration is told politely."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

from taskapi.app import create_app
from taskapi.services import reminders
from tests.support.values import PASSWORD
from tests.support.worker import run_worker_burst

PUBLIC = "https://tasks.example.test/app"


def _parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


def _settings(make_settings: Any, port: int) -> Any:
    return make_settings(smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False,
                         public_url=PUBLIC)


async def test_emails_link_to_login_and_tasks(make_settings, redis_sync, redis_url, make_user, smtp_sink, db) -> None:  # type: ignore[no-untyped-def]
    sink, port = smtp_sink
    settings = _settings(make_settings, port)
    admin = await make_user("admin")
    async with create_app(settings).test_app() as test_app:
        client = test_app.test_client()
        await client.post("/register", json={"username": "lena", "email": "lena@example.test",
                                             "password": PASSWORD})
        pending = await (await client.get("/users/pending", headers=admin.headers)).get_json()
        [lena] = [u["id"] for u in pending if u["username"] == "lena"]
        await client.put(f"/users/{lena}/approve", headers=admin.headers)
        task = await (await client.post("/tasks", headers=admin.headers, json={
            "title": "Write the report", "assigned_user_id": lena})).get_json()
        await run_worker_burst(settings, redis_url)
    by_subject = {m["Subject"]: m for m in sink.messages}
    welcome = _parts(by_subject["Welcome to taskapi, lena"])
    approved = _parts(by_subject["Your taskapi account is approved"])
    assigned = _parts(by_subject["New task for you: Write the report"])
    for text, html in (welcome, approved):
        assert f"{PUBLIC}/login" in text and f'href="{PUBLIC}/login"' in html
    assert f"{PUBLIC}/confirm-email?token=" in welcome[0]
    task_url = f"{PUBLIC}/tasks/{task['id']}"
    assert task_url in assigned[0] and f'href="{task_url}"' in assigned[1]

    before = len(sink.messages)
    await reminders.send_daily_reminders(db, settings, force=True)
    [reminder] = sink.messages[before:]
    text, html = _parts(reminder)
    assert task_url in text and f'href="{task_url}"' in html


async def test_a_rejected_registration_gets_a_polite_email(make_settings, redis_sync, redis_url, make_user, smtp_sink) -> None:  # type: ignore[no-untyped-def]
    sink, port = smtp_sink
    settings = _settings(make_settings, port)
    admin = await make_user("admin")
    rejected = await make_user("employee", approved=False)
    deleted = await make_user("manager", approved=False)
    approved = await make_user("employee")
    async with create_app(settings).test_app() as test_app:
        client = test_app.test_client()
        assert (await client.delete(f"/users/{rejected.id}/reject",
                                    headers=admin.headers)).status_code == 204
        # Deleting a registration that is still pending is rejecting it too.
        assert (await client.delete(f"/users/{deleted.id}", headers=admin.headers)).status_code == 204
        # An approved user who is deleted is not told their registration was rejected.
        assert (await client.delete(f"/users/{approved.id}", headers=admin.headers)).status_code == 204
        await run_worker_burst(settings, redis_url)
    assert sorted(m["To"] for m in sink.messages) == sorted([rejected.email, deleted.email])
    for message in sink.messages:
        assert message["Subject"] == "Your taskapi registration"
        text, html = _parts(message)
        assert "decided not to approve" in text and "register again" in html
