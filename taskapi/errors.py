"""Every error is application/problem+json (RFC 9457): type, title, status, detail, code."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from pydantic import ValidationError
from quart import Quart, Response, g, json
from quart_schema import RequestSchemaValidationError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .exceptions import APIError

log = logging.getLogger("taskapi.errors")
PROBLEM_JSON = "application/problem+json"


def problem(
    status: int,
    code: str,
    detail: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    body: dict[str, Any] = {
        "type": f"/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail or title,
        "code": code,
    }
    request_id = g.get("request_id") if g else None
    if request_id:
        body["request_id"] = request_id
    body.update(extra)
    response = Response(json.dumps(body), status=status, content_type=PROBLEM_JSON)
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _code_for(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def register_error_handlers(app: Quart) -> None:
    @app.errorhandler(APIError)
    async def _api_error(error: APIError) -> Response:
        return problem(
            error.status, error.code, error.detail, headers=error.headers, **error.extra
        )

    @app.errorhandler(RequestSchemaValidationError)
    async def _validation(error: RequestSchemaValidationError) -> Response:
        validation = error.validation_error
        if not isinstance(validation, ValidationError):
            return problem(422, "validation_error", str(validation))
        errors = [
            {
                "loc": [str(part) for part in item.get("loc", ())],
                "msg": item.get("msg", ""),
                "type": item.get("type", ""),
            }
            for item in validation.errors()
        ]
        return problem(422, "validation_error", "The request body is invalid.", errors=errors)

    @app.errorhandler(RequestEntityTooLarge)
    async def _too_large(error: RequestEntityTooLarge) -> Response:
        # The rest of the body stays unread, so the server drops the connection: say so, or a
        # client would send its next request on it and see a reset.
        return problem(413, "payload_too_large", "The request body is too large.",
                       headers={"Connection": "close"})

    @app.errorhandler(UnicodeDecodeError)
    async def _bad_encoding(error: UnicodeDecodeError) -> Response:
        # Quart's get_json() raises this for a body that is not UTF-8; it is the client's fault.
        return problem(400, "malformed_request", "The request body is not valid UTF-8.")

    @app.errorhandler(HTTPException)
    async def _http(error: HTTPException) -> Response:
        status = error.code or 500
        headers: dict[str, str] = {}
        if status == 405 and error.valid_methods:  # type: ignore[attr-defined]
            headers["Allow"] = ", ".join(sorted(error.valid_methods))  # type: ignore[attr-defined]
        if status == 400:
            return problem(400, "malformed_request", "The request body is not valid JSON.")
        detail = {
            404: "No resource at this URL.",
            405: "This method is not allowed on this URL.",
        }.get(status, error.description)
        return problem(status, _code_for(status), detail, headers=headers)

    @app.errorhandler(Exception)
    async def _unhandled(error: Exception) -> Response:
        log.exception("unhandled error: %s", type(error).__name__)
        return problem(500, "internal_error", "An unexpected error occurred.")
