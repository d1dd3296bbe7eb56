"""Benchmark 8: a fleet of writer processes flushing the same keys into one PostgreSQL.

N writer processes (`fleet_worker.py`), each a `UsageStats` with its own pool, record the same
routes and call `flush()` as fast as they can for a bounded window, while a reader process reads
`table("day")` and `table("base")` and this process samples `pg_stat_activity` for backends waiting
on a lock. Afterwards: flushes absorbed per second, flush latency, lock waits, deadlocks
(`pg_stat_database`), and whether the database holds exactly what every writer recorded (through
`table("day")`, and counted again in SQL). The before package runs the same way beside today's.

The server is a private one (`private_pg.py`) of the shared test server's size but with 300
connections: 128 writers, the reader and the sampler do not fit in the shared server's 100.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from . import baseline, fleet_sql
from . import fleet_worker as worker
from .private_pg import SETTINGS, Bouncer, PrivateServer, binaries
from .report import Section

_ROOT = Path(__file__).resolve().parent.parent
SQL_CONNECTIONS = {False: 32, True: 8}  # connections of the SQL-only comparison (`fleet_sql.py`), full and quick
HEADROOM = 2  # the share of the measured rate that docs/scaling.md keeps free
POOLED = 20  # server connections of the pgbouncer run: the fleet shares them transaction by transaction
# The fleet's backends (the writers' and the reader's, or pgbouncer's server connections), and the
# state of those that hold a lock others wait for: in a statement ("running", or its wait event such
# as WALSync while committing), "client" (idle in transaction: waiting for its process to send the
# next statement or COMMIT), or "queued" (itself waiting, ahead of the others).
_SAMPLE = """
WITH a AS (
    SELECT pid, state, wait_event_type, wait_event FROM pg_stat_activity
    WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()
),
holders AS (SELECT DISTINCT unnest(pg_blocking_pids(pid)) AS pid FROM a WHERE wait_event_type = 'Lock')
SELECT (SELECT count(*) FROM a WHERE wait_event_type = 'Lock') AS waiting,
       (SELECT count(*) FROM a) AS connections,
       (SELECT coalesce(array_agg(wait_event), '{}') FROM a WHERE wait_event_type = 'Lock') AS events,
       (SELECT coalesce(array_agg(CASE WHEN a.wait_event_type = 'Lock' THEN 'queued'
                                       WHEN a.state = 'idle in transaction' THEN 'client'
                                       ELSE coalesce(a.wait_event, 'running') END), '{}')
        FROM holders JOIN a USING (pid)) AS holding
