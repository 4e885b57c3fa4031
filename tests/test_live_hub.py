"""services/live.py's hub with no stream open: it moves its head without reading the rows
(every worker reads the log after every write), and a stream that opens while it looks the
head up still gets every event after the head it had."""

from __future__ import annotations

from typing import Any

import pytest

from taskapi.http.current import EXTENSION_KEY
from taskapi.models import Role
from taskapi.services import live
from taskapi.services.authstate import Actor
from taskapi.services.live_log import head as log_head


def _hub(app: Any) -> live.Hub:
    """A hub of its own (not started: no background reads), on the app's database."""
    state = app.extensions[EXTENSION_KEY]
    return live.Hub(state.settings, state.db, state.redis, state.redis_url)


async def _create(client: Any, staff: Any, title: str) -> int:
    answer = await client.post("/tasks", json={"title": title}, headers=staff.headers)
    assert answer.status_code == 201
    return int((await answer.get_json())["id"])


async def test_with_no_stream_only_the_head_moves(app, client, make_user, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    staff = await make_user("manager")
    hub = _hub(app)
    await hub.read_new()  # the head at the log's end
    for n in range(3):
        await _create(client, staff, f"quiet {n}")

    async def no_rows(*_: Any) -> list[Any]:
        raise AssertionError("read the rows with no stream open")

    with monkeypatch.context() as patch:
        patch.setattr(live, "read_after", no_rows)
        await hub.read_new()
    assert hub.head == await log_head(hub.db)

    stream = hub.open(Actor(staff.id, Role.MANAGER, "sid"))
    task_id = await _create(client, staff, "heard")
    await hub.read_new()
    assert [(e.type, e.task_id) for e in stream.queue] == [("task.created", task_id)]


async def test_a_stream_opened_during_the_head_lookup_misses_nothing(app, client, make_user, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    staff = await make_user("manager")
    hub = _hub(app)
    await hub.read_new()
    first = await _create(client, staff, "before the stream")
    opened: list[live.Stream] = []

    async def head_then_open(db: Any) -> int:
        latest = await log_head(db)
        opened.append(hub.open(Actor(staff.id, Role.MANAGER, "sid")))
        return latest

    monkeypatch.setattr(live, "log_head", head_then_open)
    await hub.read_new()
    # The stream opened after the hub's head was read: it gets the rows after that head,
    # as a stream opened a moment later would, not a head moved past them.
    assert [e.task_id for e in opened[0].queue] == [first]


@pytest.mark.parametrize("streams", [0, 1])
async def test_the_head_never_moves_back(app, client, make_user, streams) -> None:  # type: ignore[no-untyped-def]
    staff = await make_user("manager")
    hub = _hub(app)
    for _ in range(streams):
        hub.open(Actor(staff.id, Role.MANAGER, "sid"))
    await _create(client, staff, "one")
    await hub.read_new()
    seen = hub.head
    await hub.read_new()
    assert hub.head == seen == await log_head(hub.db)


async def test_a_write_moves_its_versions_and_pokes_the_hubs_once(app, client, make_user, redis_sync) -> None:  # type: ignore[no-untyped-def]
    from taskapi.core.cache import mine_version, task_version, tasks_version
    from taskapi.core.event_channel import CHANNEL

    staff, worker = await make_user("manager"), await make_user("employee")
    answer = await client.post("/tasks", json={"title": "poke", "assigned_user_id": worker.id},
                               headers=staff.headers)
    task_id = (await answer.get_json())["id"]
    keys = [tasks_version(), task_version(task_id), mine_version(worker.id)]
    before = [int(redis_sync.get(k) or 0) for k in keys]
    pubsub = redis_sync.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(CHANNEL)
    pubsub.get_message(timeout=1)  # the subscribe confirmation
    answer = await client.put(f"/task/{task_id}/status", json={"status": "completed"},
                              headers=worker.headers)
    assert answer.status_code == 200
    pokes = []
    while (message := pubsub.get_message(timeout=0.5)) is not None:
        pokes.append(message)
    pubsub.close()
    assert [p["channel"] for p in pokes] == [CHANNEL.encode()]
    assert [int(redis_sync.get(k) or 0) for k in keys] == [b + 1 for b in before]
