"""APIError: raised anywhere (services included, which import no Quart) → problem+json."""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or code)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


def not_found(what: str = "resource") -> APIError:
    return APIError(404, "not_found", f"No such {what}.")


def forbidden(detail: str = "You are not allowed to do this.") -> APIError:
    return APIError(403, "forbidden", detail)


def conflict(code: str, detail: str) -> APIError:
    return APIError(409, code, detail)


def unauthorized(code: str, detail: str) -> APIError:
    return APIError(401, code, detail, headers={"WWW-Authenticate": 'Bearer realm="taskapi"'})
