"""Live events under load (issue 15): `taskapi serve --workers 2` with real Redis, the load
generator on the same machine. A benchmark, not a test: run it by hand.

    nice .venv/bin/python bench/events_load.py [--streams 5000] [--hold 60] [--runs 3]
        [--redis-url redis://127.0.0.1:6379/5] [--port 5590]

Each run starts a fresh server (so each run's RSS growth is its own): (1) a single idle
subscriber: write → event latency over 50 writes; (2) cached GET /tasks/mine throughput with
no streams, measured by wrk in its own process (warmed up first; an in-process client would
measure this script's own event loop, busy with the streams' sockets); (3) open --streams
staff SSE streams, worker RSS before and after; (4) one write's event to every stream (10
writes, 2 s apart): latency from the write's response to each stream's receipt; (5) the same
throughput with the streams held; (6) hold them --hold seconds in all: dropped and errored
streams. The report gives the median of the runs for each figure against the issue's targets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from proc_stats import worker_rss
from run_info import REPO, app_version, log, median, save_results
from servers import clean_env, flush_redis, start_server, stop_server, taskapi_bin, wait_ready
from wrk_lua import write_get_lua
from wrk_runs import find_wrk, measure

PASSWORD = "bench password long enough"


class Reader:
    """One SSE stream on a raw socket: the time each event id arrived."""

    def __init__(self) -> None:
        self.seen: dict[int, float] = {}
        self.ok = False
        self.error: str | None = None
        self.ended = False

    async def run(self, host: str, port: int, token: str, opened: asyncio.Event) -> None:
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(f"GET /events HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer "
                         f"{token}\r\n\r\n".encode())
            await writer.drain()
            status = await reader.readline()
            if b" 200" not in status:
                self.error = status.decode(errors="replace").strip()
                return
            self.ok = True
            opened.set()
            while line := await reader.readline():
                if line.startswith(b"id: "):
                    self.seen[int(line[4:])] = time.perf_counter()
            self.ended = True
        except (OSError, ValueError) as error:
            self.error = repr(error)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def wrk_throughput(args: argparse.Namespace, base: str, token: str, serve_pid: int,
                   log_path: Path, name: str) -> float:
    """Cached GET /tasks/mine req/s by wrk (64 connections, a warmup first)."""
    wrk = find_wrk()
    if wrk is None:
        raise SystemExit("wrk is needed for the throughput figures: apt-get install -y wrk")
    script = log_path.parent / "mine.lua"
    write_get_lua(script, "/tasks/mine", [token])
    result = measure(name, wrk, base, script, threads=2, connections=64,
                     duration=int(args.rps_seconds), warmup=3, server_pid=serve_pid,
                     log_path=log_path)
    if result["non2xx"] or result["socket_errors"]:
        log(f"{name}: {result['non2xx']} non-2xx, {result['socket_errors']} socket errors")
    return float(result["rps"])


async def write_latencies(base: str, token: str, readers: list[Reader], writes: int,
                          gap: float) -> list[float]:
    """Per write: the p99 (over readers) of receipt time minus the write's response time."""
    p99s = []
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"},
                                 timeout=30) as client:
        task = (await client.post("/tasks", json={"title": "bench"})).json()
        await asyncio.sleep(gap)
        for n in range(writes):
            response = await client.put(f"/task/{task['id']}", json={"title": f"bench {n}"})
            answered = time.perf_counter()
            event_id = await _last_event_id(client, task["id"])
            await asyncio.sleep(gap)
            lags = [r.seen[event_id] - answered for r in readers if event_id in r.seen]
            missing = sum(1 for r in readers if event_id not in r.seen)
            if response.status_code != 200 or missing:
                log(f"write {n}: status {response.status_code}, {missing} readers missed it")
            p99s.append(pct(lags, 0.99) if not missing else float("inf"))
    return p99s


async def _last_event_id(client: httpx.AsyncClient, task_id: int) -> int:
    """The write's event id: the last entry of the task's history (one table, decision 021)."""
    entries = (await client.get(f"/task/{task_id}/history?limit=200")).json()
    return int(entries[-1]["id"])


