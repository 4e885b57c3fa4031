"""Live events through real `taskapi serve` processes: every worker and a second node see a
write; replay after a disconnect is exact; who sees what, through SSE and WebSocket."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from tests.support.processes import serve, shared_env
from tests.support.streams import SSE, sse, ws


def _env(tmp_path: Path, database_url: str, redis_url: str, name: str = "data",
         **extra: str) -> dict[str, str]:
    return shared_env(tmp_path / name, database_url, redis_url, **extra)


async def _write(base: str, method: str, path: str, who: Any, **json: Any) -> Any:
    async with httpx.AsyncClient(base_url=base, headers={"Connection": "close"}) as http:
        response = await http.request(method, path, headers=who.headers,
                                      json=json or None)
    assert response.status_code in (200, 201, 204), response.text
    return response.json() if response.status_code != 204 else None


async def _ids(stream: SSE, n: int) -> list[tuple[int, str]]:
    return [(int(m.id or 0), m.event) for m in await stream.collect(n)]


async def test_a_write_reaches_streams_on_every_worker_and_on_a_second_node(tmp_path: Path, database_url: str, redis_url: str, redis_sync, make_user) -> None:  # type: ignore[no-untyped-def]
    manager = await make_user("manager")
    env = _env(tmp_path, database_url, redis_url)
    other = _env(tmp_path, database_url, redis_url, "data2")
    with serve(env, "--workers", "2") as node_a, serve(other) as node_b:
        async with contextlib_all([sse(f"{node_a}/events", {**manager.headers,
                                                            "Connection": "close"})
                                   for _ in range(6)]
                                  + [sse(f"{node_b}/events", manager.headers)]) as streams:
            for stream in streams:
                assert stream.response.status_code == 200
                assert stream.response.headers["content-type"].startswith("text/event-stream")
                assert stream.response.headers["cache-control"] == "no-cache"
                assert stream.response.headers["x-accel-buffering"] == "no"
            created = await _write(node_a, "POST", "/tasks", manager, title="live")
            await _write(node_b, "PUT", f"/task/{created['id']}/status", manager,
                         status="completed")
            for stream in streams:
                first, second = await stream.collect(2)
                assert first.event == "task.created" and first.json() == created
                assert second.event == "task.status_changed"
                assert second.json()["status"] == "completed"
                assert int(second.id or 0) > int(first.id or 0)
                assert stream.retries == [3000]


class contextlib_all:
    """Enter several async context managers at once."""

    def __init__(self, managers: list[Any]) -> None:
        self.managers = managers

    async def __aenter__(self) -> list[Any]:
        return [await manager.__aenter__() for manager in self.managers]

    async def __aexit__(self, *exc: Any) -> None:
        for manager in reversed(self.managers):
            await manager.__aexit__(*exc)


async def test_replay_after_a_disconnect_is_exact_then_live(tmp_path: Path, database_url: str, redis_url: str, redis_sync, make_user) -> None:  # type: ignore[no-untyped-def]
    manager = await make_user("manager")
    employee = await make_user("employee")
    with serve(_env(tmp_path, database_url, redis_url), "--workers", "2") as base:
        async with sse(f"{base}/events", employee.headers) as stream:
            mine = await _write(base, "POST", "/tasks", manager, title="mine",
                                assigned_user_id=employee.id)
            [(seen, _)] = await _ids(stream, 1)
        # Missed while away: two of the employee's events and one they may not see.
        await _write(base, "PUT", f"/task/{mine['id']}", manager, title="renamed")
        await _write(base, "POST", "/tasks", manager, title="not theirs")
        await _write(base, "PUT", f"/task/{mine['id']}/status", employee, status="in-progress")
        headers = {**employee.headers, "Last-Event-ID": str(seen)}
        async with sse(f"{base}/events", headers) as stream:
            replayed = await _ids(stream, 2)
            assert replayed == [(seen + 1, "task.updated"), (seen + 3, "task.status_changed")]
            await _write(base, "PUT", f"/task/{mine['id']}/status", employee, status="completed")
            assert await _ids(stream, 1) == [(seen + 4, "task.status_changed")]
        # The query parameter does the same; staff see all four.
        async with sse(f"{base}/events?last_event_id={seen}", manager.headers) as stream:
            assert [i for i, _ in await _ids(stream, 4)] == [seen + 1, seen + 2, seen + 3,
                                                             seen + 4]
        # WebSocket: the same replay, then a resume from an older id replays again.
        async with ws(f"{base.replace('http', 'ws')}/ws?last_event_id={seen}",
                      employee.headers) as socket:
            assert socket.status == 101
            frames = [await socket.next() for _ in range(3)]
            assert [(f["id"], f["type"]) for f in frames] == [
                (seen + 1, "task.updated"), (seen + 3, "task.status_changed"),
                (seen + 4, "task.status_changed")]
            assert frames[0]["data"]["title"] == "renamed"
            await socket.send({"type": "resume", "last_event_id": seen + 2})
            frames = [await socket.next() for _ in range(2)]
            assert [f["id"] for f in frames] == [seen + 3, seen + 4]
        # An id the log no longer holds (or never held): reset, then live.
        async with sse(f"{base}/events", {**employee.headers,
                                          "Last-Event-ID": str(seen + 1000)}) as stream:
            reset = await stream.next()
            assert reset is not None and reset.event == "reset"
            assert reset.json() == {"reason": "expired"}
            await _write(base, "PUT", f"/task/{mine['id']}/status", employee, status="pending")
            assert (await stream.next() or reset).event == "task.status_changed"
            # /metrics (every worker's samples): one open stream, events published and
            # delivered, the delivery lag.
            scraped = httpx.get(f"{base}/metrics").text
            samples = {line.split(" ")[0]: float(line.split(" ")[1])
                       for line in scraped.splitlines() if line and not line.startswith("#")}
            assert samples["taskapi_event_streams"] == 1
            assert samples["taskapi_events_published_total"] >= 5
            assert samples["taskapi_events_delivered_total"] >= 10
            assert samples["taskapi_event_delivery_lag_seconds_count"] >= 3  # live sends only


async def test_who_sees_what_through_both_transports(tmp_path: Path, database_url: str, redis_url: str, redis_sync, make_user) -> None:  # type: ignore[no-untyped-def]
    """An employee sees only their tasks' events: the task taken away from them (only its id
    and new assignee) and the deletion of theirs; never another's task, before or after."""
    admin = await make_user("admin")
    manager = await make_user("manager")
    alice = await make_user("employee")
    bob = await make_user("employee")
    with serve(_env(tmp_path, database_url, redis_url), "--workers", "2") as base:
        ws_base = base.replace("http", "ws")
        async with sse(f"{base}/events", alice.headers) as alice_sse, \
                sse(f"{base}/events", bob.headers) as bob_sse, \
                sse(f"{base}/events", manager.headers) as staff_sse, \
                ws(f"{ws_base}/ws", alice.headers) as alice_ws, \
                ws(f"{ws_base}/ws", bob.headers) as bob_ws:
            task = await _write(base, "POST", "/tasks", manager, title="t",
                                assigned_user_id=alice.id)
            tid = task["id"]
            await _write(base, "PUT", f"/task/{tid}/status", alice, status="in-progress")
            await _write(base, "PUT", f"/task/{tid}/assign", manager, user_id=bob.id)
            await _write(base, "PUT", f"/task/{tid}/status", bob, status="completed")
            await _write(base, "POST", f"/task/{tid}/comments", bob, body="done")
            await _write(base, "DELETE", f"/task/{tid}", admin)
            # A task never Alice's: she sees none of it.
            other = await _write(base, "POST", "/tasks", manager, title="bob's",
                                 assigned_user_id=bob.id)
            await _write(base, "PUT", f"/task/{other['id']}", manager, title="bob's 2")
            # Alice's marker: her own new task, to know she has been sent all she will be.
            await _write(base, "POST", "/tasks", manager, title="end",
                         assigned_user_id=alice.id)

            alice_expected = ["task.created", "task.status_changed", "task.assigned",
                              "task.created"]
            alice_seen = await alice_sse.collect(4)
            assert [m.event for m in alice_seen] == alice_expected
            assert alice_seen[2].json() == {"id": tid, "assigned_user_id": bob.id}
            alice_frames = [await alice_ws.next() for _ in range(4)]
            assert [f["type"] for f in alice_frames] == alice_expected
            assert alice_frames[2]["data"] == {"id": tid, "assigned_user_id": bob.id}

            bob_expected = ["task.assigned", "task.status_changed", "comment.created",
                            "task.deleted", "task.created", "task.updated"]
            bob_seen = await bob_sse.collect(6)
            assert [m.event for m in bob_seen] == bob_expected
            assert bob_seen[0].json()["previous_assigned_user_id"] == alice.id
            assert bob_seen[0].json()["title"] == "t"
            assert bob_seen[3].json() == {"id": tid}
            assert [f["type"] for f in [await bob_ws.next() for _ in range(6)]] == bob_expected

            staff = await staff_sse.collect(9)
            assert [m.event for m in staff] == [
                "task.created", "task.status_changed", "task.assigned", "task.status_changed",
                "comment.created", "task.deleted", "task.created", "task.updated",
                "task.created"]
            assert staff[2].json()["title"] == "t"  # staff get the whole task
            ids = [int(m.id or 0) for m in staff]
            assert ids == sorted(ids) and len(set(ids)) == 9
            # Nothing more for Alice (Bob's task events never reach her).
            await _write(base, "PUT", f"/task/{other['id']}/status", bob, status="completed")
            await asyncio.sleep(0.5)
            assert alice_ws.messages.empty()
