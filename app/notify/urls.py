"""Refuse webhook URLs that point into private networks (SSRF), checked at submission and
again before every delivery, since a DNS name can change what it resolves to. A delivery
then connects to the address that was checked (`pinned`), not to a second lookup of the
name, which a rebinding DNS server could answer with an internal address."""

import ipaddress
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215, for local use only
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


class UnsafeWebhookUrl(ValueError):
    """The URL is not a public http(s) address."""


def resolve_addresses(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise UnsafeWebhookUrl(f"the webhook host {host!r} does not resolve") from error
    return sorted({str(info[4][0]) for info in infos})


def check_webhook_url(url: str, *, allow_private: bool) -> list[str]:
    """Raise `UnsafeWebhookUrl` unless `url` is http(s) and resolves only to public addresses;
    returns those addresses (none when private ones are allowed: nothing is resolved then)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeWebhookUrl("the webhook URL must be an http(s) URL with a host")
    if parts.username or parts.password:
        raise UnsafeWebhookUrl("the webhook URL must not carry credentials")
    if allow_private:
        return []
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = resolve_addresses(parts.hostname, port)
    for address in addresses:
        if not is_public(ipaddress.ip_address(address.split("%", 1)[0])):
            raise UnsafeWebhookUrl(
                f"the webhook host {parts.hostname!r} resolves to a non-public address"
            )
    return addresses


@dataclass(frozen=True)
class PinnedRequest:
    """Where to send a request for `url` so that it reaches one of the checked addresses."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    # httpx's `sni_hostname`: TLS still names (and verifies) the URL's host.
    extensions: dict[str, str] = field(default_factory=dict)


def pinned(url: str, addresses: list[str]) -> PinnedRequest:
    """The request for `url` aimed at `addresses[0]`, with the URL's own Host header."""
    if not addresses:
        return PinnedRequest(url)
    parts = urlsplit(url)
    address = addresses[0]
    host = f"[{address}]" if ":" in address else address
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return PinnedRequest(
        urlunsplit(parts._replace(netloc=netloc)),
        headers={"host": parts.netloc},
        extensions={"sni_hostname": parts.hostname or ""},
    )


def is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Globally reachable unicast, also the IPv4 address an IPv6 one carries: NAT64, 6to4
    and IPv4-compatible addresses reach IPv4 hosts, and `ipaddress` judges them by their
    IPv6 prefix alone (64:ff9b::a9fe:a9fe is "global", yet it is 169.254.169.254)."""
    if not ip.is_global or ip.is_multicast:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _LOCAL_NAT64:
            return False
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and (ip in _NAT64 or ip in _IPV4_COMPATIBLE):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public(embedded)
    return True
