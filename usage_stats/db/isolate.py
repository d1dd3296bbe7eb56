"""The safety net of a flush: rows that PostgreSQL refuses to store are found, dropped and reported,
and everything else in the flush is stored.

A data error (a value out of range, a violated constraint, a row over a size limit) is the database
refusing a row: the same flush tried again would fail the same way, for ever. After one, the flush
is tried once more, in one transaction again, with each statement that writes rows run under a
savepoint and its range of rows split in halves until the refused rows are found. Only those are dropped, and the log
says how many and why (error class and SQLSTATE, never a value). Errors that are not about the data
(a lost connection, a timeout, a deadlock) are not caught here: the flush fails as a whole and its
counts wait for the next one.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import asyncpg

from ..errors import StoreUnavailableError

__all__ = ["DATA_ERRORS", "RowGuard", "reason", "write_isolating"]

logger = logging.getLogger(__name__)

DATA_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.DataError,  # class 22, and values the driver cannot encode
    asyncpg.IntegrityConstraintViolationError,  # class 23
    asyncpg.ProgramLimitExceededError,  # class 54: an index row too large, for instance
)

T = TypeVar("T")


class RowGuard:
    """Runs a statement that writes a range of rows, `sql` with the parameters `head` then `lo` and
    `hi` (the rows numbered `lo < n <= hi`, of `rows` numbered from 1), dropping the rows that the
    database refuses instead of failing the statement.

    Use one per transaction, then `report()`. A statement whose rows are all accepted costs one
    savepoint more than running it on all rows; each refused row costs about two statements per halving.
    """

    def __init__(self) -> None:
        self.refused: Counter[tuple[str, str]] = Counter()  # (what, reason) -> rows dropped
        self._immediate = False

    async def __call__(
        self, conn: asyncpg.Connection, sql: str, head: Sequence[object], rows: int, *, what: str
    ) -> None:
        if not self._immediate:  # a deferred constraint would otherwise fail only at COMMIT, for all rows
            await conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
            self._immediate = True
        if rows:
            await self._bisect(conn, sql, head, 0, rows, what)

    async def _bisect(
        self, conn: asyncpg.Connection, sql: str, head: Sequence[object], lo: int, hi: int, what: str
    ) -> None:
        try:
            async with conn.transaction():  # a savepoint: a refused statement undoes only itself
                await conn.execute(sql, *head, lo, hi)
            return
        except DATA_ERRORS as exc:
            if hi - lo == 1:
                self.refused[(what, reason(exc))] += 1
                return
        mid = (lo + hi) // 2
        await self._bisect(conn, sql, head, lo, mid, what)
        await self._bisect(conn, sql, head, mid, hi, what)

    @property
    def dropped(self) -> int:
        """The number of rows dropped so far."""
        return sum(self.refused.values())

    def report(self) -> None:
        """Log, in one line, how many rows were dropped and why (nothing when none was)."""
        if not self.refused:
            return
        reasons = "; ".join(f"{n} {what}(s): {why}" for (what, why), n in sorted(self.refused.items()))
        logger.error(
            "usage_stats: the database refused %d row(s) of a flush; they were dropped and the rest stored (%s)",
            self.dropped,
            reasons,
        )


def reason(exc: BaseException) -> str:
    """Why the database refused a row, without any value from it: error class, SQLSTATE, constraint."""
    why = f"{type(exc).__name__}, SQLSTATE {getattr(exc, 'sqlstate', None) or '?'}"
    constraint = getattr(exc, "constraint_name", None)
    return f"{why}, constraint {constraint}" if constraint else why


async def write_isolating(attempt: Callable[[RowGuard | None], Awaitable[T]]) -> T:
    """`await attempt(None)`; if the database refuses some of its data, `await attempt(guard)` once more
    with a `RowGuard` to run its row statements, so that only the refused rows are dropped (and logged).

    `attempt` must write in one transaction that a data error rolls back whole, as `write_pending` does.
    A data error that no row explains (the second attempt fails too) raises `StoreUnavailableError`.
    """
    try:
        return await attempt(None)
    except DATA_ERRORS as exc:
        logger.debug("usage_stats: a flush was refused (%s); finding the rows at fault", reason(exc))
    guard = RowGuard()
    try:
        result = await attempt(guard)
    except DATA_ERRORS as exc:  # not from a row (nothing to drop): fail, but without the values it names
        raise StoreUnavailableError(f"the database refused a flush ({reason(exc)})") from None
    guard.report()
    return result
