"""Real database servers for the tests: a throwaway PostgreSQL cluster on 127.0.0.1.

``make test`` installs the Debian ``postgresql`` package when its server binaries are
missing (the ``postgres`` Makefile target). The cluster lives in a temporary directory, is
initialised with ``initdb`` (as the ``postgres`` user when the tests run as root: initdb
refuses root), listens on a free port of 127.0.0.1 only, trusts local connections, and is
stopped and deleted at the end of the test session.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str

    def url(self, driver: str, database: str = "postgres") -> str:
        return f"postgresql+{driver}://{self.user}@{self.host}:{self.port}/{database}"


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL server's bin directory (Debian's layout first)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: (
            int(Path(path).parent.parent.name) if Path(path).parent.parent.name.isdigit() else 0
        ),
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def why_no_postgres() -> str | None:
    """Why no cluster can be started here, or ``None`` when one can."""
    if postgres_bin() is None:
        return (
            "the PostgreSQL server is not installed (make test installs it: apt-get install "
            "postgresql)"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run initdb as"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def postgres_server() -> Iterator[Postgres]:
    """Start a fresh cluster; stop and delete it afterwards."""
    bin_dir = postgres_bin()
    assert bin_dir is not None
    as_root = os.geteuid() == 0
    user = "postgres" if as_root else pwd.getpwuid(os.geteuid()).pw_name
    base = Path(tempfile.mkdtemp(prefix="asignals-pg-"))
    data, sockets = base / "data", base / "run"
    sockets.mkdir()
    if as_root:
        account = pwd.getpwnam("postgres")
        for path in (base, sockets):
            os.chown(path, account.pw_uid, account.pw_gid)
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []

    def run(*command: str) -> None:
        subprocess.run([*prefix, *command], check=True, capture_output=True, text=True, timeout=60)

    port = _free_port()
    try:
        run(
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            user,
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        options = (
            f"-h 127.0.0.1 -p {port} -k {sockets} -F "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        run(
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(base / "log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        try:
            yield Postgres("127.0.0.1", port, user)
        finally:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(base, ignore_errors=True)
