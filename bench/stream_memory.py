"""Memory per held GET /events stream, in one server process (issue 15, decision 043).

    ulimit -n 20000; .venv/bin/python bench/stream_memory.py [--streams 1000] [--loop asyncio]
        [--no-trace] [--frames 8] [--report out.txt] [--redis-url redis://127.0.0.1:6379/8]

Starts taskapi's served app (ops/asgi.py) in one hypercorn process under tracemalloc (a fresh
SQLite database, the bench Redis db flushed), opens and closes `--warm` streams (so the
allocator and the caches are warm), takes a baseline snapshot, opens `--streams` bearer
streams from a child process, and prints the Python allocations they added (traced KiB per
stream) and the worker's RSS growth per stream. `--report` gets the growth by file, by line
and by traceback. tracemalloc's byte counts do not depend on the machine's load, so they are a
fair A/B on a shared machine; RSS under tracemalloc includes tracemalloc's own bookkeeping:
`--no-trace` measures RSS alone (what bench/events_load.py sees). `--loop uvloop` runs the
worker's loop as `taskapi serve` does (uvloop's transports are C: tracemalloc misses them).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from servers import clean_env, flush_redis, free_port, taskapi_bin, wait_ready

PASSWORD = "bench password long enough"


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def serve(port: int, frames: int, trace: bool, loop: str, report: str, lean: bool) -> None:
    """The server process: SIGUSR1 takes the baseline, SIGUSR2 writes the growth."""
    import gc
    import tracemalloc

    if trace:
        tracemalloc.start(frames)
    from hypercorn.asyncio import serve as hypercorn_serve

    from taskapi.ops import lean_connections
    from taskapi.ops.asgi import app
    from taskapi.ops.server import build_config

    if not lean:  # ops/asgi.py installed them, as in each `taskapi serve` worker
        lean_connections.uninstall()

    base: list[tracemalloc.Snapshot] = []

    def snap(kind: str) -> None:
        gc.collect()
        if not trace:
            print(kind, "0", flush=True)
            return
        shot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)])
        if kind == "base":
            base[:] = [shot]
            print("base 0", flush=True)
            return
        with open(report, "w") as out:
            for key in ("filename", "lineno", "traceback"):
                stats = shot.compare_to(base[0], key)
                out.write(f"== by {key}: total {sum(s.size_diff for s in stats) / 1024:.0f} KiB\n")
                for stat in stats[:40 if key != "traceback" else 25]:
                    out.write(f"{stat.size_diff / 1024:9.1f} KiB {stat.count_diff:7d}  "
                              f"{stat.traceback[0]}\n")
                    if key == "traceback":
                        out.writelines(f"      {line}\n" for line in stat.traceback.format())
        total = sum(s.size_diff for s in shot.compare_to(base[0], "filename"))
        print("diff", total, flush=True)

    async def main() -> None:
        running = asyncio.get_running_loop()
        running.add_signal_handler(signal.SIGUSR1, snap, "base")
        running.add_signal_handler(signal.SIGUSR2, snap, "diff")
        await hypercorn_serve(app, build_config(host="127.0.0.1", port=port))  # type: ignore[arg-type]

    if loop == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


async def hold(port: int, token: str, n: int) -> None:
    """The client process: open n streams, print "open", hold them until killed."""
    opened: list[int] = []
    all_open = asyncio.Event()

    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}"
                     "\r\n\r\n".encode())
        await writer.drain()
        if b" 200" in await reader.readline():
            opened.append(1)
            if len(opened) == n:
                all_open.set()
        while await reader.read(65536):
            pass

    tasks = [asyncio.create_task(one()) for _ in range(n)]
    if n:
        await all_open.wait()
    print("open", len(opened), flush=True)
    await asyncio.gather(*tasks)


def _wait_line(proc: subprocess.Popen[str], prefix: str) -> str:
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{proc.args!r} ended before printing {prefix!r}")
        if line.startswith(prefix):
            return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--warm", type=int, default=200)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--no-trace", action="store_true")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--no-lean", action="store_true",
                        help="without ops/lean_connections.install() (an A/B)")
    parser.add_argument("--report", default="")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/8")
    parser.add_argument("--role", choices=["serve", "hold"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--token", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "serve":
        return serve(args.port, args.frames, not args.no_trace, args.loop, args.report,
                     not args.no_lean)
    if args.role == "hold":
        return asyncio.run(hold(args.port, args.token, args.streams))

    port, me = free_port(), [sys.executable, __file__]
    with tempfile.TemporaryDirectory() as tmp:
        env = {**clean_env(), "TASKAPI_DATA_DIR": tmp, "TASKAPI_ENV": "production",
               "TASKAPI_SECRET_KEY": "bench-" + "x" * 58, "TASKAPI_REDIS_URL": args.redis_url,
               "TASKAPI_LOG_LEVEL": "WARNING", "TASKAPI_RATE_LIMIT_DEFAULT": "10000000/minute",
               "TASKAPI_MAX_STREAMS_PER_USER": "100000"}
        flush_redis(args.redis_url)
        subprocess.run([taskapi_bin(), "db", "upgrade"], env=env, cwd=tmp, check=True,
                       capture_output=True)
        subprocess.run([taskapi_bin(), "create-admin", "--email", "b@example.com", "--username",
                        "bench", "--password", PASSWORD], env=env, cwd=tmp, check=True,
                       capture_output=True)
        report = args.report or str(Path(tmp) / "report.txt")
        server = subprocess.Popen(
            [*me, "--role", "serve", "--port", str(port), "--frames", str(args.frames),
             "--loop", args.loop, "--report", str(Path(report).resolve()),
             *(["--no-trace"] if args.no_trace else []),
             *(["--no-lean"] if args.no_lean else [])],
            env=env, cwd=tmp, stdout=subprocess.PIPE, text=True)
        clients: list[subprocess.Popen[str]] = []
        try:
            base = f"http://127.0.0.1:{port}"
            (Path(tmp) / "serve.log").touch()
            wait_ready(base, server, Path(tmp) / "serve.log", path="/healthz")  # type: ignore[arg-type]
            token = httpx.post(f"{base}/login", json={"email": "b@example.com",
                                                      "password": PASSWORD}).json()["access_token"]

            def streams(n: int) -> subprocess.Popen[str]:
                clients.append(subprocess.Popen(
                    [*me, "--role", "hold", "--port", str(port), "--token", token,
                     "--streams", str(n)], stdout=subprocess.PIPE, text=True))
                _wait_line(clients[-1], "open")
                return clients[-1]

            if args.warm:
                warm = streams(args.warm)
                warm.kill()
                warm.wait()
                time.sleep(2)
            server.send_signal(signal.SIGUSR1)
            _wait_line(server, "base")
            rss0 = _rss_kib(server.pid)
            streams(args.streams)
            time.sleep(3)
            rss1 = _rss_kib(server.pid)
            server.send_signal(signal.SIGUSR2)
            traced = int(_wait_line(server, "diff").split()[1])
        finally:
            for proc in [*clients, server]:
                proc.kill()
                proc.wait()
    n = args.streams
    if not args.no_trace:
        print(f"traced: {traced / 1024 / n:.1f} KiB per stream ({traced / 1024:.0f} KiB for {n})"
              + (f"; report in {report}" if args.report else ""))
    print(f"RSS: {(rss1 - rss0) / n:.1f} KiB per stream ({rss0} -> {rss1} KiB, loop "
          f"{args.loop}, {'no tracemalloc' if args.no_trace else 'under tracemalloc'})")


if __name__ == "__main__":
    main()
