"""argon2id password hashing (pwdlib), run in a thread, two at a time per process (decision 018)."""

from __future__ import annotations

import asyncio
from functools import lru_cache

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

# At most this many hashes or verifies at once; the rest wait without blocking the event loop.
# Why: docs/decisions/018-argon2-two-at-a-time.md
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
