"""JWT issue and verify (PyJWT, HS256 only). No Quart here: the CLI and jobs may use it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
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
    sid: str  # a login session's id, or pat{id} for a personal access token
    jti: str
    type: TokenType | Literal["pat"]
    exp: int  # 0: a personal access token that does not expire
    scope: Literal["read", "write"] | None = None  # personal access tokens only


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


# Personal access tokens: tka_{id}.{user id}.{r|w}.{expiry, unix s, 0: none}.{nonce}.{MAC}.
# The MAC (HMAC-SHA256 under the signing key) covers the rest, so a request checks a token
# with no SQL; its revocation state is cached in Redis like a session's (pat{id}).
PAT_PREFIX = "tka_"
_PAT_RE = re.compile(r"tka_([0-9]{1,10})\.([0-9]{1,10})\.([rw])\.([0-9]{1,12})\."
                     r"([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{32})")
_SCOPES: dict[str, Literal["read", "write"]] = {"r": "read", "w": "write"}


def pat_sid(token_id: int) -> str:
    return f"pat{token_id}"


def _pat_mac(key: str, body: str) -> str:
    digest = hmac.new(key.encode(), b"tka|" + body.encode(), hashlib.sha256).digest()[:24]
    return base64.urlsafe_b64encode(digest).decode()


def encode_pat(key: str, *, token_id: int, user_id: int, scope: Literal["read", "write"],
               expires: int | None) -> str:
    body = f"{token_id}.{user_id}.{scope[0]}.{expires or 0}.{secrets.token_urlsafe(16)}"
    return f"{PAT_PREFIX}{body}.{_pat_mac(key, body)}"


def token_digest(token: str) -> str:
    """What is stored of a personal access token."""
    return hashlib.sha256(token.encode()).hexdigest()


def decode_pat(key: str, token: str) -> Claims:
    claims = _verified.get(key, token)
    if claims is None:
        match = _PAT_RE.fullmatch(token)
        if match is None:
            raise unauthorized("invalid_token", "The token is invalid.")
        token_id, user_id, scope, expires, nonce, mac = match.groups()
        body = token[len(PAT_PREFIX):-len(mac) - 1]
        if not hmac.compare_digest(mac, _pat_mac(key, body)):
            raise unauthorized("invalid_token", "The token is invalid.")
        claims = Claims(user_id=int(user_id), sid=pat_sid(int(token_id)), jti=nonce,
                        type="pat", exp=int(expires), scope=_SCOPES[scope])
        _verified.put(key, token, claims)
    if claims.exp and claims.exp <= time.time():
        raise unauthorized("token_expired", "The token has expired.")
    return claims


def decode_bearer(key: str, token: str) -> Claims:
    """The one check of a bearer credential: a login's access token (JWT) or a personal
    access token (tka_…)."""
    if token.startswith(PAT_PREFIX):
        return decode_pat(key, token)
    return decode(key, token, "access")
