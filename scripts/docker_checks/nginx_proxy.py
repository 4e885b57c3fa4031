"""deploy/nginx.conf, live: nginx on 127.0.0.1:PORT in front of echo_upstream.py. Forwarded
headers, X-Request-ID (generated, kept, replaced when malformed; one in the answer),
upstream keep-alive, gzip, the 1 MiB body limit (413 problem+json), /metrics refused, 502
problem+json once the upstream is gone (this script kills it), /nginx-health.

Usage: nginx_proxy.py PORT UPSTREAM_PID UPSTREAM_PORT (run by scripts/check_docker_steps.sh,
check "nginx"). Prints one ok/FAIL line per check; exits 1 if any failed.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import signal
import socket
import sys
import time
from typing import Any

Answer = tuple[http.client.HTTPResponse, bytes]


def wait_listening(*ports: int) -> None:
    """Both listening before the first request (else a 502)."""
    for p in ports:
        for _ in range(50):
            try:
                socket.create_connection(("127.0.0.1", p), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)


def main() -> None:
    port, upstream_pid, upstream_port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    wait_listening(upstream_port, port)
    errors = []

    def need(cond: object, msg: str) -> None:
        print(("ok   " if cond else "FAIL ") + msg)
        if not cond:
            errors.append(msg)

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def req(method: str, path: str, headers: dict[str, str] | None = None,
            body: bytes | None = None, c: http.client.HTTPConnection | None = None) -> Answer:
        c = c or conn
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r, data

    def seen(data: bytes) -> tuple[dict[str, str], dict[str, Any]]:
        """(the headers the upstream received, its whole answer)"""
        return {k: v for k, v in json.loads(data)["headers"]}, json.loads(data)

    r, data = req("GET", "/x", {"X-Forwarded-For": "6.6.6.6", "X-Real-IP": "6.6.6.6"})
    h, j = seen(data)
    need(h.get("x-forwarded-for") == "127.0.0.1",
         f"X-Forwarded-For overwritten: {h.get('x-forwarded-for')}")
    need(h.get("x-real-ip") == "127.0.0.1", "X-Real-IP is the peer")
    need(h.get("x-forwarded-proto") == "http", "X-Forwarded-Proto $scheme")
    need(re.fullmatch(r"[0-9a-f]{32}", h.get("x-request-id", "")),
         f"X-Request-ID generated: {h.get('x-request-id')}")
    need(r.headers.get_all("X-Request-ID") == [h.get("x-request-id")],
         f"one X-Request-ID in the answer, same as upstream's: "
         f"{r.headers.get_all('X-Request-ID')}")
    need(j["version"] == "HTTP/1.1" and "connection" not in h,
         "upstream HTTP/1.1 without Connection header")
    need(r.headers.get("Server") == "nginx", f"server_tokens off: Server={r.headers.get('Server')}")
    port1 = j["peer_port"]
    r, data = req("GET", "/x", {"X-Request-ID": "abc-123.Z:9"})
    h, j = seen(data)
    need(h.get("x-request-id") == "abc-123.Z:9" and r.headers.get("X-Request-ID") == "abc-123.Z:9",
         "client X-Request-ID kept")
    need(j["peer_port"] == port1,
         f"upstream keep-alive connection reused ({port1} -> {j['peer_port']})")
    r, data = req("GET", "/x", {"X-Request-ID": "bad id <script>"})
    h, _ = seen(data)
    need(re.fullmatch(r"[0-9a-f]{32}", h.get("x-request-id", "")),
         f"malformed X-Request-ID replaced: {h.get('x-request-id')}")
    for path, ctype in (("/x", "application/json"), ("/problem", "application/problem+json")):
        r, data = req("GET", path, {"Accept-Encoding": "gzip"})
        need(r.headers.get("Content-Encoding") == "gzip" and json.loads(gzip.decompress(data)),
             f"gzip for {ctype}")
    r, data = req("POST", "/x", {"Content-Type": "application/json"}, b"x" * 1048576)
    need(r.status == 200 and json.loads(data)["body_len"] == 1048576,
         f"1 MiB body passes: {r.status}")
    c2 = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        r, data = req("POST", "/x", {"Content-Type": "application/json"}, b"x" * 1048577, c=c2)
    except (BrokenPipeError, ConnectionResetError):  # nginx may answer and close first
        r = c2.getresponse()
        data = r.read()
    need(r.status == 413
         and r.headers.get("Content-Type", "").startswith("application/problem+json")
         and json.loads(data)["status"] == 413 and r.headers.get("X-Request-ID"),
         f"1 MiB + 1 -> 413 problem+json: {r.status} {r.headers.get('Content-Type')}")
    for path in ("/metrics", "//metrics", "/%6detrics?x=1"):
        r, data = req("GET", path)
        need(r.status == 404
             and r.headers.get("Content-Type", "").startswith("application/problem+json"),
             f"{path} refused by nginx (404 problem+json), never proxied: {r.status}")
    os.kill(upstream_pid, signal.SIGTERM)
    time.sleep(0.3)
    c3 = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    r, data = req("GET", "/x", c=c3)
    need(r.status == 502
         and r.headers.get("Content-Type", "").startswith("application/problem+json")
         and r.headers.get("X-Request-ID"),
         f"upstream down -> 502 problem+json: {r.status} {data[:80]!r}")
    c4 = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    r, data = req("GET", "/nginx-health", c=c4)
    need(r.status == 200, "/nginx-health answered by nginx")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
