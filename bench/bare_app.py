"""A bare Quart app with one JSON endpoint: the baseline of bench/tasks_load.py.

    .venv/bin/python bench/bare_app.py --port 5001 --workers 2

serves `GET /bare` → `{"status": "ok", "items": []}` with hypercorn configured like
`taskapi serve` (uvloop worker class, the same keep-alive, graceful timeout and no Server
header) but with no access log. `hypercorn --worker-class uvloop --workers 2
bench.bare_app:app` (from the repo root) serves the same app with hypercorn's defaults.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from quart import Quart

app = Quart(__name__)


@app.get("/bare")
async def bare() -> dict[str, object]:
    return {"status": "ok", "items": []}


def main() -> int:
    from hypercorn.config import Config
    from hypercorn.run import run

    parser = argparse.ArgumentParser(description="serve the bare Quart app with hypercorn")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    config = Config()
    # A file path: each spawned worker imports this module from its own directory.
    config.application_path = f"{Path(__file__).resolve()}:app"
    config.bind = [f"{args.host}:{args.port}"]
    config.workers = args.workers
    config.worker_class = "uvloop"
    config.accesslog = None
    config.graceful_timeout = 30
    config.include_server_header = False
    config.keep_alive_timeout = 75
    return run(config)


if __name__ == "__main__":
    sys.exit(main())
