"""taskapi beside a bare Quart endpoint, the seed tutorial's Flask app and a FastAPI app, on
the same data, tokens and wrk workloads, in one sitting (issue #19).

    .venv/bin/python bench/compare.py [--database sqlite|postgres] [--duration 8]

Servers: bench/bare_app.py (the ceiling: one JSON endpoint on taskapi's hypercorn settings),
`taskapi serve --workers 2` at LOG_LEVEL=INFO (and a second one at WARNING, "warning": the
access log's cost, measured in the same rotation), bench/peers/flask_seed under `gunicorn -w 4`
and bench/peers/fastapi_app under uvicorn with 2 workers (the peers installed into venvs of
their own under --venvs). Each app gets 200 employees, 2 managers and 2,000 tasks seeded
straight into its own database and its own 50 employee tokens + 1 manager token from its
/login. Workloads (each warmed up, then measured; medians of --repeats): cached
`/tasks/mine` (employee tokens rotating), random `/task/{id}` as the manager, `/stats` as
the manager, and the 90/10 mix of `/tasks/mine` and `PUT /task/{id}/status`, at 64 and 256
connections. Prints req/s, p50, p99, non-2xx and "database is locked" per server, the
taskapi/Flask and taskapi/bare ratios, and PASS/FAIL per target of the issue.

Exit status: 1 if taskapi answered any non-2xx, wrk saw a socket error against it, or its log
says "database is locked"; 2 if setup failed. Missed targets are reported, not fatal.
See bench/README.md, section "compare.py".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import compare_peers as peers
import httpx
import profiling
from compare_report import judge, print_report, summarize_all
from run_info import REPO, log, save_results
from seeding import employee_email, manager_email
from servers import (
    LOCKED,
    clean_env,
    free_port,
    scan_log,
    start_server,
    stop_server,
    wait_ready,
)
from tasks_bench import Server, TasksBench
from tasks_phases import log_in, seed, start_servers, write_scripts
from tasks_setup import add_common_args, add_store_args, check_api, login_all
from wrk_lua import write_get_lua, write_lua
from wrk_runs import find_wrk, measure, strip_stdout

APPS = ("taskapi", "flask", "fastapi", "warning")
WORKLOADS = ("mine", "task", "stats", "mix")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--duration", type=int, default=8, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warmup before each")
    parser.add_argument("--repeats", type=int, default=3, help="measured runs per workload")
    parser.add_argument("--connections", default="64,256", help="comma list")
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help=f"comma list of {', '.join(WORKLOADS)}")
    parser.add_argument("--apps", default=",".join(APPS),
                        help="comma list of taskapi, flask, fastapi, warning (taskapi always "
                        "runs; warning: taskapi at LOG_LEVEL=WARNING, the access log's A/B)")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare-Quart runs")
    add_common_args(parser)
    parser.add_argument("--flask-workers", type=int, default=4, help="gunicorn -w")
    parser.add_argument("--fastapi-workers", type=int, default=2, help="uvicorn --workers")
    # The apps share the Redis database (keys prefixed per peer) and the PostgreSQL one (the
    # peers in schemas of their own); --log-level is taskapi's (its default: INFO).
    add_store_args(parser, redis_db=6, pg_database="taskapi_compare", log_level="INFO")
    parser.add_argument("--venvs", type=Path, default=REPO / "bench" / ".venvs",
                        help="where the peers' venvs are made (git-ignored)")
    parser.add_argument("--port-base", type=int, default=0,
                        help="ports port-base+0..4 (default: free ports)")
    profiling.add_args(parser, default="off")
    args = parser.parse_args()
    args.connections = [int(c) for c in str(args.connections).split(",") if c.strip()]
    args.workloads = [w for w in args.workloads.split(",") if w]
    args.apps = ["taskapi", *(a for a in args.apps.split(",") if a in APPS[1:])]
    if set(args.workloads) - set(WORKLOADS):
        parser.error(f"--workloads: one of {', '.join(WORKLOADS)}")
    return args


class App:
    """One app under test: its server, tokens, the task ids its data has, its wrk scripts,
    and how far its log has been searched for "database is locked"."""

    def __init__(self, name: str, server: Server) -> None:
        self.name, self.server = name, server
        self.owners: list[int] = []
        self.own_ids: dict[int, list[int]] = {}
        self.all_ids: list[int] = []
        self.tokens: list[str] = []
        self.manager_token = ""
        self.scripts: dict[str, Path] = {}
        self.log_offset = 0

    def new_locked(self) -> int:
        """'database is locked' in the log lines written since the last call."""
        try:
            with self.server.log_path.open("rb") as f:
                f.seek(self.log_offset)
                chunk = f.read()
        except OSError:
            return 0
        self.log_offset += len(chunk)
        return chunk.count(LOCKED.encode())


def write_app_scripts(app: App, tmp: Path, put_every: int) -> None:
    ids = [app.own_ids[o] for o in app.owners]
    s = {w: tmp / f"{app.name}-{w}.lua" for w in WORKLOADS}
    write_get_lua(s["mine"], "/tasks/mine", app.tokens)
    write_lua(s["task"], "random_task.lua", token=app.manager_token, ids=app.all_ids)
    write_get_lua(s["stats"], "/stats", [app.manager_token])
    write_lua(s["mix"], "mix.lua", tokens=app.tokens, ids=ids, put_every=put_every)
    app.scripts = s


def setup_taskapi(bench: TasksBench) -> App:
    """tasks_load.py's phases: seed, start taskapi and the bare app, log in, check the API."""
    seed(bench)
    start_servers(bench)
    log_in(bench)
    write_scripts(bench)  # bench.scripts["bare"] is the bare app's
    app = App("taskapi", bench.serve)
    app.owners, app.own_ids, app.tokens = bench.owners, bench.own_ids, bench.tokens
    app.manager_token = bench.manager_token
    app.all_ids = asyncio.run(_all_task_ids(bench.sa_url))
    return app


