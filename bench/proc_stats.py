"""The server's process tree: RSS and CPU per process, psutil when installed, else /proc."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def _proc_children(pid: int) -> list[int]:
    try:
        import psutil

        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except ImportError:
        pass
    except Exception:  # psutil.NoSuchProcess: the server is gone
        return []
    kids: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in kids.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _status_kb(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _cpu_seconds(pid: int, tid: int | None = None) -> float | None:
    """utime + stime of a process, or of one of its threads (`tid`)."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid is not None else f"/proc/{pid}/stat"
    try:
        fields = Path(path).read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "?"


def _kind(cmdline: str) -> str:
    if "multiprocessing.spawn" in cmdline or "multiprocessing.forkserver" in cmdline:
        return "hypercorn-worker"
    if "resource_tracker" in cmdline:
        return "mp-resource-tracker"
    return "other"


def server_processes(serve_pid: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for pid in [serve_pid, *_proc_children(serve_pid)]:
        cmdline = _cmdline(pid)
        rows.append({"pid": pid, "kind": "serve-parent" if pid == serve_pid else _kind(cmdline),
                     "cmdline": cmdline, "vm_rss_kb": _status_kb(pid, "VmRSS"),
                     "vm_hwm_kb": _status_kb(pid, "VmHWM"), "cpu_s": _cpu_seconds(pid)})
    return rows


def worker_pids(serve_pid: int) -> list[int]:
    return [r["pid"] for r in server_processes(serve_pid) if r["kind"] == "hypercorn-worker"]


def worker_cpu(serve_pid: int) -> float:
    """CPU seconds of the serve process and all its children."""
    return sum(r["cpu_s"] or 0.0 for r in server_processes(serve_pid))


def loop_cpu(serve_pid: int) -> float:
    """CPU seconds of the workers' main threads (the event loops), without their helper
    threads (aiosqlite's per-connection threads, asyncio.to_thread's pool)."""
    return sum(_cpu_seconds(pid, pid) or 0.0 for pid in worker_pids(serve_pid))


def print_processes(title: str, procs: list[dict[str, Any]]) -> None:
    print(title)
    for p in procs:
        rss = f"{p['vm_rss_kb'] / 1024:.1f} MiB" if p["vm_rss_kb"] else "?"
        hwm = f"{p['vm_hwm_kb'] / 1024:.1f} MiB" if p["vm_hwm_kb"] else "?"
        print(f"  pid {p['pid']:>7d} {p['kind']:20s} VmRSS {rss:>10s}  VmHWM {hwm:>10s}")


def worker_rss(serve_pid: int) -> list[float]:
    """VmRSS of each hypercorn worker, MiB (one decimal)."""
    return [round(p["vm_rss_kb"] / 1024, 1) for p in server_processes(serve_pid)
            if p["kind"] == "hypercorn-worker" and p["vm_rss_kb"]]
