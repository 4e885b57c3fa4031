"""py-spy on the hypercorn workers while wrk runs, and the summary of its raw output:
where the workers' (non-idle) samples go, by frame and by package.

`pip install --target /tmp/pyspy py-spy` provides it; tasks_load.py skips the profiles
without it.
"""

from __future__ import annotations

import argparse
import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from proc_stats import worker_pids
from run_info import REPO, log
from wrk_runs import run_wrk


def add_args(parser: argparse.ArgumentParser, *, default: str) -> None:
    """--profile (auto: the runs that missed a target; all; off) and py-spy's options."""
    parser.add_argument("--profile", choices=("auto", "all", "off"), default=default,
                        help="py-spy the workers for missed targets (auto), every phase, or not")
    parser.add_argument("--py-spy", default="/tmp/pyspy/bin/py-spy",
                        help="py-spy executable (pip install --target /tmp/pyspy py-spy)")
    parser.add_argument("--profile-seconds", type=int, default=12)
    parser.add_argument("--profile-native", action="store_true",
                        help="py-spy --native (pauses the workers per sample; C frames too)")


_FRAME_LINE = re.compile(r":\d+\)$")
_THREAD_FRAME = re.compile(r"^thread \((\d+)\)")
_THREAD_NUMBER = re.compile(r"Thread-(\d+) \(_connection_worker_thread\)")
# Frames every sample of a worker goes through: left out of the inclusive list.
_ROOT_FRAMES = frozenset({
    "<module>", "spawn_main", "_main", "BaseProcess._bootstrap", "BaseProcess.run",
    "uvloop_worker", "_run", "Runner.run", "Thread._bootstrap", "Thread._bootstrap_inner",
    "Thread.run", "thread_run", "run", "worker_serve", "_ServerState.serve",
})


_WAIT_FRAMES = frozenset({
    "_queue_SimpleQueue_get", "pthread_cond_wait", "pthread_cond_timedwait", "take_gil",
    "epoll_wait", "epoll_pwait", "PyThread_acquire_lock_timed", "sem_wait", "sem_timedwait",
})


def _frame_name(frame: str) -> str:
    """'func (path/to/file.py:123)' -> 'func (package/module.py)'."""
    frame = _FRAME_LINE.sub(")", frame)
    for marker in ("site-packages/", "/lib/python3.11/", str(REPO) + "/"):
        if marker in frame:
            name, _, path = frame.partition(" (")
            frame = f"{name} ({path.split(marker, 1)[1]}"
            break
    return frame


def _package(frame: str) -> str | None:
    """'x (redis/asyncio/client.py)' -> 'redis'; 'sqlite3_step (libsqlite3.so.0)' ->
    'libsqlite3'; bare addresses -> None."""
    if frame.startswith("0x") or " (" not in frame:
        return None
    where = frame.rpartition(" (")[2].rstrip(")")
    if where.startswith("<"):
        return None
    head = where.split("/", 1)[0]
    if head.endswith(".py"):
        head = head[:-3]
    return head.split(".so", 1)[0]


