"""Run the alembic migrations programmatically (`taskapi db upgrade`, dev `serve`, tests)."""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config

import taskapi


def migrations_dir() -> Path:
    """TASKAPI_MIGRATIONS_DIR, else migrations/ beside the package (a checkout) or in the working
    directory (the Docker image's /app)."""
    candidates = [
        os.environ.get("TASKAPI_MIGRATIONS_DIR"),
        str(Path(taskapi.__file__).resolve().parent.parent / "migrations"),
        str(Path.cwd() / "migrations"),
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "env.py").exists():
            return Path(candidate)
    raise FileNotFoundError("migrations directory not found; set TASKAPI_MIGRATIONS_DIR")


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Blocking; it runs its own event loop, so call it from a thread inside async code."""
    command.upgrade(alembic_config(database_url), revision)
