"""Helpers shared by the bench scripts: processes, servers, wrk + Lua, results.

Imported as `_common` by the scripts in this directory (run as `python bench/<script>.py`,
so `bench/` is on sys.path). No taskapi imports here: the scripts import what they need.
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
SETTLE_S = 0.5

# --- wrk Lua ------------------------------------------------------------------------------
# One Lua state per wrk thread. LUA_HEAD numbers the threads (setup runs in the main state);
# each script then defines init() and request(); LUA_TAIL counts every status in response()
# (so any non-2xx, 1xx/3xx included, is caught), counts 2xx answers that carry an ETag, and
# done() prints one JSON line (BENCH_JSON ...) for the parent. The templates go through
# `%` formatting, hence the doubled percent signs.

LUA_HEAD = r"""
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
"""

LUA_TAIL = r"""
function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  elseif headers["etag"] or headers["ETag"] then
    etags = etags + 1
  end
end

function done(summary, latency, requests)
  local non = 0
  local tags = 0
  local merged = {}
  for _, t in ipairs(threads) do
    non = non + t:get("non2xx")
    tags = tags + t:get("etags")
    local s = t:get("statuses")
    for k, v in pairs(s) do merged[k] = (merged[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(merged) do table.insert(parts, string.format('"%%s": %%d', k, v)) end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %%d, "duration_us": %%d, "bytes": %%d, "non2xx": %%d, ' ..
    '"with_etag": %%d, ' ..
    '"statuses": {%%s}, "errors": {"connect": %%d, "read": %%d, "write": %%d, ' ..
    '"status": %%d, "timeout": %%d}, "lat_us": {"p50": %%d, "p90": %%d, "p99": %%d, ' ..
    '"p999": %%d, "max": %%d, "mean": %%.1f}}\n',
    summary.requests, summary.duration, summary.bytes, non, tags, table.concat(parts, ", "),
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
"""

# The same GET for every request, with a rotating `Authorization: Bearer` header: each
# thread starts at its own offset and moves to the next token on every request.
LUA_GET_ROTATING = r"""
local tokens = {%(tokens)s}
local path = "%(path)s"

function init(args)
  n = #tokens
  counter = (tid * 7919) %% n
  non2xx = 0
  etags = 0
  statuses = {}
  reqs = {}
  for i = 1, n do
    reqs[i] = wrk.format("GET", path, {["Authorization"] = "Bearer " .. tokens[i]})
  end
end

function request()
  counter = counter + 1
  return reqs[(counter %% n) + 1]
end
"""


def lua_strings(values: Iterable[str]) -> str:
    """A Lua table body of quoted strings (values must not contain quotes or backslashes)."""
    return ", ".join(f'"{v}"' for v in values)


def write_lua(dest: Path, body: str, /, **values: object) -> None:
    """A full script: head + `body` (init/request, `%`-formatted with values) + tail."""
    dest.write_text((LUA_HEAD + body + LUA_TAIL) % values)


def write_get_lua(path: Path, url_path: str, tokens: list[str]) -> None:
    write_lua(path, LUA_GET_ROTATING, tokens=lua_strings(tokens), path=url_path)


# --- misc -----------------------------------------------------------------------------------

def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def venv_bin(name: str) -> str:
    for candidate in (Path(sys.executable).parent / name, REPO / ".venv" / "bin" / name):
        if candidate.exists():
            return str(candidate)
    sys.exit(f"{name} executable not found next to this python or in .venv/bin")


def taskapi_bin() -> str:
    return venv_bin("taskapi")


def clean_env() -> dict[str, str]:
    """os.environ without inherited TASKAPI_* variables (they must not leak into a bench)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TASKAPI_")}


def flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def redis_cpu(url: str) -> float | None:
    """used_cpu_user + used_cpu_sys of the whole redis-server (shared; indicative only)."""
    import redis

    try:
        client = redis.Redis.from_url(url)
        info: dict[str, Any] = client.info("cpu")  # type: ignore[assignment]
        client.close()
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    except Exception:
        return None


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def wrk_version(wrk: str) -> str:
    out = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    lines = (out.stdout or out.stderr).splitlines()
    return lines[0].strip() if lines else "?"


def machine_info(wrk: str) -> dict[str, Any]:
    load = os.getloadavg()
    return {"cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "wrk": wrk_version(wrk),
            "loadavg_at_start": [round(x, 2) for x in load]}


def save_results(stem: str, result: dict[str, Any]) -> Path:
    """bench/results/<stem>-<date>.json, or -<date>-<time>.json when that exists."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    now = datetime.now()
    out = RESULTS_DIR / f"{stem}-{now.strftime('%Y-%m-%d')}.json"
    if out.exists():
        out = RESULTS_DIR / f"{stem}-{now.strftime('%Y-%m-%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    return out


# --- server processes: RSS and CPU, psutil when installed, else /proc --------------------

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


# --- servers ----------------------------------------------------------------------------------

def start_server(cmd: list[str], env: dict[str, str], cwd: Path,
                 log_path: Path) -> subprocess.Popen[bytes]:
    log_file = log_path.open("wb")
    try:
        # Own process group, so a Ctrl-C of the bench does not hit the server first.
        return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log_file,
                                stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        log_file.close()


def stop_server(proc: subprocess.Popen[bytes], name: str = "serve") -> int | None:
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        log(f"{name} did not stop within 40 s of SIGTERM; killing its process group")
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait(timeout=10)


def wait_ready(base: str, proc: subprocess.Popen[bytes], log_path: Path,
               timeout: float = 60, path: str = "/readyz") -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            resp = httpx.get(f"{base}{path}", timeout=2)
            if resp.status_code == 200:
                return
            last = f"{resp.status_code} {resp.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise RuntimeError(f"{base}{path} not ready after {timeout} s: {last}")


ERROR_RE = re.compile(rb" (ERROR|CRITICAL) ")


def count_lines(path: Path) -> tuple[int, int]:
    """(lines, lines logged at ERROR or above) in a server log."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return 0, 0
    return len(lines), sum(1 for line in lines if ERROR_RE.search(line))


# --- wrk ------------------------------------------------------------------------------------

def find_wrk() -> str | None:
    wrk = shutil.which("wrk")
    if wrk is None:
        log("wrk not found: apt-get install -y wrk")
    return wrk


def run_wrk(wrk: str, base: str, script: Path, *, threads: int, connections: int,
            duration: int) -> dict[str, Any]:
    cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration}s",
           "--timeout", "10s", "--latency", "-s", str(script), base]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60,
                          check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    match = re.search(r"^BENCH_JSON (.*)$", proc.stdout, re.M)
    if not match:
        raise RuntimeError(f"no BENCH_JSON line in wrk output:\n{proc.stdout}\n{proc.stderr}")
    result: dict[str, Any] = json.loads(match.group(1))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    non2xx_line = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", proc.stdout)
    result["wrk_non2xx_line"] = int(non2xx_line.group(1)) if non2xx_line else 0
    result["wrk_cpu_s"] = ((after.ru_utime - before.ru_utime)
                           + (after.ru_stime - before.ru_stime))
    result["socket_errors"] = sum(result["errors"][k]
                                  for k in ("connect", "read", "write", "timeout"))
    result["wrk_stdout"] = proc.stdout
    return result


