"""Running real processes (`python -m taskapi ...`) from tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.support.ports import free_port
from tests.support.values import TEST_SECRET

REPO = Path(__file__).resolve().parents[2]


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKAPI_")}
    env.update({"TASKAPI_DATA_DIR": str(data_dir), "TASKAPI_SECRET_KEY": TEST_SECRET,
                "TASKAPI_ENV": "test"})
    env.update(extra)
    return env


def shared_env(data_dir: Path, database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """cli_env for a server on the test's database and Redis (nodes sharing both)."""
    return cli_env(data_dir, TASKAPI_DATABASE_URL=database_url, TASKAPI_REDIS_URL=redis_url,
                   **extra)


def outside_checkout(env: dict[str, str]) -> Path:
    """Where real processes run: beside their data dir, not in the checkout, as an installed
    service would (no root shims such as asgi.py on sys.path, no developer's .env)."""
    return Path(env["TASKAPI_DATA_DIR"]).parent


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskapi", *args], env=env, cwd=outside_checkout(env),
        capture_output=True, text=True, timeout=timeout, check=False,
    )


@contextlib.contextmanager
def serve(env: dict[str, str], *args: str, timeout: float = 30, port: int | None = None,
          stop: bool = True) -> Iterator[Any]:
    """`taskapi serve` on a (free) port; yields its base URL (with `stop=False`, the URL and
    the process, for a test that stops it itself); SIGTERM on exit."""
    port = port or free_port()
    log = open(Path(env["TASKAPI_DATA_DIR"]).parent / f"serve-{port}.log", "w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "taskapi", "serve", "--port", str(port), *args],
        env=env, cwd=outside_checkout(env), stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"serve exited {process.returncode}:\n{log.read()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError("serve did not become ready")
            time.sleep(0.1)
        yield base if stop else (base, process)
    finally:
        stop_process(process)
        log.close()


def stop_process(process: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 30 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
