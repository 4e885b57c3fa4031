"""bench/compare.py's peers: the Flask app of the seed tutorial (bench/peers/flask_seed/) and
the FastAPI app (bench/peers/fastapi_app/). Each is installed into a venv of its own from its
requirements.txt, gets its own database (SQLite file, or a schema of the PostgreSQL database)
created by its own code and seeded here with the rows bench/seeding.py gives taskapi, and is
started with the command its stack documents."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from run_info import REPO, log
from seeding import PASSWORD, employee_email, manager_email, task_rows

PEERS_DIR = REPO / "bench" / "peers"


@dataclass(frozen=True)
class Peer:
    name: str  # also its directory under bench/peers/ and its venv's name
    users_table: str
    tasks_table: str
    async_driver: bool  # aiosqlite/asyncpg (else the stdlib sqlite3/psycopg2)

    @property
    def source(self) -> Path:
        return PEERS_DIR / self.name


FLASK = Peer("flask_seed", "user", "task", async_driver=False)
FASTAPI = Peer("fastapi_app", "users", "tasks", async_driver=True)
PEERS = {"flask": FLASK, "fastapi": FASTAPI}


def ensure_venv(peer: Peer, venvs: Path) -> Path:
    """venvs/<name> with requirements.txt installed (again only when the file changed);
    returns its bin directory."""
    reqs = peer.source / "requirements.txt"
    venv = venvs / peer.name
    stamp = venv / ".requirements-sha256"
    digest = hashlib.sha256(reqs.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return venv / "bin"
    log(f"installing {peer.name} into {venv} (pip, from {reqs.relative_to(REPO)})")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                    "-r", str(reqs)], check=True, timeout=900)
    stamp.write_text(digest)
    return venv / "bin"


def peer_urls(peer: Peer, args: argparse.Namespace, data_dir: Path) -> tuple[str, str, str]:
    """(the app's DATABASE_URL, its DB_SCHEMA or "", the async URL this side seeds with)."""
    if args.database == "sqlite":
        path = (data_dir / f"{peer.name}.db").resolve()
        app_url = f"sqlite+aiosqlite:///{path}" if peer.async_driver else f"sqlite:///{path}"
        return app_url, "", f"sqlite+aiosqlite:///{path}"
    base = f"{args.pg_url.rstrip('/')}/{args.pg_database}"
    driver = "asyncpg" if peer.async_driver else "psycopg2"
    return (base.replace("postgresql://", f"postgresql+{driver}://", 1), peer.name,
            base.replace("postgresql://", "postgresql+asyncpg://", 1))


def peer_env(base_env: dict[str, str], app_url: str, schema: str, redis_url: str,
             secret: str, prefix: str) -> dict[str, str]:
    env = {**base_env, "DATABASE_URL": app_url, "REDIS_URL": redis_url,
           "JWT_SECRET_KEY": secret, "CACHE_PREFIX": prefix}
    if schema:
        env["DB_SCHEMA"] = schema
    return env


async def create_schema(seed_url: str, schema: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(seed_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    finally:
        await engine.dispose()


def init_db(peer: Peer, bin_dir: Path, env: dict[str, str], seed_url: str, schema: str) -> None:
    """The peer's own table creation (`python main.py initdb`), in a fresh schema."""
    if schema:
        asyncio.run(create_schema(seed_url, schema))
    subprocess.run([str(bin_dir / "python"), "main.py", "initdb"], cwd=peer.source, env=env,
                   check=True, capture_output=True, timeout=120)


def _naive(value: Any) -> Any:
    """The peers store naive UTC datetimes (db.DateTime) and plain strings."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None)
    return getattr(value, "value", value)  # enums -> their value


async def seed_peer(peer: Peer, seed_url: str, schema: str, args: argparse.Namespace,
                    ) -> tuple[list[int], dict[int, list[int]], list[int]]:
    """The same users and tasks as seeding.py gives taskapi, into the peer's tables.
    Returns (employee ids, task ids per token owner, all task ids)."""
    from sqlalchemy import MetaData, insert, select
    from sqlalchemy.ext.asyncio import create_async_engine
    from werkzeug.security import generate_password_hash

    password = generate_password_hash(PASSWORD, method="pbkdf2:sha256")
    now = datetime.now(UTC).replace(tzinfo=None)
    engine = create_async_engine(seed_url)
    try:
        meta = MetaData(schema=schema or None)
        async with engine.begin() as conn:
            await conn.run_sync(meta.reflect)
            prefix = f"{schema}." if schema else ""
            users, tasks = (meta.tables[prefix + peer.users_table],
                            meta.tables[prefix + peer.tasks_table])

            def user(username: str, email: str, role: str) -> dict[str, Any]:
                return {"username": username, "email": email, "password": password,
                        "role": role, "approved": True, "created_at": now, "updated_at": now}

            await conn.execute(insert(users), [
                *(user(f"bench_emp_{i:04d}", employee_email(i), "employee")
                  for i in range(args.employees)),
                *(user(f"bench_mgr_{i:02d}", manager_email(i), "manager")
                  for i in range(args.managers))])
            ids = dict((await conn.execute(select(users.c.email, users.c.id))).all())
            employees = [ids[employee_email(i)] for i in range(args.employees)]
            managers = [ids[manager_email(i)] for i in range(args.managers)]
            columns = set(tasks.c.keys())
            rows = [{k: _naive(v) for k, v in row.items() if k in columns}
                    for row in task_rows(0, args.tasks, employees, managers,
                                         datetime.now(UTC))]
            await conn.execute(insert(tasks), rows)
            pairs = (await conn.execute(select(tasks.c.assigned_user_id, tasks.c.id)
                                        .order_by(tasks.c.id))).all()
    finally:
        await engine.dispose()
    owners = employees[: args.users]
    own: dict[int, list[int]] = {o: [] for o in owners}
    for owner, task_id in pairs:
        if owner in own:
            own[owner].append(task_id)
    return owners, own, [task_id for _, task_id in pairs]


def command(peer: Peer, bin_dir: Path, port: int, workers: int) -> list[str]:
    """gunicorn (sync workers; the tutorial's `-w 4`) for Flask, uvicorn for FastAPI; both
    at their own default logging (gunicorn: no access log; uvicorn: access log on)."""
    if peer is FLASK:
        return [str(bin_dir / "gunicorn"), "-w", str(workers), "-b", f"127.0.0.1:{port}",
                "main:app"]
    return [str(bin_dir / "uvicorn"), "main:app", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers)]
