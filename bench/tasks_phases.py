"""The phases of tasks_load.py, in the order its main() runs them: seed the database, start
the servers, log in, write the Lua scripts; then (1) the ratio runs, (2) the mix, (3) profiles
of what missed its target, (4) the table-size A/B, (5) memory; last, the raw runs.

Each phase adds its part to bench.result, so the keys of the results JSON come in the order
of the phases.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from proc_stats import server_processes, worker_rss
from run_info import REPO, log
from seeding import (
    PASSWORD,
    after_bulk_load,
    employee_email,
    fresh_database,
    manager_email,
    max_task_id,
    owned_task_ids,
    seed_tasks,
    seed_users,
    shrink_tasks,
)
from servers import clean_env, scan_log, start_server, wait_ready
from tasks_bench import Runs, TasksBench
from tasks_setup import check_api, login_all
from tasks_targets import GROWTH_TARGET, MIX_P99_TARGET_MS, RATIO_TARGETS
from wrk_lua import write_get_lua, write_lua
from wrk_runs import strip_stdout, summarize

ENDPOINTS = ("bare", "mine", "task", "stats")
PATHS = {"bare": "/bare", "mine": "/tasks/mine", "stats": "/stats"}


def seed(bench: TasksBench) -> None:
    """A fresh, migrated database; users and tasks inserted directly (not through the API)."""
    args = bench.args
    bench.pg_created = fresh_database(args, bench.env, bench.tmp, bench.tapi)
    from taskapi.core.passwords import _hasher

    t0 = time.monotonic()
    password_hash = _hasher().hash(PASSWORD)
    bench.employee_ids, bench.manager_ids = asyncio.run(
        seed_users(bench.sa_url, args.employees, args.managers, password_hash))
    asyncio.run(seed_tasks(bench.sa_url, 0, args.tasks, bench.employee_ids, bench.manager_ids))
    bench.owners = bench.employee_ids[: args.users]
    bench.own_ids, total = asyncio.run(owned_task_ids(bench.sa_url, bench.owners))
    if total != args.tasks:
        raise RuntimeError("the seeded task count does not match")
    bench.seed_seconds = time.monotonic() - t0
    log(f"seeded {args.employees} employees, {args.managers} managers, {args.tasks} tasks "
        f"in {bench.seed_seconds:.1f} s ({args.database}); "
        f"{len(bench.own_ids[bench.owners[0]])} tasks per token")


def start_servers(bench: TasksBench) -> None:
    """`taskapi serve` and the bare app, with the same number of workers."""
    bench.start_serve(bench.serve, bench.env)
    bare = bench.bare
    bare.proc = start_server([sys.executable, str(REPO / "bench" / "bare_app.py"),
                              "--port", bare.base.rsplit(":", 1)[1],
                              "--workers", str(bench.args.workers)],
                             clean_env(), bench.tmp, bare.log_path)
    assert bench.serve.proc is not None
    wait_ready(bench.serve.base, bench.serve.proc, bench.serve.log_path)
    wait_ready(bare.base, bare.proc, bare.log_path, path="/bare")
    log(f"serve pid {bench.serve.pid} on {bench.serve.base}, bare pid {bare.pid} on {bare.base}")


def log_in(bench: TasksBench) -> None:
    """Tokens for the employees and one manager, then the API checks (which also fill the
    auth and response caches)."""
    args, base = bench.args, bench.serve.base
    t0 = time.monotonic()
    bench.tokens = asyncio.run(login_all(base, [employee_email(i) for i in range(args.users)],
                                         concurrency=4))
    bench.manager_token = asyncio.run(login_all(base, [manager_email(0)], concurrency=1))[0]
    login_s = time.monotonic() - t0
    checks = asyncio.run(check_api(base, bench.tokens, bench.owners, bench.own_ids,
                                   bench.manager_token, args.tasks,
                                   args.employees + args.managers))
    log(f"{len(bench.tokens)} employee tokens + 1 manager token in {login_s:.1f} s; "
        "API checks ok")
    bench.result.update({"seed_seconds": round(bench.seed_seconds, 1),
                         "login_seconds": round(login_s, 1),
                         "api_checks": checks,
                         "tasks_per_token_small": len(bench.own_ids[bench.owners[0]]),
                         "server_processes_before_load": server_processes(bench.serve.pid)})


def write_scripts(bench: TasksBench) -> None:
    """One wrk script per endpoint, the mix's, and (written by the table-size phase)
    task_200k's, in the temp dir."""
    tokens = bench.tokens
    scripts = {name: bench.tmp / f"{name}.lua" for name in (*ENDPOINTS, "mix", "task_200k")}
    write_get_lua(scripts["bare"], PATHS["bare"], tokens)
    write_get_lua(scripts["mine"], PATHS["mine"], tokens)
    write_get_lua(scripts["stats"], PATHS["stats"], [bench.manager_token])
    ids = [bench.own_ids[o] for o in bench.owners]
    write_lua(scripts["task"], "own_tasks.lua", tokens=tokens, ids=ids)
    write_lua(scripts["mix"], "mix.lua", tokens=tokens, ids=ids, put_every=bench.args.put_every)
    bench.scripts = scripts


