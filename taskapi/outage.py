"""Logging a dependency outage once, not on every request."""

from __future__ import annotations

import logging

log = logging.getLogger("taskapi.redis")


class Outage:
    """Logs the first failure of an outage and the recovery, not every request."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.down = False

    def failed(self, error: Exception) -> None:
        if not self.down:
            self.down = True
            log.warning("Redis unavailable, %s: %r", self.what, error)

    def ok(self) -> None:
        if self.down:
            self.down = False
            log.warning("Redis back, %s restored", self.what)
