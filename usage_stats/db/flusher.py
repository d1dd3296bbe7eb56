"""`Flusher`: moves what the recorder holds into the database, each batch exactly once.

It owns the flush lock, the delivery ledger's batch in doubt (`delivery.py`), the salt cache of
hashed user IDs, the isolation of rows the database refuses (`isolate.py`) and the writing itself
(`flush.py`). It asks for the store through `ready`, which prepares the store first if need be.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from datetime import date, timedelta

import anyio
from anyio.lowlevel import checkpoint

from ..anonymise import KeyEncoder
from ..config import UsageConfig
from ..delivery import Attempt, Batch, Delivery
from ..errors import ConfigError
from ..periods import utc
from ..recorder import Recorder
from .levels import Level
from .store import Store

__all__ = ["Flusher"]

logger = logging.getLogger(__name__)


class Flusher:
    """Flushes `recorder` into the store; one flush at a time (`lock`).

    `before` runs before every flush (an exception from it is logged, and the flush goes on).
    """

    def __init__(
        self,
        config: UsageConfig,
        recorder: Recorder,
        *,
        ready: Callable[[], Awaitable[Store]],
        before: Callable[[], Awaitable[None] | None] | None = None,
    ) -> None:
        self.schema = config.schema
        self.recorder = recorder
        self.lock = anyio.Lock()
        self.delivery = Delivery()
        self.discarded = 0  # counts and keys thrown away because the database refused the configuration
        self._ready = ready
        self._before = before
        self._level = Level.DAY if config.base_period == timedelta(days=1) else Level.BASE
        self._encode_key = KeyEncoder(config.user_ids)
        self._salts: dict[date, bytes] | None = {} if config.user_ids == "hashed" else None

    async def flush(self) -> None:
        """Save what is pending: first a batch in doubt (under its own id), then a new batch.

        On failure the new batch goes back to the recorder (or is kept in doubt, if it failed while
        committing) and the error is raised. A `ConfigError` discards what is pending: it could never
        be stored, and memory must not grow.
        """
        async with self.lock:
            await self._call_before()
            try:
                store = await self._ready()
            except ConfigError:
                self.discarded += self.recorder.discard()
                raise
            write = self._writer(store)
            await self.delivery.settle(write)
            taken = self.recorder.take()
            if not taken:
                return
            try:
                for _ in self.recorder.cap(taken):
                    await checkpoint()  # a turn of the event loop between slices of keys
            except BaseException:  # cancelled (shutdown): what was taken goes back
                self.recorder.restore(taken)
                raise
            await self.delivery.send(taken, write, self.recorder.restore)

    async def flush_keys_through(self, last_ended: date) -> None:
        """Save this process's own distinct keys of days about to be closed, so that maintenance
        never drops keys that were recorded in time (after a clock jump or an outage at midnight)."""
        async with self.lock:
            pass  # a flush in progress finishes first
        self.recorder.drain()
        if self.delivery.in_doubt is not None or any(
            day <= last_ended and any(seen.values()) for day, seen in self.recorder.pending.seen.items()
        ):
            await self.flush()

    def log_unsaved(self) -> None:
        """At shutdown: say what may not have been stored (in doubt, discarded, still pending)."""
        in_doubt = self.delivery.in_doubt
        if in_doubt is not None:
            logger.error(
                "usage_stats: shutting down with a flush of %d counts and %d distinct keys whose COMMIT got "
                "no answer: the database may or may not have stored it",
                in_doubt.pending.total_counts,
                in_doubt.pending.total_keys,
            )
        if self.discarded:
            logger.error(
                "usage_stats: %d counts and distinct keys were discarded because the configuration "
                "does not match the database",
                self.discarded,
            )
        lost = self.recorder.pending
        if lost:
            logger.error(
                "usage_stats: shutting down with %d counts and %d distinct keys not saved",
                lost.total_counts,
                lost.total_keys,
            )

    def _writer(self, store: Store) -> Callable[[Batch, Attempt], Awaitable[None]]:
        async def write(batch: Batch, attempt: Attempt) -> None:
            result = await store.write_flush(
                batch,
                attempt,
                level=self._level,
                encode=self._encode_key,
                salts=self._salts,
                at=utc(self.recorder.now()),
            )
            logger.debug("usage_stats: flushed %d count rows and %d keys", result.count_rows, result.keys)

        return write

    async def _call_before(self) -> None:
        if self._before is None:
            return
        try:
            outcome = self._before()
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            logger.exception("usage_stats: before_flush raised; flushing anyway")
