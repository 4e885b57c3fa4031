"""argon2id password hashing (pwdlib), run in a thread: each hash or verify takes ~100 ms."""

from __future__ import annotations

import asyncio
from functools import lru_cache

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

# Each argon2 operation takes ~64 MiB and ~100 ms of CPU. Two at a time per process keeps
# memory bounded and leaves CPU for everything else (including SQLite lock holders) under a
# burst of logins; the rest wait their turn without blocking the event loop.
MAX_CONCURRENT = 2
_slots: asyncio.Semaphore | None = None


@lru_cache(maxsize=1)
def _hasher() -> PasswordHash:
    return PasswordHash((Argon2Hasher(),))


def _semaphore() -> asyncio.Semaphore:
    global _slots
    if _slots is None:
        _slots = asyncio.Semaphore(MAX_CONCURRENT)
    return _slots


async def hash_password(password: str) -> str:
    async with _semaphore():
        return await asyncio.to_thread(_hasher().hash, password)


async def verify_password(password: str, password_hash: str) -> tuple[bool, str | None]:
    """(valid, new hash when the stored one uses outdated parameters, else None)."""
    async with _semaphore():
        return await asyncio.to_thread(_hasher().verify_and_update, password, password_hash)
