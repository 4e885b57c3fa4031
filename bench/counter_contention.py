"""PostgreSQL: what the task_counts triggers cost writers that share one counter row.

`--connections` clients each run `--transactions` transactions of one scenario, then COMMIT:
- create: INSERT an unassigned task (all clients bump the one row (0, pending)), then
  `--work-ms` of pg_sleep, standing for the rest of a request's transaction (its event,
  outbox and idempotency rows);
- flip: UPDATE one of the same assignee's tasks pending -> completed or back (half the
  clients each way: two rows locked in opposite directions), then the same pg_sleep.
Each runs under four triggers: none; one counter row per key, bumped by a plain AFTER row
trigger (the row stays locked to the end of its transaction) or by a deferred constraint
trigger (locked only while committing); and migration 0012's: deferred, each connection on
its own slot's rows. Prints transactions per second and deadlocks for each (decision 045).

    .venv/bin/python bench/counter_contention.py --url postgresql://postgres@127.0.0.1/scratch \
        --reset [--connections 16] [--transactions 100] [--work-ms 2]

--reset is required: it drops and recreates the schema public of that database.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from taskapi.models.counts import POSTGRESQL_TRIGGERS, SLOTS
from taskapi.ops.migrate import upgrade

# A row trigger on tasks that runs FUNCTION; what follows it: (DEFERRABLE …) FOR EACH ROW.
_TRIGGER = ("CREATE {kind} TRIGGER task_counts_track AFTER INSERT OR DELETE OR UPDATE OF "
            "status, assigned_user_id ON tasks {deferred} FOR EACH ROW "
            "EXECUTE FUNCTION {function}()")
_DEFERRED = {"kind": "CONSTRAINT", "deferred": "DEFERRABLE INITIALLY DEFERRED"}
_IMMEDIATE = {"kind": "", "deferred": ""}
TRIGGERS = {
    "none": [],
    "one row, immediate": [_TRIGGER.format(function="task_counts_one", **_IMMEDIATE)],
    "one row, deferred": [_TRIGGER.format(function="task_counts_one", **_DEFERRED)],
    "slots, deferred (0012)": [_TRIGGER.format(function="task_counts_track", **_DEFERRED)],
}
# Migration 0012's function with every connection on slot 0: one row per key.
ONE_ROW = POSTGRESQL_TRIGGERS[0].replace(f"pg_backend_pid() % {SLOTS}", "0").replace(
    "FUNCTION task_counts_track()", "FUNCTION task_counts_one()")
INSERT = ("INSERT INTO tasks (title, description, status, assign_seq, version) "
          "VALUES ('t', '', 'pending', 0, 1)")
FLIP = "UPDATE tasks SET status = $2 WHERE id = $1"


async def _client(url: str, scenario: str, index: int, args: argparse.Namespace,
                  task_ids: list[int]) -> int:
    conn = await asyncpg.connect(url)
    deadlocks = 0
    try:
        for i in range(args.transactions):
            try:
                async with conn.transaction():
                    if scenario == "create":
                        await conn.execute(INSERT)
                    else:  # each its own task; at each step half close, half reopen
                        status = "completed" if (i + index) % 2 == 0 else "pending"
                        await conn.execute(FLIP, task_ids[index], status)
                    await conn.execute("SELECT pg_sleep($1)", args.work_ms / 1000)
            except asyncpg.DeadlockDetectedError:
                deadlocks += 1
    finally:
        await conn.close()
    return deadlocks


async def _run(url: str, scenario: str, trigger: str, args: argparse.Namespace) -> str:
    conn = await asyncpg.connect(url)
    await conn.execute("DROP TRIGGER IF EXISTS task_counts_track ON tasks")
    await conn.execute(ONE_ROW)
    await conn.execute("TRUNCATE tasks, task_counts RESTART IDENTITY CASCADE")
    await conn.execute("INSERT INTO users (username, email, password_hash, role, is_approved, "
                       "email_confirmed, version) VALUES ('u', 'u@x', 'x', 'employee', true, "
                       "false, 1) ON CONFLICT DO NOTHING")
    user_id = await conn.fetchval("SELECT id FROM users WHERE username = 'u'")
    rows = await conn.fetch(
        "INSERT INTO tasks (title, description, status, assigned_user_id, assign_seq, version) "
        "SELECT 't', '', CASE WHEN g % 2 = 0 THEN 'pending' ELSE 'completed' END, $1, 0, 1 "
        "FROM generate_series(0, $2 - 1) AS g ORDER BY g RETURNING id", user_id,
        args.connections)
    for statement in TRIGGERS[trigger]:
        await conn.execute(statement)
    await conn.close()
    started = time.perf_counter()
    deadlocks = await asyncio.gather(*(
        _client(url, scenario, i, args, [r["id"] for r in rows])
        for i in range(args.connections)))
    elapsed = time.perf_counter() - started
    done = args.connections * args.transactions - sum(deadlocks)
    return (f"{scenario:<7} {trigger:<23} {done / elapsed:8.0f} tx/s  "
            f"deadlocks {sum(deadlocks)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="postgresql://… of a scratch database")
    parser.add_argument("--reset", action="store_true", help="drop and recreate its schema")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--transactions", type=int, default=100)
    parser.add_argument("--work-ms", type=float, default=2.0)
    args = parser.parse_args()
    if not args.reset:
        parser.error("--reset is required: the database's schema public is dropped")

    async def reset() -> None:
        conn = await asyncpg.connect(args.url)
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        await conn.close()

    asyncio.run(reset())
    upgrade(args.url.replace("postgresql://", "postgresql+asyncpg://", 1))
    print(f"{args.connections} connections x {args.transactions} transactions, "
          f"{args.work_ms} ms of other work in each")
    for scenario in ("create", "flip"):
        for trigger in TRIGGERS:
            print(asyncio.run(_run(args.url, scenario, trigger, args)), flush=True)


if __name__ == "__main__":
    main()
