from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from taskapi.schemas.common import component


class Health(BaseModel):
    model_config = component("Health", {"status": "ok"})

    status: Literal["ok"]


CheckResult = Literal["ok", "down"]


class Readiness(BaseModel):
    model_config = component("Readiness", {"status": "ok",
                                           "checks": {"database": "ok", "redis": "ok"}})

    status: Literal["ok"]
    checks: dict[str, CheckResult]
