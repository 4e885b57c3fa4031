"""Log setup: a request id on every line; JSON lines when TASKAPI_LOG_FORMAT=json."""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import secrets
import select
import sys
import time
from asyncio import get_running_loop
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
# The size of a write to a pipe that is never interleaved with another process's (POSIX).
PIPE_BUF = getattr(select, "PIPE_BUF", 4096)
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


_ids: tuple[int, str, itertools.count[int]] = (0, "", itertools.count())


def request_id_for(incoming: str) -> str:
    """The client's X-Request-ID when it is a sane token, else a new one: a random prefix per
    process and a counter (unique without a system call per request)."""
    global _ids
    if _REQUEST_ID_RE.match(incoming):
        return incoming
    pid, prefix, counter = _ids
    if pid != os.getpid():  # first call in this process (or a fork)
        pid, prefix, counter = _ids = (os.getpid(), secrets.token_hex(8), itertools.count(1))
    return f"{prefix}{next(counter):016x}"  # 32 hex digits, like a UUID


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class LineHandler(logging.StreamHandler):
    """Our one log handler: records as usual, and access lines through a short buffer.

    An access line (`write_access`, ops/access_log.py) is formatted here without a LogRecord:
    the same prefix, or the same JSON object, as every other record, the time text reused within
    a second. Lines wait at most FLUSH_AFTER seconds or BUFFER_BYTES, then go out in writes of
    whole lines of at most PIPE_BUF bytes (atomic on a pipe the workers share); any
    other record, `flush()` and the exit of the process (logging's atexit) write them first, so
    the output keeps the order things happened in (decision 037).
    """

    FLUSH_AFTER = 0.05
    BUFFER_BYTES = 64 * 1024

    def __init__(self, stream: Any, fmt: str = "text") -> None:
        super().__init__(stream)
        self.json = fmt == "json"
        self._lines: list[str] = []
        self._size = 0
        self._timer: Any = None
        self._second = -1
        self._second_text = ""

    def write_access(self, line: str, request_id: str) -> None:
        now = time.time()
        if self.json:
            ts = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
            text = json.dumps({"ts": ts, "level": "INFO", "logger": "hypercorn.access",
                               "msg": line, "request_id": request_id}) + "\n"
        else:
            second = int(now)
            if second != self._second:
                self._second = second
                self._second_text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
            text = (f"{self._second_text},{int((now - second) * 1000):03d} INFO "
                    f"[{request_id}] hypercorn.access: {line}\n")
        with self.lock:  # type: ignore[union-attr]
            self._lines.append(text)
            self._size += len(text)
            if self._size >= self.BUFFER_BYTES:
                self._write_lines()
            elif self._timer is None:
                try:
                    self._timer = get_running_loop().call_later(self.FLUSH_AFTER, self.flush)
                except RuntimeError:  # no event loop here: no buffering
                    self._write_lines()

    def _write_lines(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lines:
            return
        lines, self._lines, self._size = self._lines, [], 0
        try:
            # Whole lines, at most PIPE_BUF bytes per write: the workers share one stderr,
            # often a pipe (journald, docker), where only such writes never interleave.
            chunk: list[str] = []
            size = 0
            for line in lines:
                if chunk and size + len(line) > PIPE_BUF:
                    self.stream.write("".join(chunk))
                    self.stream.flush()
                    chunk, size = [], 0
                chunk.append(line)
                size += len(line)
            self.stream.write("".join(chunk))
            self.stream.flush()
        except (OSError, ValueError):  # a closed stream at exit: nothing left to tell
            pass

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write_lines()
        super().flush()

    def emit(self, record: logging.LogRecord) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write_lines()
        super().emit(record)


def line_handler() -> LineHandler | None:
    """The handler `configure_logging` installed, if it did."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, LineHandler):
            return handler
    return None


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    root = logging.getLogger()
    if line_handler() is not None:
        return
    handler = LineHandler(sys.stderr, fmt)
    handler.addFilter(_RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s")
        )
    root.addHandler(handler)
    root.setLevel(level.upper())
