"""Declarative base with a constraint naming convention and a UTC-preserving datetime."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Enum, MetaData, event
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on SQLite (which drops tz info) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def string_enum(enum_cls: type[enum.Enum], name: str) -> Enum:
    """An enum stored as its string values (VARCHAR + CHECK), the same on SQLite and PostgreSQL."""
    return Enum(enum_cls, name=name, native_enum=False, length=16,
                values_callable=lambda members: [m.value for m in members])


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def create_with_schema(ddl: dict[str, list[str]]) -> None:
    """Run `ddl` (statements per dialect name: triggers, search tables) whenever
    Base.metadata.create_all creates the schema, as its migration runs them."""
    def _run(_metadata: Any, connection: Any, **_kw: Any) -> None:
        for statement in ddl.get(connection.dialect.name, []):
            connection.exec_driver_sql(statement)

    event.listen(Base.metadata, "after_create", _run)
