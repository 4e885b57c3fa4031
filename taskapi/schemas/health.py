from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Health(BaseModel):
    status: Literal["ok"]


CheckResult = Literal["ok", "down"]


class Readiness(BaseModel):
    status: Literal["ok"]
    checks: dict[str, CheckResult]
