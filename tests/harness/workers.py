"""A Synapse deployment with workers, on loopback, for tests.

One PostgreSQL database, a private redis-server, Synapse main + generic workers
(redis replication, ``instance_map`` with main's replication listener) and nginx
in front, configured the way docs/workers.md tells an admin to. Every process is
started here with Popen and stopped by its PID, in reverse order.

Usage::

    with WorkerDeployment(postgres, module_config) as d:
        d.url("/_synapse/client/email_gate/")   # through nginx
        d.process("worker1").url(...)           # one process directly
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from . import http
from .ports import free_port
from .postgres import PostgresCluster
from .synapse import REPO_ROOT, GateUrls, SynapseServer, log_config

MAIN = "main"  # the main process's name in instance_map ...
MASTER = "master"  # ... and in run_background_tasks_on

# Client-API paths a generic worker serves (Synapse's docs/workers.md, the
# "generic_worker" list, registration and the read-mostly client endpoints).
WORKER_CLIENT_PATHS = (
    r"^/_matrix/client/(r0|v3|unstable)/register$",
    r"^/_matrix/client/(r0|v3|unstable)/register/available$",
    r"^/_matrix/client/v1/register/m\.login\.registration_token/validity$",
    r"^/_matrix/client/(r0|v3|unstable)/password_policy$",
    r"^/_matrix/client/(r0|v3|unstable)/sync$",
    r"^/_matrix/client/(api/v1|r0|v3)/events$",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/(messages|context/.*|members|state)$",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/joined_rooms$",
    r"^/_matrix/client/(r0|v3|unstable)/account/whoami$",
    r"^/_matrix/client/versions$",
    r"^/_matrix/client/(r0|v3|unstable)/capabilities$",
    r"^/_matrix/client/(r0|v3|unstable)/user/.*/filter(/|$)",
    r"^/_matrix/client/(r0|v3|unstable)/keys/(query|changes)$",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/profile/",
)


def _wait(predicate: Any, timeout: float, what: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what}: exited with {proc.returncode} during start")
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what}: not ready after {timeout}s")


def _stop(
    proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = 10.0
) -> None:
    """Signal one process by its PID and wait; SIGKILL if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --- redis --------------------------------------------------------------------


