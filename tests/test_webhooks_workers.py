"""Webhooks across real processes: `taskapi serve`, two `taskapi worker` processes and a
receiver process on loopback. Each matching event reaches the receiver exactly once, signed
(checked with `standardwebhooks`), whichever worker sends it; a receiver that is down for a
while gets the event once it is back."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from taskapi.models import DeliveryStatus, TaskEvent, WebhookDelivery
from tests.support.processes import outside_checkout, serve, shared_env, stop_process
from tests.support.receiver import Receiver


def _env(tmp_path: Path, database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    return shared_env(tmp_path / "data", database_url, redis_url,
                      TASKAPI_WEBHOOK_ALLOW_PRIVATE="true", TASKAPI_WEBHOOK_POLL_INTERVAL="0.05",
                      TASKAPI_RATE_LIMIT_DEFAULT="1000000/minute", **extra)


@contextlib.contextmanager
def _workers(env: dict[str, str], count: int) -> Iterator[list[subprocess.Popen[Any]]]:
    logs = [open(Path(env["TASKAPI_DATA_DIR"]).parent / f"worker-{n}.log", "w+")
            for n in range(count)]
    processes = [subprocess.Popen([sys.executable, "-m", "taskapi", "worker"], env=env,
                                  cwd=outside_checkout(env), stdout=log,
                                  stderr=subprocess.STDOUT) for log in logs]
    try:
        yield processes
    finally:
        for process in processes:
            stop_process(process)
        for log in logs:
            log.close()


def _worker_logs(directory: Path) -> str:
    return "".join(log.read_text() for log in sorted(directory.glob("worker-*.log")))


async def _until(check: Any, within: float = 30.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _hook(base: str, admin: Any, url: str) -> Any:
    response = httpx.post(base + "/webhooks", headers=admin.headers,
                          json={"url": url, "events": ["*"]})
    assert response.status_code == 201, response.text
    return response.json()


async def test_two_workers_deliver_each_event_exactly_once(tmp_path: Path, database_url: str, redis_url: str, make_user, db) -> None:  # type: ignore[no-untyped-def]
    admin, employee = await make_user("admin"), await make_user("employee")
    receiver = Receiver(tmp_path).start()
    env = _env(tmp_path, database_url, redis_url)
    try:
        with serve(env, "--workers", "2") as base, _workers(env, 2):
            hook = _hook(base, admin, receiver.url("/ok"))
            async with httpx.AsyncClient(base_url=base, headers=admin.headers) as http:
                for n in range(25):
                    task = (await http.post("/tasks", json={"title": f"t{n}"})).json()
                    if n % 2:
                        await http.put(f"/task/{task['id']}/assign",
                                       json={"user_id": employee.id})

            async def all_delivered() -> bool:
                async with db.transaction(write=False) as session:
                    states = list(await session.scalars(select(WebhookDelivery.status)))
                return len(states) == 37 and set(states) == {DeliveryStatus.DELIVERED}

            await _until(all_delivered)
            time.sleep(0.5)  # a duplicate, if any, would arrive now
        async with db.transaction(write=False) as session:
            events = list(await session.scalars(select(TaskEvent.id).order_by(TaskEvent.id)))
            retried = dict((await session.execute(
                select(WebhookDelivery.event_id, WebhookDelivery.attempts)
                .where(WebhookDelivery.attempts != 1))).tuples().all())
        got = receiver.requests("/ok")
        ids = [request["headers"]["webhook-id"] for request in got]
        assert sorted(map(int, ids)) == events and len(ids) == 37  # 25 created, 12 assigned
        # One attempt each, unless a send really failed (a connect cut short on a loaded
        # machine): every extra attempt is a failure some worker logged, never a miscount.
        logged = _worker_logs(tmp_path)
        for event_id, count in retried.items():
            assert count >= 2, (event_id, count)
            failures = re.findall(rf"webhook \d+ event {event_id} \(attempt (\d+)\)", logged)
            assert sorted(map(int, failures)) == list(range(1, count)), (event_id, logged)
        verifier = Webhook(hook["secret"])
        types = [verifier.verify(r["body"], r["headers"])["type"] for r in got]
        assert types.count("task.created") == 25 and types.count("task.assigned") == 12
    finally:
        receiver.stop()


async def test_a_receiver_down_for_a_while_gets_the_event_once_when_back(tmp_path: Path, database_url: str, redis_url: str, make_user, db) -> None:  # type: ignore[no-untyped-def]
    admin = await make_user("admin")
    receiver = Receiver(tmp_path).start()
    # The spec's schedule shape, in seconds rather than hours (a test setting).
    env = _env(tmp_path, database_url, redis_url,
               TASKAPI_WEBHOOK_RETRY_SCHEDULE="0.3,0.6,1,1.5,2,2,2,2,2")
    try:
        with serve(env) as base, _workers(env, 2):
            hook = _hook(base, admin, receiver.url("/ok"))
            receiver.stop()
            httpx.post(base + "/tasks", headers=admin.headers, json={"title": "while down"})

            async def retried() -> Any:
                async with db.transaction(write=False) as session:
                    row = (await session.scalars(select(WebhookDelivery))).one_or_none()
                # Pending: a row read while a worker resends it is 'sending'.
                return (row if row is not None and row.attempts >= 3
                        and row.status == DeliveryStatus.PENDING else None)

            failing = await _until(retried)
            assert failing.status == DeliveryStatus.PENDING and failing.last_status_code is None
            assert "ConnectError" in failing.last_error
            receiver.start()

            async def delivered() -> Any:
                async with db.transaction(write=False) as session:
                    row = (await session.scalars(select(WebhookDelivery))).one()
                return row if row.status == DeliveryStatus.DELIVERED else None

            done = await _until(delivered)
            time.sleep(1.0)
            shown = httpx.get(f"{base}/webhooks/{hook['id']}/deliveries",
                              headers=admin.headers).json()
        (request,) = receiver.requests()
        assert request["headers"]["webhook-id"] == str(done.event_id)
        assert Webhook(hook["secret"]).verify(request["body"], request["headers"])
        assert shown[0]["status"] == "delivered" and shown[0]["attempts"] == done.attempts >= 4
        assert shown[0]["last_status_code"] == 200 and shown[0]["last_error"] is None
    finally:
        receiver.stop()
