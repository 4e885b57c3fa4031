"""Where a webhook may be sent: http(s) URLs whose host resolves only to public addresses.

Checked when an endpoint is created or changed, and again before every delivery, after DNS
resolution: the delivery then connects to the address that was checked (the host name goes in
`Host` and TLS SNI), so a name that later resolves elsewhere (DNS rebinding) cannot move it.
Loopback, private, link-local, unique-local, multicast, reserved and documentation ranges are
refused, and a name is refused if any of its addresses is; WEBHOOK_ALLOW_PRIVATE lifts that.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
RESOLVE_TIMEOUT = 5.0


class Refused(ValueError):
    """The URL may not be used; the message says why (it is shown to the admin)."""


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str  # lower-case; an IPv6 literal without brackets
    port: int
    path: str  # path and query, at least "/"

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    def url_for(self, address: IP) -> str:
        """The URL with the host replaced by the address it was checked to resolve to."""
        host = f"[{address}]" if address.version == 6 else str(address)
        return f"{self.scheme}://{host}:{self.port}{self.path}"


def parse(url: str) -> Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise Refused(f"not a valid URL: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise Refused("only http and https URLs can receive webhooks")
    if not parts.hostname:
        raise Refused("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise Refused("credentials in the URL are not supported: receivers verify the "
                      "signature instead")
    if parts.fragment:
        raise Refused("a URL fragment is never sent: remove it")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, parts.hostname.lower(),
                  port or (443 if parts.scheme == "https" else 80), path)


def _not_public(address: IP) -> bool:
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    if mapped is not None:
        return _not_public(mapped)
    return not address.is_global or address.is_multicast


async def resolve(target: Target) -> list[IP]:
    try:
        return [ipaddress.ip_address(target.host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT):
            infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError) as error:
        raise Refused(f"the host {target.host!r} does not resolve ({error})") from None
    found: list[IP] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    if not found:
        raise Refused(f"the host {target.host!r} does not resolve")
    return found


async def destination(url: str, allow_private: bool) -> tuple[Target, IP]:
    """The URL's target and the address to connect to; Refused if it may not be used."""
    target = parse(url)
    addresses = await resolve(target)
    if not allow_private:
        inner = [str(address) for address in addresses if _not_public(address)]
        if inner:
            named = (f"{target.host} is" if [target.host] == inner
                     else f"{target.host!r} resolves to {', '.join(inner)},")
            raise Refused(f"{named} a loopback, private or otherwise non-public address "
                          "(WEBHOOK_ALLOW_PRIVATE lifts this for trusted setups)")
    return target, addresses[0]
