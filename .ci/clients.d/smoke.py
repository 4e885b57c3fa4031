"""Smoke test of the Python client generated from the served spec (run by .ci/clients).

Uses the generated async API only: log in, create a task, list tasks; one `Task` class for
every operation that answers a task.
"""

from __future__ import annotations

import asyncio
import sys

from taskapi_client import AuthenticatedClient, Client
from taskapi_client.api.auth import login
from taskapi_client.api.tasks import create_task, get_task, list_tasks
from taskapi_client.models import Login, NewTask, Problem, Task, TokenPair


async def main(base_url: str, email: str, password: str) -> None:
    async with Client(base_url=base_url) as anonymous:
        pair = await login.asyncio(client=anonymous, body=Login(email=email, password=password))
        assert isinstance(pair, TokenPair), pair
        bad = Login(email=email, password="not the password")  # noqa: S106
        wrong = await login.asyncio(client=anonymous, body=bad)
        assert isinstance(wrong, Problem) and wrong.code == "invalid_credentials", wrong

    async with AuthenticatedClient(base_url=base_url, token=pair.access_token) as client:
        created = await create_task.asyncio(client=client, body=NewTask(
            title="Try the generated client", deadline="2030-01-15T17:00:00+01:00"))
        assert isinstance(created, Task), created
        again = await get_task.asyncio(task_id=created.id, client=client)
        assert isinstance(again, Task) and again.title == created.title
        listed = await list_tasks.asyncio_detailed(client=client)
        assert listed.status_code == 200, listed
        tasks = listed.parsed
        assert isinstance(tasks, list) and all(isinstance(t, Task) for t in tasks), tasks
        assert created.id in [t.id for t in tasks]
        assert listed.headers["x-total-count"] == str(len(tasks))
    print(f"generated client: logged in, created task {created.id}, listed {len(tasks)}")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
