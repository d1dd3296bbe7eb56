"""`Recorder`: what is recorded, in memory. The counters, the visitor's address cut to its network,
the bounds of a count and the cardinality cap; the only thing `UsageMiddleware` talks to.

Synchronous, no I/O: the flusher takes what is pending (`take`) and gives it back on failure
(`restore`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator

from . import kinds
from .anonymise import AddressCutter
from .bounds import BIGINT_MAX, BIGINT_MIN, check_count
from .config import UsageConfig
from .counters import OTHER, STATUS, Counters, CountKey, Pending, SeenKey, Slot
from .periods import Calendar

__all__ = ["CAP_SLICE", "USER", "VISITOR", "KnownKeys", "Recorder", "Slot", "capping"]

USER: SeenKey = (kinds.USER, "user")
VISITOR: SeenKey = (kinds.VISITOR, "visitor")

# (count key, status key, distinct-key group or None, distinct key or None)
RequestRecorder = Callable[[CountKey, CountKey, "SeenKey | None", "str | None"], None]
# (slot, user ID or client address or None)
HitRecorder = Callable[[Slot, "str | None"], None]


class Recorder:
    """Counts and distinct keys since the last flush. `now` returns Unix seconds (the configured clock).

    `request(key, status, seen, value)` counts one request now: the (category, event) `key`, the
    `status` key and, unless `seen` or `value` is None, the distinct key `value` in group `seen`
    (`USER` or `VISITOR`). `slot(key, status, seen, addresses=...)` makes a `Slot` for requests that
    repeat those three, and `hit(slot, value)` counts one of them: the fast path (see `counters`),
    with the client address uncut when the slot says `addresses`. Both are the counters' own
    methods, so that the middleware's fast path costs no extra call.
    """

    def __init__(
        self,
        config: UsageConfig,
        calendar: Calendar,
        now: Callable[[], float],
        *,
        on_pressure: Callable[[], None] | None = None,
    ) -> None:
        self.now = now
        self.max_keys_per_period = config.max_keys_per_period
        self.cut_address = AddressCutter(config.ip_prefix_v4, config.ip_prefix_v6)
        self.counters = Counters(
            calendar,
            now,
            max_keys_per_period=config.max_keys_per_period,
            on_pressure=on_pressure,
            cut=self.cut_address,
        )
        self.request: RequestRecorder = self.counters.request
        self.slot = self.counters.slot
        self.hit: HitRecorder = self.counters.hit
        self._admitted: dict[int, KnownKeys] = {}  # count keys flushed per base period

    # -- recording (see `UsageStats` for the meaning) ---------------------------------------------

    def count(self, event: str, category: str) -> None:
        """Count one occurrence of `event` in `category`, now."""
        self.counters.add(category, event, 1)

    def add(self, event: str, category: str, n: int) -> None:
        """Add `n` occurrences (checked: an int in the signed 64-bit range; zero is ignored)."""
        if type(n) is not int or not BIGINT_MIN <= n <= BIGINT_MAX:  # the common case costs no call
            n = check_count(n)
        if n:
            self.counters.add(category, event, n)

    def seen_user(self, user_id: object, category: str) -> None:
        """Note a signed-in user today (None and "" are no user)."""
        if user_id is not None and user_id != "":
            self.counters.seen(USER[0], category, str(user_id))

    def seen_visitor(self, ip: str, category: str) -> None:
        """Note a visitor today by the network of `ip` (an address that cannot be parsed is no visitor)."""
        network = self.cut_address(ip)
        if network is not None:
            self.counters.seen(VISITOR[0], category, network)

    # -- handing over to the flusher ----------------------------------------------------------------

    @property
    def pending(self) -> Pending:
        """What is recorded but not flushed yet (read-only use), exact: read on the event loop's thread,
        it first folds what the request path holds back and applies what other threads queued."""
        return self.counters.peek()

    def bind_to_current_thread(self) -> None:
        """Make the calling thread (the event loop's) the one that updates the counters."""
        self.counters.bind_to_current_thread()

    def drain(self) -> None:
        """Fold what the request path holds back and apply what other threads recorded (owner thread only)."""
        self.counters.drain()

    def take(self) -> Pending:
        """Take everything pending for a flush (a swap). Its count keys are not capped across flushes
        yet: `cap(taken)` does that, a slice at a time."""
        return self.counters.take()

    def cap(self, taken: Pending) -> Iterator[None]:
        """Cap the count keys of `taken` across flushes (`capping`), yielding between slices of
        `CAP_SLICE` keys so that the caller can give the event loop a turn: 100,000 new keys cost
        tens of milliseconds in one go."""
        return capping(taken, self._admitted, self.max_keys_per_period)

    def restore(self, taken: Pending) -> None:
        """Give back what a failed flush took."""
        self.counters.restore(taken)

    def discard(self) -> int:
        """Throw away everything pending (it can never be stored); returns how many counts and keys."""
        taken = self.counters.take()
        return taken.total_counts + taken.total_keys


CAP_SLICE = 1_024
_SHARDS = 64  # a power of two


class KnownKeys:
    """The count keys of one base period that earlier flushes admitted, kept in `_SHARDS` sets by
    their hash: a set grows by rehashing every key at once, and one set of 300,000 keys held the event
    loop for 20 ms doing it (benchmarks/flush.py); a shard holds 1/64 of them."""

    __slots__ = ("shards", "size")

    def __init__(self, keys: Iterable[CountKey] = ()) -> None:
        self.shards: list[set[CountKey]] = [set() for _ in range(_SHARDS)]
        self.size = 0
        for key in keys:
            shard = self.shards[hash(key) & (_SHARDS - 1)]
            if key not in shard:
                shard.add(key)
                self.size += 1

    def __contains__(self, key: object) -> bool:
        return key in self.shards[hash(key) & (_SHARDS - 1)]

    def __len__(self) -> int:
        return self.size

    def keys(self) -> set[CountKey]:
        """All of them, in one set."""
        return set().union(*self.shards)


def capping(
    pending: Pending, admitted: dict[int, KnownKeys], max_keys: int, slice_size: int = CAP_SLICE
) -> Generator[None, None, int]:
    """Keep the count keys of each base period within `max_keys` across flushes (the counters cap
    them only between two flushes): a key new to a period whose quota is used is added to `<other>`
    of its category, in the order the keys were first counted. `admitted` remembers each period's
    keys; only the two newest periods are kept. Yields after each `slice_size` keys looked at (only
    the flush's own `pending` and `admitted` change, so the recorder may go on meanwhile); returns
    how many keys were folded into `<other>`."""
    folded = 0
    mask = _SHARDS - 1
    for start, counts in pending.counts.items():
        known = admitted.get(start)
        if known is None:
            known = admitted[start] = KnownKeys()
        shards = known.shards
        keys = list(counts)
        for lo in range(0, len(keys), slice_size):
            if lo:
                yield
            for key in keys[lo : lo + slice_size]:
                shard = shards[hash(key) & mask]
                if key in shard or key[0] == STATUS or key[1] == OTHER:
                    continue
                if known.size < max_keys:
                    shard.add(key)
                    known.size += 1
                    continue
                other = (key[0], OTHER)
                counts[other] = counts.get(other, 0) + counts.pop(key)
                folded += 1
    for start in sorted(admitted)[:-2]:
        del admitted[start]
    return folded
