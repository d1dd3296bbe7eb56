"""The client address of a request: `scope["client"]`, or the forwarding header that trusted proxies set."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, MutableMapping
from typing import Any

from .cache import BoundedCache
from .config import IPNetwork

__all__ = ["ClientAddress"]

_CACHE_LIMIT = 4096


class ClientAddress:
    """Finds the address of the client that sent a request.

    Only `header` (`"x-forwarded-for"` or `"forwarded"`: the one the trusted proxies set) is read,
    only when the peer is in `trusted` networks, and walked from the nearest hop back, skipping
    further trusted proxies. A client cannot spoof its address by sending that header itself (the
    proxy appends the real peer after it), nor by sending the other header, which a proxy that does
    not set it passes through untouched.
    """

    def __init__(self, trusted: Iterable[IPNetwork], header: str = "x-forwarded-for") -> None:
        if header not in ("x-forwarded-for", "forwarded"):
            raise ValueError(f"header must be 'x-forwarded-for' or 'forwarded', not {header!r}")
        self.trusted = tuple(trusted)
        self.header = header.encode("latin-1")
        self._trusted_cache: BoundedCache[str, bool] = BoundedCache(_CACHE_LIMIT)

    def is_trusted(self, host: str) -> bool:
        """Whether `host` is in a trusted network (cached)."""
        cached = self._trusted_cache.get(host)
        if cached is not None:
            return cached
        try:
            ip = ipaddress.ip_address(host)
            mapped = getattr(ip, "ipv4_mapped", None)
            ip = mapped or ip
            result = any(ip in net for net in self.trusted)
        except ValueError:
            result = False
        return self._trusted_cache.put(host, result)

    def __call__(self, scope: MutableMapping[str, Any]) -> str | None:
        """The client's address as text, or None when the request has no usable client."""
        client = scope.get("client")
        host = client[0] if isinstance(client, (tuple, list)) and client else None
        if not isinstance(host, str):
            return None
        if not self.trusted or not self.is_trusted(host):
            return host
        hops = _forwarded_hops(scope.get("headers"), self.header)
        for hop in reversed(hops):
            if not self.is_trusted(hop):
                return hop
        return hops[0] if hops else host


def _forwarded_hops(headers: object, header: bytes) -> list[str]:
    """Addresses from every `header` (`forwarded` or `x-forwarded-for`) in order, nearest last."""
    hops: list[str] = []
    if not isinstance(headers, (list, tuple)):
        return []
    for item in headers:
        try:
            name, value = item
            if bytes(name).lower() != header:
                continue
            text = bytes(value).decode("latin-1")
            if header == b"forwarded":
                hops.extend(_parse_forwarded(text))
            else:
                hops.extend(_clean(part) for part in text.split(","))
        except (TypeError, ValueError):
            continue
    return [h for h in hops if h]


def _parse_forwarded(value: str) -> list[str]:
    hops = []
    for element in value.split(","):
        for pair in element.split(";"):
            key, _, val = pair.strip().partition("=")
            if key.strip().lower() == "for":
                hops.append(_clean(val))
    return hops


def _clean(value: str) -> str:
    host = value.strip().strip('"')
    if host.startswith("["):  # [2001:db8::1]:443
        host = host[1 : host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:  # 192.0.2.1:8080
        host = host.split(":", 1)[0]
    return host if len(host) <= 64 else ""
