"""`UsageConfig`: one frozen, validated configuration object, optionally read from the environment."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigError

__all__ = ["ForwardedHeader", "IPNetwork", "UsageConfig", "UserIdScheme", "redact_dsn"]

UserIdScheme = Literal["hashed", "memory", "database"]
ForwardedHeader = Literal["x-forwarded-for", "forwarded"]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_SCHEMES = ("hashed", "memory", "database")
_FORWARDED_HEADERS = ("x-forwarded-for", "forwarded")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_DAY = timedelta(days=1)


def redact_dsn(dsn: str | None) -> str | None:
    """Return `dsn` with any password replaced by `***`, fit for a repr or a log line."""
    if dsn is None:
        return None
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "<unparsable dsn>"
    if parts.password is None:
        redacted = dsn
    else:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        redacted = urlunsplit(parts._replace(netloc=netloc))
    # key=value DSNs and query strings may carry a password too
    return re.sub(r"(password=)[^&\s]*", r"\1***", redacted, flags=re.IGNORECASE)


@dataclasses.dataclass(frozen=True, kw_only=True)
class UsageConfig:
    """How usage statistics are collected, kept and stored.

    Every field has a sensible default; invalid values raise `ConfigError` naming the field::

        config = UsageConfig(dsn="postgresql://app@db/app", timezone="Europe/London")
        config = UsageConfig.from_env()   # USAGE_STATS_DSN, USAGE_STATS_TIMEZONE, ...
    """

    dsn: str | None = dataclasses.field(default=None, repr=False)
    schema: str = "usage"
    base_period: timedelta = timedelta(hours=1)
    timezone: str = "UTC"
    flush_interval: timedelta = timedelta(seconds=60)
    keep_base_days: int = 1
    keep_days: int = 7
    keep_event_months: int = 3
    keep_months: int = 24
    user_ids: UserIdScheme = "hashed"
    ip_prefix_v4: int = 24
    ip_prefix_v6: int = 48
    trusted_proxies: Sequence[str | IPNetwork] = ()
    forwarded_header: ForwardedHeader = "x-forwarded-for"
    max_keys_per_period: int = 10_000
    shutdown_timeout: timedelta = timedelta(seconds=10)
    statement_cache_size: int = 100

    def __post_init__(self) -> None:
        if self.dsn is not None and (not isinstance(self.dsn, str) or not self.dsn.strip()):
            raise ConfigError("dsn: must be a non-empty PostgreSQL DSN string or None")
        if not isinstance(self.schema, str) or not _IDENTIFIER.fullmatch(self.schema):
            raise ConfigError(f"schema: {self.schema!r} is not a plain SQL identifier (letters, digits, _)")
        self._check_durations()
        for name in ("keep_base_days", "keep_days", "keep_event_months", "keep_months"):
            _check_int(name, getattr(self, name), 0, 100_000)
        if self.user_ids not in _SCHEMES:
            raise ConfigError(f"user_ids: {self.user_ids!r} is not one of {', '.join(_SCHEMES)}")
        _check_int("ip_prefix_v4", self.ip_prefix_v4, 0, 32)
        _check_int("ip_prefix_v6", self.ip_prefix_v6, 0, 128)
        _check_int("max_keys_per_period", self.max_keys_per_period, 1, 100_000_000)
        _check_int("statement_cache_size", self.statement_cache_size, 0, 100_000)
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
            raise ConfigError(f"timezone: {self.timezone!r} is not an IANA time zone") from exc
        object.__setattr__(self, "trusted_proxies", _parse_networks(self.trusted_proxies))
        header = self.forwarded_header.lower() if isinstance(self.forwarded_header, str) else None
        if header not in _FORWARDED_HEADERS:
            allowed = ", ".join(_FORWARDED_HEADERS)
            raise ConfigError(f"forwarded_header: {self.forwarded_header!r} is not one of {allowed}")
        object.__setattr__(self, "forwarded_header", header)

    def _check_durations(self) -> None:
        for name in ("base_period", "flush_interval", "shutdown_timeout"):
            value = getattr(self, name)
            if not isinstance(value, timedelta):
                raise ConfigError(f"{name}: must be a datetime.timedelta, not {type(value).__name__}")
        base = self.base_period
        if not timedelta(minutes=1) <= base <= _DAY or base.microseconds or _DAY % base:
            raise ConfigError(f"base_period: {base} must divide a day, from 1 minute to 1 day, in whole seconds")
        # At most a day: every duration derived from them (backoff, grace, deadlines) stays in range.
        if not timedelta(0) < self.flush_interval <= _DAY:
            raise ConfigError(f"flush_interval: {self.flush_interval} must be positive and at most 1 day")
        if not timedelta(0) <= self.shutdown_timeout <= _DAY:
            raise ConfigError(f"shutdown_timeout: {self.shutdown_timeout} must be from 0 to 1 day")

    def __repr__(self) -> str:
        fields = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self) if f.name != "dsn")
        return f"UsageConfig(dsn={redact_dsn(self.dsn)!r}, {fields})"

    @property
    def trusted_networks(self) -> tuple[IPNetwork, ...]:
        """`trusted_proxies` as parsed networks."""
        return tuple(n for n in self.trusted_proxies if not isinstance(n, str))

    @property
    def zone(self) -> ZoneInfo:
        """The configured time zone as a `ZoneInfo`."""
        return ZoneInfo(self.timezone)

    @classmethod
    def from_env(
        cls, prefix: str = "USAGE_STATS_", *, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> UsageConfig:
        """Read the configuration from environment variables named `prefix` + the upper-case field name.

        Durations are given in seconds, `USAGE_STATS_TRUSTED_PROXIES` as a comma-separated list of
        networks. Keyword arguments override what the environment says.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(prefix + f.name.upper())
            if raw is None or f.name in overrides:
                continue
            values[f.name] = _parse_env(f.name, raw, prefix)
        values.update(overrides)
        return cls(**values)


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"{name}: {value!r} must be a whole number from {low} to {high}")


def _parse_networks(value: object) -> tuple[IPNetwork, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (tuple, list, set, frozenset)):
        raise ConfigError("trusted_proxies: must be a sequence of networks such as '10.0.0.0/8'")
    networks: list[IPNetwork] = []
    for item in value:
        if isinstance(item, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            networks.append(item)
            continue
        try:
            networks.append(ipaddress.ip_network(str(item).strip(), strict=False))
        except ValueError as exc:
            raise ConfigError(f"trusted_proxies: {item!r} is not an IP network") from exc
    return tuple(networks)


def _parse_env(name: str, raw: str, prefix: str) -> Any:
    var = prefix + name.upper()
    raw = raw.strip()
    if name == "dsn":
        return raw or None
    if name == "trusted_proxies":
        return tuple(part for part in (p.strip() for p in raw.split(",")) if part)
    if name in ("schema", "timezone", "user_ids", "forwarded_header"):
        return raw
    shown = raw if len(raw) <= 40 else raw[:37] + "..."
    try:
        number = float(raw) if name in ("base_period", "flush_interval", "shutdown_timeout") else int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}: {var}={shown!r} is not a number") from exc
    if isinstance(number, int):
        if abs(number) >= 2**63:
            raise ConfigError(f"{name}: {var}={shown!r} is out of range")
        return number
    if not math.isfinite(number):
        raise ConfigError(f"{name}: {var}={shown!r} is not a finite number")
    try:
        return timedelta(seconds=number)
    except OverflowError as exc:  # more days than a timedelta holds
        raise ConfigError(f"{name}: {var}={shown!r} is out of range") from exc
