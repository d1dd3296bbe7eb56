"""Proof of issue 9 (items 1-2): random recording, flushes, day ends and injected faults, with two
processes on one schema; after recovery every count is stored exactly once, every distinct key is
counted once, and no key or salt of a closed day is left.

Faults (through `wire.WireProxy`, at a chosen message of a flush): the connection cut before or after
COMMIT reached the server, the backend killed with `pg_terminate_backend` before the flush, during
its writes, before or after COMMIT, a real statement timeout during the writes, and a data error (a
count that a CHECK constraint refuses: by design that row alone is dropped and the rest of the flush
stored, so it is left out of what is expected).
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import anyio
import asyncpg
import pytest
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st

from tests.conftest import FakeClock
from usage_stats import StoreUnavailableError, UsageConfig, UsageStats
from usage_stats.db import flush, ledger
from usage_stats.delivery import FlushId

from .wire import SLOW_WHEN_TIMED_OUT, WireProxy

LOCK = "xact_lock_shared"  # in a flush's or a salt's transaction (other transactions are left alone)
WRITES = "counts AS c"  # in a flush's transaction, once its counts are written
REFUSED = "refused"  # an event name the test's CHECK constraint refuses
FAULTS: list[tuple[str, str, str | None]] = [  # the ambiguous ones first: hypothesis favours early choices
    ("COMMIT", "cut_after", WRITES),  # stored, the answer lost
    ("COMMIT", "kill_after", WRITES),  # stored, the backend killed before it answered
    ("COMMIT", "kill_before", WRITES),  # COMMIT sent to a killed backend: not stored
    ("COMMIT", "cut_before", WRITES),  # COMMIT never sent to the server
    ("counts AS c", "timeout", LOCK),  # a statement timeout during the writes
    ("seen_keys", "kill_before", LOCK),
    ("counts AS c", "cut_before", LOCK),
    ("pg_advisory_xact_lock_shared", "kill_before", None),  # before anything is written
    ("COMMIT", "cut_after", LOCK),  # the first COMMIT of a flush: its salt's when it makes one
    (REFUSED, "data_error", None),  # a count that a CHECK constraint refuses: dropped, the rest stored
    ("COPY", "kill_before", LOCK),  # while the rows are copied into the flush's temporary tables
]

Step = tuple[Any, ...]
who = st.integers(0, 1)
record = st.tuples(st.integers(0, 3), st.integers(0, 4), st.integers(1, 9))  # event, key, count
steps = st.lists(
    st.one_of(
        st.tuples(st.just("record"), who, record),
        # Recording, then a flush with a fault (twice as likely as the other steps), or without.
        st.tuples(st.just("flush"), who, record, st.sampled_from(FAULTS)),
        st.tuples(st.just("flush"), who, record, st.sampled_from(FAULTS)),
        st.tuples(st.just("flush"), who, record, st.none()),
        st.tuples(st.just("wait"), st.sampled_from([1, 7, 16])),  # hours
        st.tuples(st.just("day_end"), who),
    ),
    min_size=4,
    max_size=12,
)

START = datetime(2026, 3, 10, 9, tzinfo=UTC)
LOST_REPLY: list[Step] = [("flush", 0, (1, 1, 5), ("COMMIT", "cut_after", WRITES)), ("flush", 0, (1, 2, 1), None)]


class Expected:
    """What the two processes recorded: counts per event, and distinct keys per (day, category)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.keys: dict[tuple[date, str], set[str]] = {}

    def record(self, stats: UsageStats, day: date, event: int, key: int, n: int) -> None:
        stats.add(f"e{event}", "c", n)
        self.counts[f"e{event}"] += n
        stats.seen_visitor(f"192.0.{key}.1")
        self.keys.setdefault((day, "visitor"), set()).add(f"v{key}")
        if key % 2:
            stats.seen_user(f"user{key}")
            self.keys.setdefault((day, "user"), set()).add(f"u{key}")


async def _flush(stats: UsageStats, proxy: WireProxy, fault: tuple[str, str, str | None] | None) -> None:
    if fault is not None and fault[1] == "data_error":
        stats.add(REFUSED, "c", 1)  # never expected in the database
        event("fault injected: a data error")
        fault = None
    armed = None if fault is None else proxy.arm(fault[0], fault[1], within=fault[2])
    try:
        await stats.flush()
    except StoreUnavailableError:
        pass
    finally:
        proxy.disarm()
    if armed is not None and armed.fired:
        event(f"fault injected: {armed.action} at {armed.match!r} after {armed.within!r}")


