"""A private, throwaway PostgreSQL server for a benchmark that needs more connections than the shared one.

The fleet benchmark runs 128 writer processes, a reader and a sampler at once; the shared test server
allows 100 connections and must not be reconfigured. So this starts Debian's binaries of the same
major version (`initdb`, `pg_ctl`) in a temporary folder, listening on loopback only on a free port,
with the shared server's settings (`SETTINGS`) except `max_connections`, and removes it afterwards.
As root, the server runs as the `postgres` OS user (PostgreSQL refuses to run as root).

`Bouncer` puts a pgbouncer in transaction pooling mode in front of it, so that a fleet larger than
the server's `max_connections` shares a few server connections.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["SETTINGS", "Bouncer", "PrivateServer", "binaries"]

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
        self.port = 0
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
        port = self.port = _free_port()
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


class Bouncer:
    """`with Bouncer(port, pool_size=20) as dsn:` pgbouncer in transaction mode on a free loopback port,
    in front of the server on `port`, with `pool_size` server connections shared by its clients."""

    def __init__(self, server_port: int, *, pool_size: int, max_clients: int = 300) -> None:
        self.binary = shutil.which("pgbouncer", path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin")
        self.server_port = server_port
        self.pool_size = pool_size
        self.max_clients = max_clients
        self._proc: subprocess.Popen[bytes] | None = None
        self._folder: Path | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("pgbouncer", path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin") is not None

    def __enter__(self) -> str:
        if self.binary is None:
            raise RuntimeError("pgbouncer is not installed")
        self._folder = Path(tempfile.mkdtemp(prefix="usage-stats-bouncer-"))
        self._folder.chmod(0o755)  # readable by the user pgbouncer switches to as root
        port = _free_port()
        users = self._folder / "users.txt"
        users.write_text('"postgres" ""\n')
        ini = self._folder / "pgbouncer.ini"
        ini.write_text(
            f"[databases]\n* = host=127.0.0.1 port={self.server_port}\n[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\nauth_type = trust\n"
            f"auth_file = {users}\npool_mode = transaction\ndefault_pool_size = {self.pool_size}\n"
            f"max_client_conn = {self.max_clients}\nignore_startup_parameters = extra_float_digits\n"
        )
        for path in (users, ini):
            path.chmod(0o644)
        command = [self.binary, *(["-u", "postgres"] if os.geteuid() == 0 else []), str(ini)]
        self._proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return f"postgresql://postgres@127.0.0.1:{port}/postgres"
            except OSError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.__exit__(None, None, None)
                    raise RuntimeError("pgbouncer did not start") from None
                time.sleep(0.1)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
            self._proc = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
