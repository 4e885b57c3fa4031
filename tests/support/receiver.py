"""A real webhook receiver: `python receiver.py PORT LOG` serves HTTP on 127.0.0.1:PORT and
appends every request it gets to LOG as a JSON line (path, headers, body, time).

What it answers depends on the path: `/ok` 200; `/gone` 410; `/status/<code>` that code (with
`?retry_after=N`, a Retry-After header); `/redirect` a 302 to /ok; `/big` 200 with a 1 MiB
body; `/slow` 200 after 3 s. Run as a separate process so that it can be stopped and started again (a receiver down
for a while), as a real one would be.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


def main(port: int, log: Path) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            parts = urlsplit(self.path)
            with log.open("a") as fh:
                fh.write(json.dumps({"path": parts.path, "headers": dict(self.headers.items()),
                                     "body": body.decode(), "t": time.time()}) + "\n")
            status, headers, payload = 200, {}, b"thanks"
            if parts.path == "/gone":
                status = 410
            elif parts.path.startswith("/status/"):
                status = int(parts.path.rsplit("/", 1)[1])
                for value in parse_qs(parts.query).get("retry_after", []):
                    headers["Retry-After"] = value
            elif parts.path == "/redirect":
                status, headers = 302, {"Location": "/ok"}
            elif parts.path == "/big":
                payload = b"x" * (1024 * 1024)
            elif parts.path == "/slow":
                time.sleep(3)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 128  # socketserver's 5 drops connects from 20 parallel senders

    server = Server(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


class Receiver:
    """The receiver as a process the test starts, stops and starts again on one port."""

    def __init__(self, directory: Path) -> None:
        from tests.support.ports import free_port

        self.port = free_port()
        self.log = directory / f"receiver-{self.port}.jsonl"
        self.log.touch()
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, path: str = "/ok") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> Receiver:
        from tests.support.ports import port_open

        self.process = subprocess.Popen([sys.executable, __file__, str(self.port), str(self.log)])
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", self.port):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("the webhook receiver did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def requests(self, path: str | None = None) -> list[dict[str, object]]:
        lines = [json.loads(line) for line in self.log.read_text().splitlines() if line]
        return [r for r in lines if path is None or r["path"] == path]


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))