async def _recover(stats: UsageStats) -> None:
    for _ in range(5):
        try:
            await stats.flush()
            return
        except StoreUnavailableError:  # a pooled connection killed by an earlier fault
            continue
    await stats.flush()


async def run_scenario(dsn: str, steps: list[Step]) -> None:
    schema = "x_" + uuid.uuid4().hex[:12]
    clock = FakeClock(START)
    expected = Expected()
    with WireProxy(dsn) as proxy:
        config = UsageConfig(dsn=proxy.dsn, schema=schema, flush_interval=timedelta(hours=1))
        admin = await asyncpg.connect(dsn)
        try:
            async with UsageStats(config, clock=clock) as first, UsageStats(config, clock=clock) as second:
                await admin.execute(
                    f'CREATE FUNCTION "{schema}".slow() RETURNS trigger LANGUAGE plpgsql AS $${SLOW_WHEN_TIMED_OUT}$$;'
                    f'CREATE TRIGGER slow BEFORE INSERT ON "{schema}".counts '
                    f'FOR EACH STATEMENT EXECUTE FUNCTION "{schema}".slow();'
                    f"ALTER TABLE \"{schema}\".counts ADD CONSTRAINT no_refused CHECK (event <> '{REFUSED}')"
                )
                processes = (first, second)
                for step in steps:
                    if step[0] in ("record", "flush"):
                        expected.record(processes[step[1]], first.now.date(), *step[2])
                    if step[0] == "flush":
                        await _flush(processes[step[1]], proxy, step[3])
                    elif step[0] == "wait":
                        clock.advance(hours=step[1])
                    elif step[0] == "day_end":  # every process flushes within the grace period, then one closes the day
                        for stats in processes:
                            await _recover(stats)
                        clock.advance(days=1)
                        await processes[step[1]].maintain()
                for stats in processes:
                    await _recover(stats)
            await _check(admin, schema, expected)
        finally:
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await admin.close()


async def _check(db: asyncpg.Connection, schema: str, expected: Expected) -> None:
    s = f'"{schema}"'
    stored = {r["event"]: r["n"] for r in await db.fetch(f"SELECT event, sum(value) AS n FROM {s}.counts GROUP BY 1")}
    assert stored == dict(expected.counts), "every count stored exactly once"
    closed = await db.fetchval(f"SELECT maintained_through FROM {s}.state")
    distinct: dict[tuple[date, str], int] = {}
    for r in await db.fetch(f"SELECT day, category, count(*) AS n FROM {s}.seen_keys GROUP BY 1, 2"):
        distinct[(r["day"], r["category"])] = r["n"]
    for r in await db.fetch(f"SELECT start, category, value FROM {s}.distinct_counts WHERE level = 2"):
        distinct[(r["start"].astimezone(UTC).date(), r["category"])] = r["value"]
    assert distinct == {k: len(v) for k, v in expected.keys.items()}, "every distinct key counted once"
    if closed is not None:
        left = await db.fetchval(
            f"SELECT (SELECT count(*) FROM {s}.seen_keys WHERE day <= $1) + (SELECT count(*) FROM {s}.salts"
            " WHERE day <= $1)",
            closed,
        )
        assert left == 0, "no key or salt of a closed day left"


# Flushes of more rows than this are copied into temporary tables (as a large flush is), smaller ones
# sent as arrays: the scenarios' flushes take both ways.
SMALL_FLUSH = 3


@example(steps=LOST_REPLY)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=steps)
def test_every_count_once_under_faults(pg_dsn: str, monkeypatch: pytest.MonkeyPatch, steps: list[Step]) -> None:
    monkeypatch.setattr(flush, "SMALL_FLUSH", SMALL_FLUSH)
    anyio.run(run_scenario, pg_dsn, steps)


def test_without_the_ledger_check_a_counterexample_is_found(pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The property has teeth: with the ledger claiming every id as new, hypothesis finds a doubled flush."""
    claim = ledger.claim

    async def unchecked_claim(conn: asyncpg.Connection, s: str, flush: FlushId, at: datetime) -> tuple[bool, Any]:
        return True, (await claim(conn, s, flush, at))[1]  # every id taken for new

    monkeypatch.setattr(ledger, "claim", unchecked_claim)
    monkeypatch.setattr(flush, "SMALL_FLUSH", SMALL_FLUSH)

    @settings(max_examples=30, deadline=None, derandomize=True, phases=[Phase.generate], database=None)
    @given(steps=steps)
    def unchecked(steps: list[Step]) -> None:
        anyio.run(run_scenario, pg_dsn, steps)

    with pytest.raises(AssertionError, match="every count stored exactly once"):
        unchecked()
