"""Authorization rules shared by every service."""

from __future__ import annotations

from taskapi.core.errors import forbidden
from taskapi.models import Role
from taskapi.services.authstate import Actor


def require(actor: Actor, *roles: Role) -> None:
    """403 unless the actor has one of the roles (checked again here, not only in routes)."""
    if actor.role not in roles:
        raise forbidden()


STAFF = (Role.ADMIN, Role.MANAGER)
