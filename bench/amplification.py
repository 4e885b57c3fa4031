"""422 amplification (issue #14, finding 2): an anonymous POST /login with 60,000 unknown keys.

Run with the repo venv:  .venv/bin/python bench/amplification.py [--seconds 10] [--repeats 3]

Starts its own `taskapi serve --workers 2 --no-worker` (production settings, a temp SQLite
file, embedded Redis unless --redis-url, rate limits too high to be hit), then:

1. sends the attack body (`{"k0": 0, …, "k59999": 0}`, ~650 KB) `--samples` times, one at a
   time: status, response bytes, latency and the server's CPU per request (utime+stime of
   every serve process, from /proc);
2. per repeat: `GET /healthz` one at a time for `--seconds` with nothing else running, then
   again while `--attackers` threads send the attack body in a loop.

Prints the medians and writes bench/results/amplification-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from _common import (
    REPO,
    clean_env,
    free_port,
    log,
    median,
    save_results,
    start_server,
    stop_server,
    taskapi_bin,
    wait_ready,
    worker_cpu,
)

ATTACK = json.dumps({f"k{n}": 0 for n in range(60_000)}).encode()
HEADERS = {"Content-Type": "application/json"}


def attack_once(client: httpx.Client) -> tuple[int, int, float]:
    started = time.perf_counter()
    response = client.post("/login", content=ATTACK, headers=HEADERS)
    return response.status_code, len(response.content), time.perf_counter() - started


def healthz_latencies(client: httpx.Client, seconds: float) -> list[float]:
    latencies, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        client.get("/healthz").raise_for_status()
        latencies.append(time.perf_counter() - started)
    return latencies


def percentiles(values: list[float]) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values)
    return {"p50_ms": round(statistics.median(ms), 1),
            "p90_ms": round(ms[int(len(ms) * 0.9)], 1), "max_ms": round(ms[-1], 1),
            "requests": len(ms)}


def under_attack(base: str, attackers: int, seconds: float) -> dict[str, Any]:
    stop, sent = threading.Event(), [0] * attackers

    def attacker(n: int) -> None:
        with httpx.Client(base_url=base, timeout=120) as client:
            while not stop.is_set():
                attack_once(client)
                sent[n] += 1

    threads = [threading.Thread(target=attacker, args=(n,)) for n in range(attackers)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        time.sleep(1)  # the attack is under way
        with httpx.Client(base_url=base, timeout=120) as client:
            latencies = healthz_latencies(client, seconds)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    return {**percentiles(latencies),
            "attack_per_s": round(sum(sent) / (time.monotonic() - started), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10, help="per healthz measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=5, help="single attack requests")
    parser.add_argument("--attackers", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--redis-url", default=None, help="default: embedded Redis")
    parser.add_argument("--label", default="", help="saved with the results (e.g. before)")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="taskapi-bench-"))
    env = clean_env()
    env.update({"TASKAPI_ENV": "production", "TASKAPI_SECRET_KEY": secrets.token_urlsafe(36),
                "TASKAPI_DATA_DIR": str(tmp / "data"),
                "TASKAPI_RATE_LIMIT_DEFAULT": "10000000/minute",
                "TASKAPI_RATE_LIMIT_LOGIN": "10000000/minute", "TASKAPI_LOG_LEVEL": "WARNING"})
    if args.redis_url:
        env["TASKAPI_REDIS_URL"] = args.redis_url
    tapi, port = taskapi_bin(), free_port()
    base, log_path = f"http://127.0.0.1:{port}", tmp / "serve.log"
    proc = None
    try:
        subprocess.run([tapi, "db", "upgrade"], env=env, cwd=tmp, check=True,
                       capture_output=True, timeout=120)
        # cwd = the checkout: serve's workers import the `asgi` shim from there.
        proc = start_server([tapi, "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", str(args.workers), "--no-worker"], env, REPO, log_path)
        try:
            wait_ready(base, proc, log_path, timeout=120)
        except RuntimeError:
            log("server log:\n" + log_path.read_text(errors="replace")[-3000:])
            raise
        log(f"serve ready on {base}; attack body {len(ATTACK)} bytes")
        with httpx.Client(base_url=base, timeout=120) as client:
            attack_once(client)  # warm up
            samples = []
            for _ in range(args.samples):
                cpu = worker_cpu(proc.pid)
                status, size, seconds = attack_once(client)
                samples.append({"status": status, "bytes": size, "seconds": seconds,
                                "server_cpu_s": worker_cpu(proc.pid) - cpu})
        runs = []
        for n in range(args.repeats):
            log(f"repeat {n + 1}/{args.repeats}")
            with httpx.Client(base_url=base, timeout=120) as client:
                idle = percentiles(healthz_latencies(client, args.seconds))
            runs.append({"idle": idle, "attacked": under_attack(base, args.attackers,
                                                                args.seconds)})
    finally:
        if proc is not None:
            stop_server(proc)
        shutil.rmtree(tmp, ignore_errors=True)

    summary = {
        "attack_status": sorted({s["status"] for s in samples}),
        "attack_response_bytes": median([s["bytes"] for s in samples]),
        "attack_latency_ms": round(median([s["seconds"] for s in samples]) * 1000, 1),
        "attack_server_cpu_ms": round(median([s["server_cpu_s"] for s in samples]) * 1000, 1),
        "healthz_idle_p50_ms": median([r["idle"]["p50_ms"] for r in runs]),
        "healthz_attacked_p50_ms": median([r["attacked"]["p50_ms"] for r in runs]),
        "healthz_attacked_p90_ms": median([r["attacked"]["p90_ms"] for r in runs]),
        "attack_requests_per_s": median([r["attacked"]["attack_per_s"] for r in runs]),
    }
    for key, value in summary.items():
        print(f"{key:28s} {value}")
    if not args.no_save:
        out = save_results("amplification", {
            "benchmark": "amplification", "label": args.label,
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": vars(args), "attack_body_bytes": len(ATTACK), "summary": summary,
            "samples": samples, "runs": runs})
        log(f"results written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
