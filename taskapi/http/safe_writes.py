"""The HTTP side of safe writes: If-Match parsed into the services' IfMatch, 428 when it is
required and missing."""

from __future__ import annotations

import re

from quart import request
from werkzeug.http import parse_etags

from taskapi.core.errors import APIError
from taskapi.http.current import runtime
from taskapi.services.preconditions import IfMatch

_VERSION_TAG = re.compile(r"v([1-9][0-9]{0,17})")


def if_match() -> IfMatch | None:
    """The request's If-Match; None when absent (428 if REQUIRE_IF_MATCH).

    If-Match compares strongly (RFC 9110 §13.1.1): a weak tag W/"v3" matches nothing, nor
    does a tag that is not one of ours; then the write answers 412.
    """
    header = request.headers.get("If-Match")
    if header is None or not header.strip():
        if runtime().settings.require_if_match:
            raise APIError(428, "precondition_required",
                           "Send If-Match with the ETag of the version you are changing.")
        return None
    tags = parse_etags(header)
    if tags.star_tag:
        return IfMatch(any=True)
    versions = {int(m.group(1)) for tag in tags.as_set(include_weak=False)
                if (m := _VERSION_TAG.fullmatch(tag))}
    return IfMatch(versions=frozenset(versions))
