"""The embedded PostgreSQL for development: a real server from the `pgserver` wheel, in a data folder."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import anyio.to_thread

from .errors import ConfigError

__all__ = ["default_data_dir", "start_embedded"]

logger = logging.getLogger(__name__)

_MISSING = (
    "no DSN is configured (USAGE_STATS_DSN) and the embedded PostgreSQL is not installed; "
    "install it with: pip install 'usage-stats[embedded]', or set a DSN"
)


def default_data_dir() -> Path:
    """`USAGE_STATS_DATA_DIR`, else `.usage_stats/pgdata` under the current directory."""
    configured = os.environ.get("USAGE_STATS_DATA_DIR")
    return Path(configured) if configured else Path.cwd() / ".usage_stats" / "pgdata"


def _start(data_dir: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        try:
            from pgserver.postgres_server import get_server
        except ImportError as exc:
            raise ConfigError(f"dsn: {_MISSING}") from exc
        data_dir.mkdir(parents=True, exist_ok=True)
        return get_server(data_dir, cleanup_mode="stop")


async def start_embedded(data_dir: Path | None = None) -> tuple[str, Any]:
    """Start (or join) the embedded server in `data_dir`; returns its DSN and the server handle.

    The server stops when the last process using it exits. Keep the handle while you use the DSN.
    """
    folder = (data_dir or default_data_dir()).resolve()
    server = await anyio.to_thread.run_sync(_start, folder)
    logger.info("usage_stats: embedded PostgreSQL running with data in %s", folder)
    return str(server.get_uri()), server
