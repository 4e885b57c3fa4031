"""If-Match (RFC 9110 §13.1.1) on versioned rows: a task's or a user's ETag is its version.

The check and the write are one step in SQL: the UPDATE (or DELETE) says `WHERE id = ? AND
version = ?` (the ORM's version_id_col, or the prebuilt Core statements), so of two writers
with the same If-Match one changes the row and the other changes nothing and gets 412
(decision 024).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from taskapi.core.errors import APIError


def etag(version: int) -> str:
    return f'"v{version}"'


def precondition_failed() -> APIError:
    return APIError(412, "precondition_failed",
                    "The resource has changed since the ETag in If-Match: fetch it again.")


@dataclass(frozen=True, slots=True)
class IfMatch:
    """A request's If-Match: `any` for `*`, else the versions of the strong `"v<n>"` tags."""

    any: bool = False
    versions: frozenset[int] = frozenset()

    def check(self, version: int) -> None:
        if not self.any and version not in self.versions:
            raise precondition_failed()

    @property
    def conditional(self) -> bool:
        """Whether the write must compare versions (rather than lock the row and go ahead)."""
        return not self.any


def check(if_match: IfMatch | None, version: int) -> None:
    if if_match is not None:
        if_match.check(version)


def lock_row(if_match: IfMatch | None) -> bool:
    """Without a version to compare, the write locks the row it read (PostgreSQL FOR UPDATE):
    a concurrent writer then waits, and no write is lost or answered 412 unasked."""
    return if_match is None or not if_match.conditional


@asynccontextmanager
async def conditional_commit(session: AsyncSession) -> AsyncIterator[None]:
    """Flush and commit inside: a versioned UPDATE/DELETE that matched no row (someone
    changed the row since it was read) rolls back and answers 412."""
    try:
        yield
        await session.commit()
    except StaleDataError:
        await session.rollback()
        raise precondition_failed() from None
