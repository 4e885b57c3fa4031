"""The `taskapi` command: serve, worker, db upgrade|backup|recount, create-admin, jobs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from taskapi.config import ConfigError, Settings, load_settings
from taskapi.core.embedded_redis import EmbeddedRedis, resolve_redis_url


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        # One line and a non-zero exit, no traceback: the operator has a setting to fix.
        click.echo(f"taskapi: configuration error: {exc}", err=True)
        sys.exit(2)


@contextlib.contextmanager
def _redis(settings: Settings) -> Iterator[str]:
    """The Redis URL for a command; an embedded server it had to start stops with it."""
    url, embedded = resolve_redis_url(settings.redis_url, settings.data_dir)
    try:
        yield url
    finally:
        if embedded is not None:
            embedded.stop()


@click.group()
def main() -> None:
    """taskapi: task-management API service."""


@main.command()
@click.option("--host", help="Listen address  [default: 127.0.0.1, or the config file's bind]")
@click.option("--port", type=int, help="Listen port  [default: 5000, or the config file's bind]")
@click.option("--workers", type=click.IntRange(1, 64), envvar="WEB_CONCURRENCY",
              help="Worker processes (env WEB_CONCURRENCY)  [default: 1, or the config file's]")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="A hypercorn TOML file (e.g. hypercorn.toml): bind, workers, timeouts, "
                   "access log format.")
@click.option("--with-worker/--no-worker", "with_worker", default=None,
              help="Run the ARQ worker in this process (default: when Redis is embedded).")
def serve(host: str | None, port: int | None, workers: int | None, config_path: Path | None,
          with_worker: bool | None) -> None:
    """Serve the API with hypercorn (uvloop workers) under a supervisor that drains them all."""
    from taskapi.core.logs import configure_logging
    from taskapi.ops.migrate import upgrade
    from taskapi.ops.server import ServeConfigError, build_config, metrics_dir_for, run
    from taskapi.ops.worker_loop import InProcessWorker

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    access_log = logging.getLogger("hypercorn.access").isEnabledFor(logging.INFO)
    try:
        config = build_config(config_path, host=host, port=port, workers=workers,
                              access_log=access_log)
    except ServeConfigError as exc:
        click.echo(f"taskapi: configuration error: {exc}", err=True)
        sys.exit(2)
    if settings.env == "development":
        upgrade(settings.sqlalchemy_url)

    embedded = None if settings.redis_url else EmbeddedRedis(settings.data_dir)
    redis_url = embedded.ensure() if embedded else str(settings.redis_url)
    worker = None
    if with_worker or (with_worker is None and embedded is not None):
        worker = InProcessWorker(settings, redis_url)
        worker.start()

    exit_code = 0
    try:
        exit_code = run(config, metrics_dir_for(settings.data_dir, config))
    finally:
        if worker is not None:
            worker.stop()
        if embedded is not None:
            embedded.stop()
    sys.exit(exit_code)


@main.command("worker")
def worker_command() -> None:
    """Run the ARQ worker (emails, reminders, reports) in the foreground."""
    from redis.exceptions import AuthenticationError

    from taskapi.core.logs import configure_logging
    from taskapi.ops.worker_loop import run_foreground

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    with _redis(settings) as url:
        try:
            run_foreground(settings, url)
        except AuthenticationError as exc:  # a setting to fix: one line, no traceback
            click.echo(f"taskapi: Redis refused the worker ({exc}): check the credentials in "
                       "TASKAPI_REDIS_URL", err=True)
            sys.exit(2)


@main.group()
def db() -> None:
    """Database commands."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply the migrations (SQLite or PostgreSQL, from TASKAPI_DATABASE_URL)."""
    from taskapi.ops.migrate import upgrade

    settings = _settings()
    upgrade(settings.sqlalchemy_url, revision)
    click.echo(f"database at {revision}")


@db.command("backup")
@click.argument("path", type=click.Path(path_type=Path))
def db_backup(path: Path) -> None:
    """Copy the SQLite database to PATH while the service runs (never overwrites PATH).

    A consistent snapshot (SQLite's backup API): every commit before it began. For
    PostgreSQL, use pg_dump.
    """
    from taskapi.ops.backup import BackupError, backup_sqlite, sqlite_file

    settings = _settings()
    try:
        done = backup_sqlite(sqlite_file(settings.sqlalchemy_url), path, settings.db_lock_timeout)
    except BackupError as exc:
        click.echo(f"taskapi: {exc}", err=True)
        sys.exit(2)
    click.echo(f"backup of {done.source} written to {done.path}: {done.pages} pages, "
               f"{done.size} bytes, in {done.seconds:.2f}s")


