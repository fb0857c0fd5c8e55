"""A throwaway PostgreSQL cluster for the tests: initdb + pg_ctl in a temp dir, 127.0.0.1 only.

PostgreSQL refuses to run as root, so when the tests run as root the cluster is owned by and
started as an unprivileged system user (`facequeue-test`, created if missing). Debian ships the
server binaries in /usr/lib/postgresql/<version>/bin; `make test` installs the package.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

TEST_USER = "facequeue-test"


def pg_bin_dir() -> Path | None:
    """The newest Debian server binaries, else initdb on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).resolve().parent if on_path else None


def _version_key(path: str) -> float:
    try:
        return float(Path(path).parent.parent.name)
    except ValueError:
        return 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_as() -> list[str]:
    """Prefix that drops root to the test user (created on first use)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(TEST_USER)
    except KeyError:
        # two test processes (pytest -n 2) may both find it missing: exit code 9 is "exists"
        res = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", TEST_USER],
            capture_output=True,
            text=True,
        )
        if res.returncode not in (0, 9):
            raise RuntimeError(f"useradd {TEST_USER} failed: {res.stderr.strip()}") from None
    return ["runuser", "-u", TEST_USER, "--"]


class Cluster:
    """One running cluster; `url(db)` gives a connection URL, `create_db()` a fresh database."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="facequeue-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.user = "facequeue"
        self.prefix = _run_as()
        self._dbs = 0

    def _pg(self, tool: str, *args: str, timeout: float = 120) -> None:
        cmd = [*self.prefix, str(self.bin / tool), *args]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if res.returncode != 0:
            raise RuntimeError(f"{tool} failed: {res.stderr.strip() or res.stdout.strip()}")

    def start(self) -> None:
        if self.prefix:
            shutil.chown(self.root, TEST_USER, TEST_USER)
        os.chmod(self.root, 0o700)
        self._pg(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )
        opts = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.root} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._pg(
            "pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"), "-w", "start"
        )

    def stop(self) -> None:
        try:
            self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
        except (RuntimeError, subprocess.SubprocessError):
            pass
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{db}"

    def create_password_db(self) -> tuple[str, str, str, int, str]:
        """A role that must authenticate with a password (scram-sha-256) and a database it
        owns: (user, password, host, port, database)."""
        import psycopg
        from psycopg import sql

        self._dbs += 1
        user = f"fq_pw_{os.getpid()}_{self._dbs}"
        password = secrets.token_hex(12)
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(user), sql.Literal(password)
                )
            )
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(user), sql.Identifier(user)
                )
            )
            hba = self.data / "pg_hba.conf"
            hba.write_text(f"host all {user} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
            conn.execute("SELECT pg_reload_conf()")
        deadline = time.time() + 10
        while time.time() < deadline:  # the reload is asynchronous: wait until it bites
            try:
                url = self.url(user).replace(f"{self.user}@", f"{user}@")
                with psycopg.connect(url, password="", connect_timeout=5):
                    pass
            except psycopg.OperationalError:
                break
            time.sleep(0.1)
        return user, password, "127.0.0.1", self.port, user

    def create_db(self) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        self._dbs += 1
        name = f"fq_{os.getpid()}_{self._dbs}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
