"""Real processes as deployed: nginx (the repo's config) in front of `taskapi serve`, and a
graceful SIGTERM with requests in flight."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.ports import free_port
from tests.support.processes import REPO, cli_env, run_cli, serve
from tests.support.streams import sse, ws
from tests.support.values import PASSWORD

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None)


@pytest.fixture
def nginx_front(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """nginx on loopback with deploy/nginx.conf, upstream templated to a port we choose."""
    if NGINX is None:
        pytest.skip("nginx is not installed (.ci/run installs it)")
    upstream, listen = free_port(), free_port()
    conf = (REPO / "deploy" / "nginx.conf").read_text()
    assert "server api:8000;" in conf and "listen 80;" in conf
    conf = conf.replace("server api:8000;", f"server 127.0.0.1:{upstream};")
    conf = conf.replace("listen 80;", f"listen 127.0.0.1:{listen};")
    prefix = tmp_path / "nginx"
    for sub in ("logs", "tmp"):
        (prefix / sub).mkdir(parents=True)
    temp = "".join(f"{kind}_temp_path {prefix}/tmp/{kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = conf.replace("http {", "http {\n" + temp, 1)
    (prefix / "nginx.conf").write_text(conf)
    prefix.chmod(0o755)
    (prefix / "tmp").chmod(0o777)
    process = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", "stderr",
         "-g", f"daemon off; pid {prefix}/nginx.pid;"],
        stdout=subprocess.DEVNULL, stderr=open(prefix / "logs" / "stderr", "w"),
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{listen}/nginx-health").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((prefix / "logs" / "stderr").read_text())
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{listen}", upstream
    finally:
        process.send_signal(signal.SIGQUIT)
        process.wait(timeout=10)


def _from(address: str) -> httpx.Client:
    """A client whose connections come from this loopback address (a distinct client IP)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=10)


async def test_nginx_forwards_the_client_ip_the_rate_limit_keys_on(nginx_front, tmp_path: Path, database_url: str, redis_url: str, redis_sync, make_user) -> None:  # type: ignore[no-untyped-def]
    front, upstream = nginx_front
    user = await make_user("employee")
    env = cli_env(tmp_path / "data", TASKAPI_DATABASE_URL=database_url,
                  TASKAPI_REDIS_URL=redis_url, TASKAPI_TRUSTED_PROXIES="127.0.0.1",
                  TASKAPI_RATE_LIMIT_LOGIN="3/hour")
    with serve(env, "--workers", "2", port=upstream):
        def login(client: httpx.Client, spoof: str | None = None) -> int:
            headers = {"X-Forwarded-For": spoof} if spoof else {}
            return client.post(f"{front}/login", headers=headers, json={
                "email": user.email, "password": "wrong password"}).status_code

        with _from("127.0.0.2") as alice, _from("127.0.0.3") as bob:
            ok = alice.get(f"{front}/readyz")
            assert ok.status_code == 200 and ok.headers["X-Request-ID"]
            assert "nginx/" not in ok.headers.get("server", "")  # no version banner
            assert [login(alice) for _ in range(3)] == [401, 401, 401]
            assert login(alice) == 429  # alice's own bucket is full ...
            assert login(bob) == 401  # ... bob, behind the same nginx, has his own
            # A client-supplied X-Forwarded-For changes nothing: nginx overwrites it.
            assert login(alice, spoof="203.0.113.9") == 429
            assert login(bob, spoof="127.0.0.2") == 401
            good = bob.post(f"{front}/login", json={"email": user.email, "password": PASSWORD})
            assert good.status_code == 200
        # Straight to the app from an untrusted address, the header is ignored as well.
        with _from("127.0.0.4") as direct:
            statuses = [direct.post(f"http://127.0.0.1:{upstream}/login",
                                    headers={"X-Forwarded-For": f"198.51.100.{i}"},
                                    json={"email": user.email, "password": "x"}).status_code
                        for i in range(4)]
            assert statuses == [401, 401, 401, 429]


