"""Running wrk: one run (its BENCH_JSON line parsed), a warmup + measured run with the
server's CPU and log lines, and the summary of repeated runs."""

from __future__ import annotations

import json
import re
import resource
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from proc_stats import loop_cpu, worker_cpu
from run_info import log, median
from servers import count_lines, redis_cpu

SETTLE_S = 0.5


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
            redis_url: str | None = None,
            drain: Callable[[], float] | None = None) -> dict[str, Any]:
    """A warmup run (its non-2xx and socket errors are kept too), then the measured run,
    with the server's CPU (whole process tree) and its new log lines. `drain` (if given)
    runs after the warmup and after the measured run and returns the seconds it waited: a
    server that queues connections (gunicorn's sync workers) still answers the requests
    of the connections wrk closed, which would eat into the next run."""
    lines0, errors0 = count_lines(log_path)  # server log lines, warmup included
    warm: dict[str, Any] | None = None
    drained_warmup = 0.0
    if warmup > 0:
        warm = run_wrk(wrk, base, script, threads=threads, connections=connections,
                       duration=warmup)
        drained_warmup = drain() if drain else 0.0
    cpu0, loop0 = worker_cpu(server_pid), loop_cpu(server_pid)
    rcpu0 = redis_cpu(redis_url) if redis_url else None
    res = run_wrk(wrk, base, script, threads=threads, connections=connections,
                  duration=duration)
    cpu1, loop1 = worker_cpu(server_pid), loop_cpu(server_pid)
    rcpu1 = redis_cpu(redis_url) if redis_url else None
    if drain:
        res["drain_s"] = {"after_warmup": round(drained_warmup, 2),
                          "after_run": round(drain(), 2)}
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
