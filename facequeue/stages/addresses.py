"""Address policy for downloads (SSRF guard): which hosts and IPs a download may reach.

The check is made on the host aiohttp really connects to: `connect_host` normalises a URL's
host the way yarl does for aiohttp (IDNA/UTS-46: full-width digits, ideographic dots, case),
`check_url` refuses bad schemes and disallowed IP literals before any connection, and
`GuardedConnector` checks every address it is about to connect to (names once resolved, IP
literals too) while the `guard` context variable holds a policy. IPv6 transition forms
(IPv4-mapped/compatible, 6to4, NAT64, Teredo) are judged by the IPv4 address they embed.
"""

from __future__ import annotations

import contextvars
import ipaddress
from collections.abc import Sequence
from typing import Any

import aiohttp
from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the IPv4 address is the last 32 bits
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: site-specific, never public
V4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d


class BlockedAddress(OSError):
    """A host resolved to an address the download policy refuses."""


def _embedded_v4(addr: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 transition address leads to (empty for plain IPv6)."""
    if addr.ipv4_mapped:
        return [addr.ipv4_mapped]
    if addr.sixtofour:
        return [addr.sixtofour]
    if addr.teredo:
        return list(addr.teredo)  # (server, client): both are reached through it
    if addr in NAT64 or (addr in V4_COMPATIBLE and int(addr) > 1):
        return [ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)]
    return []


class AddressPolicy:
    def __init__(self, allow_private: bool, allowed_networks: Sequence[str] = ()):
        self.allow_private = allow_private
        self.networks = [ipaddress.ip_network(n, strict=False) for n in allowed_networks]

    def refuses(self, ip: str) -> str | None:
        """Why this address is refused ("loopback", "private"...), or None if allowed."""
        try:
            addr = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return "unparsable"
        return self._refuses(addr)

    def _refuses(self, addr: IPAddress) -> str | None:
        if any(addr.version == net.version and addr in net for net in self.networks):
            return None
        if isinstance(addr, ipaddress.IPv6Address):
            if addr in NAT64_LOCAL and not self.allow_private:
                return "private (local NAT64)"
            inner = _embedded_v4(addr)
            if inner:  # judged by what it embeds, whatever Python thinks of the prefix
                for v4 in inner:
                    why = self._refuses(v4)
                    if why:
                        return f"{why} (embeds {v4})"
                return None
        if addr.is_multicast:
            return "multicast"
        if self.allow_private or addr.is_global:
            return None
        return next(
            (
                label.replace("_", "-")
                for label in ("loopback", "link_local", "private", "unspecified", "reserved")
                if getattr(addr, f"is_{label}")
            ),
            "non-global",
        )


# Set by Downloader.fetch (and by search calls off their configured origin) for the duration
# of a request: the connector checks addresses only then, so API calls to configured
# endpoints through the same session are not affected.
guard: contextvars.ContextVar[AddressPolicy | None] = contextvars.ContextVar(
    "facequeue_download_guard", default=None
)


class GuardedConnector(aiohttp.TCPConnector):
    """A TCPConnector that refuses to connect to an address the current policy refuses.

    `_resolve_host` is where aiohttp turns the (already IDNA-normalised) host into the
    addresses it connects to, for names and IP literals alike, on every hop and retry.
    """

    async def _resolve_host(self, host: str, port: int, traces: Any = None) -> Any:
        infos = await super()._resolve_host(host, port, traces=traces)
        policy = guard.get()
        if policy is not None:
            for info in infos:
                why = policy.refuses(info["host"])
                if why:
                    raise BlockedAddress(f"{host} is a {why} address ({info['host']})")
        return infos


def connect_host(url: str | URL) -> tuple[str, str, int | None]:
    """(scheme, host, port) as aiohttp will use them; ValueError if the URL is invalid."""
    u = url if isinstance(url, URL) else URL(url)
    return u.scheme.lower(), u.host or "", u.port


def check_url(policy: AddressPolicy, url: str | URL) -> tuple[str, str] | None:
    """(reason, detail) if the URL may not be fetched before any connection, else None."""
    try:
        scheme, host, _ = connect_host(url)
    except (ValueError, TypeError) as exc:
        return "bad_url", f"invalid URL: {exc}"
    if scheme not in ("http", "https"):
        return "bad_scheme", f"scheme {scheme or '(none)'!r} is not http(s)"
    if not host:
        return "bad_url", "URL has no host"
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None  # a name: checked by the connector once resolved
    why = policy.refuses(host)
    return ("private_address", f"{host} is a {why} address") if why else None


def _origin(url: str) -> tuple[str, str, int | None]:
    return connect_host(url)


async def get_following(
    session: aiohttp.ClientSession,
    policy: AddressPolicy,
    url: str,
    *,
    params: dict[str, Any] | None,
    headers: dict[str, str],
    timeout: aiohttp.ClientTimeout,
    max_redirects: int = 5,
) -> aiohttp.ClientResponse:
    """GET an API endpoint, following redirects by hand: its own origin is trusted as
    configured; a hop to any other origin is checked by `policy` (URL and connected
    address) and gets no headers but User-Agent/Accept, so API keys never cross origins."""
    home = _origin(url)
    for _ in range(max_redirects + 1):
        here = _origin(url)
        token = None
        hop_headers = headers
        if here != home:
            hop_headers = {
                k: v for k, v in headers.items() if k.lower() in ("user-agent", "accept")
            }
            bad = check_url(policy, url)
            if bad:
                raise BlockedAddress(f"redirect to {here[1]} refused: {bad[1]}")
            token = guard.set(policy)
        try:
            resp = await session.get(
                url, params=params, headers=hop_headers, timeout=timeout, allow_redirects=False
            )
        finally:
            if token is not None:
                guard.reset(token)
        location = resp.headers.get("Location")
        if resp.status not in (301, 302, 303, 307, 308) or not location:
            return resp
        resp.release()
        url, params = str(resp.url.join(URL(location))), None
    raise aiohttp.TooManyRedirects(resp.request_info, resp.history, message="too many redirects")