async def one_run(args: argparse.Namespace, base: str, serve_pid: int,
                  token: str, log_path: Path) -> dict[str, Any]:
    host, port = "127.0.0.1", args.port
    result: dict[str, Any] = {}
    # (1) one idle subscriber
    single, opened = Reader(), asyncio.Event()
    single_task = asyncio.create_task(single.run(host, port, token, opened))
    await asyncio.wait_for(opened.wait(), 10)
    lags = await write_latencies(base, token, [single], 50, 0.05)
    result["idle_subscriber_p99_ms"] = round(1000 * pct(lags, 0.99), 1)
    single_task.cancel()
    # (2) throughput without streams
    result["mine_rps_without"] = round(await asyncio.to_thread(
        wrk_throughput, args, base, token, serve_pid, log_path, "without"), 1)
    # (3) open the streams
    rss_before = worker_rss(serve_pid)
    readers = [Reader() for _ in range(args.streams)]
    tasks = []
    started = time.perf_counter()
    for start in range(0, args.streams, 250):
        batch = [asyncio.Event() for _ in readers[start:start + 250]]
        tasks += [asyncio.create_task(r.run(host, port, token, e))
                  for r, e in zip(readers[start:start + 250], batch, strict=True)]
        await asyncio.sleep(0.2)
    deadline = time.perf_counter() + 60
    while sum(r.ok or r.error is not None for r in readers) < args.streams:
        if time.perf_counter() > deadline:
            break
        await asyncio.sleep(0.2)
    result["open_seconds"] = round(time.perf_counter() - started, 1)
    result["opened"] = sum(r.ok for r in readers)
    await asyncio.sleep(3)
    rss_after = worker_rss(serve_pid)
    growth_kib = (sum(rss_after) - sum(rss_before)) * 1024 / max(1, result["opened"])
    result["rss_mib_before"], result["rss_mib_after"] = rss_before, rss_after
    result["rss_kib_per_stream"] = round(growth_kib, 1)
    # (4) fan-out
    p99s = await write_latencies(base, token, readers, 10, 2.0)
    result["fanout_p99_s"] = round(median(p99s), 3)
    # (5) throughput with the streams held
    result["mine_rps_with"] = round(await asyncio.to_thread(
        wrk_throughput, args, base, token, serve_pid, log_path, "with"), 1)
    result["rps_ratio"] = round(result["mine_rps_with"] / result["mine_rps_without"], 3)
    # (6) hold
    remaining = args.hold - (time.perf_counter() - started)
    if remaining > 0:
        await asyncio.sleep(remaining)
    result["held_seconds"] = round(time.perf_counter() - started, 1)
    result["dropped"] = sum(1 for r in readers if r.ok and (r.ended or r.error))
    result["errors"] = sum(1 for r in readers if r.error is not None)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(2)
    return result


async def main(args: argparse.Namespace) -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < 3 * args.streams:
        log(f"open files limit {hard} is below 3 x {args.streams}: raise it (ulimit -n)")
    load = os.getloadavg()
    log(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    flush_redis(args.redis_url)
    tapi = taskapi_bin()
    with tempfile.TemporaryDirectory(prefix="events-load-") as tmp:
        env = {**clean_env(), "TASKAPI_DATA_DIR": f"{tmp}/data", "TASKAPI_ENV": "production",
               "TASKAPI_SECRET_KEY": "bench-secret-" + "x" * 40,
               "TASKAPI_REDIS_URL": args.redis_url, "TASKAPI_LOG_LEVEL": "WARNING",
               "TASKAPI_RATE_LIMIT_DEFAULT": "10000000/minute",
               "TASKAPI_RATE_LIMIT_LOGIN": "1000/minute",
               # One staff user holds every stream: lift the per-user cap (default 20).
               "TASKAPI_MAX_STREAMS_PER_USER": str(args.streams)}
        env.update(pair.split("=", 1) for pair in args.set)  # an A/B of one setting
        for cmd in (["db", "upgrade"], ["create-admin", "--email", "bench@example.com",
                                        "--username", "bench", "--password", PASSWORD]):
            await asyncio.to_thread(subprocess.run, [tapi, *cmd], env=env, cwd=tmp,
                                    check=True, capture_output=True)
        base = f"http://127.0.0.1:{args.port}"
        runs = []
        for n in range(args.runs):
            log(f"run {n + 1}/{args.runs} (a fresh server)")
            log_path = Path(tmp) / f"serve-{n + 1}.log"
            proc = start_server([tapi, "serve", "--port", str(args.port), "--workers", "2"],
                                env, Path(tmp), log_path)
            try:
                wait_ready(base, proc, log_path)
                async with httpx.AsyncClient(base_url=base) as client:
                    login = await client.post("/login", json={"email": "bench@example.com",
                                                              "password": PASSWORD})
                token = login.json()["access_token"]
                runs.append(await one_run(args, base, proc.pid, token, log_path))
                log(f"  {runs[-1]}")
            finally:
                stop_server(proc)
    keys = ["idle_subscriber_p99_ms", "fanout_p99_s", "rss_kib_per_stream", "rps_ratio",
            "opened", "dropped", "errors", "mine_rps_without", "mine_rps_with"]
    medians = {k: median([float(r[k]) for r in runs]) for k in keys}
    targets = {"opened": f"= {args.streams}", "dropped": "= 0", "errors": "= 0",
               "rss_kib_per_stream": "<= 25", "fanout_p99_s": "<= 1.0",
               "idle_subscriber_p99_ms": "<= 50", "rps_ratio": ">= 0.80"}
    report = {"command": " ".join(sys.argv), "streams": args.streams, "hold": args.hold,
              "settings": args.set,
              "loadavg_at_start": [round(x, 2) for x in load],
              "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
              "app": app_version(), "runs": runs, "medians": medians, "targets": targets}
    out = save_results("events_load", report)
    for key in keys:
        print(f"{key:24s} {medians[key]:>10}  {targets.get(key, '')}")
    print(f"results: {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=5000)
    parser.add_argument("--hold", type=float, default=60)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rps-seconds", type=float, default=10)
    parser.add_argument("--port", type=int, default=5590)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/5")
    parser.add_argument("--set", action="append", default=[], metavar="TASKAPI_NAME=VALUE",
                        help="a server setting for this run (repeatable), for an A/B")
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(main(parser.parse_args())))
