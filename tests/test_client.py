"""The client address: `scope["client"]`, forwarding headers only from trusted proxies (pure)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from usage_stats.client import ClientAddress

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8:ffff::/48"))


def scope(peer: str | None, *headers: tuple[str, str]) -> dict[str, Any]:
    return {
        "type": "http",
        "client": (peer, 1234) if peer is not None else None,
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers],
    }


def test_no_trusted_proxies_uses_the_peer_and_ignores_headers() -> None:
    find = ClientAddress(())
    assert find(scope("203.0.113.9", ("x-forwarded-for", "198.51.100.1"))) == "203.0.113.9"
    assert find(scope("203.0.113.9", ("forwarded", "for=198.51.100.1"))) == "203.0.113.9"


def test_spoofed_headers_from_an_untrusted_peer_are_ignored() -> None:
    find = ClientAddress(PROXIES)
    assert find(scope("203.0.113.9", ("x-forwarded-for", "198.51.100.1"))) == "203.0.113.9"
    assert find(scope("203.0.113.9", ("forwarded", "for=198.51.100.1"))) == "203.0.113.9"


def test_x_forwarded_for_from_a_trusted_proxy() -> None:
    find = ClientAddress(PROXIES)
    assert find(scope("10.0.0.2", ("X-Forwarded-For", "198.51.100.1"))) == "198.51.100.1"


def test_client_cannot_spoof_through_a_trusted_proxy() -> None:
    # The client sent "X-Forwarded-For: 1.2.3.4"; the proxy appended the real peer.
    find = ClientAddress(PROXIES)
    assert find(scope("10.0.0.2", ("x-forwarded-for", "1.2.3.4, 198.51.100.1"))) == "198.51.100.1"
    # two trusted proxies in a row are skipped
    assert find(scope("10.0.0.2", ("x-forwarded-for", "1.2.3.4, 198.51.100.1, 10.0.0.7"))) == "198.51.100.1"


def test_several_x_forwarded_for_headers_are_joined_in_order() -> None:
    find = ClientAddress(PROXIES)
    s = scope("10.0.0.2", ("x-forwarded-for", "1.2.3.4"), ("x-forwarded-for", "198.51.100.1"))
    assert find(s) == "198.51.100.1"


def test_forwarded_header() -> None:
    find = ClientAddress(PROXIES)
    assert find(scope("10.0.0.2", ("forwarded", "for=198.51.100.1;proto=https;by=10.0.0.2"))) == "198.51.100.1"
    assert find(scope("10.0.0.2", ("forwarded", 'for="[2001:db8::17]:4711"'))) == "2001:db8::17"
    assert find(scope("10.0.0.2", ("forwarded", "for=1.2.3.4, for=198.51.100.1:8080"))) == "198.51.100.1"
    assert find(scope("10.0.0.2", ("Forwarded", "For=198.51.100.1"))) == "198.51.100.1"


def test_forwarded_is_preferred_to_x_forwarded_for() -> None:
    find = ClientAddress(PROXIES)
    s = scope("10.0.0.2", ("x-forwarded-for", "192.0.2.50"), ("forwarded", "for=198.51.100.1"))
    assert find(s) == "198.51.100.1"


def test_all_hops_trusted_gives_the_farthest() -> None:
    find = ClientAddress(PROXIES)
    assert find(scope("10.0.0.2", ("x-forwarded-for", "10.0.0.9, 10.0.0.8"))) == "10.0.0.9"


def test_trusted_proxy_without_headers_is_the_client() -> None:
    assert ClientAddress(PROXIES)(scope("10.0.0.2")) == "10.0.0.2"


def test_ipv6_and_mapped_proxies() -> None:
    find = ClientAddress(PROXIES)
    assert find(scope("2001:db8:ffff::1", ("x-forwarded-for", "198.51.100.1"))) == "198.51.100.1"
    assert find(scope("::ffff:10.0.0.2", ("x-forwarded-for", "198.51.100.1"))) == "198.51.100.1"
    assert find(scope("10.0.0.2", ("x-forwarded-for", "[2001:db8::5]:443"))) == "2001:db8::5"
    assert find(scope("10.0.0.2", ("x-forwarded-for", "192.0.2.5:443"))) == "192.0.2.5"


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "http"},
        {"type": "http", "client": None},
        {"type": "http", "client": ()},
        {"type": "http", "client": (None, 0)},
        {"type": "http", "client": "192.0.2.1"},
    ],
)
def test_missing_or_odd_client_gives_none(bad: dict[str, Any]) -> None:
    assert ClientAddress(PROXIES)(bad) is None


def test_malformed_headers_do_not_raise() -> None:
    find = ClientAddress(PROXIES)
    s: dict[str, Any] = {"type": "http", "client": ("10.0.0.2", 1), "headers": [(b"x-forwarded-for",), None, 5]}
    assert find(s) == "10.0.0.2"
    s = scope("10.0.0.2", ("x-forwarded-for", 'garbage, , ""'))
    assert find(s) == "garbage"  # returned as is; the address cutter turns it into no visitor
    s = {"type": "http", "client": ("10.0.0.2", 1), "headers": "nope"}
    assert find(s) == "10.0.0.2"
    s = scope("10.0.0.2", ("x-forwarded-for", "1" * 500))
    assert find(s) == "10.0.0.2"  # an over-long hop is dropped
