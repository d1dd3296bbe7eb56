"""`usage-stats`: report, mark, maintain, migrate and settings from a shell.

Configuration is read like `UsageConfig.from_env()` (USAGE_STATS_DSN, USAGE_STATS_SCHEMA, ...), with
`--dsn` and `--schema` overriding. `timezone`, `base_period` and `user_ids` come from the schema
where they are recorded and the environment is silent; an environment that disagrees is a usage
error. Exit status: 0 success, 1 the database failed, 2 a usage error. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import NoReturn, TextIO

import anyio

from . import __version__
from .config import UsageConfig
from .db import maintenance
from .db.settings import RECORDED, Settings, adopt_settings
from .db.store import Store
from .embedded import start_embedded
from .errors import ConfigError, StoreUnavailableError, UsageStatsError
from .periods import PERIODS, Calendar
from .sanitise import clean_name
from .tables import formats
from .tables.read import Reader

__all__ = ["main"]

EXIT_OK, EXIT_DATABASE, EXIT_USAGE = 0, 1, 2
Now = Callable[[], datetime]  # the commands' clock: an aware datetime
PROG = "usage-stats"


class UsageError(UsageStatsError):
    """A command line that cannot be run as given (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def _since(text: str) -> date | datetime:
    try:
        return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD) or ISO 8601 time") from None


