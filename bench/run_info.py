"""What every bench run records: where the repo is, its log lines, the machine and the
commit it ran on, and the results JSON.

The bench scripts run as `python bench/<script>.py`, so `bench/` is on sys.path and the
helper modules are imported by their plain names (`from run_info import log`). No taskapi
imports in the helpers shared with the other scripts: each script imports what it needs.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


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


def app_version() -> dict[str, Any]:
    """The commit measured, and files changed outside bench/ (another engineer may be
    editing the application while this runs: the server loads the code at start)."""
    def git(*cmd: str) -> str:
        out = subprocess.run(["git", *cmd], cwd=REPO, capture_output=True, text=True,
                             timeout=30, check=False)
        return out.stdout.rstrip()  # not lstrip: porcelain lines start with a space

    dirty = [line for line in git("status", "--porcelain").splitlines()
             if not line[3:].startswith("bench/")]
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "subject": git("log", "-1", "--format=%s")[:200], "dirty_outside_bench": dirty}


def save_results(stem: str, result: dict[str, Any]) -> Path:
    """bench/results/<stem>-<date>.json, or -<date>-<time>.json when that exists."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    now = datetime.now()
    out = RESULTS_DIR / f"{stem}-{now.strftime('%Y-%m-%d')}.json"
    if out.exists():
        out = RESULTS_DIR / f"{stem}-{now.strftime('%Y-%m-%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    return out
