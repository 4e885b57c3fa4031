"""JWT issue and verify (PyJWT, HS256 only). No Quart here: the CLI and jobs may use it."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import jwt

from taskapi.core.errors import unauthorized

ALGORITHM = "HS256"
TokenType = Literal["access", "refresh"]
_REQUIRED = ["exp", "iat", "sub", "jti", "sid", "type"]


@dataclass(frozen=True, slots=True)
class Claims:
    user_id: int
    sid: str
    jti: str
    type: TokenType
    exp: int


def new_id() -> str:
    return uuid.uuid4().hex


def encode(key: str, *, user_id: int, sid: str, jti: str, type: TokenType, ttl: int) -> str:
    now = int(time.time())
    payload = {"sub": str(user_id), "sid": sid, "jti": jti, "type": type,
               "iat": now, "exp": now + ttl}
    return jwt.encode(payload, key, algorithm=ALGORITHM)


class _Verified:
    """Tokens whose signature this process already checked, by exact string (bounded LRU).

    A hit skips only the signature and parsing work: expiry and type are checked on every
    use, and revocation is checked by the caller, so nothing here can outlive a revocation.
    """

    def __init__(self, size: int = 8192) -> None:
        self.size = size
        self.items: OrderedDict[tuple[str, str], Claims] = OrderedDict()

    def get(self, key: str, token: str) -> Claims | None:
        claims = self.items.get((key, token))
        if claims is not None:
            self.items.move_to_end((key, token))
        return claims

    def put(self, key: str, token: str, claims: Claims) -> None:
        self.items[(key, token)] = claims
        if len(self.items) > self.size:
            self.items.popitem(last=False)


_verified = _Verified()


def decode(key: str, token: str, expected: TokenType) -> Claims:
    """Verify signature (HS256 only: `alg: none` and others are refused), expiry and type."""
    claims = _verified.get(key, token)
    if claims is not None:
        if claims.exp + 5 < time.time():
            raise unauthorized("token_expired", "The token has expired.")
        if claims.type != expected:
            raise unauthorized("invalid_token", f"An {expected} token is required.")
        return claims
    try:
        payload = jwt.decode(
            token, key, algorithms=[ALGORITHM], options={"require": _REQUIRED}, leeway=5
        )
    except jwt.ExpiredSignatureError:
        raise unauthorized("token_expired", "The token has expired.") from None
    except jwt.InvalidTokenError:
        raise unauthorized("invalid_token", "The token is invalid.") from None
    if payload["type"] != expected:
        raise unauthorized("invalid_token", f"An {expected} token is required.")
    try:
        user_id = int(payload["sub"])
    except (TypeError, ValueError):
        raise unauthorized("invalid_token", "The token is invalid.") from None
    claims = Claims(user_id=user_id, sid=str(payload["sid"]), jti=str(payload["jti"]),
                    type=expected, exp=int(payload["exp"]))
    _verified.put(key, token, claims)
    return claims
