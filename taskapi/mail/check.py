"""The SMTP settings checked against the server: connect, EHLO, STARTTLS offered (and taken)
when TASKAPI_SMTP_STARTTLS is on, the login when a username is set.

The worker runs it once when it starts, in the background (`check_smtp_in_background`): a
mismatch is one log line naming the setting to change, instead of a failure per email and
attempt. Nothing is sent; emails wait in the outbox and are retried as always.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl

import aiosmtplib

from taskapi.config import Settings

log = logging.getLogger("taskapi.mail")

CHECK_TIMEOUT = 5.0  # seconds for the connection and each reply
_MEANWHILE = "emails wait in the outbox and are retried"


async def check_smtp(settings: Settings) -> tuple[bool, str]:
    """(settings fit the server, one line saying so or what to change). No SMTP host: ok."""
    host, port = settings.smtp_host, settings.smtp_port
    if not host:
        return True, "no TASKAPI_SMTP_HOST: emails are written to the data dir's outbox/"
    where, timeout = f"{host}:{port}", CHECK_TIMEOUT
    client = aiosmtplib.SMTP(hostname=host, port=port, use_tls=settings.smtp_tls,
                             start_tls=False, timeout=timeout)
    try:
        try:
            await client.connect()
        except aiosmtplib.SMTPTimeoutError as exc:
            if isinstance(exc.__cause__, aiosmtplib.SMTPTimeoutError) and not settings.smtp_tls:
                # Connected, then silence: a server that waits for a TLS ClientHello.
                return False, (f"{where} accepted the connection but sent no greeting within "
                               f"{timeout:g}s: if it expects TLS from the first byte (usually "
                               f"port 465), set TASKAPI_SMTP_TLS=true, or check "
                               f"TASKAPI_SMTP_HOST and TASKAPI_SMTP_PORT; {_MEANWHILE}")
            return False, (f"cannot connect to {where} (no answer within {timeout:g}s): check "
                           f"TASKAPI_SMTP_HOST and TASKAPI_SMTP_PORT (and a firewall between); "
                           f"{_MEANWHILE}")
        except (aiosmtplib.SMTPException, OSError) as exc:
            if settings.smtp_tls and _is_tls_error(exc):
                return False, (f"TLS with {where} failed ({_reason(exc)}): if the server speaks "
                               f"plain SMTP first, set TASKAPI_SMTP_TLS=false; {_MEANWHILE}")
            return False, (f"cannot connect to {where} ({_reason(exc)}): check "
                           f"TASKAPI_SMTP_HOST and TASKAPI_SMTP_PORT; {_MEANWHILE}")
        await client.ehlo()
        done = ["TLS" if settings.smtp_tls else "plain"]
        if settings.smtp_starttls and not settings.smtp_tls:
            if not client.supports_extension("starttls"):
                return False, (f"{where} does not offer STARTTLS: set "
                               f"TASKAPI_SMTP_STARTTLS=false to send without TLS (a local sink "
                               f"or a relay you trust), or set TASKAPI_SMTP_HOST/PORT to a "
                               f"server that offers it; until then every email fails and "
                               f"waits in the outbox to be retried")
            try:
                await client.starttls()
            except (aiosmtplib.SMTPException, OSError) as exc:
                return False, (f"STARTTLS with {where} failed ({_reason(exc)}): check "
                               f"TASKAPI_SMTP_HOST (the name on its certificate) or set "
                               f"TASKAPI_SMTP_STARTTLS=false; {_MEANWHILE}")
            done = ["STARTTLS"]
        if settings.smtp_username:
            password = (settings.smtp_password.get_secret_value()
                        if settings.smtp_password else "")
            try:
                await client.login(settings.smtp_username, password)
            except (aiosmtplib.SMTPException, OSError) as exc:
                return False, (f"{where} refused the login of {settings.smtp_username!r} "
                               f"({_reason(exc)}): check TASKAPI_SMTP_USERNAME and "
                               f"TASKAPI_SMTP_PASSWORD; {_MEANWHILE}")
            done.append("login")
        return True, f"{where} ok ({', '.join(done)})"
    except (aiosmtplib.SMTPException, OSError) as exc:
        return False, f"{where} failed the check ({_reason(exc)}); {_MEANWHILE}"
    finally:
        with contextlib.suppress(Exception):
            if client.is_connected:
                await client.quit()
        client.close()


def _is_tls_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "ssl" in str(exc).lower() or "tls" in str(exc).lower()


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__
    if isinstance(cause, OSError) and cause.strerror:  # "Connection refused", not the wrapping
        return cause.strerror
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())[:200]


async def log_smtp_check(settings: Settings) -> None:
    """Check, then log one line: INFO when the settings fit, WARNING naming what to change."""
    try:
        fits, line = await check_smtp(settings)
    except asyncio.CancelledError:
        raise
    except Exception:  # the check must never take the worker down
        log.exception("SMTP check: failed unexpectedly")
        return
    if fits:
        log.info("SMTP check: %s", line)
    else:
        log.warning("SMTP check: %s", line)


def check_smtp_in_background(settings: Settings) -> asyncio.Task[None] | None:
    """Start the check without waiting for it (the worker's start is not held up); the caller
    cancels the task on shutdown. None when there is no SMTP host to check."""
    if not settings.smtp_host:
        return None
    return asyncio.get_running_loop().create_task(log_smtp_check(settings),
                                                  name="smtp-check")
