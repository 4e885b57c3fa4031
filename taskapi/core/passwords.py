"""argon2id password hashing (pwdlib), run in a thread: PASSWORD_CONCURRENCY at a time per
process, a short bounded queue behind them, and 503 `busy` beyond it (decisions 018, 019)."""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from taskapi.core.errors import APIError


@lru_cache(maxsize=1)
def _hasher() -> PasswordHash:
    return PasswordHash((Argon2Hasher(),))


class PasswordSlots:
    """At most `concurrency` hashes or verifies at once; at most `queue` more wait for a slot,
    in arrival order, each for at most `wait` seconds. Anyone else is refused at once: under a
    flood of logins a caller learns in milliseconds to come back, instead of every caller
    waiting behind every check already queued (decision 019)."""

    def __init__(self, concurrency: int = 1, queue: int = 4, wait: float = 1.5) -> None:
        self.concurrency, self.queue, self.wait = concurrency, queue, wait
        self._running = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    def _busy(self) -> APIError:
        retry = max(1, math.ceil(self.wait))
        return APIError(503, "busy", "Too many password checks at once; try again shortly.",
                        headers={"Retry-After": str(retry)}, retry_after=retry)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self._acquire()
        try:
            yield
        finally:
            self._release()

    async def _acquire(self) -> None:
        if self._running < self.concurrency and not self._waiters:
            self._running += 1
            return
        if len(self._waiters) >= self.queue:
            raise self._busy()
        turn = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        try:
            async with asyncio.timeout(self.wait):
                await turn
        except BaseException as error:
            if turn.done() and not turn.cancelled():
                self._release()  # handed a slot just as we gave up: pass it on
            else:
                turn.cancel()
                if turn in self._waiters:  # (a release may have dropped it already)
                    self._waiters.remove(turn)
            if isinstance(error, TimeoutError):
                raise self._busy() from None
            raise

    def _release(self) -> None:
        while self._waiters:  # a finished check hands its slot to the first waiter
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self._running -= 1


_slots = PasswordSlots()


def configure(concurrency: int, queue: int, wait: float) -> None:
    """This process's limits (the app calls it at startup with its settings)."""
    global _slots
    _slots = PasswordSlots(concurrency, queue, wait)


async def hash_password(password: str) -> str:
    """The hash; 503 busy when this process has too many password checks waiting."""
    async with _slots.slot():
        return await asyncio.to_thread(_hasher().hash, password)


async def verify_password(password: str, password_hash: str) -> tuple[bool, str | None]:
    """(valid, new hash when the stored one uses outdated parameters, else None); 503 busy
    as for hash_password."""
    async with _slots.slot():
        return await asyncio.to_thread(_hasher().verify_and_update, password, password_hash)