class RedisServer:
    """Debian's redis-server on 127.0.0.1:<free port>: no persistence, its own dir."""

    host = "127.0.0.1"

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.config_file = self.dir / "redis.conf"
        self.log_file = self.dir / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def ping(self) -> bool:
        with socket.create_connection((self.host, self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def start(self, timeout: float = 10.0) -> RedisServer:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.config_file.write_text(
            f"bind {self.host}\n"
            f"port {self.port}\n"
            "protected-mode yes\n"
            "daemonize no\n"
            f"dir {self.dir}\n"
            f"logfile {self.log_file}\n"
            'save ""\n'
            "appendonly no\n"
        )
        with (self.dir / "stderr.log").open("ab") as err:
            self.proc = subprocess.Popen(
                [binary, str(self.config_file)],
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            _wait(self.ping, timeout, "redis-server", self.proc)
        except RuntimeError as e:
            self.stop()
            raise RuntimeError(f"{e}\n{_tail(self.log_file)}") from None
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        _stop(proc)


# --- Synapse workers ----------------------------------------------------------


class SynapseWorker(GateUrls):
    """``python -m synapse.app.generic_worker -c homeserver.yaml -c <name>.yaml``."""

    def __init__(self, main: SynapseServer, name: str, directory: Path) -> None:
        self.main = main
        self.name = name
        self.instance_name = name
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.metrics_port = free_port()
        self.config_file = self.dir / f"{name}.yaml"
        self.log_file = self.dir / f"{name}.log"
        self.stderr_file = self.dir / "stderr.log"
        self.proc: subprocess.Popen[bytes] | None = None
        log_cfg = self.dir / "log.yaml"
        log_cfg.write_text(yaml.safe_dump(log_config(self.log_file)))
        self.config: dict[str, Any] = {
            "worker_app": "synapse.app.generic_worker",
            "worker_name": name,
            "worker_listeners": [
                {
                    "type": "http",
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                },
                {"type": "metrics", "port": self.metrics_port, "bind_addresses": ["127.0.0.1"]},
            ],
            "worker_log_config": str(log_cfg),
        }
        self.config_file.write_text(yaml.safe_dump(self.config, sort_keys=False))

    def launch(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        cmd = [sys.executable, "-m", "synapse.app.generic_worker"]
        cmd += ["-c", str(self.main.config_file), "-c", str(self.config_file)]
        with self.stderr_file.open("ab") as err:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_healthy(self, timeout: float = 30.0) -> None:
        assert self.proc is not None
        try:
            _wait(
                lambda: http.get(self.url("/health"), timeout=2).status == 200,
                timeout,
                f"worker {self.name}",
                self.proc,
            )
        except RuntimeError as e:
            raise RuntimeError(f"{e}\n{self.tail()}") from None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        _stop(proc)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 60) -> str:
        err = self.stderr_file.read_text(errors="replace") if self.stderr_file.exists() else ""
        return (
            f"--- {self.log_file} ---\n{_tail(self.log_file, lines)}\n--- stderr ---\n{err[-4000:]}"
        )


# --- nginx --------------------------------------------------------------------


def nginx_config(
    directory: Path,
    port: int,
    main_port: int,
    worker_ports: Sequence[int],
    worker_paths: Sequence[str] = WORKER_CLIENT_PATHS,
) -> str:
    """nginx.conf for the test: what docs/workers.md shows, plus private paths."""
    user = ""
    if os.geteuid() == 0:  # the master runs as root: keep the workers as root too,
        # so they can use the private temp dirs
        user = f"user {pwd.getpwuid(0).pw_name} {grp.getgrgid(0).gr_name};\n"
    workers = "\n".join(f"        server 127.0.0.1:{p};" for p in worker_ports)
    worker_locations = "\n".join(
        f"        location ~ {path} {{ proxy_pass http://synapse_workers; }}"
        for path in worker_paths
    )
    tmp = directory / "tmp"
    return f"""\
{user}daemon off;
master_process on;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log notice;
events {{ worker_connections 1024; }}

http {{
    log_format upstream '$remote_addr [$time_local] "$request" $status '
                        'upstream=$upstream_addr xff="$http_x_forwarded_for"';
    access_log {directory}/access.log upstream;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;

    upstream synapse_main {{
        server 127.0.0.1:{main_port};
    }}
    # round-robin between the generic workers
    upstream synapse_workers {{
{workers}
    }}

    server {{
        listen 127.0.0.1:{port};
        server_name _;
        client_max_body_size 50M;

        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        # append the peer to what the client sent; the module reads right to left
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;

        # the module's page, API and admin API: any process can serve them
        location /_synapse/client/email_gate/ {{ proxy_pass http://synapse_workers; }}

        # client API endpoints a generic worker serves
{worker_locations}

        # everything else (login, Synapse's admin API, ...) goes to main
        location / {{ proxy_pass http://synapse_main; }}
    }}
}}
"""


class NginxProxy:
    """Debian's nginx on 127.0.0.1:<free port>, ``daemon off`` under our Popen."""

    host = "127.0.0.1"

    def __init__(
        self, directory: Path, main_port: int, worker_ports: Sequence[int], port: int | None = None
    ) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "tmp").mkdir(exist_ok=True)
        self.port = port or free_port()
        self.config_file = self.dir / "nginx.conf"
        self.error_log = self.dir / "error.log"
        self.access_log = self.dir / "access.log"
        self.config_file.write_text(nginx_config(self.dir, self.port, main_port, worker_ports))
        self.proc: subprocess.Popen[bytes] | None = None

    def _cmd(self, *extra: str) -> list[str]:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        # -e: the error log before the config is read (else /var/log/nginx/error.log)
        return [
            binary,
            "-c",
            str(self.config_file),
            "-p",
            str(self.dir),
            "-e",
            str(self.error_log),
            *extra,
        ]

    def start(self, timeout: float = 10.0) -> NginxProxy:
        check = subprocess.run(self._cmd("-t"), capture_output=True, check=False)
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t failed:\n{check.stderr.decode(errors='replace')}")
        with (self.dir / "stderr.log").open("ab") as err:
            self.proc = subprocess.Popen(
                self._cmd(),
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def listening() -> bool:
            with socket.create_connection((self.host, self.port), timeout=1):
                return True

        try:
            _wait(listening, timeout, "nginx", self.proc)
        except RuntimeError as e:
            self.stop()
            raise RuntimeError(f"{e}\n{_tail(self.error_log)}") from None
        return self

    def stop(self) -> None:
        """SIGTERM to the master (fast shutdown: it stops its workers too)."""
        proc, self.proc = self.proc, None
        _stop(proc)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


# --- the deployment -----------------------------------------------------------


def _prepare_cmd(config_file: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "synapse._scripts.update_synapse_database",
        "--database-config",
        str(config_file),
    ]


class WorkerDeployment(GateUrls):
    """PostgreSQL database + redis + Synapse main and generic workers + nginx.

    ``background_on`` names the instance for ``run_background_tasks_on``
    (``"master"`` is the main process). ``module_config`` is the module's
    ``config:``; ``extra`` is deep-merged into homeserver.yaml.
    """

    def __init__(
        self,
        postgres: PostgresCluster,
        module_config: dict[str, Any],
        *,
        worker_names: Sequence[str] = ("worker1", "worker2"),
        background_on: str = "worker1",
        extra: dict[str, Any] | None = None,
        server_name: str = "test.local",
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="synapse-workers-")).resolve()
        self.postgres = postgres
        self.background_on = background_on
        self.redis = RedisServer(self.dir / "redis")
        self.proxy_port = free_port()
        self.replication_port = free_port()
        self.replication_secret = secrets.token_hex(16)
        self.main = SynapseServer(
            module_config,
            postgres=postgres,
            directory=self.dir / "main",
            server_name=server_name,
            metrics=True,
            extra=extra,
        )
        self.main.config["public_baseurl"] = f"http://127.0.0.1:{self.proxy_port}/"
        self.main.config["listeners"].append(
            {
                # private: workers call main here; keep it off the proxy
                "port": self.replication_port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "x_forwarded": False,
                "resources": [{"names": ["replication"], "compress": False}],
            }
        )
        self.main.config.update(
            instance_map={MAIN: {"host": "127.0.0.1", "port": self.replication_port}},
            redis={"enabled": True, "host": RedisServer.host, "port": self.redis.port},
            run_background_tasks_on=background_on,
            worker_replication_secret=self.replication_secret,
        )
        self.main.write_config()
        self.workers = [SynapseWorker(self.main, name, self.dir / name) for name in worker_names]
        self.proxy = NginxProxy(
            self.dir / "nginx", self.main.port, [w.port for w in self.workers], self.proxy_port
        )
        # when each Synapse process was launched (monotonic seconds)
        self.launched: dict[str, float] = {}
        self.prepare_seconds: float | None = None
        self.module_tables_before_start: int | None = None
        self.start_seconds: float | None = None

    # --- lifecycle -------------------------------------------------------
    def prepare_database(self) -> None:
        """Create Synapse's own schema (what main does on its first start), without
        loading the module: its tables are left for the simultaneous start."""
        self.main.generate_keys()
        started = time.monotonic()
        done = subprocess.run(
            _prepare_cmd(self.main.config_file),
            cwd=self.main.dir,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            capture_output=True,
            check=False,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"preparing the database failed:\n{done.stderr.decode()[-4000:]}")
        self.prepare_seconds = time.monotonic() - started
        self.module_tables_before_start = self.query(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_name LIKE 'email_gate%'"
        )[0][0]

    def start(self, timeout: float = 60.0) -> WorkerDeployment:
        """Redis, then main and every worker at the same moment, then nginx."""
        started = time.monotonic()
        self.redis.start()
        self.prepare_database()
        for worker in self.workers:
            worker.launch()
            self.launched[worker.name] = time.monotonic()
        self.launched[MAIN] = time.monotonic()
        self.main.start(timeout)  # launches main and waits for its /health
        for worker in self.workers:
            worker.wait_healthy(timeout)
        self.proxy.start()
        self.start_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        """Everything by PID, in reverse order of start."""
        self.proxy.stop()
        for worker in reversed(self.workers):
            worker.stop()
        self.main.stop()
        self.redis.stop()

    def close(self) -> None:
        self.stop()
        self.main.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> WorkerDeployment:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- access ----------------------------------------------------------
    @property
    def processes(self) -> dict[str, SynapseServer | SynapseWorker]:
        """Every Synapse process by name: ``main`` and the workers."""
        return {MAIN: self.main, **{w.name: w for w in self.workers}}

    def process(self, name: str) -> SynapseServer | SynapseWorker:
        return self.processes[name]

    def metrics(self, name: str) -> str:
        """The Prometheus text of process ``name`` (its private metrics listener)."""
        port = self.process(name).metrics_port
        answer = http.get(f"http://127.0.0.1:{port}/_synapse/metrics")
        assert answer.status == 200, answer
        return answer.text

    def instance_name(self, name: str) -> str:
        """The name Synapse uses for ``name`` in run_background_tasks_on."""
        return MASTER if name == MAIN else name

    @property
    def base_url(self) -> str:
        """nginx: where clients connect."""
        return self.proxy.base_url

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """One statement on the deployment's database (``?`` placeholders); committed
        at once. Returns the rows, if the statement has any."""
        assert self.main.db_name is not None
        conn = self.postgres.connect(self.main.db_name)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql.replace("?", "%s"), params or None)
                return [tuple(row) for row in cur.fetchall()] if cur.description else []
        finally:
            conn.close()

    def save_artifacts(self, dest: Path) -> None:
        """Configs and logs of every process, for a failed test."""
        dest.mkdir(parents=True, exist_ok=True)
        files = [self.main.config_file, self.main.log_file, self.main.stderr_file]
        for w in self.workers:
            files += [w.config_file, w.log_file, w.stderr_file]
        files += [self.proxy.config_file, self.proxy.error_log, self.proxy.access_log]
        files += [self.redis.config_file, self.redis.log_file]
        for f in files:
            if f.exists():
                shutil.copy(f, dest / f"{f.parent.name}-{f.name}")
