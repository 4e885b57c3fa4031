"""Does POST /register take as long for an email that has an account as for a new one?

Starts `taskapi serve --workers 2 --no-worker` (SQLite in a temp dir, real Redis, rate limits
out of the way), registers `--rounds` accounts through the API (setup), then sends `--rounds`
rounds, one request at a time: a registration with a new email and one with the email of a
setup account (a different one each round, so every attempt records its owner's notice: the
expensive side of the dedupe), in alternating order. Prints the median, p10 and p90 latency
per kind, their statuses, and the difference of the medians.

`--source DIR` runs the taskapi package found in DIR (e.g. an older commit unpacked with
`git archive`) instead of this checkout, so before and after are measured by one script:

    git archive c8ca55c | tar -x -C /tmp/taskapi-before
    .venv/bin/python bench/register_timing.py --source /tmp/taskapi-before
    .venv/bin/python bench/register_timing.py
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from _common import (
    REPO,
    clean_env,
    flush_redis,
    free_port,
    log,
    start_server,
    stop_server,
    wait_ready,
)

PASSWORD = "bench password 123"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10, help="rounds not counted")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--source", type=Path, help="run the taskapi package in this tree")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14",
                        help="flushed at start and end: never point this at real data")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="taskapi-bench-register-"))
    env = clean_env() | {
        "TASKAPI_ENV": "test", "TASKAPI_DATA_DIR": str(tmp / "data"),
        "TASKAPI_REDIS_URL": args.redis_url, "TASKAPI_LOG_LEVEL": "WARNING",
        "TASKAPI_RATE_LIMIT_DEFAULT": "10000000/minute",
        "TASKAPI_SECRET_KEY": "bench-secret-key-that-is-long-enough-0123456789",
    }
    # The tree on the path first: its taskapi, and its asgi.py (what serve's workers load).
    env["PYTHONPATH"] = str((args.source or REPO).resolve())
    taskapi = [sys.executable, "-m", "taskapi"]
    where = subprocess.run([sys.executable, "-c", "import taskapi; print(taskapi.__file__)"],
                           env=env, cwd=tmp, capture_output=True, text=True, check=True)
    log(f"taskapi from {where.stdout.strip()}")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp / "serve.log"
    proc = None
    try:
        flush_redis(args.redis_url)
        subprocess.run([*taskapi, "db", "upgrade"], env=env, cwd=tmp, check=True,
                       capture_output=True, timeout=120)
        proc = start_server([*taskapi, "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", str(args.workers), "--no-worker"], env, tmp, log_path)
        wait_ready(base, proc, log_path)
        total = args.rounds + args.warmup

        def body(prefix: str, i: int, email_of: str | None = None) -> dict[str, str]:
            return {"username": f"{prefix}{i}", "password": PASSWORD,
                    "email": f"{email_of or prefix}{i}@example.test"}

        with httpx.Client(base_url=base, timeout=60) as client:
            with ThreadPoolExecutor(4) as pool:
                setup = list(pool.map(lambda i: client.post("/register", json=body("known", i)),
                                      range(total)))
            log(f"setup: {Counter(r.status_code for r in setup)} for {total} accounts")
            times: dict[str, list[float]] = {"new": [], "existing": []}
            statuses: dict[str, Counter[int]] = {"new": Counter(), "existing": Counter()}
            for i in range(total):
                calls = [("new", body("fresh", i)), ("existing", body("other", i, "known"))]
                for kind, payload in calls if i % 2 else calls[::-1]:
                    start = time.perf_counter()
                    response = client.post("/register", json=payload)
                    elapsed = (time.perf_counter() - start) * 1000
                    if i >= args.warmup:
                        times[kind].append(elapsed)
                        statuses[kind][response.status_code] += 1
        print(f"{'kind':<9} {'n':>4} {'median ms':>10} {'p10 ms':>8} {'p90 ms':>8}  statuses")
        for kind, values in times.items():
            print(f"{kind:<9} {len(values):>4} {statistics.median(values):>10.1f} "
                  f"{percentile(values, 0.1):>8.1f} {percentile(values, 0.9):>8.1f}  "
                  f"{dict(statuses[kind])}")
        diff = statistics.median(times["existing"]) - statistics.median(times["new"])
        print(f"median(existing) - median(new) = {diff:+.1f} ms")
        return 0
    finally:
        if proc is not None:
            stop_server(proc)
        flush_redis(args.redis_url)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
