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
import json
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
SETTLE_S = 0.5
ADMIN_EMAIL, ADMIN_USER = "bench-admin@example.test", "bench_admin"
USER_PASSWORD = "bench password 123"

# One Lua state per wrk thread. request() rotates through the tokens, starting at a different
# offset per thread; response() counts statuses; done() prints one JSON line for the parent.
LUA_TEMPLATE = r"""
local tokens = {%(tokens)s}
local path = "%(path)s"
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  n = #tokens
  counter = (tid * 7919) %% n
  non2xx = 0
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

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local non = 0
  local merged = {}
  for _, t in ipairs(threads) do
    non = non + t:get("non2xx")
    local s = t:get("statuses")
    for k, v in pairs(s) do merged[k] = (merged[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(merged) do table.insert(parts, string.format('"%%s": %%d', k, v)) end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %%d, "duration_us": %%d, "bytes": %%d, "non2xx": %%d, ' ..
    '"statuses": {%%s}, "errors": {"connect": %%d, "read": %%d, "write": %%d, ' ..
    '"status": %%d, "timeout": %%d}, "lat_us": {"p50": %%d, "p90": %%d, "p99": %%d, ' ..
    '"p999": %%d, "max": %%d, "mean": %%.1f}}\n',
    summary.requests, summary.duration, summary.bytes, non, table.concat(parts, ", "),
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def taskapi_bin() -> str:
    for candidate in (Path(sys.executable).parent / "taskapi", REPO / ".venv" / "bin" / "taskapi"):
        if candidate.exists():
            return str(candidate)
    sys.exit("taskapi executable not found next to this python or in .venv/bin")


def make_env(args: argparse.Namespace, data_dir: Path) -> dict[str, str]:
    # Inherited TASKAPI_* variables must not leak into the bench configuration.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKAPI_")}
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


# --- server processes: RSS and CPU, psutil when installed, else /proc --------------------

def _proc_children(pid: int) -> list[int]:
    try:
        import psutil

        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except ImportError:
        pass
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


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
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


def worker_cpu(serve_pid: int) -> float:
    return sum(r["cpu_s"] or 0.0 for r in server_processes(serve_pid))


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
        users = await asyncio.gather(*(
            call("POST", "/register", 201, json={
                "username": f"bench_emp_{i:03d}", "email": f"bench.emp.{i:03d}@example.test",
                "password": USER_PASSWORD, "role": "employee"})
            for i in range(n)))
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

def write_lua(path: Path, url_path: str, tokens: list[str]) -> None:
    quoted = ", ".join(f'"{t}"' for t in tokens)
    path.write_text(LUA_TEMPLATE % {"tokens": quoted, "path": url_path})


def run_wrk(wrk: str, base: str, script: Path, args: argparse.Namespace,
            duration: int) -> dict[str, Any]:
    cmd = [wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{duration}s",
           "--timeout", "10s", "--latency", "-s", str(script), base]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60,
                          check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    match = re.search(r"^BENCH_JSON (.*)$", proc.stdout, re.M)
    if not match:
        raise RuntimeError(f"no BENCH_JSON line in wrk output:\n{proc.stdout}")
    result: dict[str, Any] = json.loads(match.group(1))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    non2xx_line = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", proc.stdout)
    result["wrk_non2xx_line"] = int(non2xx_line.group(1)) if non2xx_line else 0
    result["wrk_cpu_s"] = ((after.ru_utime - before.ru_utime)
                           + (after.ru_stime - before.ru_stime))
    result["wrk_stdout"] = proc.stdout
    return result


def measure(name: str, wrk: str, base: str, script: Path, args: argparse.Namespace,
            serve_pid: int, log_path: Path) -> dict[str, Any]:
    lines0, errors0 = _count_lines(log_path)  # server log lines, warmup included
    if args.warmup > 0:
        run_wrk(wrk, base, script, args, args.warmup)
    cpu0, rcpu0 = worker_cpu(serve_pid), redis_cpu(args.redis_url)
    res = run_wrk(wrk, base, script, args, args.duration)
    cpu1, rcpu1 = worker_cpu(serve_pid), redis_cpu(args.redis_url)
    res["server_cpu_s"] = cpu1 - cpu0
    res["server_cpu_us_per_req"] = (cpu1 - cpu0) * 1e6 / max(res["requests"], 1)
    res["redis_cpu_s"] = (rcpu1 - rcpu0) if rcpu0 is not None and rcpu1 is not None else None
    time.sleep(SETTLE_S)  # let the server finish logging about the connections wrk closed
    lines1, errors1 = _count_lines(log_path)
    res["server_log_lines"], res["server_log_errors"] = lines1 - lines0, errors1 - errors0
    log(f"{name:8s} {res['rps']:9.0f} req/s  p50 {res['lat_us']['p50'] / 1000:6.2f} ms  "
        f"p99 {res['lat_us']['p99'] / 1000:6.2f} ms  non2xx {res['non2xx']}  "
        f"server CPU {res['server_cpu_us_per_req']:.0f} us/req  "
        f"log lines {res['server_log_lines']} (ERROR {res['server_log_errors']})")
    return res


def wrk_version(wrk: str) -> str:
    out = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    lines = (out.stdout or out.stderr).splitlines()
    return lines[0].strip() if lines else "?"


def _count_lines(path: Path) -> tuple[int, int]:
    """(lines, lines logged at ERROR or above) in the server log."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return 0, 0
    return len(lines), sum(1 for line in lines if re.search(rb" (ERROR|CRITICAL) ", line))