def ratio_phase(bench: TasksBench) -> None:
    """(1) Per connection count, repeats of bare -> mine -> task -> stats; each endpoint's
    median req/s over the bare app's."""
    args = bench.args
    for conns in args.connections:
        runs: dict[str, Runs] = {name: [] for name in ENDPOINTS}
        for i in range(args.repeats):
            log(f"ratios c={conns}: repeat {i + 1}/{args.repeats}")
            for name in ENDPOINTS:
                runs[name].append(bench.run(name, name, conns))
        bench.ratio_runs[str(conns)] = runs
    ratios: dict[str, Any] = {}
    for conns, runs in bench.ratio_runs.items():
        summ = {name: summarize(rs) for name, rs in runs.items()}
        bare_rps = summ["bare"]["rps_median"]
        ratios[conns] = {
            "summary": summ,
            "ratio": {n: summ[n]["rps_median"] / bare_rps for n in RATIO_TARGETS},
            # Per repeat: each run against the bare run just before it (noise check).
            "ratio_per_repeat": {n: [round(a["rps"] / b["rps"], 3) for a, b in
                                     zip(runs[n], runs["bare"], strict=True)]
                                 for n in RATIO_TARGETS},
        }
    bench.result["ratios"] = ratios


def mix_phase(bench: TasksBench) -> None:
    """(2) The read/write mix, then the server log searched for "database is locked"."""
    args = bench.args
    for i in range(args.repeats):
        log(f"mix {100 - 100 // args.put_every}/{100 // args.put_every} "
            f"c={args.mix_connections}: repeat {i + 1}/{args.repeats}")
        bench.mix_runs.append(bench.run("mix", "mix", args.mix_connections))
    mix = summarize(bench.mix_runs)
    mix["database_is_locked_after_mix"] = scan_log(bench.serve.log_path)["database_is_locked"]
    bench.result["mix"] = mix


def profile_missed_targets(bench: TasksBench) -> list[dict[str, Any]]:
    """(3) py-spy while the endpoints that missed their ratio (at the first connection
    count) and the mix, if it missed its p99, run again; all of them with --profile all.
    Before the table grows."""
    args, profiles = bench.args, []
    if not bench.profiling:
        return []
    c0 = args.connections[0] if args.connections else 0
    for name, target in RATIO_TARGETS.items() if c0 else ():
        if args.profile == "all" or bench.result["ratios"][str(c0)]["ratio"][name] < target:
            profiles.append(bench.profile(name, name, c0))
    if args.profile == "all" or bench.result["mix"]["p99_ms_median"] > MIX_P99_TARGET_MS:
        profiles.append(bench.profile("mix", "mix", args.mix_connections))
    return profiles


def table_size_phase(bench: TasksBench) -> list[dict[str, Any]]:
    """(4) GET /task/{id} at the small and the big table size (skipped unless --big-tasks is
    above --tasks), against serve and a second server with the response cache off; then the
    profile of the big size if it missed its target. Returns that profile, if any."""
    args, result = bench.args, bench.result
    result["worker_rss_mib_before_size_phase"] = worker_rss(bench.serve.pid)
    size: dict[str, Any] = {}
    profiles = []
    if args.big_tasks > args.tasks:
        bench.start_serve(bench.uncached, {**bench.env, "TASKAPI_CACHE_TTL": "0"})
        assert bench.uncached.proc is not None
        wait_ready(bench.uncached.base, bench.uncached.proc, bench.uncached.log_path)
        size = _table_size_runs(bench)
        if bench.profiling and (args.profile == "all" or size["p50_growth"] > GROWTH_TARGET):
            profiles.append(bench.profile("task_200k", "task_200k", args.mix_connections))
        result["size_runs"] = size.pop("runs")
    result["size"] = size
    return profiles


