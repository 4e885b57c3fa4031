"""A real user's login while 40 clients flood POST /login with unknown emails.

Run with the repo venv:  .venv/bin/python bench/login_burst.py [--runs 3] [--duration 20]

Starts its own `taskapi serve --workers 2` (production settings and default limits, a temp
SQLite file, real Redis db 5, flushed at start and end, TRUSTED_PROXIES=127.0.0.1/32 so each
simulated client is an X-Forwarded-For address). Every attacker is one address that sends a
login for a new unknown email, waits for the answer, and sends the next one `--attack-interval`
seconds after the previous one started (at the defaults: 24 a minute, under every per-address
limit). Meanwhile the real user (an approved account) logs in every `--user-interval` seconds
from its own address, retrying a 503 after its Retry-After (at most `--user-retries` times).
Reports, over all runs, the real user's per-attempt latency, the time from the first attempt
to a token (retries included) and the attackers' status counts. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from _common import (
    REPO,
    clean_env,
    count_lines,
    flush_redis,
    free_port,
    log,
    save_results,
    start_server,
    stop_server,
    taskapi_bin,
    wait_ready,
)

USER_EMAIL, USER_NAME = "bench-user@example.test", "bench_user"
USER_PASSWORD = "bench password 123"


def make_env(args: argparse.Namespace, data_dir: Path) -> dict[str, str]:
    env = clean_env()  # inherited TASKAPI_* variables must not leak into the bench
    env.update({
        "TASKAPI_ENV": "production",
        "TASKAPI_SECRET_KEY": secrets.token_urlsafe(36),
        "TASKAPI_DATA_DIR": str(data_dir),
        "TASKAPI_REDIS_URL": args.redis_url,
        "TASKAPI_TRUSTED_PROXIES": "127.0.0.1/32",
        "TASKAPI_LOG_LEVEL": "WARNING",
        # serve loads `asgi:app` from the checkout; the working directory is the temp dir
        # (settings also read a `.env` from there).
        "PYTHONPATH": str(REPO),
    })
    for item in args.set:
        name, _, value = item.partition("=")
        env[f"TASKAPI_{name.upper()}"] = value
    return env


def _address(run: int, i: int) -> str:
    """A documentation-range IPv6 address (only ever a header value) per run and client."""
    return f"2001:db8:{run + 1:x}::{i:x}"


async def _login(client: httpx.AsyncClient, email: str, password: str,
                 address: str) -> tuple[int, float, str | None]:
    started = time.perf_counter()
    resp = await client.post("/login", json={"email": email, "password": password},
                             headers={"X-Forwarded-For": address})
    return resp.status_code, time.perf_counter() - started, resp.headers.get("Retry-After")


async def attacker(client: httpx.AsyncClient, address: str, stop_at: float,
                   interval: float, out: list[tuple[int, float]]) -> None:
    while time.perf_counter() < stop_at:
        started = time.perf_counter()
        email = f"nobody-{secrets.token_hex(6)}@example.test"
        try:
            status, latency, _ = await _login(client, email, "wrong password", address)
        except httpx.HTTPError:
            status, latency = 0, time.perf_counter() - started
        out.append((status, latency))
        await asyncio.sleep(max(0.0, started + interval - time.perf_counter()))


async def real_user(client: httpx.AsyncClient, address: str, stop_at: float,
                    args: argparse.Namespace, attempts: list[tuple[int, float]],
                    to_token: list[float | None]) -> None:
    await asyncio.sleep(args.user_delay)  # let the flood build up first
    while time.perf_counter() < stop_at:
        started = time.perf_counter()
        token_after: float | None = None
        for _ in range(args.user_retries + 1):
            status, latency, retry_after = await _login(client, USER_EMAIL, USER_PASSWORD,
                                                        address)
            attempts.append((status, latency))
            if status == 200:
                token_after = time.perf_counter() - started
                break
            if status != 503:
                break
            await asyncio.sleep(float(retry_after or 1))
        to_token.append(token_after)
        await asyncio.sleep(max(0.0, started + args.user_interval - time.perf_counter()))


async def one_run(base: str, run: int, args: argparse.Namespace) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=args.attackers + 8)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        stop_at = time.perf_counter() + args.duration
        attacks: list[tuple[int, float]] = []
        attempts: list[tuple[int, float]] = []
        to_token: list[float | None] = []
        await asyncio.gather(
            *(attacker(client, _address(run, i + 1), stop_at, args.attack_interval, attacks)
              for i in range(args.attackers)),
            real_user(client, _address(run, 0xffff), stop_at, args, attempts, to_token))
    return {"attacker_statuses": _statuses(attacks),
            "attacker_latency_s": _spread([latency for _, latency in attacks]),
            "user_attempts": [{"status": s, "latency_s": round(t, 3)} for s, t in attempts],
            "user_statuses": _statuses(attempts),
            "user_to_token_s": [None if t is None else round(t, 3) for t in to_token]}


def _statuses(rows: list[tuple[int, float]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for status, _ in rows:
        counts[str(status)] = counts.get(str(status), 0) + 1
    return dict(sorted(counts.items()))


def _spread(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "median": None, "max": None}
    return {"n": len(values), "median": round(statistics.median(values), 3),
            "max": round(max(values), 3)}


async def warm_up(base: str) -> None:
    """Each worker computes its reference hash on its first unknown email: not in a run."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        for i in range(6):
            await _login(client, f"warmup-{i}@example.test", "x", f"2001:db8:ffff::{i + 1:x}")
        status, _, _ = await _login(client, USER_EMAIL, USER_PASSWORD, "2001:db8:ffff::ff")
        if status != 200:
            raise RuntimeError(f"the real user cannot log in before the flood: {status}")


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    attempts = [a for r in runs for a in r["user_attempts"]]
    ok = [a["latency_s"] for a in attempts if a["status"] == 200]
    to_token = [t for r in runs for t in r["user_to_token_s"]]
    attackers: dict[str, int] = {}
    for r in runs:
        for k, v in r["attacker_statuses"].items():
            attackers[k] = attackers.get(k, 0) + v
    return {
        "user_attempt_latency_s": _spread([a["latency_s"] for a in attempts]),
        "user_200_latency_s": _spread(ok),
        "user_statuses": _statuses([(a["status"], 0.0) for a in attempts]),
        "user_to_token_s": _spread([t for t in to_token if t is not None]),
        "user_logins_without_token": sum(1 for t in to_token if t is None),
        "user_run_medians_s": [_spread([a["latency_s"] for a in r["user_attempts"]])["median"]
                               for r in runs],
        "attacker_statuses": dict(sorted(attackers.items())),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=20, help="seconds per run")
    parser.add_argument("--attackers", type=int, default=40, help="client addresses")
    parser.add_argument("--attack-interval", type=float, default=2.5,
                        help="seconds between one attacker's logins (starts)")
    parser.add_argument("--user-interval", type=float, default=4.0)
    parser.add_argument("--user-delay", type=float, default=2.0,
                        help="seconds of flood before the real user's first login")
    parser.add_argument("--user-retries", type=int, default=1, help="after a 503")
    parser.add_argument("--pause", type=float, default=3.0, help="seconds between runs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/5",
                        help="flushed at start and end: never point this at real data")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting other than the defaults, e.g. PASSWORD_QUEUE=8")
    parser.add_argument("--label", default="", help="suffix of the results file name")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="taskapi-login-burst-"))
    data_dir, log_path = tmp / "data", tmp / "serve.log"
    env = make_env(args, data_dir)
    tapi = taskapi_bin()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc: subprocess.Popen[bytes] | None = None
    try:
        flush_redis(args.redis_url)
        for cmd in ([tapi, "db", "upgrade"],
                    [tapi, "create-admin", "--email", USER_EMAIL, "--username", USER_NAME,
                     "--password", USER_PASSWORD]):
            subprocess.run(cmd, env=env, cwd=tmp, check=True, capture_output=True, timeout=120)
        proc = start_server([tapi, "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", str(args.workers)], env, tmp, log_path)
        wait_ready(base, proc, log_path)
        asyncio.run(warm_up(base))
        runs = []
        for run in range(args.runs):
            log(f"run {run + 1}/{args.runs}: {args.attackers} attackers, {args.duration:.0f} s")
            runs.append(asyncio.run(one_run(base, run, args)))
            r = runs[-1]
            log(f"  user {r['user_statuses']} latencies "
                f"{[a['latency_s'] for a in r['user_attempts']]} to token {r['user_to_token_s']}"
                f"; attackers {r['attacker_statuses']}")
            time.sleep(args.pause)
        summary = summarize(runs)
        for key, value in summary.items():
            print(f"{key:28s} {value}")
        result = {
            "benchmark": "login_burst",
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                  capture_output=True, text=True).stdout.strip(),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
            "config": vars(args),
            "summary": summary,
            "runs": runs,
            "server_log": {"lines_and_errors": count_lines(log_path),
                           "tail": log_path.read_text(errors="replace").splitlines()[-20:]},
        }
        if not args.no_save:
            stem = "login_burst" + (f"-{args.label}" if args.label else "")
            log(f"results written to {save_results(stem, result).relative_to(REPO)}")
        return 0
    finally:
        if proc is not None:
            stop_server(proc)
        flush_redis(args.redis_url)


if __name__ == "__main__":
    sys.exit(main())