# --- main -----------------------------------------------------------------------------------

def start_server(cmd: list[str], env: dict[str, str], cwd: Path,
                 log_path: Path) -> subprocess.Popen[bytes]:
    log_file = log_path.open("wb")
    try:
        # Own process group, so a Ctrl-C of the bench does not hit the server first.
        return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log_file,
                                stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        log_file.close()


def stop_server(proc: subprocess.Popen[bytes]) -> int | None:
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        log("serve did not stop within 40 s of SIGTERM; killing its process group")
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait(timeout=10)


def wait_ready(base: str, proc: subprocess.Popen[bytes], log_path: Path,
               timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            resp = httpx.get(f"{base}/readyz", timeout=2)
            if resp.status_code == 200:
                return
            last = f"{resp.status_code} {resp.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise RuntimeError(f"/readyz not ready after {timeout} s: {last}")


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "rps_median": median([r["rps"] for r in runs]),
        "rps_runs": [round(r["rps"], 1) for r in runs],
        "p50_ms_median": median([r["lat_us"]["p50"] for r in runs]) / 1000,
        "p90_ms_median": median([r["lat_us"]["p90"] for r in runs]) / 1000,
        "p99_ms_median": median([r["lat_us"]["p99"] for r in runs]) / 1000,
        "server_cpu_us_per_req_median": median([r["server_cpu_us_per_req"] for r in runs]),
        "requests_total": sum(r["requests"] for r in runs),
        "non2xx_total": sum(r["non2xx"] for r in runs),
        "socket_errors_total": sum(r["errors"]["connect"] + r["errors"]["read"]
                                   + r["errors"]["write"] + r["errors"]["timeout"]
                                   for r in runs),
        "statuses": _merge_statuses(runs),
        "server_log_lines_total": sum(r["server_log_lines"] for r in runs),
        "server_log_errors_total": sum(r["server_log_errors"] for r in runs),
    }


def _merge_statuses(runs: list[dict[str, Any]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for r in runs:
        for k, v in r["statuses"].items():
            merged[k] = merged.get(k, 0) + v
    return dict(sorted(merged.items()))


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
        setup_log_lines = _count_lines(log_path)[0]
        rss_before = server_processes(proc.pid)

        scripts = {"healthz": tmp / "healthz.lua", "me": tmp / "me.lua"}
        write_lua(scripts["healthz"], "/healthz", tokens)
        write_lua(scripts["me"], "/me", tokens)
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
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "python": platform.python_version(),
                        "wrk": wrk_version(wrk)},
            "config": {k: v for k, v in vars(args).items()},
            "setup_seconds": round(setup_s, 1),
            "summary": summary,
            "ratio_me_over_healthz_rps": ratio,
            "extra_wall_us_per_request_at_saturation": per_req_extra_us,
            "runs": {name: [{k: v for k, v in r.items() if k != "wrk_stdout"} for r in rs]
                     for name, rs in runs.items()},
            "wrk_stdout_last": {name: rs[-1]["wrk_stdout"] for name, rs in runs.items()},
            "server_processes_before_load": rss_before,
            "server_processes_after_load": rss_after,
            "server_log": {"lines_during_setup": setup_log_lines,
                           "lines_total": len(log_tail), "tail": log_tail[-20:]},
            "failed": failed,
        }
        if not args.no_save:
            RESULTS_DIR.mkdir(parents=True, exist_ok=True)
            out = RESULTS_DIR / f"auth_overhead-{datetime.now().strftime('%Y-%m-%d')}.json"
            if out.exists():
                out = out.with_name(f"auth_overhead-{datetime.now().strftime('%Y-%m-%d-%H%M%S')}"
                                    ".json")
            out.write_text(json.dumps(result, indent=2) + "\n")
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
    print("\nserver processes after the run:")
    for p in procs:
        rss = f"{p['vm_rss_kb'] / 1024:.1f} MiB" if p["vm_rss_kb"] else "?"
        hwm = f"{p['vm_hwm_kb'] / 1024:.1f} MiB" if p["vm_hwm_kb"] else "?"
        print(f"  pid {p['pid']:>7d} {p['kind']:20s} VmRSS {rss:>10s}  VmHWM {hwm:>10s}")
    print()


if __name__ == "__main__":
    sys.exit(main())
