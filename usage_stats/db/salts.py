"""The `hashed` scheme's daily salts: read, or created, in a transaction of their own.

A salt is cached in the process only once it is committed, so no process ever hashes with a salt
that the database rolled back (it would count the same visitor again in another process, or after
a restart). Salts are made only for days that day-end maintenance has not closed, under the same
shared lock as a flush, so that no salt of a closed day is left behind.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import date

import asyncpg

from .migrations import LOCK_DAY_END, quote_ident

__all__ = ["load_salts"]

_ENSURE = """
INSERT INTO {s}.salts (day, salt)
SELECT k.day, k.salt FROM unnest($1::date[], $2::bytea[]) AS k(day, salt)
WHERE k.day > coalesce((SELECT maintained_through FROM {s}.state), '-infinity'::date)
ON CONFLICT (day) DO NOTHING
"""

_READ = "SELECT day, salt FROM {s}.salts WHERE day = ANY($1::date[])"


async def load_salts(conn: asyncpg.Connection, schema: str, days: Iterable[date], cache: dict[date, bytes]) -> None:
    """Put the committed salt of each of `days` not closed yet into `cache`, creating missing ones.

    Runs its own transaction (the caller must not be in one). Salts of days before the earliest
    of `days` are dropped from the cache: they are no longer needed here.
    """
    wanted = sorted(set(days))
    if not wanted:
        return
    missing = [d for d in wanted if d not in cache]
    if missing:
        s = quote_ident(schema)
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock_shared(hashtext($1), $2)", schema, LOCK_DAY_END)
            await conn.execute(_ENSURE.format(s=s), missing, [secrets.token_bytes(32) for _ in missing])
            # A statement of its own: it sees a salt that a concurrent flush committed meanwhile.
            found = {r["day"]: bytes(r["salt"]) for r in await conn.fetch(_READ.format(s=s), missing)}
        cache.update(found)  # only now: committed
    for day in [d for d in cache if d < wanted[0]]:
        del cache[day]
