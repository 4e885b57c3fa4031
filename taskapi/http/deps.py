"""What a handler depends on: the authenticated caller (`actor`) and the role gate
(`require_role`), which also marks the operation as bearer-protected in the OpenAPI spec."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar, cast

from quart import g, request
from quart_schema.openapi import QUART_SCHEMA_SECURITY_ATTRIBUTE

from taskapi.core.errors import forbidden, unauthorized
from taskapi.http.current import runtime
from taskapi.http.gate import Identity, identify_and_limit
from taskapi.models import Role
from taskapi.services import personal_tokens
from taskapi.services.authstate import Actor, resolve_actor
from taskapi.services.authz import require_write

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
ROLES_ATTRIBUTE = "_taskapi_roles"
BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"oauth2Password": []}]


async def current_actor() -> Actor:
    actor: Actor | None = g.get("actor")
    if actor is not None:
        return actor
    identity: Identity | None = g.get("identity")
    if identity is None:  # endpoint exempt from identification: do it now
        await identify_and_limit()
        identity = g.get("identity") or Identity()
    if identity.error is not None:
        raise identity.error
    if identity.claims is None:
        raise unauthorized("not_authenticated", "A bearer access token is required.")
    state = runtime()
    actor = await resolve_actor(state.db, state.redis, identity.claims,
                                identity.cached_user, identity.cached_session, identity.epoch)
    require_write(actor, request.method)
    if actor.scope is not None:
        await personal_tokens.note_use(state.redis, actor)
    g.actor = actor
    return actor


def require_role(*roles: Role) -> Callable[[F], F]:
    """Authenticate, then 403 unless the caller has one of `roles` (none given: any user).

    Services check again; this decorator is the early, uniform gate and marks the operation
    as bearer-protected in the OpenAPI spec.
    """

    def decorator(func: F) -> F:
        @wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            actor = await current_actor()
            if roles and actor.role not in roles:
                raise forbidden()
            return await func(*args, **kwargs)

        setattr(wrapper, QUART_SCHEMA_SECURITY_ATTRIBUTE, BEARER)
        setattr(wrapper, ROLES_ATTRIBUTE, tuple(roles) or tuple(Role))
        return cast(F, wrapper)

    return decorator


def actor() -> Actor:
    """The caller, inside a handler decorated with require_role."""
    value: Actor = g.actor
    return value
