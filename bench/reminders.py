"""Daily reminders at scale: 10,000 employees with open tasks, one worker, a real SMTP sink.

    .venv/bin/python bench/reminders.py [--employees 10000] [--database sqlite|postgres]

Seeds the employees and their tasks directly in a fresh database, starts an aiosmtpd sink
(in this process, on its own thread), then runs `taskapi jobs run send_daily_reminders`
twice as a separate process (the same code and dedupe as the worker's cron job). Reports,
per run: wall time, messages the sink received, and the peak RSS of the job process.
Targets: all sent within 60 s, peak RSS < 300 MB, the second run sends zero.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from run_info import REPO, log, save_results
from servers import clean_env, free_port, taskapi_bin


class Sink:
    def __init__(self) -> None:
        self.count = 0
        self.recipients: set[str] = set()
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        with self.lock:
            self.count += 1
            self.recipients.update(envelope.rcpt_tos)
        return "250 OK"


async def seed(url: str, employees: int) -> None:
    sys.path.insert(0, str(REPO))
    from sqlalchemy import insert

    from taskapi.core.db import Database
    from taskapi.models import Role, Task, TaskStatus, User

    db = Database.from_url(url)
    now = datetime.now(UTC)
    async with db.transaction() as session:
        for start in range(0, employees, 2000):
            await session.execute(insert(User), [
                {"username": f"emp{i:05d}", "email": f"emp{i:05d}@example.test",
                 "password_hash": "x", "role": Role.EMPLOYEE, "is_approved": True,
                 "created_at": now, "updated_at": now}
                for i in range(start, min(start + 2000, employees))])
        rows = []
        for user_id in range(1, employees + 1):
            for n in range(1 + user_id % 3):
                rows.append({"title": f"task {n} of {user_id}", "description": "",
                             "status": TaskStatus.PENDING if n else TaskStatus.IN_PROGRESS,
                             "deadline": now + timedelta(days=(user_id % 7) - 2),
                             "assigned_user_id": user_id, "created_at": now,
                             "updated_at": now, "assign_seq": 1})
        # plus completed tasks, which must not appear
        rows += [{"title": "done", "description": "", "status": TaskStatus.COMPLETED,
                  "assigned_user_id": uid, "created_at": now, "updated_at": now,
                  "assign_seq": 1} for uid in range(1, employees + 1, 5)]
        for start in range(0, len(rows), 5000):
            await session.execute(insert(Task), rows[start:start + 5000])
    await db.dispose()


def run_job(env: dict[str, str]) -> tuple[float, int, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    done = subprocess.run([taskapi_bin(), "jobs", "run", "send_daily_reminders"], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    elapsed = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if done.returncode != 0:
        raise SystemExit(f"job failed ({done.returncode}):\n{done.stderr[-3000:]}")
    # ru_maxrss of children is the max over all waited-for children: the job is the biggest
    # child this script waits for (db upgrade is smaller), and `before` shows if not.
    return elapsed, max(peak_kb, before), done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--employees", type=int, default=10_000)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432")
    args = parser.parse_args()

    from aiosmtpd.controller import Controller

    tmp = Path(tempfile.mkdtemp(prefix="taskapi-reminders-"))
    if args.database == "postgres":
        name = "taskapi_bench_reminders"
        subprocess.run(["psql", args.pg_url + "/postgres", "-qc", f"DROP DATABASE IF EXISTS {name}",
                        "-c", f"CREATE DATABASE {name}"], check=True, capture_output=True)
        url = f"{args.pg_url}/{name}"
    else:
        url = f"sqlite:///{tmp / 'taskapi.db'}"
    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    env = {**clean_env(), "TASKAPI_ENV": "production", "TASKAPI_SECRET_KEY": "b" * 48,
           "TASKAPI_DATA_DIR": str(tmp), "TASKAPI_DATABASE_URL": url,
           "TASKAPI_SMTP_HOST": "127.0.0.1", "TASKAPI_SMTP_PORT": str(port),
           "TASKAPI_SMTP_STARTTLS": "false", "TASKAPI_LOG_LEVEL": "WARNING"}
    try:
        subprocess.run([taskapi_bin(), "db", "upgrade"], env=env, cwd=REPO, check=True,
                       capture_output=True)
        async_url = url.replace("sqlite://", "sqlite+aiosqlite://").replace(
            "postgresql://", "postgresql+asyncpg://")
        log(f"seeding {args.employees} employees ({args.database})")
        asyncio.run(seed(async_url, args.employees))
        results = []
        for run in (1, 2):
            received_before = sink.count
            elapsed, peak_kb, output = run_job(env)
            time.sleep(0.5)  # the sink's thread finishes the last message
            sent = sink.count - received_before
            results.append({"run": run, "seconds": round(elapsed, 2), "received": sent,
                            "peak_rss_mb": round(peak_kb / 1024, 1), "job_output": output})
            log(f"run {run}: {sent} messages in {elapsed:.1f} s, peak RSS {peak_kb / 1024:.0f} MB"
                f" — {output}")
    finally:
        controller.stop()

    first, second = results
    checks = {
        "all sent": first["received"] == args.employees,
        "within 60 s": first["seconds"] <= 60,
        "peak RSS < 300 MB": first["peak_rss_mb"] < 300,
        "second run sends zero": second["received"] == 0,
        "one per employee": len(sink.recipients) == args.employees,
    }
    print(f"\nreminders ({args.database}, {args.employees} employees, one job process)")
    print(f"{'run':>4} {'seconds':>8} {'received':>9} {'peak RSS MB':>12}")
    for r in results:
        print(f"{r['run']:>4} {r['seconds']:>8} {r['received']:>9} {r['peak_rss_mb']:>12}")
    for name, ok in checks.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    path = save_results(f"reminders-{args.database}", {
        "employees": args.employees, "database": args.database, "runs": results,
        "checks": checks, "cpu_count": os.cpu_count()})
    print(f"results: {path}")
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
