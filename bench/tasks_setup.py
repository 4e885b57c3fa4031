"""A seeded taskapi server ready for load: its environment, the command-line options shared
with load_1000.py, logging the seeded users in, and the API checks before the load.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
from pathlib import Path
from typing import Any

import httpx
from seeding import PASSWORD
from servers import clean_env


def make_env(args: argparse.Namespace, data_dir: Path, database_url: str) -> dict[str, str]:
    env = clean_env()  # inherited TASKAPI_* variables must not leak into the bench
    env.update({
        "TASKAPI_ENV": "production",
        "TASKAPI_SECRET_KEY": secrets.token_urlsafe(36),  # 48 characters
        "TASKAPI_DATA_DIR": str(data_dir),
        "TASKAPI_DATABASE_URL": database_url,
        "TASKAPI_REDIS_URL": args.redis_url,
        "TASKAPI_LOG_LEVEL": args.log_level,
        "TASKAPI_RATE_LIMIT_DEFAULT": "100000000/minute",
        "TASKAPI_RATE_LIMIT_LOGIN": "100000/minute",
        # The setup logs 51 users in from one address, 4 at a time (decision 019's limits).
        "TASKAPI_RATE_LIMIT_LOGIN_IP": "100000/minute",
        "TASKAPI_PASSWORD_QUEUE_WAIT": "60",
        "TASKAPI_ACCESS_TOKEN_EXPIRES": "86400",
    })
    return env


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """wrk threads, server workers and the seeded data (shared with load_1000.py)."""
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="hypercorn worker processes")
    parser.add_argument("--users", type=int, default=50, help="employee tokens")
    parser.add_argument("--employees", type=int, default=200)
    parser.add_argument("--managers", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=2000)


def add_store_args(parser: argparse.ArgumentParser, *, redis_db: int, pg_database: str,
                   log_level: str) -> None:
    """The database, Redis and logging of the seeded server, and what to keep (shared by
    tasks_load.py, load_1000.py and compare.py)."""
    parser.add_argument("--put-every", type=int, default=10,
                        help="mix: every Nth request is a PUT (10 = 90/10)")
    parser.add_argument("--redis-url", default=f"redis://127.0.0.1:6379/{redis_db}",
                        help="flushed at start and end: never point this at real data")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432",
                        help="server URL; the bench creates and drops --pg-database on it")
    parser.add_argument("--pg-database", default=pg_database)
    parser.add_argument("--log-level", default=log_level)
    parser.add_argument("--keep", action="store_true",
                        help="keep the temp dir (server logs, Lua, py-spy output) and database")
    parser.add_argument("--no-save", action="store_true", help="do not write results JSON")


async def login_all(base: str, emails: list[str], concurrency: int) -> list[str]:
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=60, trust_env=False) as client:

        async def one(email: str) -> str:
            async with sem:
                resp = await client.post("/login", json={"email": email, "password": PASSWORD})
            if resp.status_code != 200:
                raise RuntimeError(f"POST /login {email}: {resp.status_code} {resp.text[:300]}")
            return str(resp.json()["access_token"])

        return list(await asyncio.gather(*(one(e) for e in emails)))


async def check_api(base: str, tokens: list[str], owners: list[int], own_ids: dict[int, list[int]],
                    manager_token: str, total_tasks: int, total_users: int,
                    etag: bool = True) -> dict[str, Any]:
    """Every token reads exactly its owner's tasks (with an ETag unless `etag` is false: the
    peers of compare.py send none); someone else's task is a 404; /stats counts the seed; a
    status update works. Also fills the auth and response caches."""
    async with httpx.AsyncClient(base_url=base, timeout=30, trust_env=False) as client:
        sem = asyncio.Semaphore(8)

        async def get(path: str, token: str) -> httpx.Response:
            async with sem:
                return await client.get(path, headers={"Authorization": f"Bearer {token}"})

        mines = await asyncio.gather(*(get("/tasks/mine", t) for t in tokens))
        for owner, resp in zip(owners, mines, strict=True):
            if resp.status_code != 200 or (etag and "etag" not in resp.headers):
                raise RuntimeError(f"GET /tasks/mine: {resp.status_code} {resp.text[:200]}")
            items = resp.json()
            expected = min(50, len(own_ids[owner]))
            if len(items) != expected or any(t["assigned_user_id"] != owner for t in items):
                raise RuntimeError(f"GET /tasks/mine for user {owner}: {len(items)} items, "
                                   f"expected {expected} of their own")
        reads = await asyncio.gather(*(get(f"/task/{own_ids[o][0]}", t)
                                       for o, t in zip(owners, tokens, strict=True)))
        for owner, resp in zip(owners, reads, strict=True):
            if resp.status_code != 200 or resp.json()["assigned_user_id"] != owner:
                raise RuntimeError(f"GET /task/{own_ids[owner][0]}: {resp.status_code}")
        other = await get(f"/task/{own_ids[owners[1]][0]}", tokens[0])
        if other.status_code != 404:
            raise RuntimeError(f"someone else's task answered {other.status_code}, not 404")
        stats_resp = await get("/stats", manager_token)
        stats = stats_resp.json()
        if (stats_resp.status_code != 200 or stats["total_tasks"] != total_tasks
                or stats["total_users"] != total_users):
            raise RuntimeError(f"GET /stats: {stats_resp.status_code} {stats_resp.text[:300]}")
        task_id = own_ids[owners[0]][0]
        put = await client.put(f"/task/{task_id}/status", json={"status": "in-progress"},
                               headers={"Authorization": f"Bearer {tokens[0]}"})
        if put.status_code != 200 or put.json()["status"] != "in-progress":
            raise RuntimeError(f"PUT /task/{task_id}/status: {put.status_code} {put.text[:200]}")
        return {"stats": stats, "mine_items_per_token": len(mines[0].json()),
                "etag_on": {"mine": "etag" in mines[0].headers,
                            "task": "etag" in reads[0].headers,
                            "stats": "etag" in stats_resp.headers}}
