"""Every read as the tables grow (issue #23): the same requests at 2,000 and 1,000,000 tasks.

Run with the repo venv:

    .venv/bin/python bench/scale.py --database sqlite|postgresql [--sizes 2000,1000000]

For each size: a fresh database (SQLite in a temp dir, or a PostgreSQL database
`<--pg-database>_<size>` it creates and drops), migrated by `taskapi db upgrade`; --users
approved users (one in a thousand a manager) and the tasks inserted straight into it
(seeding.py; the counter triggers run), then ANALYZE (PostgreSQL: VACUUM ANALYZE).
`taskapi serve --workers 1` with the cache off (TASKAPI_CACHE_TTL=0) times every shape of
scale_shapes.py, best and median of
--repeats single sequential requests after 2 warm-ups, and the status update as the median of
--updates single updates. Then, unless --mix-duration is 0, the 90/10 mix of tasks_load.py
(wrk, GET /tasks/mine + PUT /task/{id}/status, rotating employee tokens) against
`serve --workers 2` at the default cache. Prints a table of the sizes and each last ÷ first.

Exit status: 1 if a target is missed or a request answered non-2xx; 2 if setup failed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from run_info import REPO, app_version, log, machine_info, save_results
from scale_shapes import MIX_TARGET, judge, measure_size, print_table, shapes
from seeding import (
    PASSWORD,
    after_bulk_load,
    database_urls,
    employee_email,
    fresh_database,
    manager_email,
    owned_task_ids,
    pg_recreate,
    seed_engine,
    seed_tasks,
    seed_users,
)
from servers import (
    flush_redis,
    free_port,
    scan_log,
    start_server,
    stop_server,
    taskapi_bin,
    wait_ready,
)
from tasks_setup import add_store_args, login_all, make_env
from wrk_lua import write_lua
from wrk_runs import find_wrk, measure, summarize

EMPLOYEE = 6  # the employee whose token reads /tasks/mine and whose id the filters use


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql", "postgres"),
                        default="sqlite")
    parser.add_argument("--sizes", default="2000,1000000", help="task counts, comma separated")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--no-vacuum", action="store_true",
                        help="PostgreSQL: ANALYZE after the load, not VACUUM ANALYZE")
    parser.add_argument("--repeats", type=int, default=5, help="timed requests per shape")
    parser.add_argument("--updates", type=int, default=50, help="timed status updates")
    parser.add_argument("--mix-duration", type=int, default=10,
                        help="seconds of the measured mix run (0: no mix)")
    parser.add_argument("--mix-runs", type=int, default=3,
                        help="measured mix runs per size (a warm-up before each); median")
    parser.add_argument("--mix-tokens", type=int, default=50)
    # --put-every, --redis-url, --pg-url, --pg-database (here a prefix: each size gets
    # <prefix>_<size>), --log-level, --keep (also spelled --keep-data), --no-save
    add_store_args(parser, redis_db=11, pg_database="scale_bench", log_level="WARNING")
    parser.add_argument("--keep-data", dest="keep", action="store_true",
                        help="the same as --keep")
    args = parser.parse_args()
    args.sizes = sorted({int(s) for s in str(args.sizes).split(",") if s.strip()})
    args.database = "postgres" if args.database.startswith("postgres") else "sqlite"
    return args


def store_args(args: argparse.Namespace, size: int) -> argparse.Namespace:
    """The options for seeding.py and tasks_setup.make_env, with one size's database."""
    return argparse.Namespace(**{**vars(args), "pg_database": f"{args.pg_database}_{size}"})


async def analyze(sa_url: str, database: str, vacuum: bool) -> str:
    """What ops run after a bulk load. SQLite: ANALYZE (sqlite_stat1) and the WAL checkpoint
    of seeding.after_bulk_load. PostgreSQL: VACUUM ANALYZE (`vacuum` false: ANALYZE alone,
    the state right after the load): without the visibility map VACUUM sets, no index-only
    scan, and /stats' count of overdue tasks is a bitmap heap scan (115 ms, not 16, at 1M)."""
    from sqlalchemy import text

    statement = "VACUUM ANALYZE" if vacuum and database == "postgres" else "ANALYZE"
    engine = seed_engine(sa_url)
    try:
        async with engine.connect() as conn:
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await auto.execute(text(statement))
    finally:
        await engine.dispose()
    if database == "postgres":
        return statement
    return f"{statement}; " + await after_bulk_load(sa_url, database)


