"""`UsageConfig`: defaults, validation naming the field, `from_env`, and no secret in a repr."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import Any

import pytest

from usage_stats import ConfigError, UsageConfig


def test_defaults_match_the_design() -> None:
    c = UsageConfig()
    assert c.dsn is None
    assert c.schema == "usage"
    assert c.base_period == timedelta(hours=1)
    assert c.timezone == "UTC"
    assert c.flush_interval == timedelta(seconds=60)
    assert (c.keep_base_days, c.keep_days, c.keep_event_months, c.keep_months) == (1, 7, 3, 24)
    assert c.user_ids == "hashed"
    assert (c.ip_prefix_v4, c.ip_prefix_v6) == (24, 48)
    assert c.trusted_proxies == ()
    assert c.max_keys_per_period == 10_000
    assert c.shutdown_timeout == timedelta(seconds=10)


def test_frozen_and_keyword_only() -> None:
    c = UsageConfig()
    with pytest.raises(AttributeError):
        c.schema = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        UsageConfig("postgresql://x")  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dsn", ""),
        ("dsn", "   "),
        ("schema", ""),
        ("schema", "bad-name"),
        ("schema", "x; DROP TABLE y"),
        ("schema", "1abc"),
        ("base_period", timedelta(hours=7)),  # does not divide a day
        ("base_period", timedelta(seconds=30)),  # under a minute
        ("base_period", timedelta(days=2)),
        ("base_period", timedelta(minutes=1, microseconds=5)),
        ("base_period", 3600),
        ("timezone", "Mars/Olympus"),
        ("timezone", ""),
        ("timezone", "../../etc/passwd"),
        ("flush_interval", timedelta(0)),
        ("flush_interval", timedelta(seconds=-1)),
        ("flush_interval", 60),
        ("shutdown_timeout", timedelta(seconds=-1)),
        ("keep_base_days", -1),
        ("keep_days", -1),
        ("keep_event_months", -3),
        ("keep_months", -24),
        ("keep_days", 1.5),
        ("keep_days", True),
        ("user_ids", "plain"),
        ("ip_prefix_v4", 33),
        ("ip_prefix_v4", -1),
        ("ip_prefix_v6", 129),
        ("max_keys_per_period", 0),
        ("trusted_proxies", ("10.0.0.0/33",)),
        ("trusted_proxies", ("not-a-network",)),
        ("trusted_proxies", 42),
        ("forwarded_header", "x-real-ip"),
        ("forwarded_header", None),
    ],
)
def test_invalid_values_raise_config_error_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        UsageConfig(**{field: value})
    assert str(info.value).startswith(field + ":")
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "period", [timedelta(minutes=1), timedelta(minutes=15), timedelta(hours=1), timedelta(hours=8), timedelta(days=1)]
)
def test_base_periods_that_divide_a_day(period: timedelta) -> None:
    assert UsageConfig(base_period=period).base_period == period


def test_trusted_proxies_are_parsed_to_networks() -> None:
    c = UsageConfig(trusted_proxies=("10.0.0.0/8", "192.0.2.1", "2001:db8::/32"))
    assert c.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.0.2.1/32"),
        ipaddress.ip_network("2001:db8::/32"),
    )
    assert UsageConfig(trusted_proxies="10.0.0.0/8").trusted_proxies == (ipaddress.ip_network("10.0.0.0/8"),)


def test_from_env_reads_every_field() -> None:
    env = {
        "USAGE_STATS_DSN": "postgresql://app:pw@127.0.0.1/app",
        "USAGE_STATS_SCHEMA": "stats",
        "USAGE_STATS_BASE_PERIOD": "900",
        "USAGE_STATS_TIMEZONE": "Europe/London",
        "USAGE_STATS_FLUSH_INTERVAL": "2.5",
        "USAGE_STATS_KEEP_BASE_DAYS": "2",
        "USAGE_STATS_KEEP_DAYS": "10",
        "USAGE_STATS_KEEP_EVENT_MONTHS": "4",
        "USAGE_STATS_KEEP_MONTHS": "36",
        "USAGE_STATS_USER_IDS": "memory",
        "USAGE_STATS_IP_PREFIX_V4": "16",
        "USAGE_STATS_IP_PREFIX_V6": "56",
        "USAGE_STATS_TRUSTED_PROXIES": " 10.0.0.0/8, ,127.0.0.1 ",
        "USAGE_STATS_MAX_KEYS_PER_PERIOD": "500",
        "USAGE_STATS_SHUTDOWN_TIMEOUT": "3",
        "UNRELATED": "x",
    }
    c = UsageConfig.from_env(environ=env)
    assert c.dsn == "postgresql://app:pw@127.0.0.1/app"
    assert c.schema == "stats"
    assert c.base_period == timedelta(minutes=15)
    assert c.timezone == "Europe/London"
    assert c.flush_interval == timedelta(seconds=2.5)
    assert (c.keep_base_days, c.keep_days, c.keep_event_months, c.keep_months) == (2, 10, 4, 36)
    assert c.user_ids == "memory"
    assert (c.ip_prefix_v4, c.ip_prefix_v6) == (16, 56)
    assert c.trusted_proxies == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32"))
    assert c.max_keys_per_period == 500
    assert c.shutdown_timeout == timedelta(seconds=3)


def test_from_env_prefix_overrides_and_defaults() -> None:
    env = {"APP_SCHEMA": "mine", "APP_KEEP_DAYS": "3", "USAGE_STATS_SCHEMA": "ignored", "APP_DSN": ""}
    c = UsageConfig.from_env("APP_", environ=env, keep_days=5)
    assert c.schema == "mine"
    assert c.keep_days == 5  # the keyword wins
    assert c.dsn is None  # empty means unset: the embedded server
    assert UsageConfig.from_env(environ={}) == UsageConfig()


def test_from_env_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USAGE_STATS_TIMEZONE", "America/New_York")
    assert UsageConfig.from_env().timezone == "America/New_York"


@pytest.mark.parametrize(
    ("var", "raw", "field"),
    [
        ("USAGE_STATS_KEEP_DAYS", "seven", "keep_days"),
        ("USAGE_STATS_FLUSH_INTERVAL", "1m", "flush_interval"),
        ("USAGE_STATS_BASE_PERIOD", "7200.5", "base_period"),
        ("USAGE_STATS_TIMEZONE", "Nowhere/Land", "timezone"),
        ("USAGE_STATS_TRUSTED_PROXIES", "10.0.0.0/8,bad", "trusted_proxies"),
        ("USAGE_STATS_USER_IDS", "clear", "user_ids"),
        ("USAGE_STATS_IP_PREFIX_V4", "40", "ip_prefix_v4"),
        ("USAGE_STATS_FORWARDED_HEADER", "x-real-ip", "forwarded_header"),
    ],
)
def test_from_env_errors_name_the_field(var: str, raw: str, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        UsageConfig.from_env(environ={var: raw})
    assert str(info.value).startswith(field + ":")


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://app:s3cr3t-pw@127.0.0.1:5432/app",
        "postgresql://app:s3cr3t-pw@127.0.0.1/app?sslmode=disable",
        "postgresql://app@127.0.0.1/app?password=s3cr3t-pw",
        "host=127.0.0.1 user=app password=s3cr3t-pw dbname=app",
    ],
)
def test_dsn_password_never_in_repr_or_str(dsn: str) -> None:
    c = UsageConfig(dsn=dsn)
    for text in (repr(c), str(c), repr([c]), f"{c!r}"):
        assert "s3cr3t-pw" not in text
        assert "UsageConfig(" in text
    assert "127.0.0.1" in repr(c)  # the rest of the DSN stays useful in logs


def test_from_env_error_does_not_echo_the_dsn_password() -> None:
    with pytest.raises(ConfigError) as info:
        UsageConfig.from_env(environ={"USAGE_STATS_DSN": "postgresql://a:s3cr3t-pw@h/db", "USAGE_STATS_KEEP_DAYS": "x"})
    assert "s3cr3t-pw" not in str(info.value)


def test_zone_property() -> None:
    assert UsageConfig(timezone="Europe/London").zone.key == "Europe/London"


def test_forwarded_header_defaults_to_x_forwarded_for_and_is_read_from_the_environment() -> None:
    assert UsageConfig().forwarded_header == "x-forwarded-for"
    assert UsageConfig(forwarded_header="Forwarded").forwarded_header == "forwarded"  # type: ignore[arg-type]
    env = {"USAGE_STATS_FORWARDED_HEADER": " forwarded "}
    assert UsageConfig.from_env(environ=env).forwarded_header == "forwarded"


@pytest.mark.parametrize(
    ("var", "raw"),
    [
        ("USAGE_STATS_FLUSH_INTERVAL", "inf"),
        ("USAGE_STATS_FLUSH_INTERVAL", "nan"),
        ("USAGE_STATS_SHUTDOWN_TIMEOUT", "1e400"),  # a float that overflows to infinity
        ("USAGE_STATS_SHUTDOWN_TIMEOUT", "-inf"),
        ("USAGE_STATS_BASE_PERIOD", "1e20"),  # finite, but more days than a timedelta holds
        ("USAGE_STATS_FLUSH_INTERVAL", "9" * 400),
        ("USAGE_STATS_KEEP_MONTHS", "9" * 400),
        ("USAGE_STATS_KEEP_DAYS", "inf"),
        ("USAGE_STATS_MAX_KEYS_PER_PERIOD", "1e400"),
    ],
)
def test_from_env_turns_infinite_and_overflowing_numbers_into_config_errors(var: str, raw: str) -> None:
    field = var.removeprefix("USAGE_STATS_").lower()
    with pytest.raises(ConfigError) as info:
        UsageConfig.from_env(environ={var: raw})
    assert str(info.value).startswith(f"{field}: {var}=")
    assert len(str(info.value)) < 120  # a huge value is cut, not echoed in full


@pytest.mark.parametrize(
    ("field", "value", "maximum"),
    [
        ("flush_interval", timedelta(days=1, seconds=1), "at most 1 day"),
        ("flush_interval", timedelta.max, "at most 1 day"),
        ("shutdown_timeout", timedelta(days=2), "from 0 to 1 day"),
    ],
)
def test_durations_are_bounded_where_derived_durations_would_overflow(
    field: str, value: timedelta, maximum: str
) -> None:
    too_long: dict[str, Any] = {field: value}
    with pytest.raises(ConfigError, match=f"^{field}: .*{maximum}"):
        UsageConfig(**too_long)
    longest: dict[str, Any] = {field: timedelta(days=1)}
    assert getattr(UsageConfig(**longest), field) == timedelta(days=1)  # the bound itself is fine
