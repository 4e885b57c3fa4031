"""Give the C heap's free pages back to the system after a burst of connections.

When thousands of event streams open at once (a deploy, a network blip: every browser
reconnects within seconds), each open allocates and frees far more than the stream then
keeps: the request head, the token check, the gate's Redis reply. glibc's malloc keeps what
was freed for reuse; after a reconnect storm of 2,500 streams a worker holds about 3 KiB per
stream of such free memory (bench/README.md, events_load). `malloc_trim(0)` returns the free
pages inside the heap to the kernel. It runs in a thread, but it holds each malloc arena's
lock while it walks that arena: an allocation on the event loop waits for the main arena's
(milliseconds, once per burst).

`HeapTrim.tick(count)` is called about once a second with the number of open streams: when
that number has moved by at least TRIM_AFTER since the last trim and then stayed put for one
tick (the burst is over), one trim runs in a thread. glibc only; elsewhere (musl, macOS) it
does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import logging
import time
from collections.abc import Callable

log = logging.getLogger("taskapi.heap")
TRIM_AFTER = 256  # streams opened or closed since the last trim


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim from the process's own symbols (no ldconfig subprocess)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


class HeapTrim:
    def __init__(self, trim: Callable[[int], int] | None = None) -> None:
        self._trim = trim if trim is not None else _malloc_trim()
        self._trimmed_at = 0  # the stream count at the last trim
        self._last = 0  # the count at the last tick
        self.trims = 0

    async def tick(self, count: int) -> None:
        """Never raises: a failed trim is one WARNING, and the caller's loop goes on."""
        moved, settled = abs(count - self._trimmed_at) >= TRIM_AFTER, count == self._last
        self._last = count
        if self._trim is None or not (moved and settled):
            return
        self._trimmed_at = count
        started = time.perf_counter()
        try:
            await asyncio.to_thread(self._trim, 0)
        except Exception as error:
            log.warning("malloc_trim failed: %r", error)
            return
        self.trims += 1
        log.debug("malloc_trim after the stream count moved to %d: %.1f ms", count,
                  (time.perf_counter() - started) * 1000)