def seed(store: argparse.Namespace, sa_url: str, size: int) -> dict[str, Any]:
    from taskapi.core.passwords import _hasher

    users = store.users
    managers = max(1, users // 1000)
    t0 = time.monotonic()
    employee_ids, manager_ids = asyncio.run(
        seed_users(sa_url, users - managers, managers, _hasher().hash(PASSWORD)))
    t1 = time.monotonic()
    asyncio.run(seed_tasks(sa_url, 0, size, employee_ids, manager_ids))
    t2 = time.monotonic()
    note = asyncio.run(analyze(sa_url, store.database, not store.no_vacuum))
    t3 = time.monotonic()
    out = {"users_s": round(t1 - t0, 1), "tasks_s": round(t2 - t1, 1),
           "analyze_s": round(t3 - t2, 1), "after": note,
           "employee_ids": employee_ids, "managers": managers}
    log(f"seeded {users} users in {out['users_s']} s, {size:,} tasks in {out['tasks_s']} s "
        f"({size / max(t2 - t1, 1e-9):,.0f}/s), {note} in {out['analyze_s']} s")
    return out


@contextmanager
def serving(tapi: str, env: dict[str, str], tmp: Path, workers: int,
            name: str) -> Iterator[tuple[str, int, Path]]:
    """`taskapi serve` on a free port: (its base URL, pid, log path); stopped at the end."""
    port, log_path = free_port(), tmp / f"{name}.log"
    proc = start_server([tapi, "serve", "--host", "127.0.0.1", "--port", str(port),
                         "--workers", str(workers)], env, tmp, log_path)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc, log_path, timeout=120)
        yield base, proc.pid, log_path
    finally:
        log(f"{name} stopped (exit {stop_server(proc, name)})")


def check_stats(base: str, token: str, size: int, users: int) -> dict[str, Any]:
    """/stats counts what was seeded (the triggers kept the counters)."""
    resp = httpx.get(f"{base}/stats", headers={"Authorization": f"Bearer {token}"},
                     timeout=120, trust_env=False)
    resp.raise_for_status()
    stats: dict[str, Any] = resp.json()
    if stats["total_tasks"] != size or stats["total_users"] != users:
        raise RuntimeError(f"/stats after seeding {size} tasks, {users} users: {stats}")
    return stats


def mix_phase(args: argparse.Namespace, wrk: str, tapi: str, env: dict[str, str], tmp: Path,
              sa_url: str, employee_ids: list[int]) -> dict[str, Any]:
    """tasks_load.py's mix (bench/lua/mix.lua, 90/10) at the default cache, two workers."""
    flush_redis(args.redis_url)
    owners = employee_ids[:args.mix_tokens]
    own, _ = asyncio.run(owned_task_ids(sa_url, owners))
    with serving(tapi, env, tmp, 2, "serve-mix") as (base, pid, log_path):
        emails = [employee_email(i) for i in range(args.mix_tokens)]
        tokens = asyncio.run(login_all(base, emails, concurrency=4))
        pairs = [(t, own[o]) for o, t in zip(owners, tokens, strict=True) if own[o]]
        script = tmp / "mix.lua"
        write_lua(script, "mix.lua", tokens=[t for t, _ in pairs],
                  ids=[ids for _, ids in pairs], put_every=args.put_every)
        runs = [measure("mix", wrk, base, script, threads=2, connections=64,
                        duration=args.mix_duration, warmup=3, server_pid=pid,
                        log_path=log_path, redis_url=args.redis_url)
                for _ in range(args.mix_runs)]
        locked = scan_log(log_path)["database_is_locked"]
    summary = summarize(runs)
    keep = ("rps_median", "rps_runs", "p50_ms_median", "p99_ms_median",
            "server_cpu_us_per_req_median", "requests_total", "non2xx_total",
            "socket_errors_total", "warmup_non2xx_total", "statuses")
    return {**{k: summary[k] for k in keep}, "database_is_locked": locked,
            "tokens": len(pairs), "loadavg_after": [round(x, 2) for x in os.getloadavg()]}


