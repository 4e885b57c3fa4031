"""The served ASGI app: what `taskapi serve` (and `hypercorn taskapi.ops.asgi:app`) loads."""

import sys

from taskapi.config import ConfigError
from taskapi.ops import lean_connections

lean_connections.install()  # before hypercorn's first connection (decision 050)

try:
    from taskapi.app import create_app, settle_heap

    app = create_app()
    app.before_serving(settle_heap)  # after the app's own startup
except ConfigError as exc:  # one line, no traceback: the operator has a setting to fix
    print(f"taskapi: configuration error: {exc}", file=sys.stderr)
    raise SystemExit(2) from None
