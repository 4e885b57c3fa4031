"""The image's CMD, live on 127.0.0.1:PORT: /readyz and /healthz answer (their X-Request-ID
is printed), and /metrics, from loopback, counts 2 live workers and the requests.

Usage: serve_metrics.py PORT (run by scripts/check_docker_steps.sh, check "image").
"""

# ruff: noqa: S310  (every URL opened is http://127.0.0.1:PORT/...)

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request
from http.client import HTTPResponse


def main() -> None:
    base = f"http://127.0.0.1:{sys.argv[1]}"
    for path in ("/readyz", "/healthz"):
        req = urllib.request.Request(base + path, headers={"X-Request-ID": "check-123"})
        r: HTTPResponse | urllib.error.HTTPError
        try:
            r = urllib.request.urlopen(req, timeout=5)
        except urllib.error.HTTPError as r_:
            r = r_
        print(f"GET {path} -> {r.status}, X-Request-ID={r.headers.get('X-Request-ID')}, "
              f"body={r.read()[:200]!r}")
    for _ in range(60):  # healthy = one worker up; the second may still be starting
        text = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
        if "taskapi_http_workers 2.0" in text:
            break
        time.sleep(0.5)
    lines = [line for line in text.splitlines()
             if line.startswith(("taskapi_http_workers", "taskapi_http_requests_total",
                                 "taskapi_jobs_queued", "taskapi_email_outbox"))]
    print("\n".join(lines[:12]))
    assert "taskapi_http_workers 2.0" in text, "expected 2 live workers"


if __name__ == "__main__":
    main()
