"""Webhook endpoints through the API, and deliveries to a real receiver process, verified
with the `standardwebhooks` package (by the spec's authors). The sweep runs in the test's
loop here; tests/test_webhooks_workers.py runs it in real worker processes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from standardwebhooks.webhooks import Webhook

from taskapi.http.current import EXTENSION_KEY
from taskapi.jobs.webhooks import prune_webhook_deliveries
from taskapi.models import WebhookDelivery, WebhookEndpoint, utcnow
from taskapi.services.webhook_delivery import fan_out, sweep
from taskapi.services.webhook_send import new_client
from tests.support.ports import free_port
from tests.support.processes import cli_env, run_cli
from tests.support.receiver import Receiver

SECRET_PATH = "/services/T0001/s3cr3t-token"  # chat services put the credential here
PRIVATE = {"webhook_allow_private": True, "webhook_retry_schedule": [0.2, 0.2, 0.2]}


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    running = Receiver(tmp_path).start()
    yield running
    running.stop()


async def _sweep(app: Any) -> dict[str, int]:
    """One worker sweep with the app's settings: fan-out, then every due delivery."""
    state = app.extensions[EXTENSION_KEY]
    async with new_client(state.settings) as client:
        return dict(await sweep(state.db, state.settings, client))


async def _hook(client: Any, admin: Any, url: str, events: list[str] | None = None) -> Any:
    response = await client.post("/webhooks", headers=admin.headers,
                                 json={"url": url, "events": events or ["*"]})
    assert response.status_code == 201, await response.get_json()
    return await response.get_json()


async def _task(client: Any, admin: Any, title: str = "Ship it") -> int:
    response = await client.post("/tasks", headers=admin.headers, json={"title": title})
    assert response.status_code == 201
    return int((await response.get_json())["id"])


def _verified(secret: str, request: dict[str, Any]) -> Any:
    return Webhook(secret).verify(request["body"], request["headers"])


async def test_create_shows_the_secret_once_and_never_again(app_with, make_user) -> None:  # type: ignore[no-untyped-def]
    async with app_with(**PRIVATE) as app:
        client, admin = app.test_client(), await make_user("admin")
        response = await client.post("/webhooks", headers=admin.headers, json={
            "url": "http://127.0.0.1:9/hook", "events": ["task.created", "task.created"],
            "description": "chat"})
        assert response.status_code == 201
        created = await response.get_json()
        assert response.headers["Location"] == f"/webhooks/{created['id']}"
        assert response.headers["Cache-Control"] == "no-store"
        assert created["secret"].startswith("whsec_") and len(created["secret"]) == 50
        assert created["events"] == ["task.created"] and created["enabled"] is True
        for path in ("/webhooks", f"/webhooks/{created['id']}"):
            shown = await (await client.get(path, headers=admin.headers)).get_data(as_text=True)
            assert created["secret"] not in shown and "secret\"" not in shown
        changed = await client.put(f"/webhooks/{created['id']}", headers=admin.headers,
                                   json={"description": "team chat"})
        assert (await changed.get_json())["events"] == ["task.created"]
        assert (await changed.get_json())["description"] == "team chat"
        assert "secret" not in await changed.get_json()
        assert (await client.delete(f"/webhooks/{created['id']}",
                                    headers=admin.headers)).status_code == 204
        assert (await client.get(f"/webhooks/{created['id']}",
                                 headers=admin.headers)).status_code == 404


