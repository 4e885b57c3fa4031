"""Log setup: a request id on every line; JSON lines when TASKAPI_LOG_FORMAT=json."""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import secrets
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
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


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    root = logging.getLogger()
    if any(getattr(h, "_taskapi", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler._taskapi = True  # type: ignore[attr-defined]
    handler.addFilter(_RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s")
        )
    root.addHandler(handler)
    root.setLevel(level.upper())
