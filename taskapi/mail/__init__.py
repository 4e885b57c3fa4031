"""Email: Jinja templates (text + HTML) and delivery over SMTP (aiosmtplib) or to .eml files."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from types import TracebackType
from typing import Any

import aiosmtplib
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from taskapi.config import Settings

log = logging.getLogger("taskapi.mail")

_env = Environment(
    loader=PackageLoader("taskapi.mail", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str


# Control characters (C0, DEL, C1) and the Unicode line and paragraph separators: anything
# that could end a header line, or hide in one, in a mail reader or a terminal.
_BREAKS = frozenset(("Cc", "Zl", "Zp"))


def one_line(text: str) -> str:
    """Header text from user input: every run of whitespace and control characters (CR, LF
    and the rest) folded into one space, so no value can start a header line of its own."""
    return " ".join("".join(" " if unicodedata.category(c) in _BREAKS else c
                            for c in text).split())


def render(template: str, **context: Any) -> Rendered:
    """`<template>.txt` (which sets `subject`, folded to one line) and `<template>.html`."""
    text_template = _env.get_template(f"{template}.txt")
    subject = one_line(str(text_template.make_module(context).subject))  # type: ignore[attr-defined]
    html = _env.get_template(f"{template}.html").render(context)
    return Rendered(subject, text_template.render(context), html)


def new_message_id(settings: Settings) -> str:
    domain = settings.mail_from.rsplit("@", 1)[-1].strip(" >") or "taskapi.localhost"
    return make_msgid(domain=domain)


def build_message(settings: Settings, *, to: str, subject: str, text: str, html: str,
                  message_id: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = one_line(subject)  # also rows recorded before render() folded it
    # `+0000`: formatdate(localtime=False) writes `-0000`, which RFC 5322 §3.3 reserves for
    # "the local zone is unknown".
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = message_id  # fixed at creation: a resend is recognisably the same
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]+")


def safe_name_part(text: str, limit: int = 80) -> str:
    """A piece of a file name from user text: only letters, digits and `._@+-` (runs of
    anything else become `_`), no leading dot, at most `limit` characters."""
    return _UNSAFE.sub("_", text).lstrip(".")[:limit] or "_"


def eml_path(outbox: Path, kind: str, recipient: str, now: datetime | None = None) -> Path:
    """`<UTC timestamp>-<kind>-<recipient>.eml`, sorted by time; never an existing file."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S.%fZ")
    stem = f"{stamp}-{safe_name_part(kind, 40)}-{safe_name_part(recipient)}"
    path, n = outbox / f"{stem}.eml", 1
    while path.exists():
        n += 1
        path = outbox / f"{stem}-{n}.eml"
    return path


def refused_for_good(error: BaseException) -> bool:
    """The server refused this email itself, permanently (RFC 5321: 5yz): every recipient,
    or the message after DATA. A retry would be refused again. A refused sender or login is
    not such a refusal: it is the settings, every email fails alike, and ops can fix it."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        return bool(error.recipients) and all(r.code >= 500 for r in error.recipients)
    if isinstance(error, aiosmtplib.SMTPRecipientRefused | aiosmtplib.SMTPDataError):
        return error.code >= 500
    return False


class Mailer:
    """Sends messages over a few reused SMTP connections (bounded concurrency), or writes
    them to `<data dir>/outbox/*.eml` when no SMTP host is configured."""

    def __init__(self, settings: Settings, connections: int = 4) -> None:
        self.settings = settings
        self.size = max(1, connections)
        self._idle: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
        self._open: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(self.size)

    async def __aenter__(self) -> Mailer:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        for client in self._open:
            with contextlib.suppress(Exception):
                await client.quit()
        self._open.clear()

    def _client(self) -> aiosmtplib.SMTP:
        settings = self.settings
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        client = aiosmtplib.SMTP(
            hostname=settings.smtp_host, port=settings.smtp_port,
            username=settings.smtp_username, password=password,
            use_tls=settings.smtp_tls, start_tls=settings.smtp_starttls and not settings.smtp_tls,
            timeout=30,
        )
        self._open.append(client)
        return client

    async def send(self, message: EmailMessage, kind: str = "email") -> None:
        if not self.settings.smtp_host:
            await asyncio.to_thread(self._write_eml, message, kind)
            return
        async with self._slots:
            client = self._idle.get_nowait() if not self._idle.empty() else self._client()
            try:
                if not client.is_connected:
                    await client.connect()
                await client.send_message(message)
            except BaseException:
                # A broken or interrupted (cancelled mid-transaction) connection is dropped;
                # the next send opens a fresh one.
                self._open.remove(client)
                with contextlib.suppress(Exception):
                    client.close()
                raise
            self._idle.put_nowait(client)
        log.debug("mail to %s sent: %s", message["To"], message["Subject"])

    def _write_eml(self, message: EmailMessage, kind: str) -> None:
        outbox = self.settings.data_dir / "outbox"
        outbox.mkdir(parents=True, exist_ok=True)
        path = eml_path(outbox, kind, str(message["To"]))
        tmp: Path = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(bytes(message))
        tmp.rename(path)  # readers never see half a file
        log.info("mail to %s written to %s (no SMTP host set): %s", message["To"], path,
                 message["Subject"])