def summarize_pyspy(raw_files: list[Path], top: int = 25) -> dict[str, Any]:
    """Shares of the (non-idle) samples: self = leaf frame, inclusive = anywhere in the
    stack (frames every sample passes through left out), by package (any frame of it), and
    how many distinct aiosqlite connection threads were seen running."""
    self_c: Counter[str] = Counter()
    incl_c: Counter[str] = Counter()
    pkg_c: Counter[str] = Counter()
    sqlite_threads: set[tuple[str, str]] = set()
    thread_numbers: dict[str, tuple[int, int]] = {}
    total = idle = busy_sleep = 0
    for path in raw_files:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_s = line.rpartition(" ")
            if not stack or not count_s.isdigit():
                continue
            count = int(count_s)
            raw = [f for f in stack.split(";") if f]
            thread = _THREAD_FRAME.match(raw[0]) if raw else None
            if thread:
                raw = raw[1:]
            frames = [_frame_name(f) for f in raw]
            if not frames:
                continue
            if thread and any(f.startswith("_connection_worker_thread ") for f in frames):
                sqlite_threads.add((path.name, thread.group(1)))
                number = _THREAD_NUMBER.search(stack)
                if number:  # threading's counter: Thread-N is the Nth thread of the process
                    lo, hi = thread_numbers.get(path.name, (10**9, 0))
                    n = int(number.group(1))
                    thread_numbers[path.name] = (min(lo, n), max(hi, n))
            # --native samples idle threads too: leave out threads parked on a queue, a
            # condition, the GIL or epoll, and count SQLite's busy-handler sleeps apart.
            names = {f.partition(" (")[0] for f in frames}
            if names & _WAIT_FRAMES:
                idle += count
                continue
            if "sqlite3InvokeBusyHandler" in names:
                busy_sleep += count
                continue
            total += count
            self_c[frames[-1]] += count
            for name in set(frames):
                if name.partition(" (")[0] not in _ROOT_FRAMES and not name.startswith("0x"):
                    incl_c[name] += count
            for pkg in {_package(f) for f in frames} - {None}:
                pkg_c[str(pkg)] += count
    pct = (lambda c: round(100.0 * c / total, 1)) if total else (lambda c: 0.0)
    return {"samples": total,
            "top_self": [[n, pct(c)] for n, c in self_c.most_common(top)],
            "top_inclusive": [[n, pct(c)] for n, c in incl_c.most_common(top)],
            "by_package": [[n, pct(c)] for n, c in pkg_c.most_common(20)],
            "aiosqlite_threads_seen": len(sqlite_threads),
            # Per worker, the lowest and highest Thread-N of a running aiosqlite thread: a
            # wide range means connections were opened (and closed) during the profile.
            "aiosqlite_thread_numbers": thread_numbers,
            "samples_waiting": idle,
            "samples_sqlite_busy_handler_sleep": busy_sleep}


def profile(name: str, pyspy: str, wrk: str, base: str, script: Path, args: argparse.Namespace,
            connections: int, serve_pid: int, tmp: Path) -> dict[str, Any]:
    """py-spy on every hypercorn worker while wrk runs the given script. Default: sampling
    without pausing the workers (--nonblocking); --profile-native pauses them per sample to
    read the C frames too (slower server, truer attribution of time spent in C)."""
    pids = worker_pids(serve_pid)
    outs = [tmp / f"pyspy-{name}-{pid}.txt" for pid in pids]
    mode = ["--native"] if args.profile_native else ["--nonblocking"]
    spies = [subprocess.Popen([pyspy, "record", "--pid", str(pid), *mode, "--threads",
                               "--format", "raw", "--rate", "100",
                               "--duration", str(args.profile_seconds), "-o", str(out)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for pid, out in zip(pids, outs, strict=True)]
    errors = []
    try:
        res = run_wrk(wrk, base, script, threads=args.threads, connections=connections,
                      duration=args.profile_seconds + 2)
    finally:
        for spy in spies:
            try:
                _, err = spy.communicate(timeout=args.profile_seconds + 60)
            except subprocess.TimeoutExpired:
                spy.kill()
                _, err = spy.communicate(timeout=10)
            if spy.returncode != 0:
                errors.append(err.decode(errors="replace")[-500:])
    summary = summarize_pyspy(outs)
    summary.update({"endpoint": name, "connections": connections, "worker_pids": pids,
                    "seconds": args.profile_seconds, "native": args.profile_native,
                    "rps_while_profiled": round(res["rps"], 1),
                    "non2xx": res["non2xx"], "statuses": res["statuses"],
                    "socket_errors": res["socket_errors"], "py_spy_errors": errors})
    log(f"profile {name}: {summary['samples']} samples; top self: "
        + "; ".join(f"{n} {p}%" for n, p in summary["top_self"][:5]))
    return summary
