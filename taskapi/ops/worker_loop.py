"""Run the ARQ worker: in the foreground (`taskapi worker`) or in a thread (`taskapi serve`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from typing import Any

from arq.connections import RedisSettings
from arq.worker import Worker, create_worker
from redis.exceptions import AuthenticationError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from taskapi.config import Settings

log = logging.getLogger("taskapi.worker")


def build_worker(settings: Settings, redis_url: str, **overrides: Any) -> Worker:
    from taskapi.ops import worker as worker_module

    overrides.setdefault("cron_jobs", worker_module.cron_jobs(settings.email_sweep_interval))
    redis_settings = RedisSettings.from_dsn(redis_url)
    # No retries inside arq (a warning per try): WorkerLoop waits for Redis, logging once.
    redis_settings.conn_retries = 0
    return create_worker(
        worker_module.WorkerSettings,  # type: ignore[arg-type]
        redis_settings=redis_settings,
        ctx={"settings": settings},
        **overrides,
    )


class WorkerLoop:
    """arq workers, one after another on one event loop, until stopped (decision 016).

    A worker that loses its Redis connection is followed, once Redis answers a ping, by a new
    one; the outage is logged once. Any other error ends the loop and the process, and so do
    MAX_START_FAILURES workers in a row that cannot connect although Redis answers a ping.
    SIGTERM/SIGINT (arq's handlers during a worker, WorkerLoop's between workers) or `stop()`
    end the loop; running jobs get `job_completion_wait` to finish.
    """

    MAX_WAIT = 5.0
    MAX_START_FAILURES = 5

    def __init__(self, settings: Settings, redis_url: str, **overrides: Any) -> None:
        self._settings = settings
        self._redis_url = redis_url
        self._overrides = overrides
        self._signals = overrides.get("handle_signals", True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._worker: Worker | None = None
        self._ready = threading.Event()  # the loop exists: stop() can reach it

    def run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)  # arq's Worker takes the current loop
        self._stop = asyncio.Event()
        self._handle_signals()  # until the first worker installs arq's
        self._ready.set()
        failures = 0  # workers in a row that could not connect
        try:
            while not self._stop.is_set():
                worker = self._worker = build_worker(self._settings, self._redis_url,
                                                     **self._overrides)
                try:
                    worker.run()
                    return  # stopped by a signal or stop(): running jobs had their time
                except AuthenticationError:
                    raise  # a ConnectionError to redis-py, but a setting to fix, not an outage
                except (RedisConnectionError, RedisTimeoutError) as exc:
                    self._handle_signals()  # before anything else runs on the loop
                    loop.run_until_complete(_after_lost_redis(worker))
                    if self._stop.is_set() or not worker.allow_pick_jobs:  # stopped meanwhile
                        return
                    # Connected at all? (arq puts its pool in ctx once Redis answered it.)
                    failed_to_start = "redis" not in worker.ctx
                    failures = failures + 1 if failed_to_start else 0
                    if failures >= self.MAX_START_FAILURES:
                        raise  # Redis answers a ping, yet no worker can connect
                    if failures <= 1:
                        log.warning("Redis is unreachable (%s): the worker stopped; a new one "
                                    "starts when Redis answers (emails wait in the outbox)",
                                    exc)
                finally:
                    self._worker = None
                loop.run_until_complete(self._wait_for_redis())
        finally:
            self._ready.clear()
            loop.close()

    def _handle_signals(self) -> None:
        """Between workers, SIGTERM/SIGINT end the loop (during one, arq's handlers do)."""
        if self._signals and self._loop is not None and self._stop is not None:
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(signum, self._stop.set)

    async def _wait_for_redis(self) -> None:
        from redis.asyncio import Redis

        assert self._stop is not None
        log.info("waiting for Redis")
        delay = 0.25
        client = Redis.from_url(self._redis_url, socket_connect_timeout=2, socket_timeout=2)
        try:
            while not self._stop.is_set():
                try:
                    await client.ping()
                except (RedisError, OSError):
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), delay)
                    delay = min(delay * 2, self.MAX_WAIT)
                    continue
                log.warning("Redis answers again: a new worker starts")
                return
        finally:
            await client.aclose()

    @property
    def current(self) -> Worker | None:
        """The arq worker running now (None between workers)."""
        return self._worker

    def stop(self) -> None:
        """Like SIGTERM to `taskapi worker`, from another thread: no new jobs, running ones
        get the settings' job_completion_wait to finish, then are cancelled (and requeued)."""
        if not self._ready.wait(10):
            return
        loop, stop = self._loop, self._stop
        if loop is None or stop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._stop_in_loop)

    def _stop_in_loop(self) -> None:
        assert self._stop is not None
        self._stop.set()
        if self._worker is not None:  # runs even before the worker's main task starts
            self._worker.handle_sig_wait_for_completion(signal.SIGTERM)


async def _after_lost_redis(worker: Worker) -> None:
    """What arq's close() skips when Redis is gone: the worker's own shutdown (its database
    engine, its SMTP connections) and its Redis pool. (Its jobs are done: close() waited for
    them, or, for a worker without signal handling, cancelled them, as on any stop.)"""
    for task in worker.tasks.values():
        task.cancel()
    await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
    try:
        if worker.on_shutdown is not None:
            await worker.on_shutdown(worker.ctx)
    except Exception:
        log.exception("worker shutdown after losing Redis")
    pool = worker.pool  # None when the connection failed
    if pool is not None:
        with contextlib.suppress(RedisError, OSError):
            await pool.close(close_connection_pool=True)


def run_foreground(settings: Settings, redis_url: str) -> None:
    """Blocks; SIGTERM/SIGINT let running jobs finish (arq requeues what it cannot); between
    workers (Redis down) they end the wait at once."""
    WorkerLoop(settings, redis_url).run()


class _NoSignalStories(logging.Filter):
    """arq's stop lines name a signal (`shutdown on SIGTERM`, then from close() `shutdown on
    SIGUSR1`, a signal nobody sent) that the in-process worker never received: serve stops
    it by a call. InProcessWorker.stop logs the one true line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("shutdown on ", "Setting allow_pick_jobs"))


class InProcessWorker:
    """The worker (a WorkerLoop) in a thread, for the one-command development setup."""

    def __init__(self, settings: Settings, redis_url: str) -> None:
        self._runner = WorkerLoop(settings, redis_url, handle_signals=False)
        self._thread = threading.Thread(target=self._run, name="arq-worker", daemon=True)
        arq_log = logging.getLogger("arq.worker")
        if not any(isinstance(f, _NoSignalStories) for f in arq_log.filters):
            arq_log.addFilter(_NoSignalStories())

    def _run(self) -> None:
        try:
            self._runner.run()
        except Exception:
            log.exception("in-process worker stopped with an error")

    def start(self) -> None:
        self._thread.start()
        log.info("ARQ worker running in-process")

    def stop(self, timeout: float = 35.0) -> None:
        """Like SIGTERM to `taskapi worker`: no new jobs, running ones get the settings'
        job_completion_wait to finish, then are cancelled (and requeued)."""
        if not self._thread.is_alive():
            return
        worker = self._runner.current
        self._runner.stop()
        self._thread.join(timeout)
        if worker is None:
            log.info("in-process worker stopped")
        else:
            log.info("in-process worker stopped: %d jobs complete, %d failed, %d retried",
                     worker.jobs_complete, worker.jobs_failed, worker.jobs_retried)
