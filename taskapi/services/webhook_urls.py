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
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
RESOLVE_TIMEOUT = 5.0
DEFAULT_PORTS = {"http": 80, "https": 443}
# Whitespace and control characters: urlsplit drops some (tab, CR, LF) and httpx encodes the
# rest, so the URL requested would not be the one checked and shown.
_UNSENDABLE = re.compile(r"[\x00-\x20\x7f]")
# IPv6 forms whose last 32 bits are an IPv4 address a translator reaches (NAT64, RFC 6052;
# IPv4-compatible; IPv4-translated, SIIT): that address is what must be public.
_EMBEDDING = tuple(ipaddress.IPv6Network(net) for net in ("64:ff9b::/96", "::/96",
                                                          "::ffff:0:0:0/96"))
# Never public, though Python's is_global says otherwise: local-use NAT64 (RFC 8215) and the
# deprecated site-local range (RFC 3879), still routed inside some networks.
_INNER_V6 = tuple(ipaddress.IPv6Network(net) for net in ("64:ff9b:1::/48", "fec0::/10"))


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
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    def url_for(self, address: IP) -> str:
        """The URL with the host replaced by the address it was checked to resolve to."""
        host = f"[{address}]" if address.version == 6 else str(address)
        return f"{self.scheme}://{host}:{self.port}{self.path}"


def _host(hostname: str) -> str:
    """An IP literal as is; a name in its ASCII (IDNA) form, as DNS, Host and SNI take it."""
    try:
        ipaddress.ip_address(hostname)
        return hostname
    except ValueError:
        pass
    try:
        return hostname.encode("idna").decode("ascii")
    except UnicodeError as error:
        raise Refused(f"{hostname!r} is not a valid host name ({error})") from None


def parse(url: str) -> Target:
    if _UNSENDABLE.search(url):
        raise Refused("the URL contains whitespace or control characters: percent-encode "
                      "them")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise Refused(f"not a valid URL: {error}") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise Refused("only http and https URLs can receive webhooks")
    if not parts.hostname:
        raise Refused("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise Refused("credentials in the URL are not supported: receivers verify the "
                      "signature instead")
    if parts.fragment or "#" in url:
        raise Refused("a URL fragment is never sent: remove it")
    if port == 0:
        raise Refused("port 0 cannot receive webhooks")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, _host(parts.hostname.lower()),
                  port if port is not None else DEFAULT_PORTS[parts.scheme], path)


def _embedded(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:  # 6to4 (2002::/16): relayed to that IPv4 address
        return address.sixtofour
    if any(address in net for net in _EMBEDDING):
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


def _not_public(address: IP) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if any(address in net for net in _INNER_V6):
            return True
        inner = _embedded(address)
        if inner is not None:
            return _not_public(inner)
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
        if any(_not_public(address) for address in addresses):
            # A name's addresses are not told: that would map the service's own network.
            named = (f"{target.host} is" if [target.host] == [str(a) for a in addresses]
                     else f"{target.host!r} resolves to")
            raise Refused(f"{named} a loopback, private or otherwise non-public address "
                          "(WEBHOOK_ALLOW_PRIVATE lifts this for trusted setups)")
    return target, addresses[0]
