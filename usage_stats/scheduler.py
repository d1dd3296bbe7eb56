"""`Scheduler`: the background work of a running `UsageStats`, in one task of its own.

Two loops: the flush loop (every `flush_interval`, sooner when woken; backing off while the
database is away, saying so once per outage) and the maintenance loop (once `start()` returned and
the store is prepared, then a `grace` after each day ends).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

import anyio

from .errors import ConfigError, StoreUnavailableError
from .periods import Calendar
from .readiness import Readiness

__all__ = ["Scheduler"]

logger = logging.getLogger(__name__)

MAX_BACKOFF = 30.0  # seconds between flush attempts while the database is away (at least the interval)
MAX_SLEEP = 600.0  # the maintenance loop wakes at least this often (seconds), in case the clock jumped


class Scheduler:
    """Runs `flush` periodically and `maintain` daily; `prepare` is the first attempt's job."""

    def __init__(
        self,
        *,
        flush: Callable[[], Awaitable[None]],
        prepare: Callable[[], Awaitable[object]],
        maintain: Callable[[], Awaitable[object]],
        readiness: Readiness,
        calendar: Calendar,
        now: Callable[[], float],
        flush_interval: timedelta,
        grace: timedelta,
    ) -> None:
        self._flush = flush
        self._prepare = prepare
        self._maintain = maintain
        self._readiness = readiness
        self._calendar = calendar
        self._now = now
        self._interval = flush_interval.total_seconds()
        self._grace = grace.total_seconds()
        self._flush_wanted = anyio.Event()
        self._first_attempt = anyio.Event()
        self._started = anyio.Event()  # maintenance begins after start() (as it did when it connected there)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the background task (in the running loop, not in the caller's task, so that start()
        and stop() may be awaited from different tasks, as wait_for() and some servers do)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="usage_stats")

    async def first_attempt(self, within: float) -> None:
        """Wait, at most `within` seconds, until the first attempt to prepare the store ended."""
        with anyio.move_on_after(within):
            await self._first_attempt.wait()

    def started(self) -> None:
        """`start()` returned: maintenance may begin."""
        self._started.set()

    def wake(self) -> None:
        """Flush now rather than at the next interval (memory is filling up)."""
        self._flush_wanted.set()

    async def stop(self, flush_lock: anyio.Lock | None = None, within: float = 0.0) -> None:
        """Cancel the background task and wait for it. A flush in progress (holding `flush_lock`)
        may finish `within` seconds rather than be cancelled mid-commit, after which nobody could tell
        whether its counts were saved: saving them again could double them."""
        task, self._task = self._task, None
        if task is None:
            return
        locked = False
        if flush_lock is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(within):
                await flush_lock.acquire()
                locked = True
        task.cancel()
        if locked and flush_lock is not None:
            flush_lock.release()
        with anyio.CancelScope(shield=True):
            await asyncio.wait([task])  # awaits the cancelled task without raising

    async def _run(self) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._flush_loop, name="usage_stats flush")
            tg.start_soon(self._maintain_loop, name="usage_stats maintenance")

    async def _flush_loop(self) -> None:
        interval = self._interval
        delay, failures = 0.0, 0  # the first attempt at once, and only preparing the schema
        while True:
            with anyio.move_on_after(delay):
                await self._flush_wanted.wait()
            self._flush_wanted = anyio.Event()
            started = anyio.current_time()
            try:
                if self._first_attempt.is_set():
                    await self._flush()
                else:
                    await self._prepare()
            except ConfigError:
                delay = interval  # logged when found; what is recorded is discarded at each interval
                continue
            except Exception as exc:
                failures += 1
                delay = min(interval * 2**failures, max(interval, MAX_BACKOFF))
                if failures == 1:  # said once per outage, not once per attempt
                    what = "flush failed" if self._readiness.ready.is_set() else "database not ready at start"
                    if isinstance(exc, StoreUnavailableError):
                        logger.error("usage_stats: %s, counts kept in memory, retrying: %s", what, exc)
                    else:
                        logger.exception("usage_stats: %s unexpectedly; counts kept in memory, retrying", what)
                continue
            finally:
                self._first_attempt.set()
            if failures:
                logger.warning("usage_stats: flush succeeded again after %d failed attempts", failures)
            took = anyio.current_time() - started
            if took > max(interval, 5.0):  # a database that hangs rather than refuses is said once, too
                logger.warning("usage_stats: a flush took %.1f s; is the database slow or unreachable?", took)
            delay, failures = interval, 0

    async def _maintain_loop(self) -> None:
        grace = self._grace
        await self._started.wait()
        await self._readiness.ready.wait()  # prepared by the flush loop, which retries and logs
        while True:
            try:
                await self._maintain()
            except StoreUnavailableError as exc:
                logger.warning("usage_stats: maintenance postponed: %s", exc)
            except Exception:
                logger.exception("usage_stats: maintenance failed")
            now = self._now()
            _, day_end, _ = self._calendar.day_bounds(now - grace)
            await anyio.sleep(min(max(day_end + grace - now, 1.0), MAX_SLEEP))