async def test_nginx_limits_body_size_with_a_problem(nginx_front, tmp_path: Path, database_url: str, redis_url: str, redis_sync) -> None:  # type: ignore[no-untyped-def]
    front, upstream = nginx_front
    env = cli_env(tmp_path / "data", TASKAPI_DATABASE_URL=database_url, TASKAPI_REDIS_URL=redis_url)
    with serve(env, port=upstream):
        response = httpx.post(f"{front}/register", content=b"x" * (2 * 1024 * 1024),
                              headers={"Content-Type": "application/json"})
        assert response.status_code == 413
        assert response.headers["Content-Type"].startswith("application/problem+json")


async def test_nginx_does_not_expose_metrics(nginx_front, tmp_path: Path, database_url: str, redis_url: str, redis_sync) -> None:  # type: ignore[no-untyped-def]
    """nginx on loopback, no TRUSTED_PROXIES: the app sees every client as 127.0.0.1, an
    allowed scraper, so it is nginx that must refuse."""
    front, upstream = nginx_front
    env = cli_env(tmp_path / "data", TASKAPI_DATABASE_URL=database_url, TASKAPI_REDIS_URL=redis_url)
    with serve(env, port=upstream):
        assert httpx.get(f"http://127.0.0.1:{upstream}/metrics").status_code == 200
        for path in ("/metrics", "//metrics", "/%6detrics", "/metrics?x=1", "/./metrics"):
            response = httpx.get(front + path)
            assert response.status_code == 404, path
            assert response.headers["Content-Type"].startswith("application/problem+json")
            assert "taskapi_http" not in response.text


# A login limit no test reaches, whose GCRA key moves on by 1.728 s (86400 / 50000) a login.
LOGIN_LIMIT, LOGIN_INTERVAL_MS = "50000/day", 86_400_000 / 50_000