def _table_size_runs(bench: TasksBench) -> dict[str, Any]:
    """Alternated so both sizes see the same machine noise: per repeat, a run at the small
    size (and one against the server with the response cache off), then the extra tasks are
    bulk inserted and three runs follow (each token walking all its own tasks; the same ids as
    at the small size; all its own tasks with the cache off), then the extra tasks are deleted
    and the table compacted (PostgreSQL VACUUM FULL + ANALYZE, SQLite VACUUM) — except after
    the last repeat. The server keeps running throughout (not restarted)."""
    args, sa_url, owners, run = bench.args, bench.sa_url, bench.owners, bench.run
    c64 = args.mix_connections
    extra = args.big_tasks - args.tasks
    time.sleep(5)  # let the server finish what the last run left in flight
    max_small_id = asyncio.run(max_task_id(sa_url))
    runs: dict[str, Runs] = {
        "task_2k": [], "task_200k": [], "task_200k_same_ids": [],
        "task_2k_uncached": [], "task_200k_uncached": []}
    events: list[dict[str, Any]] = []
    tasks_per_token_big = 0
    for i in range(args.repeats):
        log(f"table size repeat {i + 1}/{args.repeats}: {args.tasks} tasks")
        runs["task_2k"].append(run("task_2k", "task", c64))
        runs["task_2k_uncached"].append(run("task_2k_uncached", "task", c64))
        t0 = time.monotonic()
        asyncio.run(seed_tasks(sa_url, args.tasks, extra, bench.employee_ids,
                               bench.manager_ids))
        note = asyncio.run(after_bulk_load(sa_url, args.database))
        big_ids, total = asyncio.run(owned_task_ids(sa_url, owners))
        if total != args.big_tasks:
            raise RuntimeError(f"{total} tasks after the bulk insert, not {args.big_tasks}")
        tasks_per_token_big = len(big_ids[owners[0]])
        events.append({"grow_seconds": round(time.monotonic() - t0, 1), "after": note})
        log(f"inserted {extra} tasks in {events[-1]['grow_seconds']} s ({note}); "
            f"{tasks_per_token_big} tasks per token")
        write_lua(bench.scripts["task_200k"], "own_tasks.lua", tokens=bench.tokens,
                  ids=[big_ids[o] for o in owners])
        runs["task_200k"].append(run("task_200k", "task_200k", c64))
        runs["task_200k_same_ids"].append(run("task_200k_same_ids", "task", c64))
        runs["task_200k_uncached"].append(run("task_200k_uncached", "task_200k", c64))
        if i + 1 < args.repeats:
            t0 = time.monotonic()
            note = asyncio.run(shrink_tasks(sa_url, args.database, max_small_id))
            events.append({"shrink_seconds": round(time.monotonic() - t0, 1), "after": note})
            log(f"deleted them again in {events[-1]['shrink_seconds']} s ({note})")
    small, big = summarize(runs["task_2k"]), summarize(runs["task_200k"])
    same = summarize(runs["task_200k_same_ids"])
    small_db, big_db = summarize(runs["task_2k_uncached"]), summarize(runs["task_200k_uncached"])
    return {
        "connections": c64, "server_restarted": False, "events": events,
        "tasks_per_token_big": tasks_per_token_big,
        "small": small, "big": big, "big_same_ids": same,
        "small_uncached": small_db, "big_uncached": big_db,
        "p50_growth": big["p50_ms_median"] / small["p50_ms_median"],
        "p50_growth_same_ids": same["p50_ms_median"] / small["p50_ms_median"],
        "p50_growth_uncached": big_db["p50_ms_median"] / small_db["p50_ms_median"],
        "p50_growth_uncached_per_repeat": [
            round(b["lat_us"]["p50"] / a["lat_us"]["p50"], 3)
            for a, b in zip(runs["task_2k_uncached"], runs["task_200k_uncached"], strict=True)],
        "rps_growth": big["rps_median"] / small["rps_median"],
        "p50_growth_per_repeat": [round(b["lat_us"]["p50"] / a["lat_us"]["p50"], 3)
                                  for a, b in zip(runs["task_2k"], runs["task_200k"],
                                                  strict=True)],
        "runs": {n: strip_stdout(rs) for n, rs in runs.items()},
    }


def memory_phase(bench: TasksBench) -> list[float]:
    """(5) The process tables after the load; returns the workers' VmRSS in MiB."""
    procs = server_processes(bench.serve.pid)
    workers = [p for p in procs if p["kind"] == "hypercorn-worker"]
    rss = [p["vm_rss_kb"] / 1024 for p in workers if p["vm_rss_kb"]]
    bench.result["server_processes_after_load"] = procs
    bench.result["bare_processes_after_load"] = server_processes(bench.bare.pid)
    bench.result["worker_rss_mib"] = [round(x, 1) for x in rss]
    return rss


def record_raw_runs(bench: TasksBench) -> None:
    """Every ratio and mix run (without wrk's output), and wrk's output of the last run of
    each."""
    ratio_runs, mix_runs = bench.ratio_runs, bench.mix_runs
    bench.result["ratio_runs"] = {c: {n: strip_stdout(rs) for n, rs in runs.items()}
                                  for c, runs in ratio_runs.items()}
    bench.result["mix_runs"] = strip_stdout(mix_runs)
    bench.result["wrk_stdout_last"] = {
        **{f"{n}@{c}": rs[-1]["wrk_stdout"] for c, runs in ratio_runs.items()
           for n, rs in runs.items()},
        "mix": mix_runs[-1]["wrk_stdout"]}
