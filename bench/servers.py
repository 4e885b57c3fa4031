"""The servers a bench runs: starting and stopping them, their environment, the Redis they
share, and what their logs say."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from run_info import REPO, log

LOCKED = "database is locked"


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


# --- server logs ------------------------------------------------------------------------------

ERROR_RE = re.compile(rb" (ERROR|CRITICAL) ")


def count_lines(path: Path) -> tuple[int, int]:
    """(lines, lines logged at ERROR or above) in a server log."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return 0, 0
    return len(lines), sum(1 for line in lines if ERROR_RE.search(line))


_RECORD_START = re.compile(r"^\[?\d{4}-\d\d-\d\d[ T]")
_ERROR_RE = re.compile(r" (ERROR|CRITICAL) ")


def scan_log(path: Path, max_blocks: int = 8, max_block_lines: int = 80) -> dict[str, Any]:
    """Counts, distinct ERROR/WARNING messages, and the first ERROR records in full."""
    text = path.read_text(errors="replace") if path.exists() else ""
    lines = text.splitlines()
    errors = [ln for ln in lines if _ERROR_RE.search(ln)]
    warnings = [ln for ln in lines if " WARNING " in ln]
    # One entry per distinct message (timestamps, request ids and numbers blanked).
    distinct = Counter(re.sub(r"\[[0-9a-f]{32}\]", "[rid]",
                              re.sub(r"\d+", "N", ln.split(" ", 2)[-1]))[:240]
                       for ln in errors + warnings)
    blocks: list[list[str]] = []
    i = 0
    while i < len(lines) and len(blocks) < max_blocks:
        if _ERROR_RE.search(lines[i]):
            j = i + 1
            while j < len(lines) and not _RECORD_START.match(lines[j]):
                j += 1
            blocks.append(lines[i:min(j, i + max_block_lines)])
            i = j
        else:
            i += 1
    return {"lines": len(lines), "error_lines": len(errors), "warning_lines": len(warnings),
            "tracebacks": text.count("Traceback (most recent call last)"),
            "database_is_locked": text.count(LOCKED),
            "distinct_error_and_warning_messages": distinct.most_common(30),
            "first_error_records": blocks,
            "tail": lines[-30:]}
