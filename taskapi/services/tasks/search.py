"""The candidates of a selective filter, for a list query (decision 047): `q` through the
search index, a due-date range through the deadline's index.

A list with `q` is a page of the tasks whose title or description holds it, in the query's
sort. Two ways to find them, both bounded:
- a rare substring (at most CANDIDATES tasks hold it): the index gives their ids and the page
  is those rows, sorted: a few thousand rows at most, however large the table;
- a common one: the list walks its sort's index and checks each row, as without a search: a
  substring held by more than CANDIDATES tasks is met within a few rows of each page.
One index lookup, capped at CANDIDATES + 1 ids, tells which. A due-date range sorted by
anything but the deadline is the same: a narrow range's few ids, or a walk that meets a wide
one's rows soon.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    String,
    bindparam,
    cast,
    column,
    literal_column,
    or_,
    select,
    table,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from taskapi.models import Task, UTCDateTime
from taskapi.models.search import MIN_INDEXED, fts_phrase
from taskapi.models.task import due_range, far_due

CANDIDATES = 2000


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def holds(title: Any, description: Any, name: str) -> ColumnElement[bool]:
    """The title or the description holds the bound pattern `name` (ILIKE, %…% escaped)."""
    return or_(title.ilike(bindparam(name), escape="\\"),
               description.ilike(bindparam(name), escape="\\"))


_PG_SEARCH = table("task_search", column("task_id"), column("title"), column("description"))
_SQLITE_PROBE = text("SELECT rowid FROM task_search WHERE task_search MATCH :m LIMIT :cap")
_PG_PROBE = (select(_PG_SEARCH.c.task_id)
             .where(holds(_PG_SEARCH.c.title, _PG_SEARCH.c.description, "p"))
             .limit(bindparam("cap")))


def candidates(conn: Connection, q: str) -> str | None:
    """The ids of the tasks that may hold `q` (a JSON array, for ids_in), when the index
    holds at most CANDIDATES of them; None when `q` is too short for a trigram index, or
    common: then the list checks each row of its walk. On SQLite the index folds case
    further than LIKE (non-ASCII letters too): a superset, which the list's ILIKE narrows."""
    if len(q) < MIN_INDEXED:
        return None
    if conn.dialect.name == "sqlite":
        ids = conn.execute(_SQLITE_PROBE, {"m": fts_phrase(q), "cap": CANDIDATES + 1})
    else:
        ids = conn.execute(_PG_PROBE, {"p": f"%{escape_like(q)}%", "cap": CANDIDATES + 1})
    return _capped(ids.scalars().all())


def _capped(found: Sequence[int]) -> str | None:
    return json.dumps(list(found)) if len(found) <= CANDIDATES else None


def _due_probe(before: bool, after: bool) -> Any:
    bounds = due_range(bindparam("b", type_=UTCDateTime()) if before else None,
                       bindparam("a", type_=UTCDateTime()) if after else None, below_far=True)
    return select(Task.id).where(*bounds).limit(bindparam("cap"))


_DUE_PROBES = {(b, a): _due_probe(b, a) for b, a in ((True, False), (False, True), (True, True))}
# due_after alone also holds the tasks due at FAR_FUTURE itself (below FAR_FUTURE in the
# range are only the others): looked up apart, in ix_tasks_deadline.
_FAR_PROBE = select(Task.id).where(far_due()).limit(bindparam("cap"))


def due_candidates(conn: Connection, before: datetime | None,
                   after: datetime | None) -> str | None:
    """The ids of the tasks due in the range (a JSON array, for ids_in), from the deadline's
    index, when there are at most CANDIDATES; None for a wider range."""
    probe = _DUE_PROBES[(before is not None, after is not None)]
    found = list(conn.execute(probe, {"b": before, "a": after,
                                      "cap": CANDIDATES + 1}).scalars())
    if before is None and len(found) <= CANDIDATES:
        found += conn.execute(_FAR_PROBE, {"cap": CANDIDATES + 1 - len(found)}).scalars()
    return _capped(found)


class json_ints(FunctionElement[Any]):
    """The members of a JSON array bound as text, as rows of one column, `value`."""

    name = "json_ints"
    inherit_cache = True


@compiles(json_ints, "sqlite")
def _json_ints_sqlite(element: json_ints, compiler: Any, **kw: Any) -> str:
    return f"json_each({compiler.process(element.clauses, **kw)})"


@compiles(json_ints, "postgresql")
def _json_ints_pg(element: json_ints, compiler: Any, **kw: Any) -> str:
    return f"json_array_elements_text(CAST({compiler.process(element.clauses, **kw)} AS json))"


def ids_in(name: str) -> ColumnElement[bool]:
    """Task.id is one of the JSON array bound as `name` (one parameter, however many)."""
    value = cast(literal_column("value"), Integer)
    return Task.id.in_(select(value).select_from(json_ints(bindparam(name, type_=String()))))
