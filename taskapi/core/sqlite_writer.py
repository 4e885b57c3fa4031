"""The SQLite writers of every process on one file take turns on a lock file first.

Within a process, Database.run's write transactions already queue on one thread (decision
002). Between processes (`serve --workers N`, the worker) only SQLite's lock arbitrated, and a
writer that finds it held waits in SQLite's busy handler, which sleeps 1, 2, 5, … up to
100 ms between tries: a write that could have started a millisecond later often started tens
of milliseconds later, the write mix's tail. An flock on `<database>-writer` is polled every
half millisecond instead, so the next writer starts about as soon as the last one committed.
SQLite's lock still decides: a writer that does not take this lock (an ORM session, another
program) is waited for in the busy handler as before, a writer that cannot get its turn within
half the busy timeout goes on without it and gets SQLite's answer, and where the lock file
cannot be used (`broken`) writers go on without turns. Why: decision 049.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from pathlib import Path

log = logging.getLogger("taskapi.db")
_POLL_S = 0.0005  # between tries while another process writes


class WriterTurns:
    """`acquire(wait)`: this process's turn to write (False: not now, or not in time)."""

    def __init__(self, database: Path, timeout: float) -> None:
        self.path = database.with_name(database.name + "-writer")
        self.timeout = timeout
        self._fd: int | None = None
        self._local = threading.Lock()  # the event loop's inline writes and the write thread
        self.broken = False  # the lock file cannot be used: writers go on without turns

    def _file(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self._fd

    def acquire(self, wait: bool) -> bool:
        if not self._local.acquire(blocking=wait, timeout=self.timeout if wait else -1):
            return False
        try:
            fd = self._file()
            deadline = time.monotonic() + self.timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return True
                except BlockingIOError:
                    if not wait or time.monotonic() > deadline:
                        break
                    time.sleep(_POLL_S)
        except OSError as error:  # no lock file or no flock here (NFS, a read-only directory)
            if not self.broken:
                log.warning("no writer turns on %s (%r): SQLite's lock alone", self.path, error)
            self.broken = True
        self._local.release()
        return False

    def release(self) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._local.release()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
