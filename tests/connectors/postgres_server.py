"""A real PostgreSQL cluster for tests: `initdb` into a temporary directory, served on
127.0.0.1 at a free port, with scram password authentication for one superuser.

`initdb` refuses to run as root: as root, the cluster belongs to the `postgres` user and
every server command runs through `runuser -u postgres --` (LAB-NOTES, PostgreSQL).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

SUPERUSER = "reconciler_admin"
INSTALL_HINT = "install PostgreSQL: apt-get install postgresql (initdb must be on PATH)"


def server_bin() -> Path | None:
    """The directory holding initdb and pg_ctl: on PATH, else Debian's and Ubuntu's
    /usr/lib/postgresql/<version>/bin (the `postgresql` package puts only wrappers on
    PATH), newest version first."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
        reverse=True,
    )
    return candidates[0].parent if candidates else None


def initdb_missing() -> str | None:
    """Why no cluster can be started here, or None when it can."""
    if server_bin() is None:
        return f"initdb/pg_ctl not found; {INSTALL_HINT}"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root needs runuser (util-linux) to start PostgreSQL as postgres"
    return None


@dataclass(frozen=True)
class Cluster:
    """A running cluster: where it listens and its superuser's credentials."""

    host: str
    port: int
    superuser: str
    password: str

    def connect(
        self, dbname: str = "postgres", *, user: str | None = None, password: str | None = None
    ) -> psycopg.Connection[Any]:
        """An autocommit connection, as the superuser unless `user` is given."""
        return psycopg.connect(
            host=self.host,
            port=self.port,
            dbname=dbname,
            user=user or self.superuser,
            password=password if user else self.password,
            autocommit=True,
            connect_timeout=5,
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _as_owner(command: list[str]) -> list[str]:
    bin_dir = server_bin()
    assert bin_dir is not None, "initdb_missing() is checked first"
    command = [str(bin_dir / command[0]), *command[1:]]
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _run(command: list[str], log: Path) -> None:
    done = subprocess.run(_as_owner(command), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"{command[0]} failed: {done.stderr or done.stdout}\n{tail}")


@contextlib.contextmanager
def start_cluster() -> Iterator[Cluster]:
    """Initialise and start a cluster; stop it and remove its files on exit."""
    root = Path(tempfile.mkdtemp(prefix="reconciler-pg-"))
    data, log, pwfile = root / "data", root / "server.log", root / "pwfile"
    password = secrets.token_urlsafe(16)
    pwfile.write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(pwfile, "postgres", "postgres")
    pwfile.chmod(0o600)
    started = False
    try:
        _run(
            [
                "initdb", "-D", str(data), "-U", SUPERUSER, f"--pwfile={pwfile}",
                "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync",
            ],
            log,
        )  # fmt: skip
        for _attempt in range(3):
            port = _free_port()
            settings = (
                f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={root} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            try:
                _run(
                    ["pg_ctl", "-D", str(data), "-l", str(log), "-w", "-o", settings, "start"], log
                )
            except RuntimeError:
                continue  # the port was taken meanwhile: try another
            started = True
            break
        if not started:
            raise RuntimeError(f"PostgreSQL did not start: {log.read_text(errors='replace')}")
        yield Cluster("127.0.0.1", port, SUPERUSER, password)
    finally:
        if started:
            _run(["pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop"], log)
        shutil.rmtree(root, ignore_errors=True)


class Sandbox:
    """One test's corner of the shared cluster: its databases and prefixed role names,
    all dropped at the end (roles are cluster-wide, so names carry the test's prefix)."""

    def __init__(self, cluster: Cluster, prefix: str) -> None:
        self.cluster = cluster
        self.prefix = prefix
        self.databases: list[str] = []
        self.roles: list[str] = []
        self.database = self.new_database("main")

    def new_database(self, suffix: str) -> str:
        name = f"{self.prefix}{suffix}"
        with self.cluster.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.databases.append(name)
        return name

    def role(self, suffix: str) -> str:
        """The name this test uses for role `suffix`."""
        return f"{self.prefix}{suffix}"

    def create_role(self, name: str, options: str = "LOGIN", password: str | None = None) -> str:
        """Create role `name` as is (call `role()` for a prefixed name) and track it."""
        with self.cluster.connect() as conn:
            statement = sql.SQL("CREATE ROLE {} " + options).format(sql.Identifier(name))
            conn.execute(statement)
            if password is not None:
                conn.execute(
                    sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        sql.Identifier(name), sql.Literal(password)
                    )
                )
        self.roles.append(name)
        return name

    def run(self, statement: str, dbname: str | None = None) -> list[tuple[Any, ...]]:
        """Run SQL as the superuser in `dbname` (default: the test's database)."""
        with self.cluster.connect(dbname or self.database) as conn:
            cursor = conn.execute(statement)
            return cursor.fetchall() if cursor.description else []

    def drop(self) -> None:
        with self.cluster.connect() as conn:
            for database in self.databases:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(database)
                    )
                )
            for role in self.roles:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                    (role,),
                )
                exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                if exists.fetchone():
                    conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            for role in reversed(self.roles):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
