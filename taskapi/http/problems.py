"""Every error is application/problem+json (RFC 9457): type, title, status, detail, code."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from pydantic import ValidationError
from quart import Quart, Response, current_app, g, has_request_context, json, request
from quart_schema import RequestSchemaValidationError
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from taskapi.core.errors import APIError
from taskapi.core.problem_catalog import CATALOG
from taskapi.http.current import EXTENSION_KEY

log = logging.getLogger("taskapi.errors")
PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_S = 2
MAX_ERRORS_SHOWN = 20  # validation errors listed in a 422 (error_count has them all)
MAX_TEXT_SHOWN = 100  # characters of each loc part and msg
# PostgreSQL SQLSTATEs meaning "busy or unreachable, try again": lock_not_available,
# query_canceled (a lock or statement timeout), admin/crash shutdown, cannot_connect_now,
# too_many_connections (the server's or a role's connection limit), and the connection
# exception class (08…).
_RETRYABLE_SQLSTATES = ("55P03", "57014", "57P01", "57P02", "57P03", "53300", "08")


def database_unavailable(error: BaseException) -> bool:
    """A database that is locked, busy or unreachable (as opposed to a bug)."""
    if isinstance(error, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError,
                          ConnectionError, TimeoutError)):
        return True  # SQLite "database is locked", pool exhausted, connection refused/lost
    if isinstance(error, sa_exc.DBAPIError):
        code = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
        return error.connection_invalidated or (
            isinstance(code, str) and code.startswith(_RETRYABLE_SQLSTATES))
    return False


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
        "type": problem_type(code),
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


# pydantic errors whose message names the model class ("… instance of LoginIn"): the client
# sent something that is not a JSON object where one belongs.
_OBJECT_EXPECTED = frozenset({"model_type", "model_attributes_type", "dataclass_type",
                              "dataclass_exact_type", "is_instance_of"})


def _client_message(item: Any) -> str:
    if item.get("type") in _OBJECT_EXPECTED:
        return "Input should be a JSON object"
    return str(item.get("msg", ""))


def base_url() -> str:
    """Where this service is reached: `PUBLIC_URL` when it is set, else the request's own
    scheme and host (so a problem's link works on a dev server on any port)."""
    settings = current_app.extensions[EXTENSION_KEY].settings
    if "public_url" in settings.model_fields_set:
        return str(settings.public_url)
    return str(request.host_url).rstrip("/") if has_request_context() else ""


def problem_type(code: str) -> str:
    """An absolute URI that answers a page about the code; `about:blank` (RFC 9457: the
    status says it all) for one the catalog does not list."""
    if code not in CATALOG:
        return "about:blank"
    return f"{base_url()}/problems/{code}"


def _code_for(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


class QueryValidationError(RequestSchemaValidationError):
    """A query string that does not fit its model (http/responses.parse_query): the problem
    says so rather than blaming a body."""


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
        # The first few errors, each part cut short, and the count: a small request (many
        # unknown query parameters, a huge key) must not buy a large response.
        errors = [
            {
                "loc": [str(part)[:MAX_TEXT_SHOWN] for part in item.get("loc", ())],
                "msg": _client_message(item)[:MAX_TEXT_SHOWN],
                "type": item.get("type", ""),
            }
            for item in validation.errors(include_url=False, include_context=False,
                                          include_input=False)[:MAX_ERRORS_SHOWN]
        ]
        where = "query string" if isinstance(error, QueryValidationError) else "request body"
        return problem(422, "validation_error", f"The {where} is invalid.", errors=errors,
                       error_count=validation.error_count())

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

    @app.errorhandler(StaleDataError)
    async def _stale(error: StaleDataError) -> Response:
        # A versioned UPDATE matched no row: another request changed or deleted it between
        # this one's read and its write (writes that can race lock the row or answer 412;
        # this is the net under them). Nothing was committed.
        return problem(409, "write_conflict",
                       "The resource changed while this request ran: retry it.")

    @app.errorhandler(Exception)
    async def _unhandled(error: Exception) -> Response:
        if database_unavailable(error):
            # The request's transaction did not commit (its session rolls back at teardown).
            log.warning("database unavailable: %s", str(error).splitlines()[0][:300])
            return problem(503, "database_unavailable",
                           "The database is busy or unavailable; retry shortly.",
                           headers={"Retry-After": str(RETRY_AFTER_S)})
        log.exception("unhandled error: %s", type(error).__name__)
        return problem(500, "internal_error", "An unexpected error occurred.")
