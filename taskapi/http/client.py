"""Who is on the other end of a request: the client address (behind trusted proxies), the
bearer token it sent, and the /metrics gate."""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any

from quart import request

from taskapi.http.current import runtime


def client_ip() -> str:
    """The peer address, or the client named in X-Forwarded-For when the peer is a trusted
    proxy. The list is read right to left, skipping trusted hops, so a client cannot spoof
    its way around a rate limit by sending the header itself."""
    return resolve_client_ip(request.remote_addr or "unknown",
                             request.headers.get("X-Forwarded-For", ""),
                             runtime().settings.trusted_networks)


def resolve_client_ip(peer: str, forwarded_for: str, networks: tuple[Any, ...]) -> str:
    """client_ip() from its parts (also for the ASGI layer in front of Quart)."""
    if not networks or not _trusted(peer, networks):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, networks):
            return hop if _valid_ip(hop) else peer
    return hops[0] if hops else peer


def _valid_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _trusted(address: str, networks: tuple[Any, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    # A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d.
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return any(ip in network or (mapped is not None and mapped in network)
               for network in networks)


def may_scrape() -> bool:
    """/metrics: the client address is in METRICS_ALLOW, or the request carries the metrics
    token (compared in constant time)."""
    settings = runtime().settings
    expected, token = settings.metrics_bearer, bearer_token()
    if expected is not None and token is not None and hmac.compare_digest(
            token.encode(), expected.encode()):
        return True
    return _trusted(client_ip(), settings.metrics_networks)


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None
