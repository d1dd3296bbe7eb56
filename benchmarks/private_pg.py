"""A private, throwaway PostgreSQL server for a benchmark that needs more connections than the shared one.

The fleet benchmark runs 128 writer processes, a reader and a sampler at once; the shared test server
allows 100 connections and must not be reconfigured. So this starts Debian's binaries of the same
major version (`initdb`, `pg_ctl`) in a temporary folder, listening on loopback only on a free port,
with the shared server's settings (`SETTINGS`) except `max_connections`, and removes it afterwards.
As root, the server runs as the `postgres` OS user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

__all__ = ["SETTINGS", "PrivateServer", "binaries"]

# The settings of the shared test server (its pg_settings not at their defaults), except
# max_connections; the rest of the configuration is PostgreSQL 15's defaults on both.
SETTINGS = {
    "shared_buffers": "128MB",
    "max_wal_size": "1GB",
    "min_wal_size": "80MB",
    "autovacuum": "off",
    "fsync": "on",
    "TimeZone": "UTC",
}


def binaries() -> Path | None:
    """The folder holding `initdb` and `pg_ctl` (the newest Debian PostgreSQL), or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if found:
        return found[-1].parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PrivateServer:
    """`with PrivateServer(max_connections=300) as dsn:` a fresh server, stopped and deleted on exit."""

    def __init__(self, *, max_connections: int) -> None:
        self.max_connections = max_connections
        self.folder: Path | None = None
        self.bin = binaries()

    def _run(self, *args: str) -> None:
        command = list(args)
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def __enter__(self) -> str:
        if self.bin is None:
            raise RuntimeError("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
        self.folder = Path(tempfile.mkdtemp(prefix="usage-stats-fleet-"))
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
        try:
            return self._start(self.bin, self.folder)
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
            raise

    def _start(self, bin: Path, folder: Path) -> str:
        data = folder / "data"
        self._run(str(bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        port = _free_port()
        options = {
            **SETTINGS,
            "max_connections": str(self.max_connections),
            "listen_addresses": "127.0.0.1",
            "port": str(port),
            "unix_socket_directories": str(folder),
        }
        flags = " ".join(f"-c {k}={v}" for k, v in options.items())
        self._run(str(bin / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "-o", flags, "start")
        return f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def cpu_ticks(self) -> int:
        """CPU time (user and system, in clock ticks) of the server's processes alive now, the postmaster's
        children (every backend) included."""
        assert self.folder is not None
        postmaster = int((self.folder / "data" / "postmaster.pid").read_text().split()[0])
        total = 0
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue  # the process ended meanwhile
            pid, ppid = int(name), int(fields[1])
            if pid == postmaster or ppid == postmaster:
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.folder is None:
            return
        try:
            assert self.bin is not None
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