@pytest.mark.parametrize(("body", "code"), [
    ({"url": "ftp://example.com/x", "events": ["*"]}, "webhook_url_refused"),
    ({"url": "http://user:pw@example.com/x", "events": ["*"]}, "webhook_url_refused"),
    ({"url": "http://localhost:8080/x", "events": ["*"]}, "webhook_url_refused"),
    ({"url": "http://127.0.0.1:8080/x", "events": ["*"]}, "webhook_url_refused"),
    ({"url": "http://[::1]/x", "events": ["*"]}, "webhook_url_refused"),
    ({"url": "http://10.1.2.3/x", "events": ["*"]}, "webhook_url_refused"),
    ({"url": "http://169.254.169.254/latest", "events": ["*"]}, "webhook_url_refused"),
    ({"url": "http://[fd00::1]/x", "events": ["*"]}, "webhook_url_refused"),
    ({"url": "http://[::ffff:127.0.0.1]/x", "events": ["*"]}, "webhook_url_refused"),
    ({"url": "https://93.184.215.14/x", "events": ["task.exploded"]}, "validation_error"),
    ({"url": "https://93.184.215.14/x", "events": ["*", "task.created"]}, "validation_error"),
    ({"url": "https://93.184.215.14/x", "events": []}, "validation_error"),
    ({"url": "https://93.184.215.14/x", "events": ["*"], "secret": "mine"}, "validation_error"),
])
async def test_refused_urls_and_bodies_change_nothing(client, make_user, db, body, code) -> None:  # type: ignore[no-untyped-def]
    admin = await make_user("admin")
    response = await client.post("/webhooks", headers=admin.headers, json=body)
    assert response.status_code == 422
    problem = await response.get_json()
    assert problem["code"] == code
    assert response.headers["Content-Type"].startswith("application/problem+json")
    if code == "webhook_url_refused":
        assert problem["errors"][0]["loc"] == ["url"]
        assert problem["errors"][0]["msg"] in problem["detail"]
    async with db.transaction(write=False) as session:
        assert list(await session.scalars(select(WebhookEndpoint.id))) == []


async def test_a_change_of_url_is_checked_again(client, make_user) -> None:  # type: ignore[no-untyped-def]
    admin = await make_user("admin")
    created = await _hook(client, admin, "https://93.184.215.14/hook")
    response = await client.put(f"/webhooks/{created['id']}", headers=admin.headers,
                                json={"url": "http://localhost/hook"})
    assert (await response.get_json())["code"] == "webhook_url_refused"
    response = await client.put(f"/webhooks/{created['id']}", headers=admin.headers,
                                json={"url": None})
    assert response.status_code == 422
    shown = await (await client.get(f"/webhooks/{created['id']}", headers=admin.headers)).get_json()
    assert shown["url"] == "https://93.184.215.14/hook"


