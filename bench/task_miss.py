"""Server CPU of a cache-miss read of one task, and of the same read as a hit.

    .venv/bin/python bench/task_miss.py [--tasks 200000] [--duration 10] [--taskapi BIN]

`taskapi serve --workers 1` at the shipped defaults (LOG_LEVEL=INFO, CACHE_TTL=60), SQLite,
real Redis (db 12, flushed), one manager token. wrk (2 threads, 32 connections) asks
`GET /task/<id>` for ids never asked before in the run, so every answer is a miss (a database
read, serialization, a cache store); then the same ids again, now cached (hits). Reports the
worker's CPU per request (utime + stime from /proc over the measured run) for both, medians of
`--repeats`. `--taskapi` runs another checkout's `taskapi` (its venv's bin/taskapi) on the same
data for an A/B (the seed is made with this checkout's models). Writes nothing to
bench/results: the numbers go in the closing note and bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

from run_info import log
from seeding import (
    PASSWORD,
    after_bulk_load,
    database_urls,
    fresh_database,
    manager_email,
    seed_tasks,
    seed_users,
)
from servers import free_port, start_server, stop_server, taskapi_bin, wait_ready
from tasks_setup import login_all, make_env
from wrk_lua import write_lua
from wrk_runs import find_wrk, measure


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200_000)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--taskapi", default=None, help="the taskapi executable to serve with")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12",
                        help="flushed at start: never point this at real data")
    args = parser.parse_args()
    args.database, args.log_level = "sqlite", "INFO"
    wrk = find_wrk()
    if wrk is None:
        return 2
    tapi = args.taskapi or taskapi_bin()
    with tempfile.TemporaryDirectory(prefix="task_miss-") as tmp_name:
        tmp = Path(tmp_name)
        url, sa_url = database_urls(args, tmp)
        env = make_env(args, tmp, url)
        fresh_database(args, env, tmp, tapi)
        from taskapi.core.passwords import _hasher

        employees, managers = asyncio.run(seed_users(sa_url, 200, 1, _hasher().hash(PASSWORD)))
        asyncio.run(seed_tasks(sa_url, 0, args.tasks, employees, managers))
        asyncio.run(after_bulk_load(sa_url, "sqlite"))
        port = free_port()
        log_path = tmp / "serve.log"
        proc = start_server([tapi, "serve", "--workers", "1", "--port", str(port)], env, tmp,
                            log_path)
        base = f"http://127.0.0.1:{port}"
        results: dict[str, list[float]] = {"miss": [], "hit": []}
        try:
            wait_ready(base, proc, log_path)
            token = asyncio.run(login_all(base, [manager_email(0)], concurrency=1))[0]
            span = args.tasks // (args.repeats + 1)
            for n in range(args.repeats + 1):  # the first round warms the server up
                first = 1 + n * span
                asked = span
                for kind in ("miss", "hit"):
                    script = tmp / f"{kind}{n}.lua"
                    write_lua(script, "sequential_task.lua", token=token, first=first,
                              threads_n=2, wrap=asked)
                    run = measure(f"task {kind}", wrk, base, script, threads=2,
                                  connections=args.connections, duration=args.duration,
                                  warmup=0, server_pid=proc.pid, log_path=log_path)
                    if kind == "miss" and run["requests"] >= span:
                        log(f"{run['requests']} requests ran past the {span} fresh ids: "
                            "lower --duration or raise --tasks")
                        return 2
                    if run["non2xx"]:
                        log(f"non-2xx answers: {run['statuses']}")
                        return 1
                    asked = run["requests"]
                    if n:
                        results[kind].append(run["server_cpu_us_per_req"])
        finally:
            stop_server(proc)
    for kind, values in results.items():
        print(f"{kind:5} median {statistics.median(values):6.0f} us CPU/request  "
              f"runs {' '.join(f'{v:.0f}' for v in values)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
