"""`taskapi db backup PATH`: a consistent online copy of the SQLite database (SQLite's backup
API) while the service runs and writes; never overwrites; PostgreSQL is pg_dump's job."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from pathlib import Path

import httpx

from tests.support.faults import wait_for
from tests.support.processes import cli_env, run_cli, serve

ADMIN = ["--email", "backup-admin@example.test", "--username", "backupadmin",
         "--password", "correct horse battery"]


def test_backup_while_the_service_writes_has_every_row_committed_before_it(tmp_path: Path, sqlite_template: Path, redis_url: str, redis_sync) -> None:  # type: ignore[no-untyped-def]
    """Tasks are created through the running service, without pause, before and while the
    backup runs. The copy opens on its own (no -wal beside it), passes integrity_check and
    holds every task answered 201 before the backup began, and no gap: one moment's state.
    (A plain file copy misses them: they are in the WAL, not yet in the database file.)"""
    live = tmp_path / "live.db"
    shutil.copyfile(sqlite_template, live)  # SQLite whatever the suite's database
    env = cli_env(tmp_path / "data", TASKAPI_DATABASE_URL=f"sqlite:///{live}",
                  TASKAPI_REDIS_URL=redis_url, TASKAPI_RATE_LIMIT_DEFAULT="1000000/minute")
    made = run_cli("create-admin", *ADMIN, env=env)
    assert made.returncode == 0, made.stderr
    copy = tmp_path / "backups" / "taskapi-copy.db"
    copy.parent.mkdir()
    acked: list[int] = []
    stop = threading.Event()
    errors: list[str] = []

    with serve(env, "--no-worker") as base:
        token = httpx.post(base + "/login", json={"email": ADMIN[1], "password": ADMIN[5]})
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}

        def write() -> None:
            with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
                n = 0
                while not stop.is_set():
                    response = client.post("/tasks", json={"title": f"task {n}"})
                    if response.status_code != 201:
                        errors.append(response.text)
                        return
                    acked.append(response.json()["id"])
                    n += 1

        writer = threading.Thread(target=write)
        writer.start()
        try:
            wait_for(lambda: len(acked) >= 40 or errors, "the first tasks")
            before = set(acked)  # answered 201, so committed, before the backup began
            result = run_cli("db", "backup", str(copy), env=env)
            written_during = len(acked) - len(before)
        finally:
            stop.set()
            writer.join(30)
        assert not errors, errors
        assert written_during > 0  # the service kept writing while the backup ran

    assert result.returncode == 0, result.stderr
    assert str(copy) in result.stdout
    assert not Path(f"{copy}-wal").exists() and not Path(f"{copy}-journal").exists()
    assert copy.stat().st_mode & 0o077 == 0  # password hashes inside: the owner's only
    con = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert con.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        ids = {row[0] for row in con.execute("SELECT id FROM tasks")}
        assert con.execute("SELECT count(*) FROM users").fetchone() == (1,)
        assert con.execute("SELECT version_num FROM alembic_version").fetchone()
    finally:
        con.close()
    assert before <= ids, sorted(before - ids)[:10]
    # One moment's state: every task acknowledged up to the newest in the copy, no gap.
    assert ids == {i for i in acked if i <= max(ids)}


def test_backup_refuses_to_overwrite(tmp_path: Path, sqlite_template: Path) -> None:
    live = tmp_path / "live.db"
    shutil.copyfile(sqlite_template, live)
    env = cli_env(tmp_path / "data", TASKAPI_DATABASE_URL=f"sqlite:///{live}")
    existing = tmp_path / "yesterday.db"
    existing.write_bytes(b"yesterday's backup")
    result = run_cli("db", "backup", str(existing), env=env)
    assert result.returncode != 0
    assert "exists" in result.stderr and "overwrite" in result.stderr
    assert "Traceback" not in result.stderr
    assert existing.read_bytes() == b"yesterday's backup"
    left = {p.name for p in tmp_path.iterdir()} - {"data", "live.db", "yesterday.db"}
    assert not left  # no partial copy left beside it


def test_backup_of_a_missing_database_creates_nothing(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data", TASKAPI_DATABASE_URL=f"sqlite:///{tmp_path / 'nope.db'}")
    result = run_cli("db", "backup", str(tmp_path / "copy.db"), env=env)
    assert result.returncode != 0 and "no SQLite database" in result.stderr
    assert not (tmp_path / "nope.db").exists() and not (tmp_path / "copy.db").exists()


def test_backup_of_postgresql_points_to_pg_dump(tmp_path: Path) -> None:
    """Not a copy of a PostgreSQL database: pg_dump makes those. (Nothing is connected to.)"""
    env = cli_env(tmp_path / "data",
                  TASKAPI_DATABASE_URL="postgresql://taskapi@127.0.0.1:1/taskapi")
    result = run_cli("db", "backup", str(tmp_path / "copy.db"), env=env)
    assert result.returncode != 0
    assert "pg_dump" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "copy.db").exists()
