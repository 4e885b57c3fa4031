"""`taskapi db backup PATH`: a consistent copy of the SQLite database while the service runs.

SQLite's online backup API, in one step: one read transaction, so the copy is the database as
it was when that transaction began (every commit before it, none after), while the service
goes on writing (WAL: readers do not block writers). The copy is written aside, made a
self-contained rollback-journal file (no -wal beside it), checked, synced, and only then linked
to PATH, which is never overwritten. PostgreSQL is pg_dump's job.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.request import pathname2url

from sqlalchemy.engine import make_url


class BackupError(Exception):
    """What stops a backup, in one line for the operator."""


@dataclass(frozen=True, slots=True)
class Backup:
    source: Path
    path: Path
    pages: int
    size: int
    seconds: float


def sqlite_file(url: str) -> Path:
    """The database file of a SQLite URL; anything else is refused with what to use instead."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        plain = parsed.set(drivername=parsed.get_backend_name())
        raise BackupError(
            f"db backup copies SQLite databases; TASKAPI_DATABASE_URL is "
            f"{parsed.get_backend_name()}: use pg_dump, e.g. pg_dump --format=custom "
            f"--file=taskapi.dump '{plain.render_as_string(hide_password=True)}'")
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        raise BackupError("the database is in memory: there is no file to back up")
    return Path(database)


def _exists(path: Path) -> BackupError:
    return BackupError(f"{path} exists: refusing to overwrite it (pick a new name)")


def backup_sqlite(source: Path, path: Path, busy_timeout: float = 10.0) -> Backup:
    started = time.monotonic()
    if path.exists() or path.is_symlink():
        raise _exists(path)
    if not source.is_file():
        raise BackupError(f"no SQLite database at {source}")
    if not path.parent.is_dir():
        raise BackupError(f"{path.parent} is not a directory")
    partial = path.parent / f".{path.name}.{os.getpid()}.partial"
    # Created here, owner-only: the copy holds password hashes and session ids.
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        pages = _copy(source, partial, busy_timeout)
        _fsync(partial)
        try:
            os.link(partial, path)  # fails, rather than overwrites, if PATH appeared meanwhile
        except FileExistsError:
            raise _exists(path) from None
        _fsync(path.parent)
    finally:
        for leftover in (partial, Path(f"{partial}-journal")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    return Backup(source, path, pages, path.stat().st_size, time.monotonic() - started)


def _copy(source: Path, target: Path, busy_timeout: float) -> int:
    # mode=rw: an existing database only (never creates one); nothing is written to it.
    uri = f"file:{pathname2url(str(source.resolve()))}?mode=rw"
    try:
        src = sqlite3.connect(uri, uri=True, timeout=busy_timeout)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open {source}: {exc}") from None
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)  # pages=-1: the whole database in one step, one snapshot
            # A standalone file: rollback journal, not WAL (which would need a -wal beside it).
            dst.execute("PRAGMA journal_mode=DELETE")
            check = dst.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise BackupError(f"the copy failed its check ({check}): {source} may be damaged")
            return int(dst.execute("PRAGMA page_count").fetchone()[0])
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise BackupError(f"backup of {source} failed: {exc}") from None
    finally:
        src.close()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
