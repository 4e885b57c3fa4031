"""Keyset (cursor) pagination: opaque cursors holding the last row's sort key."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import TypeAdapter

from taskapi.core.errors import APIError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None
    total: int | None  # None: not counted (no X-Total-Count)


def encode_cursor(values: list[Any]) -> str:
    raw = json.dumps(values, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, shape: TypeAdapter[T]) -> T:
    """The sort-key values in a cursor, validated to `shape` in strict mode: each value of
    the type it was handed out as (no bool for an int, no naive datetime) and within the
    range its query can bind (an overflow in the driver would be a 500). 422 otherwise."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return shape.validate_json(raw, strict=True)
    except ValueError:  # bad base64 or ASCII; pydantic's ValidationError is a ValueError
        raise APIError(422, "invalid_cursor", "The cursor is not valid for this list.") from None
