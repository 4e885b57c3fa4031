"""1,000 concurrent connections for 60 s on a 90/10 read/write mix, 2 server workers.

Run with the repo venv:

    .venv/bin/python bench/load_1000.py [--database sqlite|postgres] [--duration 60]

Seeds users and tasks like bench/tasks_load.py (same helpers), starts `taskapi serve
--workers 2`, logs employees in, then holds `--connections` wrk connections for `--duration`
seconds: 90 % GET /tasks/mine, 10 % PUT /task/{id}/status, bearer tokens rotating (the
lua/mix.lua script of tasks_load.py). A short warmup at the same concurrency comes first.

Reported: requests/s, latency p50/p99, every status (non-2xx, 5xx), wrk's socket errors by
kind, the kernel's listen-queue overflows during the run (server side: the accept backlog)
and the open-file limits (client side: wrk needs one descriptor per connection), RSS per
hypercorn worker at start, every 10 s and at the end, and ERROR lines in the server log.

Exit status: 1 if any 5xx, socket error or server ERROR line; 2 if setup failed.
See bench/README.md, section "1,000 connections".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from proc_stats import worker_cpu, worker_rss
from run_info import app_version, log, machine_info, save_results
from seeding import (
    PASSWORD,
    database_urls,
    employee_email,
    fresh_database,
    owned_task_ids,
    pg_recreate,
    seed_tasks,
    seed_users,
)
from servers import (
    count_lines,
    flush_redis,
    free_port,
    start_server,
    stop_server,
    taskapi_bin,
    wait_ready,
)
from tasks_setup import add_common_args, add_store_args, login_all, make_env
from wrk_lua import write_lua
from wrk_runs import find_wrk, run_wrk


def raise_nofile() -> tuple[int, int]:
    """Soft open-file limit up to the hard one (wrk and the server inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def listen_overflows() -> dict[str, int]:
    """TcpExtListenOverflows / ListenDrops since boot (accept queue full: the server's side)."""
    out = subprocess.run(["nstat", "-az", "TcpExtListenOverflows", "TcpExtListenDrops"],
                         capture_output=True, text=True, check=False).stdout
    values = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith("TcpExt"):
            values[parts[0]] = int(parts[1])
    return values


class RssSampler(threading.Thread):
    def __init__(self, serve_pid: int, every: float) -> None:
        super().__init__(daemon=True)
        self.serve_pid, self.every = serve_pid, every
        self.samples: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.started_at = time.monotonic()

    def run(self) -> None:
        while not self.stop.wait(self.every):
            self.samples.append({"t_s": round(time.monotonic() - self.started_at, 1),
                                 "worker_rss_mib": worker_rss(self.serve_pid)})


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--duration", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    add_common_args(parser)
    add_store_args(parser, redis_db=10, pg_database="taskapi_load_1000", log_level="WARNING")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    wrk = find_wrk()
    if wrk is None:
        return 2
    nofile = raise_nofile()
    if nofile[0] < args.connections + 100:
        log(f"open-file limit {nofile[0]} is below {args.connections} connections: "
            "wrk would fail on the client side (raise `ulimit -n`)")
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="taskapi-load-1000-"))
    data_dir = tmp / "data"
    data_dir.mkdir()
    serve_log = tmp / "serve.log"
    db_url, sa_url = database_urls(args, data_dir)
    env = make_env(args, data_dir, db_url)
    tapi = taskapi_bin()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    serve: subprocess.Popen[bytes] | None = None
    pg_created = False
    result: dict[str, Any] = {
        "benchmark": "load_1000", "database": args.database,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "machine": machine_info(wrk), "config": vars(args), "app_version": app_version(),
        "open_files_limit": {"soft": nofile[0], "hard": nofile[1]},
        "somaxconn": int(Path("/proc/sys/net/core/somaxconn").read_text()),
    }
    exit_code = 0
    try:
        pg_created = fresh_database(args, env, tmp, tapi)
        from taskapi.core.passwords import _hasher

        employee_ids, manager_ids = asyncio.run(
            seed_users(sa_url, args.employees, args.managers, _hasher().hash(PASSWORD)))
        asyncio.run(seed_tasks(sa_url, 0, args.tasks, employee_ids, manager_ids))
        owners = employee_ids[: args.users]
        own_ids, _ = asyncio.run(owned_task_ids(sa_url, owners))

        serve = start_server([tapi, "serve", "--host", "127.0.0.1", "--port", str(port),
                              "--workers", str(args.workers)], env, tmp, serve_log)
        wait_ready(base, serve, serve_log)
        tokens = asyncio.run(login_all(base, [employee_email(i) for i in range(args.users)],
                                       concurrency=4))
        script = tmp / "mix.lua"
        write_lua(script, "mix.lua", tokens=tokens, ids=[own_ids[o] for o in owners],
                  put_every=args.put_every)

        result["worker_rss_mib_start"] = worker_rss(serve.pid)
        log(f"serve pid {serve.pid}, workers RSS {result['worker_rss_mib_start']} MiB; "
            f"warmup {args.warmup} s at c={args.connections}")
        warm = run_wrk(wrk, base, script, threads=args.threads, connections=args.connections,
                       duration=args.warmup)
        result["warmup"] = {k: warm[k] for k in ("requests", "rps", "statuses", "errors",
                                                 "socket_errors", "lat_us")}
        result["worker_rss_mib_after_warmup"] = worker_rss(serve.pid)

        lines0, errors0 = count_lines(serve_log)
        overflow0 = listen_overflows()
        sampler = RssSampler(serve.pid, every=10)
        sampler.start()
        log(f"measuring {args.duration} s at c={args.connections}")
        cpu0, load0 = worker_cpu(serve.pid), os.getloadavg()
        res = run_wrk(wrk, base, script, threads=args.threads, connections=args.connections,
                      duration=args.duration)
        cpu1, load1 = worker_cpu(serve.pid), os.getloadavg()
        sampler.stop.set()
        overflow1 = listen_overflows()
        time.sleep(1)
        lines1, errors1 = count_lines(serve_log)
        result["worker_rss_mib_end"] = worker_rss(serve.pid)
        result["worker_rss_mib_samples"] = sampler.samples
        five_xx = sum(n for s, n in res["statuses"].items() if s.startswith("5"))
        result["run"] = {
            "requests": res["requests"], "rps": round(res["rps"], 1),
            "p50_ms": res["lat_us"]["p50"] / 1000, "p90_ms": res["lat_us"]["p90"] / 1000,
            "p99_ms": res["lat_us"]["p99"] / 1000, "max_ms": res["lat_us"]["max"] / 1000,
            "statuses": res["statuses"], "non2xx": res["non2xx"], "5xx": five_xx,
            "socket_errors": res["errors"], "socket_errors_total": res["socket_errors"],
            "listen_overflows": {k: overflow1.get(k, 0) - overflow0.get(k, 0)
                                 for k in overflow1},
            "server_log_lines": lines1 - lines0, "server_log_errors": errors1 - errors0,
            # The machine is shared: CPU per request is steadier than req/s.
            "server_cpu_s": round(cpu1 - cpu0, 1),
            "server_cpu_us_per_req": round((cpu1 - cpu0) * 1e6 / max(res["requests"], 1)),
            "loadavg_1min_start_end": [round(load0[0], 2), round(load1[0], 2)],
        }
        result["wrk_stdout"] = res["wrk_stdout"]
        run = result["run"]
        print(f"\nload_1000 ({args.database}): wrk -t{args.threads} -c{args.connections} "
              f"-d{args.duration}s, {args.workers} workers, 90/10 GET /tasks/mine + PUT status")
        print(f"  {run['rps']:.0f} req/s, p50 {run['p50_ms']:.1f} ms, p99 {run['p99_ms']:.1f} ms,"
              f" max {run['max_ms']:.0f} ms")
        print(f"  statuses {run['statuses']}  non-2xx {run['non2xx']}  5xx {run['5xx']}")
        print(f"  socket errors {run['socket_errors']}  listen overflows "
              f"{run['listen_overflows']}  server ERROR lines {run['server_log_errors']}")
        print(f"  server CPU {run['server_cpu_s']} s ({run['server_cpu_us_per_req']} us/req), "
              f"load average {run['loadavg_1min_start_end']}")
        print(f"  worker RSS MiB start {result['worker_rss_mib_start']}, after warmup "
              f"{result['worker_rss_mib_after_warmup']}, end {result['worker_rss_mib_end']}")
        result["failed"] = bool(run["5xx"] or run["socket_errors_total"]
                                or run["server_log_errors"])
        if not args.no_save:
            out = save_results(f"load_1000-{args.database}", result)
            log(f"results written to {out}")
        if result["failed"]:
            exit_code = 1
    except Exception as exc:
        log(f"setup/run failed: {exc!r}")
        args.keep = True
        exit_code = 2
    finally:
        if serve is not None:
            log(f"serve stopped (exit {stop_server(serve)})")
        flush_redis(args.redis_url)
        if pg_created and not args.keep:
            asyncio.run(pg_recreate(args, create=False))
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
