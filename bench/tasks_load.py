"""Task endpoints under load: cached lists, single reads, stats, a read/write mix, table size.

Run with the repo venv:

    .venv/bin/python bench/tasks_load.py [--database sqlite|postgres] [--duration 15]

Seeds users and tasks directly in a fresh database (SQLite in a temp dir, or a PostgreSQL
database it creates and drops), starts `taskapi serve --workers 2` and a bare Quart app
(bench/bare_app.py) with the same hypercorn settings, logs employees and a manager in, then
runs wrk (Lua scripts rotating the bearer tokens) and reports against the targets:

1. req/s of GET /tasks/mine, GET /task/{id} and GET /stats as a fraction of the bare app,
   at 64 and 256 connections (medians of alternating repeats);
2. a 90 % GET /tasks/mine + 10 % PUT /task/{id}/status mix: errors, p99, "database is locked";
3. GET /task/{id} p50 with 2,000 tasks and again after seeding up to 200,000;
4. RSS per hypercorn worker after the runs.

Exit status: 1 if any request got a non-2xx answer, wrk saw socket errors or the server
logged "database is locked"; 2 if setup failed. Missed targets are reported, not fatal.
See bench/README.md, section "Tasks load".
"""

from __future__ import annotations

import argparse
import sys

import profiling
from run_info import REPO, log, save_results
from tasks_bench import TasksBench
from tasks_phases import (
    log_in,
    memory_phase,
    mix_phase,
    profile_missed_targets,
    ratio_phase,
    record_raw_runs,
    seed,
    start_servers,
    table_size_phase,
    write_scripts,
)
from tasks_report import print_report
from tasks_setup import add_common_args, add_store_args
from tasks_targets import judge
from wrk_runs import find_wrk


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--duration", type=int, default=15, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warmup before each")
    parser.add_argument("--connections", default="64,256",
                        help="comma list for the ratio runs (the mix and the size runs use 64); "
                             "empty: skip them")
    parser.add_argument("--mix-connections", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="measured runs per endpoint")
    add_common_args(parser)
    parser.add_argument("--big-tasks", type=int, default=200_000,
                        help="table size for the second GET /task/{id} run (0: skip)")
    add_store_args(parser, redis_db=13, pg_database="taskapi_bench", log_level="WARNING")
    profiling.add_args(parser, default="auto")
    args = parser.parse_args()
    args.connections = [int(c) for c in str(args.connections).split(",") if c.strip()]
    return args


def main() -> int:
    args = parse_args()
    wrk = find_wrk()
    if wrk is None:
        return 2
    bench = TasksBench.create(args, wrk)
    result = bench.result
    exit_code = 0
    try:
        seed(bench)
        start_servers(bench)
        log_in(bench)
        write_scripts(bench)
        ratio_phase(bench)
        mix_phase(bench)
        profiles = profile_missed_targets(bench)
        profiles += table_size_phase(bench)
        result["profiles"] = profiles
        rss = memory_phase(bench)
        judge(result, bench.serve.log_path, bench.bare.log_path, rss)
        record_raw_runs(bench)

        print_report(result, args)
        if not args.no_save:
            out = save_results(f"tasks_load-{args.database}", result)
            log(f"results written to {out.relative_to(REPO)}")
        if result["failed"]:
            log("FAILED: non-2xx responses, socket errors or 'database is locked' (see above)")
            exit_code = 1
    except Exception as exc:
        bench.report_failure(exc)
        exit_code = 2
    finally:
        bench.close()
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
