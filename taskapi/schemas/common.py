"""Field types shared by the request schemas."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

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
