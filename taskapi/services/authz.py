"""Authorization rules shared by every service."""

from __future__ import annotations

from taskapi.core.errors import APIError, forbidden
from taskapi.models import Role
from taskapi.services.authstate import Actor


def require(actor: Actor, *roles: Role) -> None:
    """403 unless the actor has one of the roles (checked again here, not only in routes)."""
    if actor.role not in roles:
        raise forbidden()


STAFF = (Role.ADMIN, Role.MANAGER)


def insufficient_scope(detail: str) -> APIError:
    return APIError(403, "insufficient_scope", detail)


def require_session(actor: Actor) -> None:
    """403 for a personal access token: what only a login may do (create tokens, change the
    password or email, end sessions)."""
    if actor.scope is not None:
        raise insufficient_scope("This needs a login session; a personal access token "
                                 "cannot do it.")


def require_write(actor: Actor, method: str) -> None:
    """A `read` personal access token may only GET and HEAD."""
    if actor.scope == "read" and method not in ("GET", "HEAD"):
        raise insufficient_scope("This token has the read scope only (GET and HEAD).")
