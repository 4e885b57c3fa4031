"""CPU per access-log line: hypercorn's own logger against ours (decision 037).

    .venv/bin/python bench/access_log.py [--lines 20000] [--repeats 5]

Both write to a real file (under a temp dir) through taskapi's log setup at INFO, with the
format `taskapi serve` uses, for a request and response shaped like a cached `/tasks/mine` (the
headers a browser and nginx send), inside a running event loop as in a worker. Reports the
median CPU microseconds per line (process time) of each and the ratio; the two sides alternate,
so a noisy machine affects both. It writes nothing to bench/results: the numbers go in the
closing note and bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from hypercorn.config import Config
from hypercorn.logging import Logger

from taskapi.core.logs import configure_logging
from taskapi.ops.access_log import AccessLogger
from taskapi.ops.server import DEFAULTS

SCOPE = {
    "type": "http", "http_version": "1.1", "method": "GET", "scheme": "http",
    "path": "/tasks/mine", "query_string": b"", "client": ("127.0.0.1", 50123),
    "headers": [(b"host", b"api.example"), (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64)"),
                (b"accept", b"application/json"), (b"accept-encoding", b"gzip, br"),
                (b"authorization", b"Bearer " + b"x" * 300),
                (b"x-forwarded-for", b"203.0.113.9"), (b"x-request-id", b"0123456789abcdef")],
}
RESPONSE = {
    "status": 200,
    "headers": [(b"etag", b'"v1-2-3"'), (b"cache-control", b"private, no-cache"),
                (b"x-content-type-options", b"nosniff"), (b"x-request-id", b"0123456789abcdef"),
                (b"content-type", b"application/json"), (b"content-length", b"1834")],
}


async def _run(logger: Logger, lines: int) -> float:
    start = time.process_time()
    for _ in range(lines):
        await logger.access(SCOPE, RESPONSE, 0.000321)  # type: ignore[arg-type]
    logging.getLogger().handlers[0].flush()
    return (time.process_time() - start) / lines * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = (Path(tmp) / "log").open("w")
        sys.stderr, real_stderr = out, sys.stderr
        configure_logging("INFO")
        config = Config.from_mapping({"access_log_format": DEFAULTS["access_log_format"]})
        config.accesslog = logging.getLogger("hypercorn.access")
        theirs, ours = Logger(config), AccessLogger(config)
        results: dict[str, list[float]] = {"hypercorn": [], "taskapi": []}
        for _ in range(args.repeats):
            results["hypercorn"].append(asyncio.run(_run(theirs, args.lines)))
            results["taskapi"].append(asyncio.run(_run(ours, args.lines)))
        sys.stderr = real_stderr
        out.close()
    before, after = (statistics.median(results[k]) for k in ("hypercorn", "taskapi"))
    for name, values in results.items():
        print(f"{name:10} median {statistics.median(values):6.1f} us/line  "
              f"runs {' '.join(f'{v:.1f}' for v in values)}")
    print(f"ratio {before / after:.1f}x less CPU per line")
    return 0


if __name__ == "__main__":
    sys.exit(main())
