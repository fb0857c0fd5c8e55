"""Address policy for downloads (SSRF guard): which hosts and IPs a download may reach.

`AddressPolicy.refuses(ip)` names why an address is refused; `GuardedResolver` applies the
policy to every name aiohttp resolves while a download runs (`guard` context variable);
`check_url` refuses bad schemes and disallowed IP literals before any connection.
"""

from __future__ import annotations

import contextvars
import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver


class BlockedAddress(OSError):
    """A host resolved to an address the download policy refuses."""


class AddressPolicy:
    def __init__(self, allow_private: bool, allowed_networks: list[str] | tuple[str, ...] = ()):
        self.allow_private = allow_private
        self.networks = [ipaddress.ip_network(n, strict=False) for n in allowed_networks]

    def refuses(self, ip: str) -> str | None:
        """Why this address is refused ("loopback", "private"...), or None if allowed."""
        try:
            addr = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return "unparsable"
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        if any(addr in net for net in self.networks):
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


# Set by Downloader.fetch for the duration of a download: the resolver checks addresses only
# then, so API calls to configured endpoints through the same session are not affected.
guard: contextvars.ContextVar[AddressPolicy | None] = contextvars.ContextVar(
    "facequeue_download_guard", default=None
)


class GuardedResolver(AbstractResolver):
    """Wraps aiohttp's resolver; refuses a host if any of its addresses is refused."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ):
        infos = await self._inner.resolve(host, port, family)
        policy = guard.get()
        if policy is not None:
            for info in infos:
                why = policy.refuses(info["host"])
                if why:
                    raise BlockedAddress(f"{host} resolves to {why} address {info['host']}")
        return infos

    async def close(self) -> None:
        await self._inner.close()


def check_url(policy: AddressPolicy, url: str) -> tuple[str, str] | None:
    """(reason, detail) if the URL may not be fetched before any connection, else None."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        return "bad_url", f"invalid URL: {exc}"
    if parts.scheme.lower() not in ("http", "https"):
        return "bad_scheme", f"scheme {parts.scheme or '(none)'!r} is not http(s)"
    if not host:
        return "bad_url", "URL has no host"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None  # a name: checked by the resolver once resolved
    why = policy.refuses(host)
    return ("private_address", f"{host} is a {why} address") if why else None
