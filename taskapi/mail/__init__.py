"""Email: Jinja templates (text + HTML) → EmailMessage → SMTP (aiosmtplib) or .eml files."""

from __future__ import annotations

import logging
import uuid
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

import aiosmtplib
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from settings import Settings

log = logging.getLogger("taskapi.mail")

_env = Environment(
    loader=PackageLoader("taskapi.mail", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def build_message(settings: Settings, to: str, template: str, **context: Any) -> EmailMessage:
    """`<template>.txt` (which sets `subject`) and `<template>.html` → a multipart message."""
    text_template = _env.get_template(f"{template}.txt")
    subject = str(text_template.make_module(context).subject).strip()  # type: ignore[attr-defined]
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    domain = settings.mail_from.rsplit("@", 1)[-1].strip(" >") or "taskapi.localhost"
    message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(text_template.render(context))
    message.add_alternative(_env.get_template(f"{template}.html").render(context), subtype="html")
    return message


async def send(settings: Settings, message: EmailMessage) -> None:
    """Deliver one message: SMTP when a host is configured, else an .eml in the outbox dir."""
    if not settings.smtp_host:
        outbox = settings.data_dir / "outbox"
        outbox.mkdir(parents=True, exist_ok=True)
        path = outbox / f"{uuid.uuid4().hex}.eml"
        _write(path, message)
        log.info("mail to %s written to %s (no SMTP host set): %s", message["To"], path,
                 message["Subject"])
        return
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    await aiosmtplib.send(
        message,
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username,
        password=password,
        use_tls=settings.smtp_tls,
        start_tls=settings.smtp_starttls and not settings.smtp_tls,
        timeout=30,
    )
    log.info("mail to %s sent: %s", message["To"], message["Subject"])


def _write(path: Path, message: EmailMessage) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(bytes(message))
    tmp.rename(path)  # readers never see half a file
