"""Run hypercorn worker processes with a graceful stop.

This supervisor (not hypercorn's own multi-worker runner: decision 009) signals all workers,
waits for each to finish its in-flight requests (up to the graceful timeout), and only then
terminates stragglers. It also restarts a worker that dies unexpectedly.

Metrics: each worker writes its samples to files in a fresh directory (PROMETHEUS_MULTIPROC_DIR,
wiped at start), so a /metrics scrape answered by any worker sums all of them; a worker that
exits is marked dead there, so the live-worker gauge drops it while its counts stay.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import shutil
import signal
import threading
import time
import tomllib
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from hypercorn.asyncio.run import asyncio_worker, uvloop_worker
from hypercorn.config import Config
from prometheus_client.multiprocess import mark_process_dead

from taskapi.core.metrics import MULTIPROC_ENV
from taskapi.http.limits import HEAD_BYTES
from taskapi.ops.access_log import AccessLogger
from taskapi.services.live import end_streams_threadsafe

log = logging.getLogger("taskapi.server")


# `taskapi serve` without --config; a config file (hypercorn's TOML, e.g. the repo's
# hypercorn.toml) overrides any of these, and --host/--port/--workers override the file.
DEFAULTS: dict[str, Any] = {
    "bind": ["127.0.0.1:5000"],
    "workers": 1,
    "worker_class": "uvloop",
    "graceful_timeout": 30,
    "keep_alive_timeout": 75,
    # No read_timeout: hypercorn applies it to every read of a connection, a request in flight
    # included (its client is silent while it waits for the answer), so it would cut long
    # requests and streams. A head must be complete within keep_alive_timeout (hypercorn's idle
    # timer runs until it is), a body within TASKAPI_BODY_TIMEOUT (decision 020).
    "read_timeout": None,
    "include_server_header": False,
    "h11_max_incomplete_size": HEAD_BYTES,  # see limits.py: the app explains 414/431
    # The kernel caps it at net.core.somaxconn. Why: docs/decisions/008-accept-backlog-2048.md
    "backlog": 2048,
    "access_log_format": '%(h)s "%(r)s" %(s)s %(b)s %(D)sus rid=%({x-request-id}o)s',
}
_WORKERS = {"uvloop": uvloop_worker, "asyncio": asyncio_worker}


class ServeConfigError(Exception):
    """The config file cannot be used; the message names it."""


def build_config(path: Path | None = None, *, host: str | None = None, port: int | None = None,
                 workers: int | None = None, access_log: bool = True) -> Config:
    """hypercorn's Config: DEFAULTS, then the file, then the command line.

    The log destinations in a file (accesslog/errorlog) are replaced by the "hypercorn.access"
    and "hypercorn.error" loggers (picklable by name), so hypercorn's lines go through our
    handlers and formats, JSON included; its access_log_format is kept (applied by
    ops/access_log.py, which writes the lines in batches). `access_log=False`
    (a log level above INFO, where the lines would be dropped anyway): no access logger
    (decision 010).
    """
    values = dict(DEFAULTS)
    if path is not None:
        try:
            with path.open("rb") as fh:
                values.update(tomllib.load(fh))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ServeConfigError(f"{path}: {exc}") from None
    for key in ("accesslog", "errorlog", "application_path"):
        values.pop(key, None)
    if host is not None or port is not None:
        host, port = host or "127.0.0.1", port or 5000
        values["bind"] = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    if workers is not None:
        values["workers"] = workers
    if values["worker_class"] not in _WORKERS:
        raise ServeConfigError(f"worker_class {values['worker_class']!r}: taskapi serve runs "
                               f"{' or '.join(_WORKERS)}")
    config = Config.from_mapping(values)
    config.application_path = "taskapi.ops.asgi:app"
    config.accesslog = logging.getLogger("hypercorn.access") if access_log else None
    # The same format, built lazily and written in batches (decision 037).
    config.logger_class = AccessLogger
    config.errorlog = logging.getLogger("hypercorn.error")
    return config


def metrics_dir_for(data_dir: Path, config: Config) -> Path:
    """One directory per listener, so two servers sharing a data dir keep apart."""
    return data_dir / "metrics" / re.sub(r"[^A-Za-z0-9.-]+", "_", config.bind[0]).strip("_")


def prepare_metrics_dir(path: Path) -> None:
    """An empty directory for this server's metric files, named in the environment the
    workers inherit (they read it when they first import prometheus_client)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(path)


def _serve_worker(worker_class: str, *, config: Config, sockets: Any,
                  shutdown_event: Any) -> None:
    """A hypercorn worker whose live-event streams end as soon as the stop begins (hypercorn
    would hold them until graceful_timeout, then cut them all at once): a thread waits for
    the stop and tells the process's hubs (services/live.py)."""
    def watch() -> None:
        shutdown_event.wait()
        end_streams_threadsafe()

    threading.Thread(target=watch, name="streams-stop", daemon=True).start()
    _WORKERS[worker_class](config=config, sockets=sockets, shutdown_event=shutdown_event)


def run(config: Config, metrics_dir: Path | None = None) -> int:
    if metrics_dir is not None:
        prepare_metrics_dir(metrics_dir)

    def buried(process: BaseProcess) -> None:
        if metrics_dir is not None and process.pid is not None:
            mark_process_dead(process.pid, str(metrics_dir))

    sockets = config.create_sockets()
    context = multiprocessing.get_context("spawn")
    shutdown_event = context.Event()
    stopping = threading.Event()

    def start() -> BaseProcess:
        process: BaseProcess = context.Process(
            target=_serve_worker,
            args=(config.worker_class,),
            kwargs={"config": config, "sockets": sockets, "shutdown_event": shutdown_event},
        )
        process.start()
        return process

    # Workers ignore Ctrl-C (it reaches the whole process group): the supervisor decides.
    previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    processes = [start() for _ in range(config.workers)]

    def stop(signum: int, _frame: Any) -> None:
        log.info("%s: finishing in-flight requests", signal.Signals(signum).name)
        shutdown_event.set()
        stopping.set()

    signal.signal(signal.SIGINT, stop)
    previous_term = signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping.wait(0.5):
            for index, process in enumerate(processes):
                if not process.is_alive() and not stopping.is_set():
                    log.error("worker %s exited with %s; starting a new one", process.pid,
                              process.exitcode)
                    buried(process)
                    time.sleep(1)
                    processes[index] = start()
        deadline = time.monotonic() + config.graceful_timeout + 5
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
        stragglers = [p for p in processes if p.is_alive()]
        for process in stragglers:
            log.warning("worker %s did not finish in time; terminating it", process.pid)
            process.terminate()
            process.join()
        for process in processes:
            buried(process)
        return 1 if stragglers else 0
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)
        for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
            sock.close()