def logins_counted(redis: Any, since_ms: float) -> int:
    """Login attempts the limiter has counted since `since_ms` (Unix time, ms): each one moves
    the key's theoretical arrival time on by one interval, starting at most one interval after
    `since_ms` (Redis's clock is this machine's)."""
    tats = [float(redis.get(key) or 0) for key in redis.scan_iter("rl:login:*")]
    return sum(int((tat - since_ms) // LOGIN_INTERVAL_MS) for tat in tats if tat > since_ms)


async def test_sigterm_finishes_50_requests_in_flight(tmp_path: Path, database_url: str, redis_url: str, redis_sync, make_user) -> None:  # type: ignore[no-untyped-def]
    """Logins are slow on purpose (argon2 in a thread pool): 50 at once take a while."""
    user = await make_user("employee")
    # All 50 from one address, all waiting for the password checks (none refused 503 busy).
    env = cli_env(tmp_path / "data", TASKAPI_DATABASE_URL=database_url,
                  TASKAPI_REDIS_URL=redis_url, TASKAPI_RATE_LIMIT_LOGIN=LOGIN_LIMIT,
                  TASKAPI_RATE_LIMIT_LOGIN_IP=LOGIN_LIMIT, TASKAPI_PASSWORD_QUEUE="50",
                  TASKAPI_PASSWORD_QUEUE_WAIT="120")
    with serve(env, "--workers", "2", stop=False) as (base, process):
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
            since_ms = time.time() * 1000
            calls = [asyncio.ensure_future(client.post("/login", json={
                "email": user.email, "password": PASSWORD})) for _ in range(50)]
            # Until the server has read all 50 (each counts against the login limit before
            # its hash): a request not yet read is not in flight, and a fixed sleep flaked
            # on a loaded machine. Most logins are still hashing by then.
            for _ in range(1500):  # 30 s at most
                if logins_counted(redis_sync, since_ms) >= 50:
                    break
                await asyncio.sleep(0.02)
            answered_before = sum(call.done() for call in calls)
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            codes = [response.status_code for response in await asyncio.gather(*calls)]
        assert answered_before < 50, "nothing was in flight: make the requests slower"
        assert codes == [200] * 50
        assert await asyncio.to_thread(process.wait, 40) == 0
        assert time.monotonic() - started < 35
        # and it no longer accepts connections
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{base}/healthz", timeout=2)


def test_serve_config_precedence(tmp_path: Path) -> None:
    """Built-in defaults, then the TOML file, then --host/--port/--workers."""
    from taskapi.ops.server import DEFAULTS, ServeConfigError, build_config

    plain = build_config()
    assert plain.bind == ["127.0.0.1:5000"] and plain.workers == 1
    assert plain.graceful_timeout == DEFAULTS["graceful_timeout"]
    repo = build_config(REPO / "hypercorn.toml")
    assert repo.bind == ["0.0.0.0:8000"] and repo.workers == 2 and repo.graceful_timeout == 30
    assert "xff=" in repo.access_log_format
    assert repo.accesslog.name == "hypercorn.access"  # our logger, not hypercorn's "-" stream
    # Above INFO no access logger at all: hypercorn would build every line's fields first.
    assert build_config(REPO / "hypercorn.toml", access_log=False).accesslog is None
    flags = build_config(REPO / "hypercorn.toml", port=9001, workers=5)
    assert flags.bind == ["127.0.0.1:9001"] and flags.workers == 5
    assert build_config(host="::1", port=1).bind == ["[::1]:1"]
    bad = tmp_path / "bad.toml"
    for text in ('worker_class = "trio"', "workers = ["):
        bad.write_text(text)
        with pytest.raises(ServeConfigError, match=r"bad\.toml|trio"):
            build_config(bad)
    with pytest.raises(ServeConfigError, match=r"missing\.toml"):
        build_config(tmp_path / "missing.toml")


async def test_serve_reads_hypercorn_toml_and_web_concurrency(tmp_path: Path, database_url: str, redis_url: str, redis_sync) -> None:  # type: ignore[no-untyped-def]
    """What the image runs: `taskapi serve --config hypercorn.toml --no-worker`, the worker
    count from WEB_CONCURRENCY (over the file's 2), the file's access log format."""
    env = cli_env(tmp_path / "data", TASKAPI_DATABASE_URL=database_url,
                  TASKAPI_REDIS_URL=redis_url, WEB_CONCURRENCY="3")
    port = free_port()
    with serve(env, "--config", str(REPO / "hypercorn.toml"), "--no-worker", port=port,
               stop=False) as (base, process):
        httpx.get(f"{base}/healthz", headers={"X-Forwarded-For": "198.51.100.1"})
        deadline = time.monotonic() + 30  # ready = one worker up; the others may still start
        while "taskapi_http_workers 3.0" not in httpx.get(f"{base}/metrics").text:
            assert time.monotonic() < deadline, "3 workers never came up"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 40) == 0
    log = (tmp_path / f"serve-{port}.log").read_text()
    assert 'xff=198.51.100.1 "GET /healthz 1.1" 200' in log


def test_serve_config_error_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "hypercorn.toml"
    bad.write_text('worker_class = "trio"\n')
    result = run_cli("serve", "--config", str(bad), env=cli_env(tmp_path / "data"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "trio" in result.stderr


async def test_nginx_passes_event_streams_through_unbuffered(nginx_front, tmp_path: Path, database_url: str, redis_url: str, redis_sync, make_user) -> None:  # type: ignore[no-untyped-def]
    """Through the repo's nginx config: an SSE event and a heartbeat arrive as they are sent
    (not when a buffer fills), and the WebSocket upgrade goes through."""
    front, upstream = nginx_front
    manager = await make_user("manager")
    env = cli_env(tmp_path / "data", TASKAPI_DATABASE_URL=database_url,
                  TASKAPI_REDIS_URL=redis_url, TASKAPI_EVENTS_HEARTBEAT="1")
    with serve(env, "--workers", "2", port=upstream):
        for path in ("/events", "/api/v1/events"):
            async with sse(f"{front}{path}", manager.headers) as stream:
                assert stream.response.status_code == 200
                assert stream.response.headers["content-type"].startswith("text/event-stream")
                assert "content-encoding" not in stream.response.headers
                started = time.monotonic()
                created = httpx.post(f"{front}/tasks", headers=manager.headers,
                                     json={"title": "through nginx"})
                message = await stream.next(2)
                assert message is not None and message.json() == created.json()
                assert time.monotonic() - started < 1.5
                # Heartbeats every second (counted as they are read) get through too.
                beats = stream.heartbeats
                with contextlib.suppress(TimeoutError):
                    await stream.next(2.5)
                assert stream.heartbeats >= beats + 2
        async with ws(front.replace("http", "ws") + "/ws", manager.headers) as socket:
            assert socket.status == 101
            httpx.post(f"{front}/tasks", headers=manager.headers, json={"title": "ws"})
            frame = await socket.next(2)
            assert frame["type"] == "task.created" and frame["data"]["title"] == "ws"