def measure(name: str, wrk: str, base: str, script: Path, *, threads: int, connections: int,
            duration: int, warmup: int, server_pid: int, log_path: Path,
            redis_url: str | None = None) -> dict[str, Any]:
    """A warmup run (its non-2xx and socket errors are kept too), then the measured run,
    with the server's CPU (whole process tree) and its new log lines."""
    lines0, errors0 = count_lines(log_path)  # server log lines, warmup included
    warm: dict[str, Any] | None = None
    if warmup > 0:
        warm = run_wrk(wrk, base, script, threads=threads, connections=connections,
                       duration=warmup)
    cpu0, loop0 = worker_cpu(server_pid), loop_cpu(server_pid)
    rcpu0 = redis_cpu(redis_url) if redis_url else None
    res = run_wrk(wrk, base, script, threads=threads, connections=connections,
                  duration=duration)
    cpu1, loop1 = worker_cpu(server_pid), loop_cpu(server_pid)
    rcpu1 = redis_cpu(redis_url) if redis_url else None
    res["name"], res["connections"] = name, connections
    res["server_cpu_s"] = cpu1 - cpu0
    res["server_cpu_us_per_req"] = (cpu1 - cpu0) * 1e6 / max(res["requests"], 1)
    res["loop_cpu_us_per_req"] = (loop1 - loop0) * 1e6 / max(res["requests"], 1)
    res["redis_cpu_s"] = (rcpu1 - rcpu0) if rcpu0 is not None and rcpu1 is not None else None
    res["warmup"] = ({"requests": warm["requests"], "non2xx": warm["non2xx"],
                      "statuses": warm["statuses"], "socket_errors": warm["socket_errors"]}
                     if warm else None)
    time.sleep(SETTLE_S)  # let the server finish logging about the connections wrk closed
    lines1, errors1 = count_lines(log_path)
    res["server_log_lines"], res["server_log_errors"] = lines1 - lines0, errors1 - errors0
    log(f"{name:12s} c={connections:<4d} {res['rps']:8.0f} req/s  "
        f"p50 {res['lat_us']['p50'] / 1000:7.2f} ms  p99 {res['lat_us']['p99'] / 1000:7.2f} ms  "
        f"non2xx {res['non2xx']}  sockerr {res['socket_errors']}  "
        f"CPU {res['server_cpu_us_per_req']:.0f} us/req "
        f"(event loops {res['loop_cpu_us_per_req']:.0f})  "
        f"log lines {res['server_log_lines']} (ERROR {res['server_log_errors']})")
    return res


