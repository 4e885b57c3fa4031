"""hypercorn.toml (in the working directory) against hypercorn and `taskapi serve`: every key
is one hypercorn knows (it ignores unknown ones silently), build_config() keeps the file's
values and lets --workers override them; uvloop and asyncpg import.

Run by scripts/check_docker_steps.sh (check "image") with the image root's python, its
environment only, in its WORKDIR.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import asyncpg  # noqa: F401  (importable in the image)
import uvloop  # noqa: F401  (importable in the image)
from hypercorn.config import Config

from taskapi.ops.server import build_config


def main() -> None:
    with open("hypercorn.toml", "rb") as fh:
        data = tomllib.load(fh)
    unknown = [k for k in data if not hasattr(Config, k)]
    assert not unknown, f"unknown hypercorn keys (silently ignored by hypercorn): {unknown}"
    c = build_config(Path("hypercorn.toml"))
    for key in ("bind", "worker_class", "workers", "graceful_timeout", "keep_alive_timeout",
                "include_server_header", "access_log_format"):
        assert getattr(c, key) == data[key], (key, getattr(c, key), data[key])
    assert build_config(Path("hypercorn.toml"), workers=3).workers == 3
    print("taskapi serve --config hypercorn.toml:",
          {k: data[k] for k in ("bind", "worker_class", "workers", "graceful_timeout")})


if __name__ == "__main__":
    main()
