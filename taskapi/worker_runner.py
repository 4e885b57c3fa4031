"""Run the ARQ worker: in the foreground (`taskapi worker`) or in a thread (`taskapi serve`)."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from typing import Any

from arq.connections import RedisSettings
from arq.worker import Worker, create_worker

from settings import Settings

log = logging.getLogger("taskapi.worker")


def build_worker(settings: Settings, redis_url: str, **overrides: Any) -> Worker:
    import worker as worker_module

    overrides.setdefault("cron_jobs", worker_module.cron_jobs(settings.email_sweep_interval))
    return create_worker(
        worker_module.WorkerSettings,  # type: ignore[arg-type]
        redis_settings=RedisSettings.from_dsn(redis_url),
        ctx={"settings": settings},
        **overrides,
    )


def run_foreground(settings: Settings, redis_url: str) -> None:
    """Blocks; SIGTERM/SIGINT let running jobs finish (arq requeues what it cannot)."""
    asyncio.set_event_loop(asyncio.new_event_loop())
    build_worker(settings, redis_url).run()


class InProcessWorker:
    """The worker on its own event loop in a thread, for the one-command development setup."""

    def __init__(self, settings: Settings, redis_url: str) -> None:
        self._settings = settings
        self._redis_url = redis_url
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: Worker | None = None
        self._thread = threading.Thread(target=self._run, name="arq-worker", daemon=True)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        try:
            self._worker = build_worker(self._settings, self._redis_url, handle_signals=False)
        finally:
            self._ready.set()
        try:
            self._worker.run()
        except Exception:
            log.exception("in-process worker stopped with an error")

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)
        log.info("ARQ worker running in-process")

    def stop(self, timeout: float = 35.0) -> None:
        """Like SIGTERM to `taskapi worker`: no new jobs, running ones get the settings'
        job_completion_wait to finish, then are cancelled (and requeued)."""
        worker, loop = self._worker, self._loop
        if worker is None or loop is None or not self._thread.is_alive():
            return
        if worker.main_task is not None:
            loop.call_soon_threadsafe(worker.handle_sig_wait_for_completion, signal.SIGTERM)
        self._thread.join(timeout)
