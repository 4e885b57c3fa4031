"""Stream tickets: browsers' EventSource and WebSocket cannot send an Authorization header,
and a JWT in a query string lands in access logs. A signed-in user trades their bearer token
for a ticket (POST /events/ticket): random, single use (GETDEL), valid TICKET_TTL seconds,
bound to the user and session, stored hashed in Redis (decision 040)."""

from __future__ import annotations

import hashlib
import secrets

from redis.exceptions import RedisError

from taskapi.core.db import Database
from taskapi.core.errors import APIError, unauthorized
from taskapi.core.redis_client import GuardedRedis, usable
from taskapi.core.tokens import Claims
from taskapi.services.authstate import Actor, resolve_actor

TICKET_TTL = 60
_PREFIX = "evt:ticket:"
MAX_TICKET = 128  # characters; longer is not one of ours


def _key(ticket: str) -> str:
    return _PREFIX + hashlib.sha256(ticket.encode()).hexdigest()


def _unavailable() -> APIError:
    return APIError(503, "tickets_unavailable", "Stream tickets need Redis, which is not "
                    "reachable; use a bearer token or retry shortly.", headers={"Retry-After": "2"})


async def issue_ticket(redis: GuardedRedis, actor: Actor) -> tuple[str, int]:
    ticket = "tkt_" + secrets.token_urlsafe(24)
    if not await usable(redis):
        raise _unavailable()
    try:
        await redis.set(_key(ticket), f"{actor.id}:{actor.sid}", ex=TICKET_TTL)
    except (RedisError, OSError) as error:
        redis.guard.failed(error)
        raise _unavailable() from None
    return ticket, TICKET_TTL


def _bad_ticket() -> APIError:
    return unauthorized("invalid_ticket", "The ticket is unknown, used or expired; get a new "
                        "one from POST /events/ticket.")


async def redeem_ticket(db: Database, redis: GuardedRedis, ticket: str) -> Actor:
    """The ticket's caller as they are now (their session still live), once; else 401."""
    if not ticket or len(ticket) > MAX_TICKET:
        raise _bad_ticket()
    if not await usable(redis):
        raise _unavailable()
    try:
        value = await redis.getdel(_key(ticket))
    except (RedisError, OSError) as error:
        redis.guard.failed(error)
        raise _unavailable() from None
    if value is None:
        raise _bad_ticket()
    user_id, _, sid = value.decode().partition(":")
    return await resolve_actor(db, redis, Claims(int(user_id), sid, "", "access", 0),
                               None, None, None)
