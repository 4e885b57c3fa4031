"""Input limits the framework does not enforce by itself: ids within the database's range,
and JSON nested too deeply to parse. Both would otherwise end as a 500."""

from __future__ import annotations

from typing import Any

from quart.json.provider import DefaultJSONProvider
from werkzeug.routing import BaseConverter, IntegerConverter

from .exceptions import not_found
from .schemas.common import MAX_ID


class IdConverter(IntegerConverter):
    """`<int:…>` in a URL, documented as 1 to MAX_ID. The range is checked by `check_ids`,
    not here: werkzeug turns a converter's refusal into a 405 when the path has rules for
    other methods, where a 404 is the truth."""


def check_ids(view_args: dict[str, Any] | None) -> None:
    """404 for an id out of range: a larger number would overflow the driver (a 500)
    instead of finding nothing."""
    for value in (view_args or {}).values():
        if isinstance(value, int) and not 1 <= value <= MAX_ID:
            raise not_found()


class JobIdConverter(BaseConverter):
    """`<job:…>`: a report's job id (32 hex digits, as handed out); anything else is 404
    without a query (a NUL in a text parameter would fail in PostgreSQL)."""

    regex = "[0-9a-f]{32}"


CONVERTERS: dict[str, type[BaseConverter]] = {"int": IdConverter, "job": JobIdConverter}


class JSONProvider(DefaultJSONProvider):
    sort_keys = False  # fields in model order

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        # json.loads raises RecursionError on deeply nested input (e.g. 100k "["), which is
        # not a ValueError: callers that turn ValueError into a 400 would see a 500.
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None
