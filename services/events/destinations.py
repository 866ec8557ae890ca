"""Where webhooks may go: hospital LANs yes; cloud metadata, "nowhere" and (in production) the hub's host no.

Receivers often sit on private networks, so private ranges stay allowed. Link-local addresses
(169.254.0.0/16, fe80::/10: where cloud metadata endpoints answer) and unspecified ones are always
refused; loopback is refused in production unless its host is listed in `EVENTS_WEBHOOK_ALLOWED_HOSTS`.
A URL is checked when a subscription is created, and again on the resolved addresses before every
delivery, which then connects to the very address it checked: a name resolved again between the check
and the connection could point somewhere else (DNS rebinding).
"""

import ipaddress
import socket
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # "this host": connecting to 0.x reaches loopback


class RefusedDestination(ValueError):
    """A webhook URL (or the address its host resolves to) that the hub must not send to."""


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address the host resolves to (an IP literal resolves to itself); raises OSError."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


@dataclass(frozen=True, slots=True)
class PinnedTarget:
    """A delivery's URL with the host replaced by the checked address, plus what keeps the host name."""

    url: httpx.URL
    headers: dict[str, str]
    extensions: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DestinationPolicy:
    production: bool
    allowed_hosts: frozenset[str] = frozenset()

    @classmethod
    def of(cls, *, environment: str, allowed_hosts: Collection[str]) -> "DestinationPolicy":
        return cls(environment == "production", frozenset(h.lower() for h in allowed_hosts))

    def refusal(self, host: str, address: IPAddress) -> str | None:
        """Why the hub must not send to `address` (resolved from `host`); None when it may."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if address.is_unspecified or address in THIS_NETWORK:
            return f"{address} is an unspecified address"
        if address.is_link_local:
            return f"{address} is link-local (where cloud metadata endpoints answer)"
        if address.is_loopback and self.production and host.lower() not in self.allowed_hosts:
            return f"{address} is loopback; list {host} in EVENTS_WEBHOOK_ALLOWED_HOSTS to allow it"
        return None

    def check_url(self, url: str) -> None:
        """At subscription time: refuse a URL whose host is, or resolves to, a refused address.

        A name that does not resolve yet is accepted: every delivery checks it again.
        """
        host, port = _host_port(httpx.URL(url))
        try:
            addresses = resolve(host, port)
        except OSError:
            return
        self._check(host, addresses)

    def pin(self, url: str) -> PinnedTarget:
        """At delivery time: resolve, check every address, and aim the request at the first one.

        Raises RefusedDestination, or OSError when the host does not resolve.
        """
        target = httpx.URL(url)
        host, port = _host_port(target)
        addresses = resolve(host, port)
        self._check(host, addresses)
        pinned = target.copy_with(host=str(addresses[0]))
        extensions = {"sni_hostname": host} if target.scheme == "https" else {}
        return PinnedTarget(pinned, {"host": target.netloc.decode("ascii")}, extensions)

    def _check(self, host: str, addresses: list[IPAddress]) -> None:
        for address in addresses:
            if reason := self.refusal(host, address):
                raise RefusedDestination(reason)


def _host_port(url: httpx.URL) -> tuple[str, int]:
    """The host as DNS and TLS know it (IDNA, no brackets) and the port."""
    return url.raw_host.decode("ascii"), url.port or (443 if url.scheme == "https" else 80)
