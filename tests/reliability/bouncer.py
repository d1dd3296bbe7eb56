"""A real pgbouncer in transaction mode on a loopback port, in front of the tests' PostgreSQL."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import pytest

from .proxy import free_port, server_address

__all__ = ["PgBouncer", "find_pgbouncer"]


def find_pgbouncer() -> str:
    """The pgbouncer binary; fails on CI when it is missing (`.ci/run` installs it), skips elsewhere."""
    found = shutil.which("pgbouncer", path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin")
    if found is not None:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("pgbouncer is not installed; .ci/run installs it (apt-get install pgbouncer)")
    pytest.skip("pgbouncer is not installed (Debian: apt-get install pgbouncer)")


class PgBouncer:
    """pgbouncer in `pool_mode` for the server of `dsn`, with `pool_size` server connections per
    database and user: clients share them transaction by transaction."""

    def __init__(self, dsn: str, *, pool_mode: str = "transaction", pool_size: int = 1) -> None:
        parts = urlsplit(dsn)
        host, port = server_address(dsn)
        self.user = unquote(parts.username or "postgres")
        database = parts.path.lstrip("/") or self.user
        self.port = free_port()
        self.dsn = f"postgresql://{quote(self.user)}@127.0.0.1:{self.port}/{database}"
        self._folder = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
        self._folder.chmod(0o755)  # readable by the user pgbouncer switches to when started as root
        users = self._folder / "users.txt"
        users.write_text(f'"{self.user}" ""\n')
        self.log_path = self._folder / "pgbouncer.log"
        self._ini = self._folder / "pgbouncer.ini"
        self._ini.write_text(
            "[databases]\n"
            f"* = host={host} port={port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {users}\n"
            f"pool_mode = {pool_mode}\ndefault_pool_size = {pool_size}\nmax_client_conn = 200\n"
            "ignore_startup_parameters = extra_float_digits\n"
        )
        for path in (users, self._ini):
            path.chmod(0o644)
        self._proc: subprocess.Popen[bytes] | None = None
        # A Unix socket's folder (the embedded server's) is open to its owner only: run as that owner.
        self._run_as = _owner(host) if host.startswith("/") else None

    def __enter__(self) -> PgBouncer:
        command = [find_pgbouncer(), str(self._ini)]
        if os.geteuid() == 0:  # pgbouncer refuses to run as root
            command[1:1] = ["-u", self._run_as or _unprivileged_user()]
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while True:
            if self._proc.poll() is not None:
                raise AssertionError(f"pgbouncer exited with {self._proc.returncode}:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"pgbouncer is not listening after 15 s:\n{self.log()}") from None
                time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        shutil.rmtree(self._folder, ignore_errors=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _unprivileged_user() -> str:
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise AssertionError("no unprivileged user (postgres or nobody) to run pgbouncer as")


def _owner(folder: str) -> str | None:
    """The user owning `folder`, unless root (or unknown)."""
    try:
        owner = pwd.getpwuid(os.stat(folder).st_uid).pw_name
    except (OSError, KeyError):
        return None
    return None if owner == "root" else owner