"""
_DB_STATS = "SELECT deadlocks, xact_commit, xact_rollback FROM pg_stat_database WHERE datname = current_database()"


@dataclass
class Run:
    """One window of N writers with one package."""

    package: str
    writers: int
    seconds: float
    flushes: int = 0
    failures: int = 0
    window: float = 0.0
    p50: float = 0.0
    p99: float = 0.0
    reads: int = 0
    read_p50: float = 0.0
    waiting_mean: float = 0.0
    waiting_max: int = 0
    waiting_share: float = 0.0  # of samples with at least one backend waiting on a lock
    wait_events: dict[str, int] = field(default_factory=dict)
    holders: dict[str, int] = field(default_factory=dict)  # states of the backends holding what others wait for
    connections_max: int = 0
    deadlocks: int = 0
    rollbacks: int = 0
    exact: bool = False
    mismatch: str = ""
    busy: float = 0.0  # share of the machine's CPU time busy during the window
    writer_cpu: float = 0.0  # share of the machine's CPU time spent in the writers' Python
    server_cpu: float = 0.0  # share of the machine's CPU time spent in PostgreSQL (every backend)
    server_ms_per_flush: float = 0.0  # PostgreSQL CPU time over the window per flush absorbed
    load: str = ""
    startup: float = 0.0

    @property
    def rate(self) -> float:
        return self.flushes / self.window if self.window else 0.0


def _loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def _cpu_times() -> tuple[float, float]:
    with open("/proc/stat") as f:
        values = [float(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


async def _spawn(job: dict[str, Any], errors: Any) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.fleet_worker",
        json.dumps(job),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=errors,
        cwd=_ROOT,
    )


async def _expect(procs: list[asyncio.subprocess.Process], word: bytes, errors: Any) -> None:
    for proc in procs:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=600)
        if line.strip() != word:
            errors.seek(0)
            raise RuntimeError(f"a fleet process failed: {errors.read()[-3000:].decode()}")


async def _sample(conn: asyncpg.Connection, run: Run, until: float) -> None:
    samples: list[int] = []
    while time.time() < until:
        row = await conn.fetchrow(_SAMPLE)
        assert row is not None
        samples.append(row["waiting"])
        run.connections_max = max(run.connections_max, row["connections"])
        for event in row["events"]:
            run.wait_events[event] = run.wait_events.get(event, 0) + 1
        for state in row["holding"]:
            run.holders[state] = run.holders.get(state, 0) + 1
        await asyncio.sleep(0.1)
    if samples:
        run.waiting_mean = statistics.fmean(samples)
        run.waiting_max = max(samples)
        run.waiting_share = sum(1 for s in samples if s) / len(samples)


async def _verify(job: dict[str, Any], results: list[dict[str, Any]], conn: asyncpg.Connection, run: Run) -> None:
    """Does the database hold exactly what the writers recorded (`table("day")`, and SQL)?"""
    expected: dict[tuple[str, str], int] = {}
    for result in results:
        for key, n in result["counts"].items():
            category, event = key.split("\t")
            expected[(category, event)] = expected.get((category, event), 0) + n
    visitors = set().union(*(r["visitors"] for r in results))
    users = set().union(*(r["users"] for r in results))
    async with worker.make_stats(job) as stats:
        table = await stats.table("day")
    counts = {(r.category, r.event): r.value for p in table.periods for r in p.rows if r.kind == "count"}
    seen = {r.event: r.value for p in table.periods for r in p.rows if r.kind == "distinct"}
    s = '"' + job["schema"] + '"'
    stored_sum = await conn.fetchval(f"SELECT sum(value) FROM {s}.counts")
    keys = dict(await conn.fetch(f"SELECT category, count(*) FROM {s}.seen_keys GROUP BY 1"))
    problems = []
    if counts != expected:
        wrong = [k for k in expected.keys() | counts.keys() if counts.get(k) != expected.get(k)]
        k = sorted(wrong)[0]
        problems.append(f"{len(wrong)} count rows differ, e.g. {k}: stored {counts.get(k)}, recorded {expected.get(k)}")
    if stored_sum != sum(expected.values()):
        problems.append(f"SQL sum {stored_sum} != recorded {sum(expected.values())}")
    want = {"visitor": len(visitors), "user": len(users)}
    if seen != want or keys != want:
        problems.append(f"distinct: table {seen}, stored keys {keys}, recorded {want}")
    run.exact = not problems
    run.mismatch = "; ".join(problems)


async def _window(
    server: PrivateServer, dsn: str, package: str, writers: int, seconds: float, *, bouncer: str | None = None
) -> Run:
    """N `writers` and a reader on `dsn` (or through the pgbouncer at `bouncer`) for `seconds`."""
    run = Run(package, writers, seconds)
    schema = "fleet_" + uuid.uuid4().hex[:10]
    base: dict[str, Any] = {"dsn": dsn, "schema": schema, "package": package, "seconds": seconds}
    async with worker.make_stats(base):
        pass  # the schema, its settings and go-live, before the fleet starts
    conn = await asyncpg.connect(dsn)
    procs: list[asyncio.subprocess.Process] = []
    errors = tempfile.TemporaryFile()  # noqa: SIM115 (closed in the finally clause)
    try:
        started = time.monotonic()
        fleet = base if bouncer is None else {**base, "dsn": bouncer, "statement_cache_size": 0}
        jobs = [{**fleet, "role": "writer", "seed": i} for i in range(writers)] + [{**fleet, "role": "reader"}]
        procs = [await _spawn(job, errors) for job in jobs]
        await _expect(procs, b"ready", errors)
        run.startup = time.monotonic() - started
        before = await conn.fetchrow(_DB_STATS)
        go = time.time() + 1.0
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{go}\n".encode())
            await proc.stdin.drain()
        await asyncio.sleep(max(0.0, go - time.time()))
        cpu0, server0 = _cpu_times(), server.cpu_ticks()
        await _sample(conn, run, go + seconds)
        await _expect(procs, b"done", errors)  # each writer's last flush, started in the window, is in
        cpu1, server1 = _cpu_times(), server.cpu_ticks()
        run.load = _loadavg()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"exit\n")
            await proc.stdin.drain()
        outputs = [await proc.communicate() for proc in procs]
        if any(proc.returncode for proc in procs):
            errors.seek(0)
            raise RuntimeError(f"a fleet process failed: {errors.read()[-3000:].decode()}")
        results = [json.loads(out.splitlines()[-1]) for out, _ in outputs]
        await asyncio.sleep(1.0)  # the exited backends' statistics reach pg_stat_database
        after = await conn.fetchrow(_DB_STATS)
        assert before is not None
        assert after is not None
        run.deadlocks = after["deadlocks"] - before["deadlocks"]
        run.rollbacks = after["xact_rollback"] - before["xact_rollback"]
        written, read = results[:-1], results[-1]
        latencies = [t for r in written for t in r["latencies"]]
        run.flushes = len(latencies)
        run.failures = sum(r["failures"] for r in written)
        run.window = max(r["elapsed"] for r in written)
        if len(latencies) >= 2:
            q = statistics.quantiles(latencies, n=100)
            run.p50, run.p99 = statistics.median(latencies), q[98]
        run.reads = len(read["latencies"])
        run.read_p50 = statistics.median(read["latencies"]) if read["latencies"] else 0.0
        busy, total = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
        ticks = os.sysconf("SC_CLK_TCK")
        run.busy = busy / total if total else 0.0
        run.server_cpu = (server1 - server0) / total if total else 0.0
        run.server_ms_per_flush = (server1 - server0) / ticks * 1e3 / max(1, run.flushes)
        run.writer_cpu = sum(r["cpu"] for r in written) * ticks / total if total else 0.0
        await _verify(base, written, conn, run)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        errors.close()
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()
    return run


def _shares(counts: dict[str, int]) -> str:
    total = sum(counts.values()) or 1
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:4]
    return ", ".join(f"{e} {n / total:.0%}" for e, n in top) or "none"


def _describe(run: Run) -> tuple[str, str]:
    kinds = _shares(run.wait_events)
    holders = _shares({k: v for k, v in run.holders.items() if k != "queued"})
    figure = (
        f"{run.rate:,.0f} flushes/s ({run.flushes:,} in {run.window:.1f} s); flush p50 {run.p50 * 1e3:.0f} ms, "
        f"p99 {run.p99 * 1e3:.0f} ms; reader {run.reads} tables, p50 {run.read_p50 * 1e3:.0f} ms"
    )
    detail = (
        f"waiting on a lock: mean {run.waiting_mean:.1f}, max {run.waiting_max} backends, in "
        f"{run.waiting_share:.0%} of samples ({kinds}); lock holders: {holders}; deadlocks {run.deadlocks}, "
        f"failed flushes {run.failures}, rollbacks {run.rollbacks}; "
        f"totals exact: {'yes' if run.exact else 'no: ' + run.mismatch}; "
        f"CPU busy {run.busy:.0%} (PostgreSQL {run.server_cpu:.0%}, {run.server_ms_per_flush:.1f} ms per flush; "
        f"writers' Python {run.writer_cpu:.0%}), load {run.load}, "
        f"{run.connections_max} connections, start-up {run.startup:.0f} s"
    )
    return figure, detail


async def _all(quick: bool) -> Section:
    sizes = (1, 8) if quick else (1, 8, 32, 64, 128)
    seconds = 3.0 if quick else 15.0
    flush_rows = worker.ROUTES * len(worker.CATEGORIES)
    section = Section(
        "9. A fleet of writers on one PostgreSQL",
        f"N writer processes (each a `UsageStats` with its own asyncpg pool: the library's pool, min 0 and "
        f"max 4 connections, of which a writer that only flushes uses one) record {worker.ROUTES} routes x "
        f"{len(worker.CATEGORIES)} categories ({flush_rows} count rows, the same in every writer) plus "
        f"{worker.VISITORS_PER_FLUSH} visitors and {worker.USERS_PER_FLUSH} users from shared pools, and "
        f"call flush() again at once, for {seconds:.0f} s; a reader process reads table('day') and "
        f"table('base') meanwhile, pausing {worker.READ_PAUSE} s between reads. "
        "Lock waits sampled from pg_stat_activity every 100 ms, with the state of the "
        "backends holding what the others wait for (pg_blocking_pids); deadlocks from "
        "pg_stat_database; totals checked through table('day') and in SQL. Server: a private PostgreSQL "
        f"{binaries().parent.name if binaries() else '?'} started for this benchmark with the shared test "
        f"server's settings ({', '.join(f'{k}={v}' for k, v in SETTINGS.items())}) but max_connections=300, "
        f"loopback, on this {os.cpu_count()}-core machine shared with the writers.",
    )
    if binaries() is None:
        section.note += " Not run: no PostgreSQL server binaries here."
        return section
    before = "usage_stats_before" if baseline.load() is not None else None
    runs: dict[tuple[str, int], Run] = {}
    server = PrivateServer(max_connections=300)
    with server as dsn:
        for i, n in enumerate(sizes):
            packages = ["usage_stats", before] if i % 2 == 0 else [before, "usage_stats"]
            for package in packages:
                if package is not None:
                    runs[(package, n)] = await _window(server, dsn, package, n, seconds)
        pooled = None
        if Bouncer.available():
            with Bouncer(server.port, pool_size=POOLED) as bouncer:
                pooled = await _window(server, dsn, "usage_stats", sizes[-1], seconds, bouncer=bouncer)
        queued = await fleet_sql.compare(
            server,
            dsn,
            n=SQL_CONNECTIONS[quick],
            seconds=seconds / 2,
            routes=worker.ROUTES,
            categories=worker.CATEGORIES,
        )
    for n in sizes:
        now = runs[("usage_stats", n)]
        then = runs.get(("usage_stats_before", n)) if before else None
        for label, run in (("before", then), ("after", now)):
            if run is None:
                continue
            figure, detail = _describe(run)
            ratio = f"{now.rate / then.rate:.2f}x before's flushes/s" if label == "after" and then else ""
            ok = run.deadlocks == 0 and run.exact and run.failures == 0
            section.row(f"N={n} writers, {label}", figure, ratio, "no deadlock, totals exact", ok)
            section.row(f"N={n} writers, {label}: locks, totals, machine", detail, "", "", None)
    if pooled is not None:
        figure, detail = _describe(pooled)
        ok = pooled.deadlocks == 0 and pooled.exact and pooled.failures == 0
        label = f"N={sizes[-1]} writers through pgbouncer ({POOLED} server connections), after"
        ratio = f"{pooled.rate / runs[('usage_stats', sizes[-1])].rate:.2f}x direct"
        section.row(label, figure, ratio, "no deadlock, totals exact", ok)
        section.row(f"{label}: locks, totals, machine", detail, "", "", None)
    else:
        section.note += " The run through pgbouncer was skipped: pgbouncer is not installed."
    today = None
    for name, (rate, cpu) in queued.items():
        today = today or rate
        section.row(
            f"SQL only, {SQL_CONNECTIONS[quick]} connections, a flush-shaped transaction {name}",
            f"{rate:,.0f} transactions/s, PostgreSQL {cpu:.1f} ms CPU each",
            f"{rate / today:.2f}x",
        )
    after_runs = [runs[("usage_stats", n)] for n in sizes] + ([pooled] if pooled else [])
    before_runs = [runs[("usage_stats_before", n)] for n in sizes] if before else []

    def safe(rs: list[Run]) -> str:
        if not rs:
            return ""
        return f"{sum(r.deadlocks for r in rs)} deadlocks; exact {'yes' if all(r.exact for r in rs) else 'no'}"

    label = "N = " + ", ".join(str(n) for n in sizes)
    section.goal(
        f"fleet: deadlocks, totals exact ({label} writer processes)",
        "0; yes at every N",
        safe(before_runs),
        safe(after_runs),
        all(r.deadlocks == 0 and r.exact and r.failures == 0 for r in after_runs),
    )
    top = sizes[-1]
    section.goal(
        f"fleet: flushes/s absorbed, N={top} ({flush_rows} shared count rows each)",
        "",
        f"{runs[(before, top)].rate:,.0f}" if before else "",
        f"{runs[('usage_stats', top)].rate:,.0f}",
        None,
    )

    def workers(rate: float) -> str:
        return f"{rate * 60 / HEADROOM:,.0f}"

    section.goal(
        f"fleet: workers flushing every 60 s that one such PostgreSQL serves (N={top}'s flushes/s x 60 / "
        f"{HEADROOM}, docs/scaling.md)",
        "",
        workers(runs[(before, top)].rate) if before else "",
        workers(runs[("usage_stats", top)].rate),
        None,
    )
    return section


def run(quick: bool = False) -> Section:
    return asyncio.run(_all(quick))
