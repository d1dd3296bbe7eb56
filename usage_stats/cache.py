"""`BoundedCache`: a dict that forgets everything once it is full, for caches on the request path."""

from __future__ import annotations

from typing import TypeVar

__all__ = ["BoundedCache"]

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(dict[K, V]):
    """A dict of at most `limit` entries: `put` empties it when it is full (lookups stay plain dict
    lookups, at C speed). Meant for caches of pure results, where forgetting only costs a recompute."""

    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a bounded cache holds at least one entry")
        super().__init__()
        self.limit = limit

    def put(self, key: K, value: V) -> V:
        """Remember `value` for `key` (emptying the cache first when it is full); returns `value`."""
        if len(self) >= self.limit and key not in self:
            self.clear()
        self[key] = value
        return value
