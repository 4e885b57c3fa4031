"""Standard Webhooks signatures (standardwebhooks.com): secrets and the signature header.

A secret is `whsec_` + base64 of 32 random bytes; the key is those bytes. A signature is
`v1,` + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}")); several are sent space
separated (during a rotation), and a receiver accepts the message if any one verifies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable

PREFIX = "whsec_"


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets_: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: one signature per secret, newest first."""
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets_)