@db.command("recount")
def db_recount() -> None:
    """Recount task_counts and user_counts from the rows, in one transaction (decision 045).

    Prints each counter it corrected; writes wait while it counts (reads go on).
    """
    from taskapi.core.db import Database
    from taskapi.services.counts import recount

    settings = _settings()

    async def _run() -> list[Any]:
        database = Database.from_url(settings.sqlalchemy_url)
        try:
            return await database.run(recount, write=True)
        finally:
            await database.dispose()

    fixes = asyncio.run(_run())
    for fix in fixes:
        click.echo(f"corrected {fix}")
    click.echo(f"counters recounted: {len(fixes)} corrected")


@main.command("create-admin")
@click.option("--email", required=True)
@click.option("--username", required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def create_admin(email: str, username: str, password: str) -> None:
    """Create an approved admin (idempotent: an existing email is made an approved admin)."""
    from taskapi.core.db import Database
    from taskapi.services.users import ensure_admin

    settings = _settings()

    async def _run() -> tuple[int, bool]:
        db = Database.from_url(settings.sqlalchemy_url)
        try:
            return await ensure_admin(db, email=email, username=username, password=password)
        finally:
            await db.dispose()

    try:
        user_id, created = asyncio.run(_run())
    except ValueError as exc:
        click.echo(f"taskapi: {exc}", err=True)
        sys.exit(2)
    click.echo(f"admin {'created' if created else 'already present'}: id={user_id} {email}")


@main.group()
def jobs() -> None:
    """Background jobs."""


@jobs.command("list")
def jobs_list() -> None:
    """Registered jobs and cron schedules, then queued and recent jobs."""
    from taskapi.jobs import JOBS
    from taskapi.ops import worker as worker_module
    from taskapi.ops.queue_admin import describe_queue

    settings = _settings()
    crons = {c.name.removeprefix("cron:"): c for c in worker_module.WorkerSettings.cron_jobs}
    # What a cron tick sends is due at an hour of each user's own day.
    local = {"send_daily_reminders": f"; due at {settings.reminder_hour:02d}:00 local",
             "send_scheduled_reports": f"; due at {settings.report_hour:02d}:00 local, "
                                       f"weekly ones on {settings.report_weekday}"}
    click.echo("registered jobs:")
    for name in JOBS:
        schedule = ""
        if name in crons:
            c = crons[name]
            schedule = f"  cron hour={_fmt(c.hour)} minute={_fmt(c.minute)}{local.get(name, '')}"
        if name == "deliver_webhooks":
            schedule = f"  every {settings.webhook_poll_interval:g} s in each worker"
        click.echo(f"  {name}{schedule}")
    with _redis(settings) as url:
        rows = asyncio.run(describe_queue(url, worker_module.WorkerSettings.queue_name))
    click.echo("queue:" if rows else "queue: empty, no recent results")
    for row in rows:
        click.echo("  " + "  ".join(f"{k}={v}" for k, v in row.items()))
    emails, gave_up, hooks, hooks_failed = asyncio.run(_outbox_state(settings))
    click.echo("email outbox: " + (", ".join(f"{k}={v}" for k, v in sorted(emails.items()))
                                   or "empty"))
    for status, key, to, error in gave_up:
        click.echo(f"  {status}  {_shown(key)}  to={_shown(to)}  {_shown(error[:100])}")
    click.echo("webhook deliveries: " + ", ".join(f"{k}={v}" for k, v in sorted(hooks.items())))
    for webhook_id, event_id, event_type, attempts, error in hooks_failed:
        click.echo(f"  failed  webhook={webhook_id} event={event_id} ({_shown(event_type)}) "
                   f"attempts={attempts}  {_shown(error[:100])}")


def _shown(text: str) -> str:
    """One terminal line: a stored value's control characters (a line break, an escape
    sequence) printed as escapes, never acted on."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


async def _outbox_state(settings: Settings) -> tuple[Any, Any, Any, Any]:
    """The email outbox and the webhook deliveries: counts, then the latest given up."""
    from taskapi.core.db import Database
    from taskapi.services import webhook_backlog
    from taskapi.services.outbox import backlog, given_up

    db = Database.from_url(settings.sqlalchemy_url)
    try:
        return (await backlog(db), await given_up(db), await webhook_backlog.backlog(db),
                await webhook_backlog.failures(db))
    finally:
        await db.dispose()


def _fmt(value: Any) -> str:
    return "*" if value is None else ",".join(str(v) for v in sorted(value))


@jobs.command("run")
@click.argument("name")
@click.argument("args", nargs=-1)
def jobs_run(name: str, args: tuple[str, ...]) -> None:
    """Run a job now, in this process (same code and dedupe as the worker).

    ARGS are passed to the job; whole numbers as ints (e.g. a user id).
    """
    from taskapi.jobs import JOBS
    from taskapi.ops.queue_admin import run_job_now

    if name not in JOBS:
        click.echo(f"taskapi: unknown job {name!r}; known: {', '.join(sorted(JOBS))}", err=True)
        sys.exit(2)
    settings = _settings()
    with _redis(settings) as url:
        values = [int(a) if a.lstrip("-").isdigit() else a for a in args]
        result = asyncio.run(run_job_now(JOBS[name], settings, url, *values))
    click.echo(f"{name}: {result}")