def _minimum(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of zero or more")
    return int(value) if value.is_integer() else value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (`--dsn`/`--schema` are accepted before or after the command)."""
    common = _Parser(add_help=False)
    common.add_argument("--dsn", default=argparse.SUPPRESS, help="PostgreSQL DSN (default: $USAGE_STATS_DSN)")
    common.add_argument("--schema", default=argparse.SUPPRESS, help="schema (default: $USAGE_STATS_SCHEMA or usage)")
    parser = _Parser(prog=PROG, parents=[common], description="Usage statistics kept by usage_stats in PostgreSQL.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    report = commands.add_parser("report", parents=[common], help="print a table (only reads)")
    report.add_argument("--period", choices=PERIODS, default="day", help="default: day")
    report.add_argument("--format", choices=("text", "csv", "json"), default="text", help="default: text")
    report.add_argument("--since", type=_since, help="first day (YYYY-MM-DD, in the configured time zone)")
    report.add_argument("--minimum", type=_minimum, default=0, metavar="N", help="leave out values below N")
    report.add_argument("--category", action="append", metavar="C", help="only category C (repeatable)")

    mark = commands.add_parser("mark", parents=[common], help="record a named point in time now")
    mark.add_argument("name", help="what happened, e.g. 'deploy 1.4'")
    mark.add_argument("--category", default="timeline", help="default: timeline")

    commands.add_parser("maintain", parents=[common], help="run roll-ups and retention for ended days")
    commands.add_parser("migrate", parents=[common], help="create or update the schema")

    settings = commands.add_parser(
        "settings",
        parents=[common],
        help="show, or change on purpose, the settings recorded in the schema",
        description="Without options, show the timezone, base period and user ID scheme recorded in the schema. "
        "With options, record new values: timezone and base period only while the schema holds no counts "
        "or distinct keys, user IDs only while no distinct keys wait for day-end maintenance. Stop every "
        "process first; each must then start with the new values. The environment is ignored here.",
    )
    settings.add_argument("--timezone", metavar="ZONE", help="IANA time zone, e.g. Pacific/Auckland")
    settings.add_argument("--base-period", type=_seconds, metavar="SECONDS", help="e.g. 3600")
    settings.add_argument("--user-ids", choices=("hashed", "memory", "database"))
    return parser


def _seconds(text: str) -> timedelta:
    try:
        return timedelta(seconds=int(text))
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds") from None


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    clock: Now | None = None,
) -> int:
    """Run the command line `argv` (default: `sys.argv[1:]`); returns the exit status.

    `clock` (an aware `datetime` each call; the real time by default) is the "now" of `report`, `mark`
    and `maintain`, for tests.
    """
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    try:
        args = build_parser().parse_args(argv)
        overrides = {name: getattr(args, name) for name in ("dsn", "schema") if name in args}
        config = UsageConfig.from_env(**overrides)
        explicit = frozenset(name for name in RECORDED if f"USAGE_STATS_{name.upper()}" in os.environ)
        return anyio.run(_run, args, config, explicit, out, clock or _utc_now)
    except (UsageError, ConfigError) as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=err)
        return EXIT_USAGE
    except (StoreUnavailableError, UsageStatsError) as exc:
        print(f"{PROG}: database error: {_one_line(exc)}", file=err)
        return EXIT_DATABASE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=err)
        return 130
    except Exception as exc:
        print(f"{PROG}: unexpected error: {type(exc).__name__}: {_one_line(exc)}", file=err)
        return EXIT_DATABASE


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _utc_now() -> datetime:
    return datetime.now(UTC)


async def _run(args: argparse.Namespace, config: UsageConfig, explicit: frozenset[str], out: TextIO, now: Now) -> int:

    dsn, embedded = config.dsn, None
    if dsn is None:  # like the example app: the embedded server, held until the command is done
        dsn, embedded = await start_embedded()
    try:
        read_only = args.command == "report"
        async with Store.connect(
            dsn, config.schema, read_only=read_only, statement_cache_size=config.statement_cache_size
        ) as store:
            if args.command != "settings":
                config = adopt_settings(config, await store.settings(), explicit)
            return await _COMMANDS[args.command](store, args, config, out, now)
    finally:
        if embedded is not None:
            with anyio.CancelScope(shield=True):
                await embedded.release()


async def _report(store: Store, args: argparse.Namespace, config: UsageConfig, out: TextIO, now: Now) -> int:
    await _require_schema(store, config)
    start = None
    if args.since is not None:
        start = _start_of(args.since, config)
    reader = Reader(store, config)
    table = await reader.table(args.period, now=now(), start=start, minimum=args.minimum, categories=args.category)
    if args.format == "csv":
        out.write(formats.to_csv(table))
    elif args.format == "json":
        out.write(formats.to_json(table) + "\n")
    else:
        out.write(formats.render_text(table))
    return EXIT_OK


def _start_of(since: date | datetime, config: UsageConfig) -> datetime:
    zone = config.zone
    if isinstance(since, datetime):
        return since if since.tzinfo is not None else since.replace(tzinfo=zone)

    return Calendar(zone, config.base_period).day_start(since)


async def _require_schema(store: Store, config: UsageConfig) -> None:
    if await store.schema_version() is None:
        raise UsageStatsError(
            f"schema {config.schema!r} holds no usage statistics in this database "
            f"(run `{PROG} migrate`, or start the app once)"
        )


async def _mark(store: Store, args: argparse.Namespace, config: UsageConfig, out: TextIO, now: Now) -> int:
    name, category = clean_name(args.name).strip(), clean_name(args.category).strip()
    if not name or not category:
        raise UsageError("a mark needs a non-empty name and category")
    await store.migrate(config)
    at = now()
    await store.add_mark(name, category, at)
    local = at.astimezone(config.zone)
    print(f"marked {name!r} ({category}) at {local:%Y-%m-%d %H:%M:%S %Z}", file=out)
    return EXIT_OK


async def _maintain(store: Store, args: argparse.Namespace, config: UsageConfig, out: TextIO, now: Now) -> int:
    await _require_schema(store, config)
    calendar = Calendar(config.zone, config.base_period)
    go_live = next((m.at for m in await store.marks() if m.name == "go-live"), None)
    if go_live is None:
        print("nothing to maintain: the service has not gone live yet", file=out)
        return EXIT_OK
    plan = maintenance.plan(config, calendar, now().timestamp())  # the running service's rule
    days = await store.maintain(calendar, plan, first_day=calendar.day_of(go_live.timestamp()))
    if days:
        print(f"maintained {len(days)} day(s): {days[0]} to {days[-1]}", file=out)
    else:
        print(f"nothing to maintain: every day up to {plan.last_ended} was done already", file=out)
    return EXIT_OK


async def _migrate(store: Store, args: argparse.Namespace, config: UsageConfig, out: TextIO, now: Now) -> int:
    done = await store.migrate(config, now=now())
    state = f"applied {done.applied} migration(s)" if done.applied else "already up to date"
    print(f"schema {config.schema}: {state}, at version {done.version}", file=out)
    print(f"settings: {_describe(done.settings)}", file=out)
    return EXIT_OK


def _describe(settings: Settings) -> str:
    return ", ".join(f"{name} {settings.describe(name)}" for name in RECORDED)


async def _settings(store: Store, args: argparse.Namespace, config: UsageConfig, out: TextIO, now: Now) -> int:
    await _require_schema(store, config)
    stored = await store.settings()
    wanted = {name: getattr(args, name) for name in RECORDED if getattr(args, name) is not None}
    if not wanted:
        shown = "none recorded yet (the next process to start records its own)" if stored is None else _describe(stored)
        print(f"schema {config.schema}: {shown}", file=out)
        return EXIT_OK
    base = config if stored is None else dataclasses.replace(config, **dataclasses.asdict(stored))
    new = Settings.of(dataclasses.replace(base, **wanted))  # validated like any configuration
    old = await store.change_settings(new)
    if old == new:
        print(f"schema {config.schema}: unchanged, {_describe(new)}", file=out)
    else:
        print(f"schema {config.schema}: recorded {_describe(new)}", file=out)
        print("every process on this schema must now start with these values", file=out)
    return EXIT_OK


Command = Callable[[Store, argparse.Namespace, UsageConfig, TextIO, Now], Awaitable[int]]
_COMMANDS: dict[str, Command] = {
    "report": _report,
    "mark": _mark,
    "maintain": _maintain,
    "migrate": _migrate,
    "settings": _settings,
}
