"""A real Synapse homeserver process for integration tests."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from signedjson.key import generate_signing_key, write_signing_keys

from . import http
from .ports import free_port
from .postgres import PostgresCluster

REPO_ROOT = Path(__file__).resolve().parents[2]
GATE_PATH = "/_synapse/client/email_gate"
# servers made and not yet closed: their logs are saved when a test fails
INSTANCES: weakref.WeakSet[SynapseServer] = weakref.WeakSet()


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``extra``; nested dicts are merged, not replaced."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _high_rate() -> dict[str, Any]:
    return {"per_second": 1000, "burst_count": 1000}


def log_config(log_file: Path, level: str = "INFO") -> dict[str, Any]:
    fmt = "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s"
    return {
        "version": 1,
        "formatters": {"precise": {"format": fmt}},
        "filters": {"context": {"()": "synapse.logging.context.LoggingContextFilter"}},
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "filename": str(log_file),
                "formatter": "precise",
                "filters": ["context"],
                "encoding": "utf8",
            }
        },
        "loggers": {"synapse.storage.SQL": {"level": "INFO"}},
        "root": {"level": level, "handlers": ["file"]},
        "disable_existing_loggers": False,
    }


class GateUrls:
    """URLs of the client API and the module's pages, below `base_url`."""

    @property
    def base_url(self) -> str:
        raise NotImplementedError

    def url(self, path: str) -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    @property
    def gate_url(self) -> str:
        return self.url(GATE_PATH + "/")