async def _all_task_ids(sa_url: str) -> list[int]:
    from sqlalchemy import select
    from sqlalchemy.ext.asyncio import create_async_engine

    from taskapi.models import Task

    engine = create_async_engine(sa_url)
    try:
        async with engine.connect() as conn:
            return [int(i) for i in (await conn.execute(select(Task.id).order_by(Task.id)))
                    .scalars()]
    finally:
        await engine.dispose()


def setup_warning(bench: TasksBench, taskapi: App, port: int) -> App:
    """taskapi again, on the same database, Redis and secret, at LOG_LEVEL=WARNING (no access
    log): the same tokens and data, so the two differ by the access log alone."""
    server = Server("warning", f"http://127.0.0.1:{port}", bench.tmp / "warning.log")
    bench.start_serve(server, {**bench.env, "TASKAPI_LOG_LEVEL": "WARNING"})
    assert server.proc is not None
    wait_ready(server.base, server.proc, server.log_path)
    app = App("warning", server)
    for name in ("owners", "own_ids", "all_ids", "tokens", "manager_token"):
        setattr(app, name, getattr(taskapi, name))
    log(f"warning (taskapi at WARNING) pid {server.pid} on {server.base}")
    return app


def setup_peer(name: str, bench: TasksBench, port: int) -> App:
    """Install, create the tables, seed, start, log in and check one peer."""
    args, peer = bench.args, peers.PEERS[name]
    bin_dir = peers.ensure_venv(peer, args.venvs)
    app_url, schema, seed_url = peers.peer_urls(peer, args, bench.tmp / "data")
    env = peers.peer_env(clean_env(), app_url, schema, args.redis_url,
                         secrets.token_urlsafe(36), prefix=f"{name}:")
    peers.init_db(peer, bin_dir, env, seed_url, schema)
    app = App(name, Server(name, f"http://127.0.0.1:{port}", bench.tmp / f"{name}.log"))
    app.owners, app.own_ids, app.all_ids = asyncio.run(peers.seed_peer(peer, seed_url, schema,
                                                                       args))
    workers = args.flask_workers if peer is peers.FLASK else args.fastapi_workers
    app.server.proc = start_server(peers.command(peer, bin_dir, port, workers), env,
                                   peer.source, app.server.log_path)
    wait_ready(app.server.base, app.server.proc, app.server.log_path, path="/healthz")
    base = app.server.base
    app.tokens = asyncio.run(login_all(base, [employee_email(i) for i in range(args.users)],
                                       concurrency=4))
    app.manager_token = asyncio.run(login_all(base, [manager_email(0)], concurrency=1))[0]
    asyncio.run(check_api(base, app.tokens, app.owners, app.own_ids, app.manager_token,
                          args.tasks, args.employees + args.managers, etag=False))
    log(f"{name} pid {app.server.pid} on {base}: seeded, {len(app.tokens)} tokens, API checks ok")
    return app


def ports(bench: TasksBench, args: argparse.Namespace) -> list[int]:
    """Ports of the flask and fastapi peers and the WARNING taskapi; with --port-base,
    taskapi's and bare's too."""
    if not args.port_base:
        return [free_port(), free_port(), free_port()]
    bench.serve.base = f"http://127.0.0.1:{args.port_base}"
    bench.bare.base = f"http://127.0.0.1:{args.port_base + 1}"
    bench.uncached.base = f"http://127.0.0.1:{args.port_base + 2}"
    return [args.port_base + 3, args.port_base + 4, args.port_base + 5]


