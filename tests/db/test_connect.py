"""The CLI's single connection: read-only when asked (without a startup parameter a pooler would refuse)."""

from __future__ import annotations

import pytest

from usage_stats import StoreUnavailableError
from usage_stats.db.connect import connect


async def test_a_read_only_connection_refuses_writes_even_in_nested_transactions(pg_dsn: str, schema: str) -> None:
    async with connect(pg_dsn, read_only=True) as conn:
        assert await conn.fetchval("SELECT 1") == 1
        async with conn.transaction(isolation="repeatable_read", readonly=True):  # as the reader opens one
            assert await conn.fetchval("SELECT current_setting('transaction_read_only')") == "on"
    with pytest.raises(StoreUnavailableError, match="read-only transaction"):
        async with connect(pg_dsn, read_only=True) as conn:
            await conn.execute(f'CREATE SCHEMA "{schema}"')
    with pytest.raises(StoreUnavailableError, match="read-only transaction"):
        async with connect(pg_dsn, read_only=True) as conn, conn.transaction():
            await conn.execute(f'CREATE SCHEMA "{schema}"')
    async with connect(pg_dsn) as conn:
        assert await conn.fetchval("SELECT current_setting('transaction_read_only')") == "off"
