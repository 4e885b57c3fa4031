"""/healthz latency while slow-body clients hold connections (hardening issue #14, finding 4).

Run with the repo venv:  .venv/bin/python bench/slow_bodies.py [--sockets 128] [--duration 30]

Starts `taskapi serve --workers 2` at the default settings (SQLite and the embedded Redis in a
temp dir, TASKAPI_ENV=production with a random key), then:

1. quiet: probes GET /healthz for --quiet seconds with nothing else going on;
2. attack: opens --sockets connections that each send a POST head announcing
   `Content-Length: 1000` and one byte of body, and keeps that many open (a socket the server
   closes is replaced at once), while probing /healthz for --duration seconds.

A probe is one GET /healthz on a new connection, started every --interval seconds whatever
the earlier ones are doing, with a --probe-timeout (a probe that times out counts at that
value, so the percentiles of a run with timeouts are lower bounds). Prints and saves the
median, p99 and max per phase, and what the slow sockets were answered.

--checkout DIR serves the code of another checkout (e.g. `git archive c8ca55c | tar -x -C DIR`,
the commit before the fix): DIR goes first on PYTHONPATH, so its `taskapi` and `asgi` are
the ones imported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from _common import (
    REPO,
    clean_env,
    free_port,
    log,
    save_results,
    start_server,
    stop_server,
    wait_ready,
)

SLOW_HEAD = (b"POST /login HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
             b"Content-Length: 1000\r\n\r\n{")


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"median_ms": statistics.median(ordered) * 1000, "p99_ms": p99 * 1000,
            "max_ms": ordered[-1] * 1000}


async def probe_loop(base: str, duration: float, interval: float, limit: float
                     ) -> dict[str, Any]:
    latencies: list[float] = []  # every probe, a timed-out one at `limit`
    answered: list[float] = []
    timeouts = errors = 0

    async def one(client: httpx.AsyncClient) -> None:
        nonlocal timeouts, errors
        started = time.perf_counter()
        try:
            response = await client.get("/healthz", headers={"Connection": "close"})
        except httpx.TimeoutException:
            timeouts += 1
            latencies.append(limit)
            return
        except httpx.HTTPError:
            errors += 1
            return
        if response.status_code != 200:
            errors += 1
        latencies.append(time.perf_counter() - started)
        answered.append(latencies[-1])

    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, timeout=limit, limits=limits) as client:
        tasks = []
        end = time.monotonic() + duration
        while time.monotonic() < end:
            tasks.append(asyncio.create_task(one(client)))
            await asyncio.sleep(interval)
        await asyncio.gather(*tasks)
    return {"probes": len(tasks), "timeouts": timeouts, "errors": errors,
            "probe_timeout_s": limit, **percentiles(latencies),
            "answered": percentiles(answered) if answered else None}


async def slow_socket(host: str, port: int, answers: Counter[str], stop: asyncio.Event) -> None:
    """One slow-body client, replaced whenever the server ends its connection."""
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            answers["connect error"] += 1
            await asyncio.sleep(0.1)
            continue
        try:
            writer.write(SLOW_HEAD)
            await writer.drain()
            read = asyncio.create_task(reader.read(200))
            waiting = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({read, waiting}, return_when=asyncio.FIRST_COMPLETED)
            if read in done:
                data = read.result()
                answers[data.split(b"\r\n", 1)[0].decode("latin-1") or "closed"] += 1
            for task in (read, waiting):
                task.cancel()
        except OSError:
            answers["reset"] += 1
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def attack(base: str, args: argparse.Namespace) -> dict[str, Any]:
    host, port = "127.0.0.1", int(base.rsplit(":", 1)[1])
    answers: Counter[str] = Counter()
    stop = asyncio.Event()
    sockets = [asyncio.create_task(slow_socket(host, port, answers, stop))
               for _ in range(args.sockets)]
    await asyncio.sleep(1.0)  # every slow socket is in
    result = await probe_loop(base, args.duration, args.interval, args.probe_timeout)
    stop.set()
    await asyncio.gather(*sockets)
    result["slow_socket_answers"] = dict(answers)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=128)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--quiet", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--probe-timeout", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--checkout", type=Path, default=REPO)
    parser.add_argument("--label", default="")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()

    checkout = args.checkout.resolve()
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, check=False).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="bench-slow-") as tmp:
        env = clean_env()
        env.update({"TASKAPI_ENV": "production", "TASKAPI_SECRET_KEY": secrets.token_urlsafe(36),
                    "TASKAPI_DATA_DIR": str(Path(tmp) / "data"), "TASKAPI_LOG_LEVEL": "WARNING",
                    "PYTHONPATH": os.pathsep.join(
                        [str(checkout), *filter(None, [os.environ.get("PYTHONPATH")])])})
        taskapi = [sys.executable, "-m", "taskapi"]
        # cwd = the temp dir: settings also read a `.env` from the working directory.
        subprocess.run([*taskapi, "db", "upgrade"], env=env, cwd=tmp, check=True,
                       capture_output=True, timeout=120)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log_path = Path(tmp) / "serve.log"
        proc = start_server([*taskapi, "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", str(args.workers), "--no-worker"],
                            env, Path(tmp), log_path)
        try:
            wait_ready(base, proc, log_path)
            log(f"serving {checkout} on {base}; quiet phase {args.quiet:.0f} s")
            quiet = asyncio.run(probe_loop(base, args.quiet, args.interval, args.probe_timeout))
            log(f"attack phase: {args.sockets} slow-body sockets, {args.duration:.0f} s")
            loud = asyncio.run(attack(base, args))
        finally:
            stop_server(proc)
    result = {"checkout": str(checkout), "label": args.label, "bench_commit": commit,
              "args": {k: str(v) for k, v in vars(args).items()},
              "quiet": quiet, "attack": loud}
    for name, phase in (("quiet", quiet), ("attack", loud)):
        print(f"{name:7s} probes {phase['probes']:4d}  timeouts {phase['timeouts']:4d}  "
              f"errors {phase['errors']:3d}  median {phase['median_ms']:8.1f} ms  "
              f"p99 {phase['p99_ms']:8.1f} ms  max {phase['max_ms']:8.1f} ms"
              + ("" if not phase["timeouts"] or not phase["answered"] else
                 f"  (answered only: median {phase['answered']['median_ms']:.1f} ms, "
                 f"max {phase['answered']['max_ms']:.1f} ms)"))
    print("slow sockets were answered:", loud["slow_socket_answers"])
    if not args.no_save:
        stem = "slow_bodies" + (f"-{args.label}" if args.label else "")
        log(f"saved {save_results(stem, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
