"""Where webhooks may go: hospital LANs yes; cloud metadata, "nowhere" and (in production) the hub's host no.

Receivers often sit on private networks, so private ranges stay allowed. Link-local addresses
(169.254.0.0/16, fe80::/10: where cloud metadata endpoints answer) and unspecified ones are always
refused; loopback is refused in production unless its host is listed in `EVENTS_WEBHOOK_ALLOWED_HOSTS`.
A URL is checked when a subscription is created, and again on the resolved addresses before every
delivery, which then connects to the very address it checked: a name resolved again between the check
and the connection could point somewhere else (DNS rebinding).

Resolving is bounded (`EVENTS_WEBHOOK_RESOLVE_TIMEOUT_SECONDS`): `getaddrinfo` has no timeout of its own
and a resolver that does not answer would hold a subscription request, or a delivery slot, for as long
as the system's resolver retries (10 s and more). The lookup runs in a daemon thread that is abandoned,
not waited for, once the bound passes.
"""

import ipaddress
import socket
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[IPAddress]]
THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # "this host": connecting to 0.x reaches loopback
RESOLVE_TIMEOUT_SECONDS = 2.0


class RefusedDestination(ValueError):
    """A webhook URL (or the address its host resolves to) that the hub must not send to."""


class ResolveTimeout(OSError):
    """The host did not resolve within the bound (an OSError, like a host that does not resolve)."""


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address the host resolves to (an IP literal resolves to itself); raises OSError."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


def resolve_within(resolver: Resolver, host: str, port: int, timeout: float) -> list[IPAddress]:
    """`resolver(host, port)`, or ResolveTimeout once `timeout` seconds pass without an answer."""
    outcome: list[list[IPAddress] | BaseException] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            outcome.append(resolver(host, port))
        except BaseException as exc:  # handed to the caller, whatever it is
            outcome.append(exc)
        done.set()

    threading.Thread(target=lookup, name=f"resolve {host}", daemon=True).start()
    if not done.wait(timeout):
        raise ResolveTimeout(f"{host} did not resolve within {timeout:g} s")
    if isinstance(result := outcome[0], BaseException):
        raise result
    return result


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
    resolve_timeout_seconds: float = RESOLVE_TIMEOUT_SECONDS
    resolver: Resolver | None = None  # None: `resolve`, looked up when called (tests replace it)

    @classmethod
    def of(
        cls,
        *,
        environment: str,
        allowed_hosts: Collection[str],
        resolve_timeout_seconds: float = RESOLVE_TIMEOUT_SECONDS,
    ) -> "DestinationPolicy":
        hosts = frozenset(h.lower() for h in allowed_hosts)
        return cls(environment == "production", hosts, resolve_timeout_seconds)

    def addresses(self, host: str, port: int) -> list[IPAddress]:
        """The host's addresses, within the bound; raises ResolveTimeout or another OSError."""
        return resolve_within(self.resolver or resolve, host, port, self.resolve_timeout_seconds)

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

        A name that does not resolve yet is accepted: every delivery checks it again. One whose lookup
        takes longer than the bound raises ResolveTimeout: it would stall every delivery the same way.
        """
        host, port = _host_port(httpx.URL(url))
        try:
            addresses = self.addresses(host, port)
        except ResolveTimeout:
            raise
        except OSError:
            return
        self._check(host, addresses)

    def pin(self, url: str) -> PinnedTarget:
        """At delivery time: resolve, check every address, and aim the request at the first one.

        Raises RefusedDestination, or OSError when the host does not resolve (in time).
        """
        target = httpx.URL(url)
        host, port = _host_port(target)
        addresses = self.addresses(host, port)
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
