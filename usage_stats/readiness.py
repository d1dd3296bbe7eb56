"""The one gate every database call of a running `UsageStats` passes: the store is prepared first.

`start()` must not fail because PostgreSQL is unreachable, so preparing the store (schema migrated
if need be, settings checked, `go-live` recorded) happens on the first call that reaches the
database, whichever it is: the background retry, a flush, a table. Preparing runs once at a time
and succeeds once; a `ConfigError` it meets (the database contradicts the configuration) is kept
for good and raised to every later caller. No task is created here; the lifecycle module owns them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import date

import anyio

from .errors import ConfigError

__all__ = ["Readiness"]

logger = logging.getLogger(__name__)


class Readiness:
    """Runs `prepare` (which returns the go-live day) until it succeeds once, or refuses for good."""

    def __init__(self, prepare: Callable[[], Awaitable[date]]) -> None:
        self._prepare = prepare
        self._lock = anyio.Lock()
        self.ready = anyio.Event()  # set once prepared
        self.refused: ConfigError | None = None
        self.go_live: date | None = None

    async def ensure(self) -> date:
        """The go-live day, preparing the store first if no caller has yet.

        Raises what preparing raises (`StoreUnavailableError` while the database cannot be reached),
        and the kept `ConfigError` once the database contradicted the configuration.
        """
        if not self.ready.is_set():
            async with self._lock:
                if self.refused is not None:
                    raise self.refused
                if not self.ready.is_set():
                    await self._run()
        assert self.go_live is not None
        return self.go_live

    async def _run(self) -> None:
        try:
            self.go_live = await self._prepare()
        except ConfigError as exc:
            self.refused = exc
            logger.error("usage_stats: %s; this process will store nothing until it is restarted", exc)
            raise
        self.ready.set()
