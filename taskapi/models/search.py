"""The search index of tasks' text, kept by triggers in each write's own transaction
(decision 047).

`q` is a case-insensitive substring of a task's title or description. Both databases index
that with trigrams, so a search of three characters or more looks up the index instead of
reading every row:

- SQLite: `task_search`, an FTS5 table with the trigram tokenizer over the tasks' own rows
  (external content: the text is not stored twice). A phrase of the query's trigrams matches
  every row holding the substring in one column, folding case like LIKE and further (also
  non-ASCII letters), so its matches are a superset that the list query's ILIKE narrows.
- PostgreSQL: `task_search`, a side table of (task_id, title, description) with pg_trgm GIN
  indexes, which ILIKE '%…%' uses. A side table rather than indexes on tasks: a status or
  assignee write leaves it alone (a new row version of tasks would re-insert every trigram
  of the text into both GIN indexes).

Neither is a model: create_all runs SEARCH_DDL (create_with_schema), migration 0014
runs it and backfills in batches, and autogenerate leaves the tables out (migrations/env.py).
A later SQLite migration that copies tasks (a batch ALTER) drops its triggers and must run
SEARCH_DDL again.
"""

from __future__ import annotations

from taskapi.models.base import create_with_schema
from taskapi.models.task import EXPRESSION_INDEXES

SEARCH_TABLES = frozenset({"task_search", "task_search_data", "task_search_idx",
                           "task_search_config", "task_search_docsize",
                           "task_search_content"})
MIN_INDEXED = 3  # a trigram: a shorter query has none to look up

_SQLITE_DELETE = ("INSERT INTO task_search (task_search, rowid, title, description) "
                  "VALUES ('delete', OLD.id, OLD.title, OLD.description);")
_SQLITE_INSERT = ("INSERT INTO task_search (rowid, title, description) "
                  "VALUES (NEW.id, NEW.title, NEW.description);")

SQLITE_SEARCH = [
    "CREATE VIRTUAL TABLE IF NOT EXISTS task_search USING fts5(title, description, "
    "content='tasks', content_rowid='id', tokenize='trigram', columnsize=0)",
    f"CREATE TRIGGER IF NOT EXISTS task_search_insert AFTER INSERT ON tasks BEGIN "
    f"{_SQLITE_INSERT} END",
    f"CREATE TRIGGER IF NOT EXISTS task_search_delete AFTER DELETE ON tasks BEGIN "
    f"{_SQLITE_DELETE} END",
    "CREATE TRIGGER IF NOT EXISTS task_search_update AFTER UPDATE OF title, description "
    "ON tasks WHEN OLD.title IS NOT NEW.title OR OLD.description IS NOT NEW.description "
    f"BEGIN {_SQLITE_DELETE} {_SQLITE_INSERT} END",
]

POSTGRESQL_SEARCH = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    """CREATE TABLE IF NOT EXISTS task_search (
      task_id integer PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
      title text NOT NULL,
      description text NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS ix_task_search_title ON task_search "
    "USING gin (title gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS ix_task_search_description ON task_search "
    "USING gin (description gin_trgm_ops)",
    """CREATE OR REPLACE FUNCTION task_search_track() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO task_search AS s (task_id, title, description)
      VALUES (NEW.id, NEW.title, NEW.description)
      ON CONFLICT (task_id) DO UPDATE SET title = EXCLUDED.title,
        description = EXCLUDED.description;
      RETURN NULL;
    END $$""",
    "DROP TRIGGER IF EXISTS task_search_track ON tasks",
    """CREATE TRIGGER task_search_track AFTER INSERT OR UPDATE OF title, description ON tasks
    FOR EACH ROW EXECUTE FUNCTION task_search_track()""",
]

SEARCH_DDL = {"sqlite": SQLITE_SEARCH, "postgresql": POSTGRESQL_SEARCH}

DROP_SEARCH_DDL = {
    "sqlite": [*(f"DROP TRIGGER IF EXISTS task_search_{op}"
                 for op in ("insert", "delete", "update")),
               "DROP TABLE IF EXISTS task_search"],
    "postgresql": ["DROP TRIGGER IF EXISTS task_search_track ON tasks",
                   "DROP FUNCTION IF EXISTS task_search_track()",
                   "DROP TABLE IF EXISTS task_search"],
}

# One batch of the backfill: the tasks after :last_id, in id order.
BACKFILL = {
    "sqlite": "INSERT INTO task_search (rowid, title, description) "
              "SELECT id, title, description FROM tasks WHERE id > :last_id "
              "ORDER BY id LIMIT :batch",
    "postgresql": "INSERT INTO task_search (task_id, title, description) "
                  "SELECT id, title, description FROM tasks WHERE id > :last_id "
                  "ORDER BY id LIMIT :batch ON CONFLICT (task_id) DO NOTHING",
}


def compared(name: str | None, type_: str) -> bool:
    """Whether autogenerate compares a schema object: not the search tables (DDL here, not
    models) and not the expression indexes (neither database reflects them as the models
    write them; migration 0013 creates them from the models)."""
    if type_ == "table":
        return name not in SEARCH_TABLES
    return not (type_ == "index" and (name in EXPRESSION_INDEXES
                                      or str(name).startswith("ix_task_search")))


def fts_phrase(text: str) -> str:
    """The query as one FTS5 string (a phrase of its trigrams): nothing in it is syntax."""
    return '"' + text.replace('"', '""') + '"'


create_with_schema(SEARCH_DDL)