def merge_statuses(runs: list[dict[str, Any]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for r in runs:
        for k, v in r["statuses"].items():
            merged[k] = merged.get(k, 0) + v
    return dict(sorted(merged.items()))


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the measured runs; totals of non-2xx and socket errors (warmups too)."""
    warm = [r["warmup"] for r in runs if r.get("warmup")]
    return {
        "rps_median": median([r["rps"] for r in runs]),
        "rps_runs": [round(r["rps"], 1) for r in runs],
        "p50_ms_median": median([r["lat_us"]["p50"] for r in runs]) / 1000,
        "p90_ms_median": median([r["lat_us"]["p90"] for r in runs]) / 1000,
        "p99_ms_median": median([r["lat_us"]["p99"] for r in runs]) / 1000,
        "p50_ms_runs": [r["lat_us"]["p50"] / 1000 for r in runs],
        "p99_ms_runs": [r["lat_us"]["p99"] / 1000 for r in runs],
        "server_cpu_us_per_req_median": median([r["server_cpu_us_per_req"] for r in runs]),
        "requests_total": sum(r["requests"] for r in runs),
        "non2xx_total": sum(r["non2xx"] for r in runs),
        "socket_errors_total": sum(r["socket_errors"] for r in runs),
        "with_etag_total": sum(r.get("with_etag", 0) for r in runs),
        "warmup_non2xx_total": sum(w["non2xx"] for w in warm),
        "warmup_socket_errors_total": sum(w["socket_errors"] for w in warm),
        "statuses": merge_statuses(runs),
        "server_log_lines_total": sum(r["server_log_lines"] for r in runs),
        "server_log_errors_total": sum(r["server_log_errors"] for r in runs),
    }


def strip_stdout(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "wrk_stdout"} for r in runs]
