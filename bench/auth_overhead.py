"""Per-request authentication overhead: GET /me (rotating bearer tokens) vs GET /healthz.

Run with the repo venv:  .venv/bin/python bench/auth_overhead.py [--duration 15] [--connections 64]

Starts its own `taskapi serve` (production settings, a temp SQLite file, real Redis db 14,
flushed at start and end), creates an admin and N approved employees with one access token
each, then runs wrk alternately against /healthz and /me and reports the medians.
Exits 1 if any request got a non-2xx answer or wrk saw socket errors; 2 on setup failure.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from proc_stats import print_processes, server_processes
from run_info import REPO, log, machine_info, save_results
from servers import (
    clean_env,
    count_lines,
    flush_redis,
    free_port,
    start_server,
    stop_server,
    taskapi_bin,
    wait_ready,
)
from wrk_lua import write_get_lua
from wrk_runs import measure as _measure
from wrk_runs import strip_stdout, summarize

ADMIN_EMAIL, ADMIN_USER = "bench-admin@example.test", "bench_admin"
USER_PASSWORD = "bench password 123"


def make_env(args: argparse.Namespace, data_dir: Path) -> dict[str, str]:
    env = clean_env()  # inherited TASKAPI_* variables must not leak into the bench
    env.update({
        "TASKAPI_ENV": "production",
        "TASKAPI_SECRET_KEY": secrets.token_urlsafe(36),  # 48 characters
        "TASKAPI_DATA_DIR": str(data_dir),
        "TASKAPI_REDIS_URL": args.redis_url,
        "TASKAPI_RATE_LIMIT_DEFAULT": "10000000/minute",
        "TASKAPI_RATE_LIMIT_LOGIN": "10000000/minute",
        "TASKAPI_ACCESS_TOKEN_EXPIRES": "86400",
        "TASKAPI_LOG_LEVEL": args.log_level,
    })
    return env


# --- setup through the API ------------------------------------------------------------------

async def create_users(base: str, n: int, concurrency: int) -> list[str]:
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:

        async def call(method: str, url: str, expect: int, **kw: Any) -> dict[str, Any]:
            async with sem:
                resp = await client.request(method, url, **kw)
            if resp.status_code != expect:
                raise RuntimeError(f"{method} {url}: {resp.status_code} {resp.text[:300]}")
            return resp.json() if resp.content else {}

        admin = await call("POST", "/login", 200,
                           json={"email": ADMIN_EMAIL, "password": USER_PASSWORD})
        admin_auth = {"Authorization": f"Bearer {admin['access_token']}"}
        registered = await asyncio.gather(*(
            call("POST", "/register", 202, json={
                "username": f"bench_emp_{i:03d}", "email": f"bench.emp.{i:03d}@example.test",
                "password": USER_PASSWORD, "role": "employee"})
            for i in range(n)))
        # /register answers without an id (it must not tell new and known emails apart):
        # the admin finds the new accounts in the pending list.
        emails = {r["email"] for r in registered}
        users: list[dict[str, Any]] = []
        url: str | None = "/users/pending?limit=200"
        while url:
            page = await client.get(url, headers=admin_auth)
            users += [u for u in page.json() if u["email"] in emails]
            link = page.headers.get("Link")
            url = link.split(";")[0].strip("<>") if link else None
        if len(users) != n:
            raise RuntimeError(f"{len(users)} of {n} registered users are pending")
        await asyncio.gather(*(call("PUT", f"/users/{u['id']}/approve", 200, headers=admin_auth)
                               for u in users))
        pairs = await asyncio.gather(*(
            call("POST", "/login", 200, json={"email": u["email"], "password": USER_PASSWORD})
            for u in users))
        tokens = [p["access_token"] for p in pairs]
        # Every token works before the load starts (and the auth cache is filled).
        mes = await asyncio.gather(*(call("GET", "/me", 200,
                                          headers={"Authorization": f"Bearer {t}"})
                                     for t in tokens))
        if sorted(m["id"] for m in mes) != sorted(u["id"] for u in users):
            raise RuntimeError("GET /me returned the wrong users for the issued tokens")
        return tokens


# --- wrk ------------------------------------------------------------------------------------

def measure(name: str, wrk: str, base: str, script: Path, args: argparse.Namespace,
            serve_pid: int, log_path: Path) -> dict[str, Any]:
    return _measure(name, wrk, base, script, threads=args.threads,
                    connections=args.connections, duration=args.duration,
                    warmup=args.warmup, server_pid=serve_pid, log_path=log_path,
                    redis_url=args.redis_url)


# --- main -----------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warmup before each")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--repeats", type=int, default=3, help="measured runs per endpoint")
    parser.add_argument("--workers", type=int, default=2, help="hypercorn worker processes")
    parser.add_argument("--users", type=int, default=50, help="employees = distinct tokens")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14",
                        help="flushed at start and end: never point this at real data")
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (server log)")
    parser.add_argument("--no-save", action="store_true", help="do not write results JSON")
    args = parser.parse_args()

    wrk = shutil.which("wrk")
    if wrk is None:
        log("wrk not found: apt-get install -y wrk")
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="taskapi-bench-"))
    data_dir, log_path = tmp / "data", tmp / "serve.log"
    env = make_env(args, data_dir)
    tapi = taskapi_bin()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc: subprocess.Popen[bytes] | None = None
    exit_code = 0
    try:
        flush_redis(args.redis_url)
        # cwd = the temp dir: settings also read a `.env` from the working directory.
        for cmd in ([tapi, "db", "upgrade"],
                    [tapi, "create-admin", "--email", ADMIN_EMAIL, "--username", ADMIN_USER,
                     "--password", USER_PASSWORD]):
            subprocess.run(cmd, env=env, cwd=tmp, check=True, capture_output=True, timeout=120)
        proc = start_server([tapi, "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", str(args.workers)], env, tmp, log_path)
        wait_ready(base, proc, log_path)
        log(f"serve pid {proc.pid} ready on {base}; creating {args.users} users")
        t0 = time.monotonic()
        tokens = asyncio.run(create_users(base, args.users, concurrency=4))
        setup_s = time.monotonic() - t0
        log(f"{len(tokens)} tokens in {setup_s:.1f} s")
        setup_log_lines = count_lines(log_path)[0]
        rss_before = server_processes(proc.pid)

        scripts = {"healthz": tmp / "healthz.lua", "me": tmp / "me.lua"}
        write_get_lua(scripts["healthz"], "/healthz", tokens)
        write_get_lua(scripts["me"], "/me", tokens)
        runs: dict[str, list[dict[str, Any]]] = {"healthz": [], "me": []}
        for i in range(args.repeats):
            for name in ("healthz", "me"):
                log(f"run {i + 1}/{args.repeats} {name}")
                runs[name].append(measure(name, wrk, base, scripts[name], args, proc.pid,
                                          log_path))

        rss_after = server_processes(proc.pid)
        summary = {name: summarize(r) for name, r in runs.items()}
        ratio = summary["me"]["rps_median"] / summary["healthz"]["rps_median"]
        per_req_extra_us = (1e6 / summary["me"]["rps_median"]
                            - 1e6 / summary["healthz"]["rps_median"])
        failed = any(s["non2xx_total"] or s["socket_errors_total"] for s in summary.values())

        print_table(summary, ratio, per_req_extra_us, rss_after, args)
        log_tail = log_path.read_text(errors="replace").splitlines()
        result = {
            "benchmark": "auth_overhead",
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "machine": machine_info(wrk),
            "config": {k: v for k, v in vars(args).items()},
            "setup_seconds": round(setup_s, 1),
            "summary": summary,
            "ratio_me_over_healthz_rps": ratio,
            "extra_wall_us_per_request_at_saturation": per_req_extra_us,
            "runs": {name: strip_stdout(rs) for name, rs in runs.items()},
            "wrk_stdout_last": {name: rs[-1]["wrk_stdout"] for name, rs in runs.items()},
            "server_processes_before_load": rss_before,
            "server_processes_after_load": rss_after,
            "server_log": {"lines_during_setup": setup_log_lines,
                           "lines_total": len(log_tail), "tail": log_tail[-20:]},
            "failed": failed,
        }
        if not args.no_save:
            out = save_results("auth_overhead", result)
            log(f"results written to {out.relative_to(REPO)}")
        if failed:
            log("FAILED: non-2xx responses or socket errors (see statuses above)")
            exit_code = 1
    except (RuntimeError, subprocess.CalledProcessError, subprocess.TimeoutExpired,
            OSError, httpx.HTTPError) as exc:
        detail = getattr(exc, "stderr", None)
        log(f"setup/run failed: {exc!r}" + (f"\n{detail.decode(errors='replace')}"
                                            if isinstance(detail, bytes) else ""))
        if log_path.exists():
            log("server log tail:\n" + "\n".join(log_path.read_text(errors="replace")
                                                 .splitlines()[-30:]))
        exit_code = 2
    finally:
        if proc is not None:
            rc = stop_server(proc)
            log(f"serve stopped (exit {rc})")
        try:
            flush_redis(args.redis_url)
        except Exception as exc:
            log(f"could not flush {args.redis_url}: {exc!r}")
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return exit_code


def print_table(summary: dict[str, Any], ratio: float, extra_us: float,
                procs: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"\nauth overhead: wrk -t{args.threads} -c{args.connections} -d{args.duration}s, "
          f"{args.repeats} runs each (medians), {args.workers} hypercorn workers, "
          f"{args.users} tokens")
    head = (f"{'endpoint':10s} {'req/s':>9s} {'p50 ms':>8s} {'p90 ms':>8s} {'p99 ms':>8s} "
            f"{'CPU us/req':>10s} {'non-2xx':>8s} {'sock err':>8s}  runs req/s")
    print(head)
    print("-" * len(head))
    for name, s in summary.items():
        print(f"{'GET /' + name:10s} {s['rps_median']:9.0f} {s['p50_ms_median']:8.2f} "
              f"{s['p90_ms_median']:8.2f} {s['p99_ms_median']:8.2f} "
              f"{s['server_cpu_us_per_req_median']:10.0f} {s['non2xx_total']:8d} "
              f"{s['socket_errors_total']:8d}  {s['rps_runs']}")
    print(f"\nratio me/healthz req/s: {ratio:.3f}  "
          f"(= {extra_us:.0f} us more wall time per request at saturation)")
    print("statuses:", {n: s["statuses"] for n, s in summary.items()})
    print("server log lines during the runs (warmups included), ERROR entries:",
          {n: (s["server_log_lines_total"], s["server_log_errors_total"])
           for n, s in summary.items()})
    print_processes("\nserver processes after the run:", procs)
    print()


if __name__ == "__main__":
    sys.exit(main())
