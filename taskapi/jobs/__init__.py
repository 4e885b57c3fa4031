"""Worker coroutines: plain `async def job(ctx, ...)` functions calling the service layer.

`ctx` carries "settings", "db" (a Database) and "redis" (arq's pool); nothing else of arq
leaks into job code, so a later switch of queue library stays cheap.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .emails import send_approval_email, send_assignment_email, send_welcome_email
from .maintenance import db_maintenance

Job = Callable[..., Awaitable[Any]]

# Every job the worker runs, by name (`taskapi jobs run NAME` looks them up here).
JOBS: dict[str, Job] = {
    job.__name__: job
    for job in (db_maintenance, send_welcome_email, send_approval_email, send_assignment_email)
}
