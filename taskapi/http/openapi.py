"""The OpenAPI document: each operation once, with every response it can give.

quart-schema documents the success responses it validates. The errors are added here, from
what the route is: rate limited (429), authenticated (401) and role-gated (403), addressed by
an id (404), reading a body (400, 408, 413, 422) or a query string (422), using the database
(503), plus what a route
declares with `@problems(...)` (409, …). Errors are application/problem+json (`Problem`).
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Iterable
from http import HTTPStatus
from typing import Any, TypeVar

from quart_schema.openapi import OpenAPIProvider
from werkzeug.routing import BaseConverter, Rule

from taskapi.http.deps import ROLES_ATTRIBUTE
from taskapi.http.gate import UNLIMITED_ENDPOINTS
from taskapi.http.limits import IdConverter, JobIdConverter
from taskapi.http.problems import PROBLEM_JSON
from taskapi.models import Role
from taskapi.schemas.common import MAX_ID, Problem

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
PROBLEMS_ATTRIBUTE = "_taskapi_problems"
NO_CONTENT_ATTRIBUTE = "_taskapi_no_content"
NO_LOCATION_ATTRIBUTE = "_taskapi_no_location"
CONDITIONAL_ATTRIBUTE = "_taskapi_conditional"
IDEMPOTENT_ATTRIBUTE = "_taskapi_idempotent"
OPTIONAL_BODY_ATTRIBUTE = "_taskapi_optional_body"
API_PREFIX = "/api/v1"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
# Responses and parameters a route documents by hand (a stream's text/event-stream answer).
EXTRA_ATTRIBUTE = "_taskapi_openapi_extra"


def problems(*statuses: int) -> Callable[[F], F]:
    """Document error statuses particular to this route (the generic ones are derived)."""

    def decorator(func: F) -> F:
        setattr(func, PROBLEMS_ATTRIBUTE, (*getattr(func, PROBLEMS_ATTRIBUTE, ()), *statuses))
        return func

    return decorator


def no_content(func: F) -> F:
    """Document a 204 (no body) as the route's success response."""
    setattr(func, NO_CONTENT_ATTRIBUTE, True)
    return func


def optional_body(func: F) -> F:
    """Document the route's request body as optional (it reads an empty one as defaults)."""
    setattr(func, OPTIONAL_BODY_ATTRIBUTE, True)
    return func


def no_location(func: F) -> F:
    """Document the route's 202 without a Location header (there is nothing to follow)."""
    setattr(func, NO_LOCATION_ATTRIBUTE, True)
    return func


def conditional(func: F) -> F:
    """Document If-Match on a write: 412 when it does not match, 428 when it is required."""
    setattr(func, CONDITIONAL_ATTRIBUTE, True)
    return problems(412, 428)(func)


def documents_idempotency_key(func: F) -> F:
    """Document Idempotency-Key on a create: replayed answers, 409 in flight, 422 reused."""
    setattr(func, IDEMPOTENT_ATTRIBUTE, True)
    return problems(400, 409, 422)(func)


def _header(description: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": schema}


_STRING = {"type": "string"}
# On every response (set in after_request); the fuzz checks it on each one.
_COMMON_HEADERS = {
    "X-Content-Type-Options": _header("Always `nosniff`.", {"type": "string",
                                                          "enum": ["nosniff"]}, True),
    "X-Request-ID": _header("The request id (the client's, if well-formed, else a new one).",
                            _STRING),
}
_STATUS_HEADERS = {
    401: {"WWW-Authenticate": _header("`Bearer realm=\"taskapi\"`.", _STRING, True)},
    429: {"Retry-After": _header("Seconds until the limit lets a request through again.",
                                 {"type": "string", "pattern": "^[0-9]+$"}, True)},
    503: {"Retry-After": _header("Seconds to wait before retrying (database busy or down, "
                                 "or too many password checks at once).",
                                 {"type": "string", "pattern": "^[0-9]+$"})},
    201: {"Location": _header("The new resource.", _STRING, True)},
    202: {"Location": _header("Where to follow the job.", _STRING, True)},
}
_LIST_HEADERS = {
    "X-Total-Count": _header("Rows matching the filters.",
                             {"type": "string", "pattern": "^[0-9]+$"}, True),
    "Link": _header('`<…>; rel="next"` while more rows remain.', _STRING),
}
# Task lists filtered by due_before, due_after or q count their rows only when the first page
# is all of them: no counter serves those filters (decision 045).
_SOMETIMES_COUNTED = {"list_tasks", "my_tasks"}
_SOMETIMES_TOTAL = {"X-Total-Count": _header(
    "Rows matching the filters; absent when due_before, due_after or q filter the list and "
    "it has more than one page.", {"type": "string", "pattern": "^[0-9]+$"})}
_ETAG = {"ETag": _header("Send it back in If-None-Match to get a 304.", _STRING)}
_WRITE_ETAG = {"ETag": _header("The new version's ETag (what a GET answers next): send it in "
                               "If-Match to chain edits.", _STRING)}
_REPLAYED = {"Idempotent-Replayed": _header(
    "`true` when this is the stored answer of an earlier request with the same "
    "Idempotency-Key.", {"type": "string", "enum": ["true"]})}
_IF_MATCH = {"name": "If-Match", "in": "header", "required": False, "schema": _STRING,
             "description": "The ETag of the version you are changing (or `*`): 412 when "
                            "it is not the current one; REQUIRE_IF_MATCH makes it required "
                            "(428)."}
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "Retry safely: the same key and payload within IDEMPOTENCY_TTL replays "
                   "the first answer; another payload is a 422, a retry while the first is "
                   "still running a 409. Keys are per caller."}


