"""Field types shared by the request schemas."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

# Syntax only (RFC 5321 dot-atom local part, LDH labels). No deliverability or special-use
# check: reserved domains such as .test and .example are valid addresses here.
_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL_RE = re.compile(rf"^{_LOCAL}@{_LABEL}(?:\.{_LABEL})+$")


def normalize_email(value: str) -> str:
    """Lower-case a syntactically valid address; ValueError otherwise."""
    value = value.strip()
    if len(value) > 254 or len(value.partition("@")[0]) > 64 or not EMAIL_RE.match(value):
        raise ValueError("not a valid email address")
    return value.lower()


Email = Annotated[str, AfterValidator(normalize_email)]


# Ids are 32-bit in PostgreSQL (SERIAL): a larger number names no row and must not reach
# the driver, which would fail on it (a 500) rather than find nothing.
MAX_ID = 2**31 - 1
Id = Annotated[int, Field(ge=1, le=MAX_ID)]


# At most MAX_TEXT_SHOWN (100) characters: a 422 shows no more of a message.
NAIVE_MESSAGE = ("needs a UTC offset, e.g. 2026-12-24T17:00:00Z or …+01:00 "
                 "(a date alone is 00:00 UTC)")


def in_utc(value: datetime) -> datetime:
    """The instant in UTC. A datetime without an offset is refused (422 `naive_datetime`),
    in bodies and query strings alike: guessing its zone would silently move a deadline by
    hours (decision 035). ValueError when UTC falls outside years 1-9999
    (`9999-12-31T23:59:59-01:00`): Python cannot represent it, so it must be refused here,
    not fail (a 500) wherever it is converted later."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise PydanticCustomError("naive_datetime", NAIVE_MESSAGE)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range: in UTC it must fall within years 1 to 9999") from None


def component(title: str, example: dict[str, Any]) -> ConfigDict:
    """A model's OpenAPI identity: the component name it is published under (`Task`, not
    the class's `TaskOut`) and a realistic example (not Swagger's `"string"`)."""
    return ConfigDict(title=title, json_schema_extra={"examples": [example]})


# A datetime in a cursor: as handed out (with an offset), within range in UTC.
CursorInstant = Annotated[AwareDatetime, AfterValidator(in_utc)]


class Problem(BaseModel):
    """An error (RFC 9457 problem details), served as application/problem+json."""

    model_config = ConfigDict(extra="allow", **component("Problem", {
        "type": "https://tasks.example.com/problems/validation_error",
        "title": "Unprocessable Content", "status": 422,
        "detail": "The request body is invalid.", "code": "validation_error",
        "request_id": "9f1c2e7a4b3d4e5f", "error_count": 1,
        "errors": [{"loc": ["deadline"], "msg": "needs a UTC offset, e.g. "
                    "2026-12-24T17:00:00Z", "type": "naive_datetime"}]}))

    type: str
    title: str
    status: int
    detail: str
    code: str = Field(description="Stable machine-readable error code.")
    request_id: str | None = Field(None, description="Also sent as X-Request-ID.")
    errors: list[dict[str, object]] | None = Field(
        None, description="Validation errors (422): loc, msg, type; the first 20.")
    error_count: int | None = Field(None, description="How many validation errors there were.")
