"""A user's local time, for what goes out at an hour of their day (reminders, reports).

"Due" is "their local clock has reached the hour today", checked at each cron tick and
keyed by their local date: the first tick at or after that local time sends it, a spring-
forward gap over the hour sends it when the clock jumps, and a repeated hour (fall back)
finds today's already sent. zoneinfo gives the offsets, so DST needs no special case.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def user_zone(name: str | None, default: ZoneInfo) -> ZoneInfo:
    """The user's IANA zone, else `default` (TIMEZONE); an unknown name counts as unset."""
    if not name:
        return default
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return default


def local_day_due(now: datetime, zone: ZoneInfo, hour: int) -> date | None:
    """The user's local date when their local time has reached `hour` on it, else None."""
    local = now.astimezone(zone)
    return local.date() if local.hour >= hour else None


def local_instant(day: date, hour: int, zone: ZoneInfo) -> datetime:
    """`hour`:00 of `day` in `zone`, in UTC: the moment local_day_due turns true. In a
    spring-forward gap that is when the clock jumps; in a repeated hour, the first time."""
    return datetime.combine(day, time(hour), zone).astimezone(UTC)
