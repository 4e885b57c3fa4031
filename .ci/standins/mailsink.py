"""The axllent/mailpit stand-in: an SMTP sink on 1025 and its messages as JSON on 8025.

SMTP without STARTTLS or AUTH (mailpit's default); GET /api/v1/messages answers in mailpit's
shape, as far as .ci/image reads it: {"total": N, "messages": [{"ID", "Subject", "From",
"To": [{"Address"}], "Created"}]}, newest first. Debian's python3-aiosmtpd, the stdlib else.
"""

from __future__ import annotations

import datetime
import json
import signal
import threading
from email import message_from_bytes, policy
from email.utils import getaddresses
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

MESSAGES: list[dict[str, Any]] = []
LOCK = threading.Lock()


class Sink:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        entry = {
            "Subject": str(message.get("Subject", "")),
            "From": {"Address": envelope.mail_from},
            "To": [{"Address": a} for _, a in getaddresses(message.get_all("To", []))],
            "Created": datetime.datetime.now(datetime.UTC).isoformat(),
        }
        with LOCK:
            entry["ID"] = str(len(MESSAGES) + 1)
            MESSAGES.insert(0, entry)
        print(f"mail sink: {entry['Subject']!r} to {envelope.rcpt_tos}", flush=True)
        return "250 OK"


class Api(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.split("?")[0] not in ("/api/v1/messages", "/"):
            self.send_error(404)
            return
        with LOCK:
            body = json.dumps({"total": len(MESSAGES), "messages": MESSAGES}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    # Inside its container: every interface of the container, reached by the compose network.
    smtp = Controller(Sink(), hostname="0.0.0.0", port=1025)  # noqa: S104
    smtp.start()
    http = ThreadingHTTPServer(("0.0.0.0", 8025), Api)  # noqa: S104
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=http.shutdown).start())
    print("mail sink: SMTP on 1025, messages on http://0.0.0.0:8025/api/v1/messages", flush=True)
    try:
        http.serve_forever()
    finally:
        smtp.stop()


if __name__ == "__main__":
    main()
