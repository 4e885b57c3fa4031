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
from redis.exceptions import RedisError

from settings import Settings

log = logging.getLogger("taskapi.worker")


def build_worker(settings: Settings, redis_url: str, **overrides: Any) -> Worker:
    import worker as worker_module

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
    """arq workers, one after another, until stopped.

    arq does not reconnect: when Redis goes away (a restart, a failover) its main loop raises
    and the worker ends. Jobs and queued emails are not lost with it (arq's jobs live in
    Redis, emails in the outbox table, marked sent one by one), so the next worker takes
    over: WorkerLoop waits until Redis answers (logging the outage once, not every try) and
    starts a new worker on a new event loop. A worker that ends because it was told to stop
    (SIGTERM/SIGINT, or `stop()`) ends the loop. Errors other than Redis' still raise.
    """

    MAX_WAIT = 5.0

    def __init__(self, settings: Settings, redis_url: str, **overrides: Any) -> None:
        self._settings = settings
        self._redis_url = redis_url
        self._overrides = overrides
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._current: tuple[Worker, asyncio.AbstractEventLoop] | None = None

    def run(self) -> None:
        while not self.stopping.is_set():
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)  # arq's Worker takes the current loop
            worker = build_worker(self._settings, self._redis_url, **self._overrides)
            with self._lock:
                self._current = (worker, loop)
            try:
                if self.stopping.is_set():
                    return
                worker.run()
                return  # stopped by a signal or stop(): running jobs had their time
            except (RedisError, OSError) as exc:
                if self.stopping.is_set():
                    return
                log.warning("Redis is unreachable (%s): the worker stopped; it restarts "
                            "when Redis answers (jobs and emails wait, none is lost)", exc)
                loop.run_until_complete(_after_lost_redis(worker))
            finally:
                with self._lock:
                    self._current = None
                loop.close()  # also resets the signals arq handled to their defaults
                if not worker.allow_pick_jobs:  # a signal reached it while it was failing
                    self.stopping.set()
                if self._overrides.get("handle_signals", True):
                    self._handle_signals()
            self._wait_for_redis()

    def _handle_signals(self) -> None:
        """Between workers, SIGTERM/SIGINT end the loop (during one, arq handles them)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda _signum, _frame: self.stopping.set())

    def _wait_for_redis(self) -> None:
        from redis import Redis

        delay = 0.25
        client = Redis.from_url(self._redis_url, socket_connect_timeout=2, socket_timeout=2)
        try:
            while not self.stopping.wait(delay):
                try:
                    client.ping()
                except (RedisError, OSError):
                    delay = min(delay * 2, self.MAX_WAIT)
                    continue
                log.warning("Redis answers again: the worker restarts")
                return
        finally:
            client.close()

    def stop(self) -> None:
        """Like SIGTERM to `taskapi worker`, from another thread: no new jobs, running ones
        get the settings' job_completion_wait to finish, then are cancelled (and requeued)."""
        self.stopping.set()
        with self._lock:
            current = self._current
        if current is not None:
            worker, loop = current
            # Queued even before the worker's loop runs: it then stops as soon as it starts.
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(worker.handle_sig_wait_for_completion, signal.SIGTERM)


async def _after_lost_redis(worker: Worker) -> None:
    """What arq's close() skips when Redis is gone: the worker's own shutdown (its database
    engine, its SMTP connections) and its Redis pool."""
    for task in worker.tasks.values():
        task.cancel()
    await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
    try:
        if worker.on_shutdown is not None:
            await worker.on_shutdown(worker.ctx)
    except Exception:
        log.exception("worker shutdown after losing Redis")
    pool = worker.ctx.get("redis")
    if pool is not None:
        with contextlib.suppress(RedisError, OSError):
            await pool.close(close_connection_pool=True)


def run_foreground(settings: Settings, redis_url: str) -> None:
    """Blocks; SIGTERM/SIGINT let running jobs finish (arq requeues what it cannot); between
    workers (Redis down) they end the wait at once."""
    WorkerLoop(settings, redis_url).run()


class InProcessWorker:
    """The worker (a WorkerLoop) in a thread, for the one-command development setup."""

    def __init__(self, settings: Settings, redis_url: str) -> None:
        self._runner = WorkerLoop(settings, redis_url, handle_signals=False)
        self._thread = threading.Thread(target=self._run, name="arq-worker", daemon=True)

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
        self._runner.stop()
        self._thread.join(timeout)
