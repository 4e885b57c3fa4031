"""Run hypercorn worker processes with a graceful stop.

hypercorn's own multi-worker runner terminates every remaining worker as soon as the first
one has drained after SIGTERM, which resets the connections the slower workers are still
answering. This supervisor signals all workers, waits for each to finish its in-flight
requests (up to the graceful timeout), and only then terminates stragglers. It also restarts
a worker that dies unexpectedly.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
import time
from multiprocessing.process import BaseProcess
from typing import Any

from hypercorn.asyncio.run import uvloop_worker
from hypercorn.config import Config

log = logging.getLogger("taskapi.server")


def run(config: Config) -> int:
    sockets = config.create_sockets()
    context = multiprocessing.get_context("spawn")
    shutdown_event = context.Event()
    stopping = threading.Event()

    def start() -> BaseProcess:
        process: BaseProcess = context.Process(
            target=uvloop_worker,
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
        return 1 if stragglers else 0
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)
        for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
            sock.close()
