"""How many argon2id verifies per second this machine does, as `taskapi serve` runs them.

Run with the repo venv:  .venv/bin/python bench/argon2_capacity.py [--seconds 10]

For each layout (processes x threads: 1x1, 2x1, 2x2 = `serve --workers 2` with
PASSWORD_CONCURRENCY=2), every thread verifies the same hash (pwdlib's default argon2id
parameters, as taskapi uses them) back to back for `--seconds`. Prints the verifies per
second of all processes together and the median time of one verify. No server, no Redis:
this is the capacity that the password queue settings are sized from (decision 019).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import threading
import time
from typing import Any


def _process(threads: int, seconds: float, out: Any) -> None:
    from pwdlib.hashers.argon2 import Argon2Hasher

    hasher = Argon2Hasher()
    stored = hasher.hash("bench password")
    times: list[float] = []

    def run() -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            started = time.perf_counter()
            hasher.verify("bench password", stored)
            times.append(time.perf_counter() - started)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    out.put(times)


def measure(processes: int, threads: int, seconds: float) -> dict[str, float]:
    out: Any = mp.Queue()
    procs = [mp.Process(target=_process, args=(threads, seconds, out)) for _ in range(processes)]
    for proc in procs:
        proc.start()
    times = [t for _ in procs for t in out.get()]
    for proc in procs:
        proc.join()
    return {"per_s": len(times) / seconds, "median_s": statistics.median(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    print(f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.2f} at start")
    for processes, threads in ((1, 1), (2, 1), (2, 2)):
        result = measure(processes, threads, args.seconds)
        print(f"{processes} process(es) x {threads} thread(s): {result['per_s']:.2f} verifies/s, "
              f"one verify {result['median_s'] * 1000:.0f} ms (median)")
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
