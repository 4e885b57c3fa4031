"""One webhook request: signed per Standard Webhooks, to the address that was checked.

Only a 2xx answered in full within WEBHOOK_TIMEOUT succeeds. Redirects are not followed (a 3xx
is a failure like any other), at most MAX_READ bytes of an answer are read, proxies from the
environment are not used, and the connection goes to the address `webhook_urls` checked, with
the URL's host name in `Host` and TLS SNI (so certificates are verified against the name).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from taskapi import __version__
from taskapi.config import Settings
from taskapi.core.webhook_signing import signature_header
from taskapi.services.webhook_urls import Refused, destination

MAX_READ = 64 * 1024
SHOWN = 200  # characters of an answer's body kept in last_error
USER_AGENT = f"taskapi-webhooks/{__version__}"
# httpx logs every request's URL at INFO, and a webhook URL's path is often its credential
# (chat services' incoming webhooks): our own lines name the endpoint by id instead.
logging.getLogger("httpx").setLevel(logging.WARNING)


@dataclass(frozen=True, slots=True)
class Attempt:
    status_code: int | None  # None: no HTTP answer (refused, unreachable, timed out)
    error: str | None  # None on success
    latency_ms: int | None
    retry_after: float | None = None  # seconds, from the answer's Retry-After

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def new_client(settings: Settings) -> httpx.AsyncClient:
    """No keep-alive: the pool is keyed by the address connected to, not by the name in SNI,
    so a connection verified for one host name would carry the next request to another name
    on the same address (shared hosting, a CDN, a spoofed DNS answer) unverified."""
    return httpx.AsyncClient(
        follow_redirects=False, trust_env=False, timeout=settings.webhook_timeout,
        limits=httpx.Limits(max_connections=settings.webhook_concurrency,
                            max_keepalive_connections=0))


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # str.isdigit also takes "²", float() does not
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _shown(status: int, body: bytes) -> str:
    text = body[:SHOWN * 4].decode("utf-8", "replace")
    text = "".join(ch if ch.isprintable() else " " for ch in text).strip()[:SHOWN]
    return f"HTTP {status}" + (f": {text}" if text else "")


async def send(client: httpx.AsyncClient, settings: Settings, *, url: str, msg_id: str,
               body: bytes, secrets: list[str]) -> Attempt:
    try:
        target, address = await destination(url, settings.webhook_allow_private)
    except Refused as error:
        return Attempt(None, f"refused: {error}", None)
    timestamp = int(time.time())
    headers = {
        "Host": target.host_header, "User-Agent": USER_AGENT,
        "Content-Type": "application/json", "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, msg_id, timestamp, body),
    }
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    started = time.monotonic()
    try:
        async with asyncio.timeout(settings.webhook_timeout):
            async with client.stream("POST", target.url_for(address), content=body,
                                     headers=headers, extensions=extensions) as response:
                read = bytearray()
                async for chunk in response.aiter_raw():
                    read += chunk
                    if len(read) >= MAX_READ:
                        break
    except TimeoutError:
        return Attempt(None, f"no complete answer within {settings.webhook_timeout:g} s",
                       round(settings.webhook_timeout * 1000))
    except httpx.HTTPError as error:
        return Attempt(None, f"{type(error).__name__}: {error}"[:500],
                       round((time.monotonic() - started) * 1000))
    latency = round((time.monotonic() - started) * 1000)
    code = response.status_code
    if 200 <= code < 300:
        return Attempt(code, None, latency)
    return Attempt(code, _shown(code, bytes(read)), latency,
                   retry_after(response.headers.get("retry-after")))
