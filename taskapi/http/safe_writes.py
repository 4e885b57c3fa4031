"""The HTTP side of safe writes: If-Match parsed into the services' IfMatch (428 when it is
required and missing), and Idempotency-Key on creates (services/idempotency.py)."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

from pydantic import BaseModel
from quart import Response, request
from werkzeug.http import parse_etags

from taskapi.core.errors import APIError
from taskapi.http.client import client_ip
from taskapi.http.current import db_session, runtime
from taskapi.http.deps import actor
from taskapi.http.openapi import API_PREFIX, documents_idempotency_key
from taskapi.services import idempotency
from taskapi.services.preconditions import IfMatch

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
View = tuple[BaseModel, int, dict[str, str]]

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
                if tag and (m := _VERSION_TAG.fullmatch(tag))}  # '""' parses to None
    return IfMatch(versions=frozenset(versions))


def idempotent(answer: Callable[[Any], View], *, anonymous: bool = False) -> Callable[[F], F]:
    """Idempotency-Key on a create. `answer`: the service's result → the view's return value
    (model, status, headers); the view returns `answer(result)` and the create calls
    `idempotency.settle(session, result)` before its commit. Keys are per caller: the user,
    or the client address (`anonymous` routes)."""

    def store(result: Any) -> idempotency.Answer:
        return _stored(answer(result))

    def decorator(view: F) -> F:
        @wraps(view)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            key = request.headers.get("Idempotency-Key")
            if key is None:
                return await view(*args, **kwargs)
            if not 1 <= len(key) <= idempotency.MAX_KEY_LENGTH:
                raise APIError(400, "invalid_idempotency_key",
                               "Idempotency-Key must be 1 to 255 characters.")
            ctx = runtime()
            scope = f"ip:{client_ip()}" if anonymous else f"user:{actor().id}"
            fingerprint = await _fingerprint()
            lookup = functools.partial(idempotency.lookup, ctx.db, scope, key, fingerprint,
                                       ctx.settings.idempotency_ttl)
            stored = await lookup()
            if stored is not None:
                return _replay(stored)
            session = db_session()
            idempotency.claim(session, idempotency.Claim(
                scope, key, fingerprint, store, ctx.settings.idempotency_ttl))
            try:
                result = await view(*args, **kwargs)
                await idempotency.settle_late(session, _stored(result))
            except idempotency.KeyTaken:
                # A concurrent request with this key committed first: its answer, if it is
                # stored by now (else it is still running: 409).
                await session.rollback()
                stored = await lookup()
                if stored is None:
                    raise idempotency.in_flight() from None
                return _replay(stored)
            return result

        return documents_idempotency_key(wrapper)  # type: ignore[return-value]

    return decorator


async def _fingerprint() -> str:
    """What the key was sent with: the route (either mount) and the body, JSON-canonical."""
    data = await request.get_data()
    raw = data if isinstance(data, bytes) else data.encode()
    try:
        body = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        body = raw
    path = request.path.removeprefix(API_PREFIX)
    return hashlib.sha256(f"{request.method} {path}\n".encode() + body).hexdigest()


def _stored(view: View) -> idempotency.Answer:
    """A view's answer as stored: the body byte for byte as Quart sends it (its JSON, as
    pydantic writes it, and a newline)."""
    model, status, headers = view
    return idempotency.Answer(status, headers, model.model_dump_json() + "\n")


def _replay(stored: idempotency.Answer) -> Response:
    return Response(stored.body, status=stored.status, content_type="application/json",
                    headers={**stored.headers, "Idempotent-Replayed": "true"})
