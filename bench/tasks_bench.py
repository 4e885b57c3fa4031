"""The state of one tasks_load.py run: its temp dir, database, servers and Lua scripts, what
the phases found so far, which server a named run measures, and the cleanup at the end."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import profiling
from run_info import app_version, log, machine_info
from seeding import database_urls, pg_recreate
from servers import flush_redis, free_port, start_server, stop_server, taskapi_bin
from tasks_setup import make_env
from wrk_runs import measure

Runs = list[dict[str, Any]]


@dataclass
class Server:
    """A server of the run: its name in the log, where it answers and logs, its process."""

    name: str
    base: str
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} is not started"
        return self.proc.pid


@dataclass
class TasksBench:
    args: argparse.Namespace
    wrk: str
    pyspy: str | None
    tmp: Path
    sa_url: str  # the async SQLAlchemy URL, for seeding
    env: dict[str, str]  # the server's
    tapi: str
    serve: Server
    bare: Server  # bench/bare_app.py, the baseline
    uncached: Server  # the same app with TASKAPI_CACHE_TTL=0, for the table-size phase
    result: dict[str, Any]
    pg_created: bool = False
    seed_seconds: float = 0.0
    employee_ids: list[int] = field(default_factory=list)
    manager_ids: list[int] = field(default_factory=list)
    owners: list[int] = field(default_factory=list)  # the employees with a token
    own_ids: dict[int, list[int]] = field(default_factory=dict)  # their tasks' ids
    tokens: list[str] = field(default_factory=list)
    manager_token: str = ""
    scripts: dict[str, Path] = field(default_factory=dict)
    ratio_runs: dict[str, dict[str, Runs]] = field(default_factory=dict)
    mix_runs: Runs = field(default_factory=list)

    @classmethod
    def create(cls, args: argparse.Namespace, wrk: str) -> TasksBench:
        """The temp dir (also the servers' working directory, so no `.env` is read), the
        database URLs, the server environment, free ports, and the head of the results."""
        pyspy: str | None = args.py_spy if Path(args.py_spy).exists() else shutil.which("py-spy")
        if args.profile != "off" and pyspy is None:
            log(f"py-spy not found at {args.py_spy}: profiles will be skipped")
        tmp = Path(tempfile.mkdtemp(prefix="taskapi-tasks-load-"))
        data_dir = tmp / "data"
        data_dir.mkdir()
        db_url, sa_url = database_urls(args, data_dir)
        env = make_env(args, data_dir, db_url)
        tapi = taskapi_bin()
        port, bare_port = free_port(), free_port()
        serve = Server("serve", f"http://127.0.0.1:{port}", tmp / "serve.log")
        bare = Server("bare", f"http://127.0.0.1:{bare_port}", tmp / "bare.log")
        uncached = Server("serve-uncached", f"http://127.0.0.1:{free_port()}",
                          tmp / "serve-uncached.log")
        result: dict[str, Any] = {
            "benchmark": "tasks_load",
            "database": args.database,
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join([".venv/bin/python", *sys.argv]),
            "machine": machine_info(wrk),
            "config": {k: v for k, v in vars(args).items()},
            "app_version": app_version(),
        }
        return cls(args=args, wrk=wrk, pyspy=pyspy, tmp=tmp, sa_url=sa_url, env=env,
                   tapi=tapi, serve=serve, bare=bare, uncached=uncached, result=result)

    def start_serve(self, server: Server, env: dict[str, str]) -> None:
        """`taskapi serve` for `server` (not waited for: see servers.wait_ready)."""
        port = server.base.rsplit(":", 1)[1]
        server.proc = start_server([self.tapi, "serve", "--host", "127.0.0.1", "--port", port,
                                    "--workers", str(self.args.workers)],
                                   env, self.tmp, server.log_path)

    @property
    def profiling(self) -> bool:
        return self.pyspy is not None and self.args.profile != "off"

    def run(self, name: str, script: str, connections: int) -> dict[str, Any]:
        """A warmup + measured wrk run of scripts[script], reported as `name`: bare* runs
        against the bare app, *_uncached runs against the uncached server, the rest serve."""
        server = self.serve
        if name.startswith("bare"):
            server = self.bare
        elif name.endswith("_uncached"):
            server = self.uncached
        args = self.args
        return measure(name, self.wrk, server.base, self.scripts[script], threads=args.threads,
                       connections=connections, duration=args.duration, warmup=args.warmup,
                       server_pid=server.pid, log_path=server.log_path,
                       redis_url=args.redis_url)

    def profile(self, name: str, script: str, connections: int) -> dict[str, Any]:
        """py-spy on serve's workers while wrk runs scripts[script]."""
        assert self.pyspy is not None
        return profiling.profile(name, self.pyspy, self.wrk, self.serve.base,
                                 self.scripts[script], self.args, connections, self.serve.pid,
                                 self.tmp)

    def report_failure(self, exc: Exception) -> None:
        """Log what failed and the servers' log tails; keep the temp dir and the database."""
        detail = getattr(exc, "stderr", None)
        log(f"setup/run failed: {exc!r}" + (f"\n{detail.decode(errors='replace')}"
                                            if isinstance(detail, bytes) else ""))
        self.args.keep = True  # keep the logs (and the database) to see what happened
        for path in (self.serve.log_path, self.bare.log_path):
            if path.exists():
                log(f"{path.name} tail:\n" + "\n".join(path.read_text(errors="replace")
                                                       .splitlines()[-30:]))

    def close(self) -> None:
        """Stop the servers, flush the bench Redis, drop the PostgreSQL database and remove
        the temp dir (unless --keep or a failure)."""
        args = self.args
        for server in (self.serve, self.bare, self.uncached):
            if server.proc is not None:
                log(f"{server.name} stopped (exit {stop_server(server.proc, server.name)})")
        try:
            flush_redis(args.redis_url)
        except Exception as exc:
            log(f"could not flush {args.redis_url}: {exc!r}")
        if self.pg_created and not args.keep:
            try:
                asyncio.run(pg_recreate(args, create=False))
            except Exception as exc:
                log(f"could not drop database {args.pg_database}: {exc!r}")
        if args.keep:
            log(f"kept {self.tmp}" + (f" and database {args.pg_database}"
                                      if self.pg_created else ""))
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
