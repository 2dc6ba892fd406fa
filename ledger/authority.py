"""Which authorities (host[:port]) a node answers to, and checking a request is addressed to one.

A signature covers the target URI, whose authority comes from the request's Host header.
A node accepts only requests whose authority is one of its public URLs, so that a request
signed for another node or ledger never lands in this one.
"""

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from ledger.errors import MisdirectedError, ValidationError

DEFAULT_PORTS = {"http": 80, "https": 443}
_FORBIDDEN = re.compile(r"[/?#@\s\\]")
_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^:\[\]]+)(?::([0-9]{1,5}))?")


def normalize(scheme: str, authority: str) -> str:
    """host[:port] in lower case, without the scheme's default port. Raises ValidationError."""
    if not authority or _FORBIDDEN.search(authority):
        raise ValidationError(f"Host {authority!r} is not a valid authority (host[:port])")
    match = _HOST_PORT.fullmatch(authority)
    if match is None:
        raise ValidationError(f"Host {authority!r} is not a valid authority (host[:port])")
    host, port = match.group(1).lower(), match.group(2)
    if port is not None and (int(port) > 65535 or int(port) == DEFAULT_PORTS.get(scheme.lower())):
        if int(port) > 65535:
            raise ValidationError(f"Host {authority!r} has an invalid port")
        port = None
    return host if port is None else f"{host}:{int(port)}"


def split_bind(bind: str) -> tuple[str, int]:
    """A listen address HOST:PORT ([HOST]:PORT for IPv6) as (host, port), the port in 1..65535.
    Raises ValidationError."""
    host, sep, port = bind.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValidationError(f"expected HOST:PORT with a port from 1 to 65535, got {bind!r}")
    return host, int(port)


def of_target(target: str) -> str:
    """The normalized authority of an absolute target URI. Raises ValidationError."""
    scheme, sep, rest = target.partition("://")
    if not sep:
        raise ValidationError(f"target {target!r} is not an absolute URI")
    end = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    return normalize(scheme, rest[:end])


@dataclass(frozen=True)
class Authorities:
    """The authorities a node answers to."""

    names: frozenset[str]

    @classmethod
    def of_urls(cls, urls: Iterable[str]) -> "Authorities":
        """From public URLs (http://host[:port][/...]). Raises ValidationError for a bad one."""
        names = set()
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in DEFAULT_PORTS or not parts.netloc:
                raise ValidationError(f"public URL {url!r} must be http://HOST[:PORT] or https://HOST[:PORT]")
            names.add(normalize(parts.scheme, parts.netloc))
        return cls(frozenset(names))

    @classmethod
    def of_bind(cls, bind: str) -> "Authorities":
        """The defaults for a listen address: it, and its localhost / 127.0.0.1 / [::1] forms
        when it is a loopback or wildcard address."""
        host, _, port = bind.rpartition(":")
        host = host.strip("[]")
        hosts = {host}
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if host == "localhost" or (address is not None and (address.is_loopback or address.is_unspecified)):
            hosts |= {"localhost", "127.0.0.1", "[::1]"}
        names = {normalize("http", f"[{h}]:{port}" if ":" in h and not h.startswith("[") else f"{h}:{port}")
                 for h in hosts}
        return cls(frozenset(names))

    def check(self, target: str) -> None:
        """Raise MisdirectedError unless the target URI's authority is one of these."""
        authority = of_target(target)
        if authority not in self.names:
            raise MisdirectedError(
                f"this node answers to {', '.join(sorted(self.names))}, not {authority!r}; "
                "the request was signed for another node (set public_url if this node has that name)"
            )
