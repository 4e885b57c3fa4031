"""Account jobs: the password reset that POST /password/forgot queued."""

from __future__ import annotations

from typing import Any

from taskapi.services import password_reset


async def start_password_reset(ctx: dict[str, Any], email: str) -> str:
    """Issue a reset token and its email if the address has an approved account."""
    # str(): the queued `Unlogged` address becomes a plain string before it reaches a driver.
    await password_reset.start(ctx["db"], ctx["settings"], ctx["redis"], str(email))
    # One result whatever happened: the worker logs it beside the job's id and argument, and
    # the log must not become a list of who has an account.
    return "done"
