"""A real SMTP server (aiosmtpd) for tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from tests.support.ports import free_port


class SMTPSink:
    """A real SMTP server (aiosmtpd) on loopback that keeps what it receives."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.recipients: list[list[str]] = []  # each message's envelope (RCPT TO)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        from email import message_from_bytes, policy

        message = message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append(message)
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"


@contextlib.contextmanager
def smtp_server(handler: SMTPSink) -> Iterator[int]:
    """aiosmtpd with `handler` on a free loopback port; yields the port."""
    from aiosmtpd.controller import Controller

    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()
