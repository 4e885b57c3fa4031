"""hypercorn's access log, cheap enough to leave on (decision 037).

hypercorn's own `Logger.access` builds an `AccessLogAtoms` dict for every response (every
request header, every response header, and every environment variable, whatever the format
uses), then a `LogRecord` that the handler formats and writes with a system call of its own.
At INFO that cost about a third of a cached read's throughput.

Here the same `access_log_format` is applied to `LazyAtoms`, which computes only the atoms the
format names, and the finished line (with the same prefix or JSON object our log handler gives
every other record) is handed to `LineHandler`, which buffers it briefly and writes many lines at
once. The format's keys and their values are hypercorn's (tests/test_access_log.py compares
them with `AccessLogAtoms`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

from hypercorn.config import Config
from hypercorn.logging import Logger
from hypercorn.typing import ResponseSummary, WWWScope

from taskapi.core.logs import LineHandler, line_handler


def _header(headers: Any, name: str) -> str:
    wanted = name.encode("latin1")
    for key, value in headers:
        if key.lower() == wanted:
            return str(value.decode("latin1"))
    return "-"


class LazyAtoms(dict[str, Any]):
    """hypercorn's access-log atoms, each computed when the format first asks for it."""

    def __init__(self, request: WWWScope, response: ResponseSummary | None,
                 request_time: float) -> None:
        super().__init__()
        self.request = request
        self.response = response
        self.request_time = request_time

    def __missing__(self, key: str) -> Any:
        value = self._compute(key)
        self[key] = value
        return value

    def method(self) -> str:
        return str(self.request["method"]) if self.request["type"] == "http" else "GET"

    def query(self) -> str:
        return str(self.request["query_string"].decode())

    def path_qs(self) -> str:
        query = self.query()
        return str(self.request["path"]) + ("?" + query if query else "")

    def status(self) -> str:
        return "-" if self.response is None else str(self.response["status"])

    def _compute(self, key: str) -> Any:
        if key.startswith("{"):
            name, _, kind = key[1:].rpartition("}")
            name = name.lower()
            if kind == "i":
                return _header(self.request["headers"], name)
            if kind == "o":
                return "-" if self.response is None else _header(
                    self.response.get("headers", []), name)
            if kind == "e":
                return next((v for k, v in os.environ.items() if k.lower() == name), "-")
            return "-"
        atom = _ATOMS.get(key)
        return "-" if atom is None else atom(self)

    def protocol(self) -> str:
        return str(self.request.get("http_version", "ws"))

    def peer(self) -> str | None:
        client = self.request.get("client")
        if client is None:
            return None
        if len(client) == 2:
            return f"{client[0]}:{client[1]}"
        if len(client) == 1:
            return str(client[0])
        return f"<???{client}???>"

    def phrase(self) -> str:
        if self.response is None:
            return "-"
        try:
            return HTTPStatus(self.response["status"]).phrase
        except ValueError:
            return f"<???{self.response['status']}???>"


# hypercorn's atoms (hypercorn.logging.AccessLogAtoms), by name.
_ATOMS: dict[str, Callable[[LazyAtoms], Any]] = {
    "h": LazyAtoms.peer,
    "l": lambda a: "-",
    "t": lambda a: time.strftime("[%d/%b/%Y:%H:%M:%S %z]"),
    "r": lambda a: f"{a.method()} {a.request['path']} {a.protocol()}",
    "R": lambda a: f"{a.method()} {a.path_qs()} {a.protocol()}",
    "s": LazyAtoms.status,
    "st": LazyAtoms.phrase,
    "S": lambda a: a.request["scheme"],
    "m": LazyAtoms.method,
    "U": lambda a: a.request["path"],
    "Uq": LazyAtoms.path_qs,
    "q": LazyAtoms.query,
    "H": LazyAtoms.protocol,
    "b": lambda a: a["{content-length}o"],
    "B": lambda a: a["{content-length}o"],
    "f": lambda a: a["{referer}i"],
    "a": lambda a: a["{user-agent}i"],
    "T": lambda a: int(a.request_time),
    "D": lambda a: int(a.request_time * 1_000_000),
    "L": lambda a: f"{a.request_time:.6f}",
    "p": lambda a: f"<{os.getpid()}>",
}


class AccessLogger(Logger):
    """`config.logger_class` under `taskapi serve`: the access lines go to `LineHandler`."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self._handler: LineHandler | None = None
        self._resolved = False

    def _target(self) -> LineHandler | None:
        """Our buffered handler when the access logger would reach it (INFO, propagating to
        the root logger that `configure_logging` set up); else None: hypercorn's own path."""
        if not self._resolved:
            logger = self.access_logger
            if logger is not None and logger.isEnabledFor(logging.INFO) and not logger.handlers:
                self._handler = line_handler()
            self._resolved = True
        return self._handler

    async def access(self, request: WWWScope, response: ResponseSummary,
                     request_time: float) -> None:
        if self.access_logger is None:
            return
        handler = self._target()
        atoms = LazyAtoms(request, response, request_time)
        if handler is None:
            self.access_logger.info(self.access_log_format, atoms)
            return
        handler.write_access(self.access_log_format % atoms, atoms["{x-request-id}o"])

    def atoms(self, request: WWWScope, response: ResponseSummary | None,
              request_time: float) -> Mapping[str, str]:
        return LazyAtoms(request, response, request_time)
