"""One connection for a short command (`Store.connect`: the CLI, `UsageReader`), read-only when
asked, and the driver errors that the store maps to `StoreUnavailableError`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from ..config import redact_dsn
from ..errors import StoreUnavailableError

__all__ = ["DRIVER_ERRORS", "connect"]

DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)


@asynccontextmanager
async def connect(
    dsn: str, *, read_only: bool = False, connect_timeout: float = 10, statement_cache_size: int = 100
) -> AsyncIterator[asyncpg.Connection]:
    """A single connection to `dsn`; with `read_only` the server refuses any write in it.

    Connection failures and driver errors inside the block raise `StoreUnavailableError` with the
    DSN's password redacted.
    """
    settings = {"application_name": "usage_stats cli"}
    try:
        conn = await asyncpg.connect(
            dsn, timeout=connect_timeout, server_settings=settings, statement_cache_size=statement_cache_size
        )
    except DRIVER_ERRORS as exc:
        raise StoreUnavailableError(f"cannot connect to {redact_dsn(dsn)}: {_reason(exc)}") from exc
    except ValueError as exc:  # an unparsable DSN
        raise StoreUnavailableError(f"invalid DSN {redact_dsn(dsn)}: {exc}") from exc
    try:
        if read_only:
            # One read-only snapshot for the whole command rather than a startup parameter, which a
            # connection pooler such as pgbouncer refuses; nested transactions become savepoints.
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                yield conn
        else:
            yield conn
    except DRIVER_ERRORS as exc:
        raise StoreUnavailableError(_reason(exc)) from exc
    finally:
        try:
            await conn.close(timeout=connect_timeout)
        except DRIVER_ERRORS:
            conn.terminate()


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