def drainer(base: str, path: str) -> Callable[[], float]:
    """One GET of a cheap path, waited for: it is answered once the server has worked off
    the requests queued before it (how long that took is recorded with each run)."""
    def drain() -> float:
        t0 = time.monotonic()
        httpx.get(f"{base}{path}", timeout=300).raise_for_status()
        return time.monotonic() - t0
    return drain


def run_one(bench: TasksBench, label: str, server: Server, script: Path, conns: int,
            app: App | None) -> dict[str, Any]:
    args = bench.args
    res = measure(label, bench.wrk, server.base, script, threads=args.threads,
                  connections=conns, duration=args.duration, warmup=args.warmup,
                  server_pid=server.pid, log_path=server.log_path, redis_url=args.redis_url,
                  drain=drainer(server.base, "/bare" if app is None else "/healthz"))
    res["database_is_locked"] = app.new_locked() if app else 0
    res["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return res


def run_all(bench: TasksBench, apps: dict[str, App]) -> dict[str, Any]:
    """Per connection count and repeat: bare, then each workload on every app (the apps'
    order rotating per repeat, so none always runs first)."""
    args = bench.args
    order = list(apps)
    runs: dict[str, Any] = {}
    for conns in args.connections:
        per: dict[str, dict[str, list[dict[str, Any]]]] = {
            w: {a: [] for a in order} for w in args.workloads}
        per["bare"] = {"bare": []}
        for rep in range(args.repeats):
            log(f"c={conns}: repeat {rep + 1}/{args.repeats}")
            if not args.no_bare:
                per["bare"]["bare"].append(run_one(bench, "bare", bench.bare,
                                                   bench.scripts["bare"], conns, None))
            rotated = order[rep % len(order):] + order[: rep % len(order)]
            for w in args.workloads:
                for a in rotated:
                    app = apps[a]
                    per[w][a].append(run_one(bench, f"{w}:{a}", app.server, app.scripts[w],
                                             conns, app))
        runs[str(conns)] = per
    return runs


def profile_missed(bench: TasksBench, result: dict[str, Any],
                   apps: dict[str, App]) -> list[dict[str, Any]]:
    """py-spy on taskapi's workers for each workload that missed a target (all: every one),
    at the first connection count."""
    if not bench.profiling or not bench.args.connections:
        return []
    conns = str(bench.args.connections[0])
    missed = {t["workload"] for t in result["targets"].values()
              if not t["pass"] and t.get("connections") == conns}
    out = []
    for w in bench.args.workloads:
        if bench.args.profile == "all" or w in missed:
            bench.scripts[f"compare-{w}"] = apps["taskapi"].scripts[w]
            out.append(bench.profile(w, f"compare-{w}", int(conns)))
    return out


def main() -> int:
    args = parse_args()
    wrk = find_wrk()
    if wrk is None:
        return 2
    bench = TasksBench.create(args, wrk)
    result = bench.result
    result["benchmark"] = "compare"
    result["config"]["venvs"] = str(args.venvs)
    apps: dict[str, App] = {}
    exit_code = 0
    try:
        peer_ports = ports(bench, args)
        apps["taskapi"] = setup_taskapi(bench)
        for name in args.apps[1:]:
            port = peer_ports[APPS.index(name) - 1]
            apps[name] = (setup_warning(bench, apps["taskapi"], port) if name == "warning"
                          else setup_peer(name, bench, port))
        for app in apps.values():
            write_app_scripts(app, bench.tmp, args.put_every)
            app.new_locked()  # from here on: the runs' lines only
        result["commands"] = {a.name: " ".join(a.server.proc.args)  # type: ignore[union-attr]
                              for a in apps.values()}
        runs = run_all(bench, apps)
        result.update(summarize_all(runs))
        result["server_logs"] = {a.name: scan_log(a.server.log_path) for a in apps.values()}
        judge(result)
        result["profiles"] = profile_missed(bench, result, apps)
        result["runs"] = {c: {w: {a: strip_stdout(rs) for a, rs in per.items()}
                              for w, per in ws.items()} for c, ws in runs.items()}
        print_report(result, args)
        if not args.no_save:
            out = save_results(f"compare-{args.database}", result)
            log(f"results written to {out.relative_to(REPO)}")
        if result["failed"]:
            log("FAILED: taskapi answered non-2xx, had socket errors or 'database is locked'")
            exit_code = 1
    except Exception as exc:
        bench.report_failure(exc)
        for app in apps.values():
            if app.name != "taskapi" and app.server.log_path.exists():
                log(f"{app.name}.log tail:\n" + "\n".join(
                    app.server.log_path.read_text(errors="replace").splitlines()[-15:]))
        log(f"failed: {exc!r} (the temp dir is kept)")
        exit_code = 2
    finally:
        for app in apps.values():
            if app.name != "taskapi" and app.server.proc is not None:
                log(f"{app.name} stopped (exit {stop_server(app.server.proc, app.name)})")
        bench.close()
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
