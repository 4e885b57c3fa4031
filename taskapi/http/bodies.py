"""The media type of a request body, checked against what its route declares.

A route declares its body with quart-schema (`@validate_request(Model)` or
`@document_request(Model)`), and with it the body's source: JSON unless it says
`source=DataSource.FORM` (a form-encoded route such as an OAuth2 `POST /token`). A body in
any other media type is a 415 problem naming the one expected, before anything reads it
(curl's `-d` sends `application/x-www-form-urlencoded`, which would otherwise surface as a
confusing validation error). Routes that declare no body ignore whatever is sent
(decision 033).
"""

from __future__ import annotations

from typing import Any

from quart import current_app, request
from quart_schema.validation import QUART_SCHEMA_REQUEST_ATTRIBUTE, DataSource

from taskapi.core.errors import APIError

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
_EXPECTED = {DataSource.JSON: JSON, DataSource.FORM: FORM, DataSource.FORM_MULTIPART: MULTIPART}


def declared_media_type(view: Any) -> str | None:
    """The media type the view's request body must have, or None when it declares no body."""
    declared = getattr(view, QUART_SCHEMA_REQUEST_ATTRIBUTE, None)
    if declared is None:
        return None
    _model, source = declared
    return _EXPECTED.get(source, JSON)


def _matches(expected: str, mimetype: str) -> bool:
    if expected == JSON:  # application/json or any application/*+json
        return mimetype == JSON or (mimetype.startswith("application/")
                                    and mimetype.endswith("+json"))
    return mimetype == expected


async def check_media_type() -> None:
    """415 `unsupported_media_type` for a body whose Content-Type is not the route's.

    An empty body without a Content-Type passes (an optional body, or a missing one that
    validation then names); an empty one that says it is something else does not.
    """
    view = current_app.view_functions.get(request.endpoint or "")
    expected = declared_media_type(view)
    if expected is None:
        return
    mimetype = request.mimetype
    if not mimetype and not await request.get_data(cache=True):
        return
    if _matches(expected, mimetype):
        return
    sent = f"`{mimetype}`" if mimetype else "no Content-Type"
    raise APIError(415, "unsupported_media_type",
                   f"This route takes a body of type {expected} (got {sent}): send "
                   f"`Content-Type: {expected}`.",
                   headers={"Accept": expected},  # RFC 9110 §12.5.1: a 415 may say so
                   expected_content_type=expected)
