"""Authorization rules shared by every service."""

from __future__ import annotations

from ..exceptions import forbidden
from ..models import Role
from .authstate import Actor


def require(actor: Actor, *roles: Role) -> None:
    """403 unless the actor has one of the roles (checked again here, not only in routes)."""
    if actor.role not in roles:
        raise forbidden()


STAFF = (Role.ADMIN, Role.MANAGER)