async def test_each_matching_event_is_delivered_once_signed(app_with, make_user, receiver, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level("INFO")
    async with app_with(**PRIVATE) as app:
        client, admin = app.test_client(), await make_user("admin")
        employee = await make_user("employee")
        before = await _task(client, admin, "before the hook")
        every = await _hook(client, admin, receiver.url(SECRET_PATH))
        assigned = await _hook(client, admin, receiver.url("/assigned"), ["task.assigned"])
        task_id = await _task(client, admin)
        await client.put(f"/task/{task_id}/assign", headers=admin.headers,
                         json={"user_id": employee.id})
        await client.put(f"/task/{task_id}/status", headers=employee.headers,
                         json={"status": "completed"})
        await client.delete(f"/task/{task_id}", headers=admin.headers)
        assert (await _sweep(app))["delivered"] == 5
        assert await _sweep(app) == {}  # nothing twice
        # Sent concurrently: arrival order is not event order (the README says so).
        got = sorted(receiver.requests(SECRET_PATH), key=lambda r: int(r["headers"]["webhook-id"]))
        assert [_verified(every["secret"], r)["type"] for r in got] == [
            "task.created", "task.assigned", "task.status_changed", "task.deleted"]
        first = json.loads(got[0]["body"])
        assert first["data"]["id"] == task_id and first["data"]["title"] == "Ship it"
        assert first["timestamp"].endswith("Z")
        assert json.loads(got[-1]["body"])["data"] == {"id": task_id}
        assert all(before != json.loads(r["body"])["data"]["id"] for r in got)
        assert len({r["headers"]["webhook-id"] for r in got}) == 4
        (only,) = receiver.requests("/assigned")
        body = _verified(assigned["secret"], only)
        assert body["data"]["assigned_user_id"] == employee.id
        assert body["data"]["previous_assigned_user_id"] is None
        assert only["headers"]["webhook-id"] == got[1]["headers"]["webhook-id"]
        assert abs(int(only["headers"]["webhook-timestamp"]) - time.time()) < 30
        with pytest.raises(Exception, match="signature"):
            Webhook(every["secret"]).verify(only["body"], only["headers"])
    assert "s3cr3t" not in caplog.text  # a URL's path may be its credential


async def test_rotation_signs_with_both_secrets_for_a_day(app_with, make_user, receiver, db) -> None:  # type: ignore[no-untyped-def]
    async with app_with(**PRIVATE) as app:
        client, admin = app.test_client(), await make_user("admin")
        created = await _hook(client, admin, receiver.url("/ok"))
        rotated = await (await client.post(f"/webhooks/{created['id']}/rotate",
                                           headers=admin.headers)).get_json()
        assert rotated["secret"] != created["secret"] and rotated["previous_secret_until"]
        await _task(client, admin)
        await _sweep(app)
        (request,) = receiver.requests()
        signatures = request["headers"]["webhook-signature"].split(" ")
        assert len(signatures) == 2
        for secret, signature in zip((rotated["secret"], created["secret"]), signatures,
                                     strict=True):
            alone = {**request["headers"], "webhook-signature": signature}
            assert _verified(secret, {**request, "headers": alone})["type"] == "task.created"
        async with db.transaction() as session:  # the overlap is over
            await session.execute(update(WebhookEndpoint).values(
                previous_secret_until=WebhookEndpoint.created_at))
        await _task(client, admin)
        await _sweep(app)
        assert len(receiver.requests()[-1]["headers"]["webhook-signature"].split(" ")) == 1


async def test_410_disables_the_endpoint(app_with, make_user, receiver) -> None:  # type: ignore[no-untyped-def]
    async with app_with(**PRIVATE) as app:
        client, admin = app.test_client(), await make_user("admin")
        gone = await _hook(client, admin, receiver.url("/gone"))
        await _task(client, admin)
        assert (await _sweep(app)).get("disabled") == 1
        shown = await (await client.get(f"/webhooks/{gone['id']}", headers=admin.headers)).get_json()
        assert shown["enabled"] is False and "410" in shown["disabled_reason"]
        await _task(client, admin)
        assert await _sweep(app) == {}
        assert len(receiver.requests("/gone")) == 1
        (delivery,) = await (await client.get(f"/webhooks/{gone['id']}/deliveries",
                                              headers=admin.headers)).get_json()
        assert delivery["status"] == "failed" and delivery["last_status_code"] == 410
        # Enabled again: from now on, not the event recorded while it was off.
        await client.put(f"/webhooks/{gone['id']}", headers=admin.headers,
                         json={"enabled": True, "url": receiver.url("/ok")})
        third = await _task(client, admin, "third")
        await _sweep(app)
        assert [json.loads(r["body"])["data"]["id"] for r in receiver.requests("/ok")] == [third]


async def test_failures_retry_then_fail_visibly_and_can_be_redelivered(app_with, make_user, receiver, db) -> None:  # type: ignore[no-untyped-def]
    async with app_with(**PRIVATE) as app:
        client, admin = app.test_client(), await make_user("admin")
        broken = await _hook(client, admin, receiver.url("/status/500"))
        redirect = await _hook(client, admin, receiver.url("/redirect"))
        await _task(client, admin)
        outcomes: dict[str, int] = {}
        for _ in range(40):
            for key, count in (await _sweep(app)).items():
                outcomes[key] = outcomes.get(key, 0) + count
            if outcomes.get("failed") == 2:
                break
            time.sleep(0.1)
        assert outcomes == {"retry": 6, "failed": 2, "recorded": 2}
        assert len(receiver.requests("/status/500")) == 4  # the first try and 3 retries
        assert receiver.requests("/ok") == []  # the redirect was not followed
        for hook, code in ((broken, 500), (redirect, 302)):
            response = await client.get(f"/webhooks/{hook['id']}/deliveries?status=failed",
                                        headers=admin.headers)
            (delivery,) = await response.get_json()
            assert response.headers["X-Total-Count"] == "1"
            assert delivery["attempts"] == 4 and delivery["last_status_code"] == code
            assert delivery["last_error"].startswith(f"HTTP {code}")
            assert delivery["next_attempt_at"] is None and delivery["latency_ms"] is not None
        path = f"/webhooks/{broken['id']}/deliveries/{delivery['id']}/redeliver"
        assert (await client.post(path, headers=admin.headers)).status_code == 404  # not its own
        (mine,) = await (await client.get(f"/webhooks/{broken['id']}/deliveries",
                                          headers=admin.headers)).get_json()
        path = f"/webhooks/{broken['id']}/deliveries/{mine['id']}/redeliver"
        again = await client.post(path, headers=admin.headers)
        assert again.status_code == 202
        assert (await again.get_json())["status"] == "pending"
        assert (await again.get_json())["attempts"] == 0
        again = await client.post(path, headers=admin.headers)  # pending: now, not later
        assert again.status_code == 202
        async with db.transaction() as session:  # a worker is sending it
            await session.execute(update(WebhookDelivery).where(WebhookDelivery.id == mine["id"])
                                  .values(status="sending", claim_token="t"))
        conflict = await client.post(path, headers=admin.headers)
        assert conflict.status_code == 409
        assert (await conflict.get_json())["code"] == "delivery_in_flight"
        async with db.transaction() as session:
            await session.execute(update(WebhookDelivery).where(WebhookDelivery.id == mine["id"])
                                  .values(status="pending", claim_token=None))
        await _sweep(app)
        assert len(receiver.requests("/status/500")) == 5


async def test_retry_after_is_honoured(app_with, make_user, receiver, db) -> None:  # type: ignore[no-untyped-def]
    async with app_with(**PRIVATE) as app:
        client, admin = app.test_client(), await make_user("admin")
        await _hook(client, admin, receiver.url("/status/503?retry_after=120"))
        await _task(client, admin)
        assert (await _sweep(app))["retry"] == 1
        async with db.transaction(write=False) as session:
            delivery = (await session.scalars(select(WebhookDelivery))).one()
        wait = (delivery.next_attempt_at - delivery.created_at).total_seconds()
        assert 119 < wait < 125, wait


async def test_the_worker_checks_the_address_again(app_with, make_user, receiver) -> None:  # type: ignore[no-untyped-def]
    async with app_with(**PRIVATE) as app:  # registered where private addresses were allowed
        client, admin = app.test_client(), await make_user("admin")
        hook = await _hook(client, admin, receiver.url("/ok"))
        await _task(client, admin)
    async with app_with(webhook_retry_schedule=[60]) as strict:
        assert (await _sweep(strict))["retry"] == 1
        (delivery,) = await (await strict.test_client().get(
            f"/webhooks/{hook['id']}/deliveries", headers=admin.headers)).get_json()
    assert receiver.requests() == []
    assert delivery["last_error"].startswith("refused: 127.0.0.1 is a loopback, private")
    assert delivery["last_status_code"] is None and delivery["status"] == "pending"


async def test_deliveries_page_newest_first(app_with, make_user, receiver) -> None:  # type: ignore[no-untyped-def]
    async with app_with(**PRIVATE) as app:
        client, admin = app.test_client(), await make_user("admin")
        hook = await _hook(client, admin, receiver.url("/ok"))
        for n in range(5):
            await _task(client, admin, f"t{n}")
        await _sweep(app)
        seen: list[int] = []
        url = f"/webhooks/{hook['id']}/deliveries?limit=2"
        while url:
            response = await client.get(url, headers=admin.headers)
            assert response.headers["X-Total-Count"] == "5"
            seen += [d["event_id"] for d in await response.get_json()]
            link = response.headers.get("Link")
            url = link.split(">")[0].lstrip("<") if link else ""
        assert seen == sorted(seen, reverse=True) and len(set(seen)) == 5


async def test_ops_see_the_backlog_and_failures(app_with, make_user, receiver, tmp_path, database_url, redis_url) -> None:  # type: ignore[no-untyped-def]
    async with app_with(**{**PRIVATE, "webhook_retry_schedule": [0.01]}) as app:
        client, admin = app.test_client(), await make_user("admin")
        hook = await _hook(client, admin, receiver.url("/status/500"))
        await _task(client, admin, "one")
        await _task(client, admin, "two")
        await _sweep(app)
        time.sleep(0.05)
        await _sweep(app)
        await client.put(f"/webhooks/{hook['id']}", headers=admin.headers,
                         json={"url": receiver.url("/ok"), "enabled": False})
        await _task(client, admin, "not sent while disabled")  # recorded on none
        await client.put(f"/webhooks/{hook['id']}", headers=admin.headers, json={"enabled": True})
        await _task(client, admin, "pending")
        await fan_out(app.extensions[EXTENSION_KEY].db)
        metrics = await (await client.get("/metrics", scope_base={"client": ("127.0.0.1", 1)})).get_data(as_text=True)
    assert 'taskapi_webhook_deliveries{status="failed"} 2.0' in metrics
    assert 'taskapi_webhook_deliveries{status="pending"} 1.0' in metrics
    env = cli_env(tmp_path / "data", TASKAPI_DATABASE_URL=database_url, TASKAPI_REDIS_URL=redis_url)
    listed = await asyncio.to_thread(run_cli, "jobs", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "webhook deliveries: failed=2, pending=1, sending=0" in listed.stdout
    failed = [line for line in listed.stdout.splitlines() if line.startswith("  failed  webhook=")]
    assert len(failed) == 2 and all("attempts=2  HTTP 500" in line for line in failed)
    assert "deliver_webhooks  every 1 s in each worker" in listed.stdout


async def test_events_written_while_redis_is_down_are_delivered(app_with, make_user, receiver) -> None:  # type: ignore[no-untyped-def]
    """Nothing is queued through Redis: the delivery comes from the event log itself."""
    async with app_with(**PRIVATE) as app:
        client, admin = app.test_client(), await make_user("admin")
        hook = await _hook(client, admin, receiver.url("/ok"))
    async with app_with(**PRIVATE, redis_url=f"redis://127.0.0.1:{free_port()}/0") as away:
        task_id = await _task(away.test_client(), admin, "while Redis is away")
        assert (await _sweep(away))["delivered"] == 1
    (request,) = receiver.requests()
    assert _verified(hook["secret"], request)["data"]["id"] == task_id


async def test_a_dead_workers_claim_is_sent_by_another_after_the_lease(app_with, make_user, receiver, db) -> None:  # type: ignore[no-untyped-def]
    async with app_with(**PRIVATE, webhook_claim_timeout=0.5, webhook_timeout=0.4) as app:
        client, admin = app.test_client(), await make_user("admin")
        await _hook(client, admin, receiver.url("/ok"))
        await _task(client, admin)
        await fan_out(app.extensions[EXTENSION_KEY].db)
        async with db.transaction() as session:  # claimed by a worker that then died
            await session.execute(update(WebhookDelivery).values(
                status="sending", claim_token="dead", claimed_at=utcnow(), attempts=1))
        assert await _sweep(app) == {}  # its lease still holds
        time.sleep(0.6)
        assert await _sweep(app) == {"delivered": 1}
    async with db.transaction(write=False) as session:
        delivery = (await session.scalars(select(WebhookDelivery))).one()
    assert delivery.attempts == 2 and len(receiver.requests()) == 1


async def test_a_stopping_worker_releases_what_it_was_sending(app_with, make_user, receiver, db) -> None:  # type: ignore[no-untyped-def]
    async with app_with(**PRIVATE) as app:
        client, admin = app.test_client(), await make_user("admin")
        await _hook(client, admin, receiver.url("/slow"))
        await _task(client, admin)
        sweeping = asyncio.create_task(_sweep(app))
        for _ in range(50):
            if receiver.requests():
                break
            await asyncio.sleep(0.05)
        sweeping.cancel()  # the worker's shutdown cancels its pump
        with pytest.raises(asyncio.CancelledError):
            await sweeping
    async with db.transaction(write=False) as session:
        delivery = (await session.scalars(select(WebhookDelivery))).one()
    assert delivery.status == "pending" and delivery.attempts == 0
    assert delivery.claim_token is None


async def test_finished_deliveries_past_the_retention_are_pruned(app_with, make_user, receiver, db) -> None:  # type: ignore[no-untyped-def]
    async with app_with(**PRIVATE) as app:
        client, admin = app.test_client(), await make_user("admin")
        ok = await _hook(client, admin, receiver.url("/ok"))
        await _hook(client, admin, receiver.url("/status/503?retry_after=3600"))
        await _task(client, admin)
        await _sweep(app)
        state = app.extensions[EXTENSION_KEY]
        async with db.transaction() as session:  # all of them recorded 8 days ago
            await session.execute(update(WebhookDelivery).values(
                created_at=utcnow() - timedelta(days=8)))
        ctx = {"db": state.db, "settings": state.settings}
        assert await prune_webhook_deliveries(ctx) == 1  # the delivered one
        listed = await client.get(f"/webhooks/{ok['id']}/deliveries", headers=admin.headers)
        assert await listed.get_json() == []
    async with db.transaction(write=False) as session:
        (left,) = (await session.scalars(select(WebhookDelivery))).all()
    assert left.status == "pending"  # still due: kept whatever its age
