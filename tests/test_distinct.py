"""Distinct users and visitors per day: address prefixes, the three user schemes, several workers."""

from __future__ import annotations

from datetime import date

import anyio
import pytest

from tests.conftest import FakeClock, StatsFactory
from usage_stats import UsageStats

SCHEMES = ["hashed", "memory", "database"]


async def distinct(stats: UsageStats) -> dict[tuple[date, str], int | float]:
    """Flush, then (day, seen category) -> distinct count from the day table."""
    await stats.flush()
    table = await stats.table("day")
    return {(p.start.date(), r.event): r.value for p in table.periods for r in p.rows if r.kind == "distinct"}


D1, D2 = date(2026, 3, 10), date(2026, 3, 11)


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_addresses_in_one_network_count_once(make_stats: StatsFactory, scheme: str) -> None:
    async with make_stats(user_ids=scheme) as stats:
        for ip in ("192.0.2.1", "192.0.2.200", "::ffff:192.0.2.33"):  # one /24
            stats.seen_visitor(ip)
        stats.seen_visitor("192.0.3.1")  # the next /24
        for ip in ("2001:db8:aaaa::1", "2001:db8:aaaa:ffff::2"):  # one /48
            stats.seen_visitor(ip)
        stats.seen_visitor("2001:db8:aaab::1")  # the next /48
        stats.seen_visitor("not an address")
        assert await distinct(stats) == {(D1, "visitor"): 4}


async def test_custom_prefixes(make_stats: StatsFactory) -> None:
    async with make_stats(ip_prefix_v4=16, ip_prefix_v6=32) as stats:
        for ip in ("192.0.2.1", "192.0.99.1", "2001:db8:1::1", "2001:db8:2::1", "2001:db9::1"):
            stats.seen_visitor(ip)
        assert await distinct(stats) == {(D1, "visitor"): 3}


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_users_count_once_per_day(make_stats: StatsFactory, clock: FakeClock, scheme: str) -> None:
    async with make_stats(user_ids=scheme) as stats:
        stats.seen_user("alice")
        stats.seen_user("alice")
        stats.seen_user(7)
        await stats.flush()
        clock.advance(hours=5)
        stats.seen_user("alice")  # a later flush of the same day: still one
        stats.seen_user("7")  # the same ID as text
        stats.seen_user("")  # no user
        stats.seen_user(None)
        stats.seen_user("alice", category="admin")  # its own seen category
        await stats.flush()
        clock.advance(days=1)
        stats.seen_user("alice")
        assert await distinct(stats) == {(D1, "user"): 2, (D1, "admin"): 1, (D2, "user"): 1}


@pytest.mark.parametrize(("scheme", "expected"), [("hashed", 1), ("database", 1), ("memory", 2)])
async def test_two_workers_on_one_schema(make_stats: StatsFactory, scheme: str, expected: int) -> None:
    # The memory scheme's stand-ins live in each process: a second worker counts the same user
    # (and the same visitor) again. That is the documented price of keeping nothing in the database.
    async with make_stats(user_ids=scheme) as one, make_stats(user_ids=scheme) as two:
        one.seen_user("shared")
        two.seen_user("shared")
        one.seen_user("only-one")
        one.seen_visitor("198.51.100.1")
        two.seen_visitor("198.51.100.2")
        await one.flush()
        assert await distinct(two) == {(D1, "user"): expected + 1, (D1, "visitor"): expected}


@pytest.mark.parametrize(("scheme", "expected"), [("hashed", 1), ("database", 1), ("memory", 2)])
async def test_a_restart_on_the_same_day(make_stats: StatsFactory, scheme: str, expected: int) -> None:
    async with make_stats(user_ids=scheme) as before:
        before.seen_user("alice")
    async with make_stats(user_ids=scheme) as after:
        after.seen_user("alice")
        assert await distinct(after) == {(D1, "user"): expected}


async def test_hashed_workers_share_one_salt_per_day(make_stats: StatsFactory, clock: FakeClock) -> None:
    async with make_stats() as one, make_stats() as two:
        one.seen_user("x")
        await one.flush()
        two.seen_user("x")
        await two.flush()
        clock.advance(days=1)
        two.seen_user("x")
        one.seen_user("x")
        assert await distinct(one) == {(D1, "user"): 1, (D2, "user"): 1}


async def test_users_and_visitors_with_the_same_text_stay_apart(make_stats: StatsFactory) -> None:
    async with make_stats() as stats:
        stats.seen_user("192.0.2.0")
        stats.seen_visitor("192.0.2.0")
        stats.seen_user("v", category="visitor")  # even in one seen category
        stats.seen_visitor("192.0.2.9")
        assert await distinct(stats) == {(D1, "user"): 1, (D1, "visitor"): 2}


@pytest.mark.parametrize("scheme", ["hashed", "database"])
async def test_two_workers_flushing_at_the_same_time_are_exact(make_stats: StatsFactory, scheme: str) -> None:
    async with make_stats(user_ids=scheme) as one, make_stats(user_ids=scheme) as two:
        for _ in range(5):
            for worker, offset in ((one, 0), (two, 100)):
                for i in range(200):
                    worker.seen_user(f"user{offset + i}")  # users 100..199 are seen by both
                    worker.count(f"/page{i % 20}", "page")
            async with anyio.create_task_group() as tg:
                tg.start_soon(one.flush)
                tg.start_soon(two.flush)
        table = await two.table("day")
    day = table.periods[0]
    assert day.get("seen", "user", "distinct").value == 300  # type: ignore[union-attr]
    assert table.total("page", "/page0") == 5 * 2 * 10
    assert sum(r.value for r in day.rows if r.category == "page") == 5 * 2 * 200