def run_size(args: argparse.Namespace, wrk: str | None, size: int) -> dict[str, Any]:
    store = store_args(args, size)
    tmp = Path(tempfile.mkdtemp(prefix=f"taskapi-scale-{size}-"))
    (tmp / "data").mkdir()
    db_url, sa_url = database_urls(store, tmp / "data")
    env = make_env(store, tmp / "data", db_url)
    tapi = taskapi_bin()
    pg_created = False
    out: dict[str, Any] = {"tasks": size}
    try:
        log(f"--- {size:,} tasks ({args.database}) ---")
        pg_created = fresh_database(store, env, tmp, tapi)
        seeded = seed(store, sa_url, size)
        employee_id = seeded["employee_ids"][EMPLOYEE]
        out["seed"] = {k: v for k, v in seeded.items() if k != "employee_ids"}
        uncached = {**env, "TASKAPI_CACHE_TTL": "0"}
        with serving(tapi, uncached, tmp, 1, "serve-uncached") as (base, _, log_path):
            tokens = {"manager": asyncio.run(login_all(base, [manager_email(0)], 1))[0],
                      "employee": asyncio.run(login_all(base, [employee_email(EMPLOYEE)],
                                                        1))[0]}
            out["stats_after_seed"] = check_stats(base, tokens["manager"], size, args.users)
            out["rows"] = measure_size(base, tokens, employee_id, size, args.repeats,
                                       args.updates)
            out["server_log"] = {k: v for k, v in scan_log(log_path).items() if k != "tail"}
        if args.mix_duration > 0 and wrk is not None:
            out["mix"] = mix_phase(args, wrk, tapi, env, tmp, sa_url,
                                   seeded["employee_ids"])
    finally:
        flush_redis(args.redis_url)
        if args.keep:
            log(f"kept {tmp}" + (f" and database {store.pg_database}" if pg_created else ""))
        else:
            if pg_created:
                asyncio.run(pg_recreate(store, create=False))
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def report(args: argparse.Namespace, runs: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    first_pages = {s.label: s.deep_of for s in shapes(1, 1) if s.deep_of}
    table = judge({n: r["rows"] for n, r in runs.items()}, first_pages)
    sizes = sorted(runs)
    print_table(table, sizes, f"{args.database}, {args.users:,} users, cache off, one worker;"
                f" ms, best of {args.repeats} (status update: median of {args.updates})")
    seeds = ", ".join(f"{n:,}: {r['seed']['tasks_s']} s" for n, r in runs.items())
    print(f"seeding tasks: {seeds}")
    mixes = {n: r["mix"] for n, r in runs.items() if "mix" in r}
    if len(mixes) == len(sizes) and len(sizes) > 1:
        ratio = mixes[sizes[-1]]["rps_median"] / mixes[sizes[0]]["rps_median"]
        cpu = (mixes[sizes[-1]]["server_cpu_us_per_req_median"]
               / mixes[sizes[0]]["server_cpu_us_per_req_median"])
        ok = ratio >= MIX_TARGET and not any(m["non2xx_total"] + m["socket_errors_total"]
                                             + m["warmup_non2xx_total"]
                                             for m in mixes.values())
        table.append({"shape": "mix rps (cached, 2 workers)", "ratio": round(ratio, 3),
                      "rps": {n: m["rps_median"] for n, m in mixes.items()},
                      "cpu_per_request_ratio": round(cpu, 3), "target": MIX_TARGET,
                      "pass": ok})
        print(f"mix 90/10 (wrk, c=64, cache on, 2 workers; median of {args.mix_runs}): "
              + ", ".join(f"{n:,}: {m['rps_median']:.0f} req/s {m['rps_runs']} "
                          f"({m['server_cpu_us_per_req_median']:.0f} µs CPU/req, non-2xx "
                          f"{m['non2xx_total']}, load {m['loadavg_after'][0]})"
                          for n, m in mixes.items())
              + f"; ratio {ratio:.3f} (≥ {MIX_TARGET}) {'PASS' if ok else 'FAIL'}; CPU per "
              f"request {cpu:.2f}x (less at the mercy of the machine's load)")
    return table


def main() -> int:
    args = parse_args()
    wrk = find_wrk() if args.mix_duration > 0 else None
    result: dict[str, Any] = {
        "benchmark": "scale", "database": args.database,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "machine": machine_info(wrk or "wrk"), "config": vars(args),
        "app_version": app_version()}
    runs: dict[int, dict[str, Any]] = {}
    try:
        for size in args.sizes:
            runs[size] = run_size(args, wrk, size)
    except Exception as exc:
        log(f"failed: {exc!r}")
        result["error"] = repr(exc)
        if not runs:
            return 2
    result["sizes"] = {str(n): r for n, r in runs.items()}
    table = report(args, runs) if runs else []
    result["table"] = table
    if not args.no_save:
        out = save_results(f"scale-{args.database}", result)
        log(f"results written to {out.relative_to(REPO)}")
    return 1 if "error" in result or not all(r["pass"] for r in table) else 0


if __name__ == "__main__":
    sys.exit(main())
