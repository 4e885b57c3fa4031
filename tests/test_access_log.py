"""The access log (ops/access_log.py, LineHandler in core/logs.py): hypercorn's format and
values, built lazily, written in short batches that keep the order of the output, one line per
request on a real `taskapi serve`, the cache hits answered before Quart included."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import signal
from pathlib import Path
from typing import Any

import httpx
from hypercorn.logging import AccessLogAtoms

from taskapi.core.logs import PIPE_BUF, LineHandler
from taskapi.ops.access_log import LazyAtoms
from taskapi.ops.server import DEFAULTS
from tests.support.processes import cli_env, serve

SCOPE: dict[str, Any] = {
    "type": "http", "http_version": "1.1", "method": "GET", "scheme": "http",
    "path": "/tasks/mine", "query_string": b"status=pending&limit=5",
    "client": ("10.0.0.7", 51234),
    "headers": [(b"host", b"api"), (b"User-Agent", b"curl/8.5"), (b"referer", b"http://x/"),
                (b"x-forwarded-for", b"203.0.113.9")],
}
RESPONSE: dict[str, Any] = {
    "status": 200,
    "headers": [(b"content-type", b"application/json"), (b"Content-Length", b"1234"),
                (b"x-request-id", b"abc123")],
}
FORMATS = [
    DEFAULTS["access_log_format"],
    # hypercorn.toml's and hypercorn's own default
    '%(h)s xff=%({x-forwarded-for}i)s "%(r)s" %(s)s %(b)s %(D)sus rid=%({x-request-id}o)s "%(a)s"',
    '%(h)s %(l)s %(l)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"',
    "%(R)s %(st)s %(S)s %(m)s %(U)s %(Uq)s %(q)s %(H)s %(B)s %(T)s %(L)s %(p)s "
    "%({HOME}e)s %({nope}i)s %({nope}o)s %(zz)s",
]


def test_every_atom_is_hypercorns() -> None:
    ours = LazyAtoms(SCOPE, RESPONSE, 0.012345)  # type: ignore[arg-type]
    theirs = AccessLogAtoms(SCOPE, RESPONSE, 0.012345)  # type: ignore[arg-type]
    for key in [*theirs, "{X-Request-ID}o", "{missing}i", "unknown"]:
        if key != "t":  # the time, which moves on between the two
            assert ours[key] == theirs[key], key
    assert re.fullmatch(r"\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]", ours["t"])
    for fmt in FORMATS:
        expected = fmt % AccessLogAtoms(SCOPE, RESPONSE, 0.012345)  # type: ignore[arg-type]
        got = fmt % LazyAtoms(SCOPE, RESPONSE, 0.012345)  # type: ignore[arg-type]
        assert re.sub(r"\[\d\d/.*?\]", "[t]", got) == re.sub(r"\[\d\d/.*?\]", "[t]", expected)
    websocket = {**SCOPE, "type": "websocket"}
    del websocket["http_version"], websocket["method"]
    assert LazyAtoms(websocket, None, 0)["r"] == "GET /tasks/mine ws"  # type: ignore[arg-type]
    assert LazyAtoms(websocket, None, 0)["s"] == "-"  # type: ignore[arg-type]


def _handler(fmt: str) -> tuple[LineHandler, io.StringIO]:
    out = io.StringIO()
    handler = LineHandler(out, fmt)
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"))
    return handler, out


async def test_lines_wait_briefly_and_never_overtake_other_records() -> None:
    handler, out = _handler("text")
    handler.write_access('GET /a 200', "rid-1")
    handler.write_access('GET /b 200', "rid-2")
    assert out.getvalue() == ""  # buffered
    record = logging.LogRecord("taskapi.x", logging.WARNING, __file__, 1, "later", None, None)
    record.request_id = "rid-3"
    handler.handle(record)  # another record: the lines before it go first
    lines = out.getvalue().splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == ["GET /a 200", "GET /b 200", "later"]
    prefix = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "
    assert re.fullmatch(prefix + r"INFO \[rid-1\] hypercorn\.access: GET /a 200", lines[0])
    assert re.fullmatch(prefix + r"WARNING \[rid-3\] taskapi\.x: later", lines[2])

    handler.write_access("GET /c 200", "rid-4")
    await asyncio.sleep(LineHandler.FLUSH_AFTER * 3)  # the timer writes it
    assert out.getvalue().splitlines()[-1].endswith("hypercorn.access: GET /c 200")


async def test_a_full_buffer_is_written_at_once_and_json_lines_parse() -> None:
    handler, out = _handler("json")
    line = "x" * 1000
    for n in range(LineHandler.BUFFER_BYTES // 1000 + 1):
        handler.write_access(line, f"r{n}")
    written = out.getvalue().splitlines()
    assert len(written) >= LineHandler.BUFFER_BYTES // 1100
    first = json.loads(written[0])
    assert first["msg"] == line and first["request_id"] == "r0"
    assert first["level"] == "INFO" and first["logger"] == "hypercorn.access"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", first["ts"])
    handler.flush()
    assert len(out.getvalue().splitlines()) == LineHandler.BUFFER_BYTES // 1000 + 1


class Writes(io.StringIO):
    """A stream that keeps what each write-and-flush sent (what reaches the pipe at once)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []
        self.pending = ""

    def write(self, text: str) -> int:
        self.pending += text
        return super().write(text)

    def flush(self) -> None:
        if self.pending:
            self.sent.append(self.pending)
            self.pending = ""


