"""A private PostgreSQL cluster for tests, run as the ``postgres`` OS user."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from .ports import free_port


def find_pg_bin() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb and postgres."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name.split(".")[0]),
    )
    if not found:
        raise RuntimeError("PostgreSQL not installed: no /usr/lib/postgresql/*/bin/initdb")
    return Path(found[-1]).parent


class PostgresCluster:
    """initdb + postgres on 127.0.0.1:<free port>, trust auth, data in a temp dir."""

    user = "postgres"
    host = "127.0.0.1"

    def __init__(self, port: int | None = None) -> None:
        self.bin = find_pg_bin()
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pgtest-"))
        self.data = self.dir / "data"
        self.log_file = self.dir / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:  # postgres refuses to run as root
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.dir.chmod(0o700)

    def _popen(self, prog: str, *args: str, **kwargs: Any) -> subprocess.Popen[bytes]:
        """Run a PostgreSQL binary, as the postgres OS user when we are root.

        Popen(user=...) rather than ``runuser``: the PID we keep is postgres itself,
        so signals reach it directly (runuser does not forward SIGINT).
        """
        if self._as_postgres:
            kwargs.update(user="postgres", group="postgres", extra_groups=[])
        return subprocess.Popen([str(self.bin / prog), *args], cwd=self.dir, **kwargs)

    def start(self, timeout: float = 30.0) -> PostgresCluster:
        if self.proc is not None:
            return self
        if not (self.data / "PG_VERSION").exists():
            initdb = self._popen(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                self.user,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            out, _ = initdb.communicate(timeout=120)
            if initdb.returncode != 0:
                raise RuntimeError(f"initdb failed:\n{out.decode(errors='replace')}")
        log = self.log_file.open("ab")
        self.proc = self._popen(
            "postgres",
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-c",
            f"listen_addresses={self.host}",
            "-k",
            str(self.dir),
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=300",
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited early:\n{self.log_tail()}")
            ready = subprocess.run(
                [str(self.bin / "pg_isready"), "-h", self.host, "-p", str(self.port), "-q"],
                check=False,
            )
            if ready.returncode == 0:
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"postgres not ready after {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def dsn(self, database: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={database}"

    def connect(self, database: str = "postgres") -> Any:
        import psycopg2  # type: ignore[import-untyped]

        return psycopg2.connect(self.dsn(database))

    def create_database(self, name: str) -> str:
        """Create a database Synapse accepts; return its name."""
        conn = self.connect()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(
                    f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' LC_COLLATE='C' "
                    "LC_CTYPE='C' TEMPLATE template0"
                )
        finally:
            conn.close()
        return name

    def synapse_database_config(self, name: str) -> dict[str, Any]:
        """The homeserver.yaml ``database:`` block for database ``name``."""
        return {
            "name": "psycopg2",
            "args": {
                "user": self.user,
                "host": self.host,
                "port": self.port,
                "database": name,
                "cp_min": 1,
                "cp_max": 5,
            },
        }

    def stop(self, timeout: float = 30.0) -> None:
        """Stop our postgres by PID: SIGINT (fast shutdown: ends client sessions,
        where SIGTERM would wait for them), SIGQUIT if it lingers."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGQUIT)
            proc.wait(10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