class SynapseServer(GateUrls):
    """``python -m synapse.app.homeserver`` on 127.0.0.1:<port>, with the module loaded.

    module_config: the ``config:`` of ``synapse_email_gate.EmailGate`` (``module=None``
    loads no module). Database: SQLite in the directory, or a fresh database in
    ``postgres``. ``extra`` is deep-merged into homeserver.yaml last.
    """

    def __init__(
        self,
        module_config: dict[str, Any] | None = None,
        *,
        postgres: PostgresCluster | None = None,
        directory: str | Path | None = None,
        server_name: str = "test.local",
        port: int | None = None,
        metrics: bool = False,
        extra: dict[str, Any] | None = None,
        module: str | None = "synapse_email_gate.EmailGate",
        log_level: str = "INFO",
        new_session: bool = True,
    ) -> None:
        self._own_dir = directory is None
        self.dir = Path(directory or tempfile.mkdtemp(prefix="synapse-")).resolve()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.server_name = server_name
        self.port = port or free_port()
        self.metrics_port = free_port() if metrics else None
        self.config_file = self.dir / "homeserver.yaml"
        self.log_file = self.dir / "homeserver.log"
        self.stderr_file = self.dir / "stderr.log"
        self.registration_shared_secret = secrets.token_hex(16)
        self.new_session = new_session
        self.proc: subprocess.Popen[bytes] | None = None
        self.db_name: str | None = None
        self.postgres = postgres
        if postgres is not None:
            self.db_name = postgres.create_database(f"synapse_{secrets.token_hex(6)}")
            database = postgres.synapse_database_config(self.db_name)
        else:
            database = {"name": "sqlite3", "args": {"database": str(self.dir / "homeserver.db")}}
        self.database_engine = "postgres" if postgres is not None else "sqlite"

        listeners: list[dict[str, Any]] = [
            {
                "port": self.port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ]
        if self.metrics_port:
            listeners.append(
                {"port": self.metrics_port, "bind_addresses": ["127.0.0.1"], "type": "metrics"}
            )
        log_cfg = self.dir / "log.yaml"
        log_cfg.write_text(yaml.safe_dump(log_config(self.log_file, log_level)))
        self.config: dict[str, Any] = {
            "server_name": server_name,
            "pid_file": str(self.dir / "homeserver.pid"),
            "public_baseurl": f"http://127.0.0.1:{self.port}/",
            "listeners": listeners,
            "database": database,
            "log_config": str(log_cfg),
            "media_store_path": str(self.dir / "media_store"),
            "signing_key_path": str(self.dir / f"{server_name}.signing.key"),
            "enable_registration": True,
            "registration_requires_token": True,
            "registration_shared_secret": self.registration_shared_secret,
            "bcrypt_rounds": 4,
            "report_stats": False,
            "enable_metrics": metrics,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "federation_domain_whitelist": [],
            "url_preview_enabled": False,
            "rc_message": _high_rate(),
            "rc_registration": _high_rate(),
            "rc_registration_token_validity": _high_rate(),
            "rc_login": {
                "address": _high_rate(),
                "account": _high_rate(),
                "failed_attempts": _high_rate(),
            },
            "rc_admin_redaction": _high_rate(),
            "rc_joins": {"local": _high_rate(), "remote": _high_rate()},
            "modules": [{"module": module, "config": module_config or {}}] if module else [],
        }
        self.config = deep_merge(self.config, extra or {})
        self.write_config()
        INSTANCES.add(self)

    # --- config ------------------------------------------------------------
    def write_config(self) -> None:
        """(Re)write homeserver.yaml from ``self.config``; takes effect on restart."""
        self.config_file.write_text(yaml.safe_dump(self.config, sort_keys=False))

    @property
    def module_config(self) -> dict[str, Any]:
        config: dict[str, Any] = self.config["modules"][0]["config"]
        return config

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        return env

    def _synapse_cmd(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "synapse.app.homeserver", "-c", str(self.config_file), *args]

    # --- lifecycle ---------------------------------------------------------
    def generate_keys(self) -> None:
        """What ``--generate-keys`` does for this config (the signing key), in-process:
        a second interpreter start would cost about a second per server."""
        path = Path(self.config["signing_key_path"])
        if not path.exists():
            key = generate_signing_key("a_" + secrets.token_hex(2))
            with path.open("w") as f:
                write_signing_keys(f, [key])

    def start(self, timeout: float = 30.0) -> SynapseServer:
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.generate_keys()
        with self.stderr_file.open("ab") as err:
            self.proc = subprocess.Popen(
                self._synapse_cmd(),
                cwd=self.dir,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=subprocess.STDOUT,
                start_new_session=self.new_session,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise RuntimeError(f"Synapse exited with {code} during start:\n{self.tail()}")
            try:
                if http.get(self.url("/health"), timeout=2).status == 200:
                    self._wait_for_the_module(deadline)
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"Synapse not healthy after {timeout}s:\n{self.tail()}")

    def _wait_for_the_module(self, deadline: float) -> None:
        """The module answers some refusals from memory before its tables exist; tests
        that then read the tables would race their creation. The page waits for them
        (a 503 says they failed, 404 that the module is not loaded): one GET of it
        makes every test start with the module ready."""
        with contextlib.suppress(OSError):
            http.get(self.gate_url, timeout=max(deadline - time.monotonic(), 1.0))

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM by PID and wait; SIGKILL after ``timeout``. Returns the exit code."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL by PID, no clean shutdown (for crash tests)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def restart(self, timeout: float = 30.0) -> SynapseServer:
        self.stop()
        return self.start(timeout)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        """Stop, and remove the directory if it was a temporary one made here."""
        self.stop()
        INSTANCES.discard(self)
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> SynapseServer:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- logs --------------------------------------------------------------
    def save_artifacts(self, dest: Path) -> None:
        """Copy config and logs into ``dest``."""
        dest.mkdir(parents=True, exist_ok=True)
        for f in (self.config_file, self.log_file, self.stderr_file):
            if f.exists():
                shutil.copy(f, dest / f"{self.dir.name}-{f.name}")

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 60) -> str:
        err = self.stderr_file.read_text(errors="replace") if self.stderr_file.exists() else ""
        log = "\n".join(self.log_text().splitlines()[-lines:])
        return f"--- {self.log_file} (last {lines} lines) ---\n{log}\n--- stderr ---\n{err[-4000:]}"

    # --- database ----------------------------------------------------------
    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one read-only statement on the server's database (``?`` placeholders);
        return all rows. A fresh connection each time, so it sees committed data."""
        if self.postgres is not None:
            assert self.db_name is not None
            conn = self.postgres.connect(self.db_name)
            try:
                with conn.cursor() as cur:
                    cur.execute(sql.replace("?", "%s"), params)
                    return [tuple(row) for row in cur.fetchall()]
            finally:
                conn.close()
        path = self.config["database"]["args"]["database"]
        lite = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            return [tuple(row) for row in lite.execute(sql, params).fetchall()]
        finally:
            lite.close()

    # --- HTTP --------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    def register_user(self, localpart: str, password: str, admin: bool = False) -> str:
        """Register through the shared-secret admin API; return the access token."""
        nonce_resp = http.get(self.url("/_synapse/admin/v1/register"))
        assert nonce_resp.status == 200, nonce_resp
        nonce = nonce_resp.json()["nonce"]
        mac = hmac.new(self.registration_shared_secret.encode(), digestmod=hashlib.sha1)
        for part in (nonce, localpart, password):
            mac.update(part.encode() + b"\x00")
        mac.update(b"admin" if admin else b"notadmin")
        body = {
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        }
        resp = http.post(self.url("/_synapse/admin/v1/register"), json=body)
        assert resp.status == 200, f"shared-secret registration of {localpart} failed: {resp}"
        token: str = resp.json()["access_token"]
        return token

    def register_admin(self, localpart: str, password: str) -> str:
        return self.register_user(localpart, password, admin=True)

    def auth_headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}