_REF = "#/components/schemas/"


def _rewrite_refs(node: Any, renames: dict[str, str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_REF) and ref[len(_REF):] in renames:
            node["$ref"] = _REF + renames[ref[len(_REF):]]
        for value in node.values():
            _rewrite_refs(value, renames)
    elif isinstance(node, list):
        for value in node:
            _rewrite_refs(value, renames)


def _bodies(spec: dict[str, Any]) -> Iterable[dict[str, Any]]:
    """Every media-type object of a request or response body."""
    for path_item in spec["paths"].values():
        for operation in path_item.values():
            yield from operation.get("requestBody", {}).get("content", {}).values()
            for response in operation["responses"].values():
                yield from response.get("content", {}).values()


def name_bodies(spec: dict[str, Any]) -> None:
    """Every request and response body a named component, used by `$ref`.

    quart-schema inlines single-object bodies (only list items and enums get a `$ref`), so a
    generated client had a Task class per operation. Here each model's schema goes to
    `components.schemas` under its title (`component()` in schemas/common.py: `Task` for
    `TaskOut`), the components quart-schema named by class are renamed to their titles,
    and each body gets its model's first example (Swagger UI shows it, not `"string"`).
    (decision 036)
    """
    schemas: dict[str, Any] = spec["components"]["schemas"]
    renames = {key: value["title"] for key, value in schemas.items()
               if isinstance(value.get("title"), str) and value["title"] != key}
    for old, new in renames.items():
        schemas[new] = schemas.pop(old)
    _rewrite_refs(spec, renames)
    for media in _bodies(spec):
        schema = media.get("schema", {})
        _rewrite_refs(schema, renames)
        if "$ref" not in schema and isinstance(schema.get("title"), str) and (
                schema.get("type") == "object"):
            name = schema["title"]
            if name in schemas and schemas[name] != schema:
                raise ValueError(f"two different schemas are both named {name!r}")
            schemas[name] = schema
            media["schema"] = schema = {"$ref": _REF + name}
        target = schema.get("$ref", "") or schema.get("items", {}).get("$ref", "")
        examples = schemas.get(target[len(_REF):], {}).get("examples")
        if examples and "example" not in media:
            media["example"] = examples[0] if "items" not in schema else [examples[0]]


class Provider(OpenAPIProvider):
    def generate_rules(self) -> Iterable[Rule]:
        """Each operation once: the /api/v1 mirror and the plural aliases are hidden."""
        for rule in super().generate_rules():
            if (rule.rule.startswith(API_PREFIX) or rule.endpoint.endswith(".static")
                    or rule.endpoint.endswith("_alias")):
                continue
            yield rule

    def schema(self) -> dict[str, Any]:
        spec = super().schema()
        spec["components"]["schemas"]["Problem"] = Problem.model_json_schema(
            ref_template="#/components/schemas/{model}")
        name_bodies(spec)
        return spec

    def build_path_parameter(self, name: str, converter: BaseConverter) -> dict[str, Any]:
        parameter = super().build_path_parameter(name, converter)
        if isinstance(converter, IdConverter):
            parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
        elif isinstance(converter, JobIdConverter):
            parameter["schema"] = {"type": "string", "pattern": f"^{converter.regex}$"}
        return parameter

    def build_paths(self, rule: Rule) -> tuple[dict, dict]:
        paths, components = super().build_paths(rule)
        func = self._app.view_functions[rule.endpoint]
        for path_item in paths.values():
            for method, operation in path_item.items():
                # super() shares one responses dict between the methods of a rule.
                operation["responses"] = copy.deepcopy(operation["responses"])
                operation["operationId"] = func.__name__  # the view's name: `create_task`
                self._document(rule, func, method.upper(), operation)
        return paths, components

    def _document(self, rule: Rule, func: Any, method: str, operation: dict[str, Any]) -> None:
        responses: dict[Any, dict[str, Any]] = {
            int(status): response for status, response in operation["responses"].items()}
        if getattr(func, NO_CONTENT_ATTRIBUTE, False):
            responses[204] = {"description": "Done; no content."}
        extra = copy.deepcopy(getattr(func, EXTRA_ATTRIBUTE, {}))
        responses.update(extra.get("responses", {}))
        operation["parameters"] = [*operation.get("parameters", []), *extra.get("parameters", [])]
        if "requestBody" in operation:
            operation["requestBody"]["required"] = not getattr(func, OPTIONAL_BODY_ATTRIBUTE,
                                                               False)
        for status, response in responses.items():
            if not response.get("description") or response["description"].startswith("Built-in"):
                response["description"] = HTTPStatus(status).phrase  # not list's docstring
            if status in _STATUS_HEADERS and not (
                    status == 202 and getattr(func, NO_LOCATION_ATTRIBUTE, False)):
                response["headers"] = dict(_STATUS_HEADERS[status])
            body = response.get("content", {}).get("application/json", {}).get("schema", {})
            if status == 200 and body.get("type") == "array":
                response["headers"] = dict(_LIST_HEADERS)
                if func.__name__ in _SOMETIMES_COUNTED:
                    response["headers"].update(_SOMETIMES_TOTAL)
        if method == "GET" and 200 in responses and not extra:  # a stream has no ETag
            responses[200].setdefault("headers", {}).update(_ETAG)
            responses[304] = {"description": "Not modified (If-None-Match matched the ETag).",
                              "headers": dict(_ETAG)}
        if getattr(func, CONDITIONAL_ATTRIBUTE, False):
            operation.setdefault("parameters", []).append(dict(_IF_MATCH))
            if 200 in responses:
                responses[200].setdefault("headers", {}).update(_WRITE_ETAG)
        if getattr(func, IDEMPOTENT_ATTRIBUTE, False):
            operation.setdefault("parameters", []).append(dict(_IDEMPOTENCY_KEY))
            for status in (200, 201, 202):
                if status in responses:
                    responses[status].setdefault("headers", {}).update(_REPLAYED)
        for status in sorted(self._error_statuses(rule, func, method, operation)):
            if "content" in responses.get(status, {}):
                continue  # the route answers this status in a form of its own (POST /token)
            responses[status] = {
                "description": HTTPStatus(status).phrase,
                "content": {PROBLEM_JSON: {"schema": _PROBLEM_REF}},
                "headers": dict(_STATUS_HEADERS.get(status, {})),
            }
        for response in responses.values():
            response["headers"] = {**response.get("headers", {}), **_COMMON_HEADERS}
        operation["responses"] = {str(status): responses[status] for status in sorted(responses)}

    def _error_statuses(self, rule: Rule, func: Any, method: str,
                        operation: dict[str, Any]) -> set[int]:
        statuses = {414, 431, *getattr(func, PROBLEMS_ATTRIBUTE, ())}  # every request head
        if rule.endpoint not in UNLIMITED_ENDPOINTS:
            # Rate limited, and reads the database (a lock held past DB_LOCK_TIMEOUT, or the
            # database down: 503 database_unavailable with Retry-After).
            statuses |= {429, 503}
        roles = getattr(func, ROLES_ATTRIBUTE, None)
        if roles is not None:
            statuses.add(401)
            # A role gate, or a write with a read-only personal access token (insufficient_scope).
            if set(roles) != set(Role) or method not in ("GET", "HEAD"):
                statuses.add(403)
        if rule.arguments:
            statuses.add(404)
        if method in BODY_METHODS:
            # Every body is read up front, whatever the route, within BODY_TIMEOUT.
            statuses |= {408, 413}
        if "requestBody" in operation:
            statuses |= {400, 422}
        if any(p["in"] == "query" for p in operation["parameters"]):
            statuses.add(422)
        return statuses