def test_writes_are_whole_lines_within_pipe_buf() -> None:
    out = Writes()
    handler = LineHandler(out, "text")
    with_loop = asyncio.new_event_loop()
    try:
        async def lines() -> None:
            for n in range(300):
                handler.write_access(f"GET /tasks/{n} 200 " + "x" * (n % 150), f"r{n}")
            handler.flush()

        with_loop.run_until_complete(lines())
    finally:
        with_loop.close()
    assert len(out.sent) > 1
    assert all(len(chunk.encode()) <= PIPE_BUF and chunk.endswith("\n") for chunk in out.sent)
    assert "".join(out.sent).count("\n") == 300


def test_without_an_event_loop_a_line_is_written_at_once() -> None:
    handler, out = _handler("text")
    handler.write_access("GET /sync 200", "rid")
    assert out.getvalue().endswith("hypercorn.access: GET /sync 200\n")


async def test_one_line_per_request_on_a_real_server_fast_path_hits_included(tmp_path: Path, database_url: str, redis_url: str, redis_sync, make_user) -> None:  # type: ignore[no-untyped-def]
    employee = await make_user("employee")
    env = cli_env(tmp_path / "data", TASKAPI_DATABASE_URL=database_url,
                  TASKAPI_REDIS_URL=redis_url, TASKAPI_LOG_LEVEL="INFO")
    sent: dict[str, tuple[str, int]] = {}
    with serve(env, "--workers", "2", stop=False) as (base, process):
        for n in range(40):
            path = "/tasks/mine" if n % 2 else "/healthz"
            rid = f"t-{n}"
            answer = httpx.get(base + path, headers={**employee.headers, "X-Request-ID": rid,
                                                     "Connection": "close"})
            assert answer.status_code == 200
            sent[rid] = (path, answer.status_code)
        missing = httpx.get(base + "/nope", headers={"X-Request-ID": "t-404"})
        sent["t-404"] = ("/nope", missing.status_code)
        hits = httpx.get(base + "/metrics").text
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    port = base.rsplit(":", 1)[1]
    log = (tmp_path / f"serve-{port}.log").read_text()
    access = [line for line in log.splitlines() if " hypercorn.access: " in line]
    seen: dict[str, list[str]] = {}
    for line in access:
        rid = re.search(r"rid=(\S+)", line)
        assert rid, line
        seen.setdefault(rid.group(1), []).append(line)
    for rid, (path, status) in sent.items():
        assert len(seen.get(rid, [])) == 1, (rid, seen.get(rid), log[-3000:])
        line = seen[rid][0]
        assert f"[{rid}] hypercorn.access: 127.0.0.1:" in line
        assert f'"GET {path} 1.1" {status} ' in line
    # The cache answered some /tasks/mine before Quart (decision 015): logged all the same.
    served = re.search(r'taskapi_cache_lookups_total\{[^}]*result="hit"[^}]*\} (\S+)', hits)
    assert served and float(served.group(1)) > 0, hits
