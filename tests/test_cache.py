"""`BoundedCache`: the one helper behind the request path's caches."""

from __future__ import annotations

import ipaddress

import pytest

from usage_stats.anonymise import AddressCutter
from usage_stats.cache import BoundedCache
from usage_stats.client import ClientAddress


def test_a_full_cache_forgets_everything_before_it_takes_a_new_key() -> None:
    cache: BoundedCache[str, int] = BoundedCache(3)
    assert [cache.put(k, i) for i, k in enumerate("abc")] == [0, 1, 2]
    assert cache.put("b", 9) == 9  # a known key is replaced, nothing forgotten
    assert dict(cache) == {"a": 0, "b": 9, "c": 2}
    cache.put("d", 3)
    assert dict(cache) == {"d": 3}
    assert cache.get("a") is None


def test_a_cache_holds_at_least_one_entry() -> None:
    with pytest.raises(ValueError, match="at least one"):
        BoundedCache(0)


def test_the_request_path_caches_stay_bounded_and_correct() -> None:
    cut = AddressCutter(24, 48)
    for i in range(70_000):
        assert cut(f"10.{i // 65536}.{(i // 256) % 256}.{i % 256}") == f"10.{i // 65536}.{(i // 256) % 256}.0"
    assert isinstance(cut._cache, BoundedCache)
    assert len(cut._cache) <= cut._cache.limit
    client = ClientAddress([ipaddress.ip_network("10.0.0.0/8")])
    for i in range(5000):
        assert client.is_trusted(f"10.0.{i // 256}.{i % 256}")
    assert not client.is_trusted("192.0.2.1")
    assert isinstance(client._trusted_cache, BoundedCache)
    assert len(client._trusted_cache) <= client._trusted_cache.limit
