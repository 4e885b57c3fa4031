"""A small HTTP/1.1 upstream for the nginx checks, on 127.0.0.1:PORT until killed: every
GET/POST/PUT is answered 200 with JSON of the request headers as received, the HTTP version,
the peer port (to see keep-alive reuse), the body length, and 2,000 bytes of padding (for
gzip); `application/problem+json` under /problem; `X-Request-ID: from-upstream`.

Usage: echo_upstream.py PORT (run by scripts/check_docker_steps.sh, check "nginx").
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        body = json.dumps({"headers": [[k.lower(), v] for k, v in self.headers.items()],
                           "version": self.request_version, "peer_port": self.client_address[1],
                           "body_len": n, "pad": "x" * 2000}).encode()
        self.send_response(200)
        ctype = ("application/problem+json" if self.path.startswith("/problem")
                 else "application/json")
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Request-ID", "from-upstream")
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Echo).serve_forever()
