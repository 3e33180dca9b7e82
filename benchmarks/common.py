"""Shared pieces of the benchmarks: results, statistics, servers, seeded databases,
ban patterns and a username corpus, and the load generator processes.

Servers are the test harness's real Synapse processes (tests/harness), on
127.0.0.1 only. Every process started here is stopped by its PID.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.harness.postgres import PostgresCluster  # noqa: E402
from tests.harness.smtp import SmtpCatcher  # noqa: E402
from tests.harness.synapse import SynapseServer  # noqa: E402

LOADGEN = Path(__file__).resolve().parent / "loadgen.py"
GATE = "/_synapse/client/email_gate"
API_REQUEST = GATE + "/api/request"
# The do-nothing module (benchmarks/floor_module.py) loaded beside the gate.
FLOOR_MODULE = "benchmarks.floor_module.FloorModule"
FLOOR_REFUSE = "/_synapse/client/email_gate_floor/refuse"
FLOOR_ACCEPT = "/_synapse/client/email_gate_floor/accept"
SEED = 8
# Addresses the flood benchmark bans, and the client a trusted proxy names.
BANNED_NET = "203.0.113.0/24"


# --- results ------------------------------------------------------------------


@dataclass
class Result:
    bench: str
    measure: str
    module: str  # the module's figure, as printed
    baseline: str  # the baseline's figure ("—" when there is none)
    ratio: float | None  # module / baseline, or the ratio the target is about
    target: str
    ok: bool | None
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        ratio = "—" if self.ratio is None else f"{self.ratio:.3g}x"
        verdict = {True: "MET", False: "MISSED", None: "n/a"}[self.ok]
        return (
            f"  {self.measure:<46} module {self.module:<22} baseline {self.baseline:<24} "
            f"ratio {ratio:<8} target {self.target:<20} {verdict}"
        )


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def say(text: str) -> None:
    print(text, flush=True)


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def fmt_us(seconds: float) -> str:
    return f"{seconds * 1e6:.2f} µs"


def spread(values: Sequence[float], scale: float = 1000.0, unit: str = "ms") -> str:
    """`median (min-max, n runs)` for a detail line."""
    return (
        f"{median(values) * scale:.2f} {unit} "
        f"({min(values) * scale:.2f}-{max(values) * scale:.2f}, {len(values)} runs)"
    )


# --- context shared by the benchmarks ----------------------------------------------


class Context:
    """What several benchmarks share: a temp dir, PostgreSQL, seeded databases."""

    def __init__(self, quick: bool, runs: int | None = None) -> None:
        self.quick = quick
        self.runs = runs or (3 if quick else 5)
        self.tmp = Path(tempfile.mkdtemp(prefix="email-gate-bench-"))
        self._postgres: PostgresCluster | None = None
        self._smtp: SmtpCatcher | None = None
        self._patterns: list[str] | None = None
        self._seeded: dict[int, Path] = {}
        self.servers: list[SynapseServer] = []
        self._made = 0

    # sizes -------------------------------------------------------------------
    @property
    def big_history(self) -> int:
        return 100_000 if self.quick else 1_000_000

    @property
    def n_patterns(self) -> int:
        return 10_000

    # PostgreSQL ----------------------------------------------------------------
    @property
    def postgres(self) -> PostgresCluster:
        for attempt in range(3):  # a free port may be taken by another process meanwhile
            if self._postgres is not None:
                break
            cluster = PostgresCluster()
            try:
                self._postgres = cluster.start()
            except RuntimeError:
                cluster.close()
                if attempt == 2:
                    raise
        assert self._postgres is not None
        return self._postgres

    @property
    def smtp(self) -> SmtpCatcher:
        """One mail catcher (aiosmtpd in a thread of this process) for every server."""
        if self._smtp is None:
            self._smtp = SmtpCatcher().start()
        return self._smtp

    # patterns ------------------------------------------------------------------
    @property
    def patterns(self) -> list[str]:
        if self._patterns is None:
            self._patterns = make_patterns(self.n_patterns)
        return self._patterns

    def policy_file(self, patterns: bool = True) -> Path:
        """A policy file with the 10,000 username patterns (or none)."""
        path = self.tmp / ("policy-patterns.yaml" if patterns else "policy-empty.yaml")
        if not path.exists():
            lines = ["banned_usernames:"]
            lines += [f"  - {json.dumps(p)}" for p in (self.patterns if patterns else [])]
            if not patterns:
                lines[0] = "banned_usernames: []"
            path.write_text("\n".join(lines) + "\n")
        return path

    # servers -------------------------------------------------------------------
    def server(
        self,
        module_config: dict[str, Any] | None,
        *,
        postgres: bool = False,
        extra: dict[str, Any] | None = None,
        metrics: bool = False,
        seed_rows: int = 0,
        floor: bool = False,
    ) -> SynapseServer:
        """A Synapse (not started) with the module (None: without), optionally on a
        database already holding ``seed_rows`` stored requests; ``floor`` also loads
        the do-nothing module (benchmarks/floor_module.py) as a second entry."""
        self._made += 1
        directory = self.tmp / f"synapse-{self._made}"
        directory.mkdir()
        server = SynapseServer(
            module_config,
            postgres=self.postgres if postgres else None,
            directory=directory,
            server_name="bench.local",
            metrics=metrics,
            module="synapse_email_gate.EmailGate" if module_config is not None else None,
            extra=deep_extra(extra),
        )
        if floor:
            server.config["modules"].append({"module": FLOOR_MODULE, "config": {}})
            server.write_config()
        if seed_rows:
            if postgres:
                assert server.db_name is not None
                seed_postgres(self.postgres, server.db_name, seed_rows)
            else:
                shutil.copy(self.seeded_sqlite(seed_rows), directory / "homeserver.db")
        self.servers.append(server)
        return server

    def seeded_sqlite(self, rows: int) -> Path:
        """A SQLite file holding the module's tables and ``rows`` stored requests."""
        if rows not in self._seeded:
            path = self.tmp / f"seed-{rows}.db"
            seed_sqlite(path, rows)
            self._seeded[rows] = path
        return self._seeded[rows]

    def stop_servers(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers.clear()

    def close(self) -> None:
        self.stop_servers()
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None
        if self._postgres is not None:
            self._postgres.close()
            self._postgres = None
        shutil.rmtree(self.tmp, ignore_errors=True)


def deep_extra(extra: dict[str, Any] | None) -> dict[str, Any]:
    """homeserver.yaml keys every benchmark server gets (on top of the harness's)."""
    base: dict[str, Any] = {
        # Registration benchmarks create many accounts from one address.
        "rc_registration": {"per_second": 10000, "burst_count": 10000},
        "rc_registration_token_validity": {"per_second": 10000, "burst_count": 10000},
    }
    base.update(extra or {})
    return base


def gate_config(
    ctx: Context,
    smtp: SmtpCatcher | None,
    *,
    patterns: bool = True,
    per_ip: dict[str, float] | None = None,
    **more: Any,
) -> dict[str, Any]:
    """The module's config for a benchmark: generous limits unless told otherwise,
    the 10,000 patterns in a policy file, a banned network, X-Forwarded-For trusted
    from 127.0.0.1 (so one load generator can speak for many clients)."""
    generous = {"burst": 1_000_000, "per_second": 100_000}
    config: dict[str, Any] = {
        "sender": "Bench <gate@bench.local>",
        "trusted_proxies": ["127.0.0.1"],
        "banned_ips": [BANNED_NET],
        "policy_file": str(ctx.policy_file(patterns)),
        "email_cooldown": "1s",
        "rate_limits": {
            "per_ip": per_ip or generous,
            "per_email": generous,
            "global": generous,
        },
    }
    if smtp is not None:
        config["smtp"] = smtp.config()
    else:  # nothing listens there: mails stay queued (and are retried later)
        config["smtp"] = {"host": "127.0.0.1", "port": 9, "tls": "none", "timeout": 2}
    config.update(more)
    return config


@contextmanager
def started(*servers: SynapseServer) -> Iterator[tuple[SynapseServer, ...]]:
    try:
        for server in servers:
            server.start(timeout=120)
        yield servers
    finally:
        for server in servers:
            server.stop()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_cpu() -> float:
    """CPU seconds the whole machine has spent busy (all cores, all processes)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


# --- load generator processes ------------------------------------------------------


def loadgen_cmd(mode: str, port: int, *args: str) -> list[str]:
    return [sys.executable, str(LOADGEN), mode, "--port", str(port), *args]


def start_loadgen(mode: str, port: int, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        loadgen_cmd(mode, port, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def finish(proc: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    """Wait for a load generator process (killed by PID after ``timeout``)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise RuntimeError(f"load generator {proc.pid} overran; stderr: {err[-2000:]!r}") from None
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed ({proc.returncode}): {err[-2000:]!r}")
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"no report from the load generator: {out[-2000:]!r} {err[-2000:]!r}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# BENCH_NO_WRK=1 forces the Python load generator even when wrk is installed.
WRK = None if os.environ.get("BENCH_NO_WRK") else shutil.which("wrk")
WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_load.lua"


def load_generator() -> str:
    return "wrk (1 thread)" if WRK else "benchmarks/loadgen.py (Python asyncio)"


def start_load(
    port: int,
    path: str,
    *,
    body: str | None = None,
    header: str | None = None,
    duration: float = 5.0,
    concurrency: int = 32,
    method: str = "POST",
) -> subprocess.Popen[bytes]:
    """A load generator process (wrk if installed, else loadgen.py) on 127.0.0.1.

    ``{n}`` in ``body``/``header`` becomes a number unique to each request, ``{tag}``
    a string unique to this call. Read its report with :func:`finish`.
    """
    tag = f"r{time.monotonic_ns() % 10**9}"
    if WRK:
        env = dict(os.environ, BENCH_METHOD=method, BENCH_TAG=tag)
        if body is not None:
            env["BENCH_BODY"] = body
        if header is not None:
            env["BENCH_HEADER"] = header
        cmd = [
            WRK, "-t1", f"-c{concurrency}", f"-d{max(1, round(duration))}s", "--timeout", "30s",
            "-s", str(WRK_SCRIPT), f"http://127.0.0.1:{port}{path}",
        ]  # fmt: skip
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    args = ["--path", path, "--method", method, "--duration", str(duration), "--tag", tag]
    args += ["--concurrency", str(concurrency)]
    if body is not None:
        args += ["--body", body]
    if header is not None:
        args += ["--header", header]
    return start_loadgen("load", port, *args)


def flood_with_health(
    port: int,
    path: str,
    *,
    duration: float,
    health_interval: float = 0.01,
    **load: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run a load and a /health poller (another process) side by side; both reports."""
    poller = start_loadgen(
        "health", port, "--duration", str(duration + 0.5), "--interval", str(health_interval)
    )
    time.sleep(0.25)
    proc = start_load(port, path, duration=duration, **load)
    try:
        load_report = finish(proc, duration + 60)
    finally:
        health_report = finish(poller, duration + 60)
    return load_report, health_report


def request_body(username: str, email: str) -> str:
    return json.dumps({"username": username, "email": email})


# --- ban patterns and a username corpus ------------------------------------------

_CONSONANTS = "bcdfghjklmnprstvwz"
_VOWELS = "aeiou"


def _word(rng: random.Random, syllables: tuple[int, int] = (2, 4)) -> str:
    return "".join(
        rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(rng.randint(*syllables))
    )


_REGEX_TEMPLATES: list[Callable[[str, str], str]] = [
    lambda a, b: rf"^{a}\d{{2,4}}$",
    lambda a, b: rf"{a}[0-9]+",
    lambda a, b: rf"^({a}|{b})[._-]?bot",
    lambda a, b: rf"^{a}$",
    lambda a, b: rf"{a[:3]}[aeiou]{{2}}{a[3:]}",
    lambda a, b: rf"^[a-z]{{1,2}}{a}",
    lambda a, b: rf"{a}(admin|support|staff)",
    lambda a, b: rf"(real|official)[._-]*{a}",
    lambda a, b: rf"^{a}(_|\.)?[0-9]{{3,}}$",
    lambda a, b: rf"{a}x{{2,}}",
    lambda a, b: rf"{a}.{{0,3}}{b}",
    lambda a, b: rf"^{a}[^a-z]",
]


def make_patterns(n: int, seed: int = SEED) -> list[str]:
    """``n`` distinct ban patterns: 60 % literals (some with dots, dashes, digits,
    escaped as a moderator would), 40 % regexes of common shapes."""
    rng = random.Random(seed)
    patterns: dict[str, None] = {}
    while len(patterns) < n:
        a, b = _word(rng), _word(rng)
        if rng.random() < 0.6:
            literal = rng.choice(
                [a, a + b[:2], f"{a}.{b[:3]}", f"{a}-{rng.randint(0, 99)}", f"{a}_{b[:2]}"]
            )
            patterns[re.escape(literal) if rng.random() < 0.5 else literal.replace(".", r"\.")] = (
                None
            )
        else:
            patterns[rng.choice(_REGEX_TEMPLATES)(a, b)] = None
    return list(patterns)


def make_corpus(patterns: Sequence[str], n: int, seed: int = SEED) -> list[str]:
    """``n`` usernames: random ones, ones that contain a banned literal, ones made
    to look like what the regexes describe, and near misses."""
    rng = random.Random(seed + 1)
    literals = [p.replace("\\", "") for p in patterns if re.fullmatch(r"[a-z0-9._\\-]+", p)]
    names = []
    for i in range(n):
        kind = i % 10
        if kind < 4:
            name = _word(rng, (2, 5)) + (str(rng.randint(0, 999)) if rng.random() < 0.3 else "")
        elif kind < 7:
            name = f"{_word(rng, (0, 1))}{rng.choice(literals)}{rng.randint(0, 99)}"
        elif kind < 9:
            word = _word(rng)
            name = rng.choice(
                [
                    f"{word}{rng.randint(10, 9999)}",
                    f"{word}_bot",
                    f"official.{word}",
                    f"{word}xxx",
                    f"{word}admin",
                    f"x{word}",
                ]
            )
        else:
            lit = rng.choice(literals)
            pos = rng.randrange(len(lit))
            name = lit[:pos] + rng.choice("qy0") + lit[pos + 1 :]
        names.append(name[:60])
    return names


# --- databases holding a long history -------------------------------------------

_DAY_MS = 86_400_000


def _seed_statements(rows: int, now_ms: int, series: str) -> list[str]:
    """INSERT ... SELECT statements over ``series`` (a row source yielding x = 1..rows).

    Requests spread over the last 6 days (inside retention, so housekeeping keeps
    them): 60 % registered, 20 % suppressed, 10 % superseded, 10 % issued; one
    address per request.
    """
    step = max(1, 6 * _DAY_MS // rows)
    created = f"({now_ms} - x * {step})"
    status = (
        "CASE WHEN x % 10 < 6 THEN 'registered' WHEN x % 10 < 8 THEN 'suppressed' "
        "WHEN x % 10 = 8 THEN 'superseded' ELSE 'issued' END"
    )
    return [
        f"""
        INSERT INTO email_gate_requests (id, created_ts, updated_ts, localpart, email,
            email_key, ip, lang, status, reason, token, expires_ts, user_id)
        SELECT 'seed' || x, {created}, {created}, 'seeduser' || x,
            'seed' || x || '@example.org', 'seed' || x || '@example.org',
            '10.' || ((x / 65536) % 256) || '.' || ((x / 256) % 256) || '.' || (x % 256),
            'en', {status},
            CASE WHEN x % 10 IN (6, 7) THEN 'cooldown' ELSE NULL END,
            CASE WHEN x % 10 < 6 OR x % 10 = 9 THEN 'seedtok' || x ELSE NULL END,
            {created} + {_DAY_MS},
            CASE WHEN x % 10 < 6 THEN '@seeduser' || x || ':bench.local' ELSE NULL END
        FROM {series}
        """,
        f"""
        INSERT INTO email_gate_addresses (email_key, last_sent_ts, accounts)
        SELECT 'seed' || x || '@example.org', {created},
            CASE WHEN x % 10 < 6 THEN 1 ELSE 0 END
        FROM {series}
        """,
    ]


def seed_sqlite(path: Path, rows: int) -> None:
    from synapse_email_gate.storage.schema import _TABLES

    now_ms = int(time.time() * 1000)
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = OFF")
        for statement in _TABLES:
            conn.execute(statement)
        series = f"(WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < {rows}) SELECT x FROM s)"  # noqa: E501
        for statement in _seed_statements(rows, now_ms, series):
            conn.execute(statement)
        conn.commit()
        conn.execute("ANALYZE")
        conn.commit()
    finally:
        conn.close()


def seed_postgres(cluster: PostgresCluster, db_name: str, rows: int) -> None:
    from synapse_email_gate.storage.schema import _TABLES

    now_ms = int(time.time() * 1000)
    conn = cluster.connect(db_name)
    try:
        with conn.cursor() as cur:
            for statement in _TABLES:
                cur.execute(statement)
            for statement in _seed_statements(rows, now_ms, f"generate_series(1, {rows}) AS s(x)"):
                cur.execute(statement)
        conn.commit()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE email_gate_requests")
            cur.execute("VACUUM ANALYZE email_gate_addresses")
    finally:
        conn.close()


# --- sequential requests from this process ---------------------------------------


class Client:
    """One keep-alive HTTP/1.1 connection to a server on 127.0.0.1."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        hdrs = dict(headers or {})
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=data, headers=hdrs)
                response = self.conn.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, OSError):
                self.conn.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def unbannable(i: int) -> str:
    """``i`` written with the letters q and y, which no generated ban pattern holds:
    digits would not do, the look-alike folding reads them as letters (`u70` as
    `uto`, which a ban pattern `huto` matches in `withu70`)."""
    return format(i, "b").replace("0", "q").replace("1", "y")


def timed_requests(server: SynapseServer, count: int, tag: str, expect: int = 202) -> list[float]:
    """``count`` sequential accepted requests (distinct usernames and addresses);
    the latency of each answer, in seconds."""
    client = Client(server.port)
    latencies = []
    try:
        for i in range(count):
            name = f"{tag}u{unbannable(i)}"
            body = {"username": name, "email": f"{name}@example.org"}
            start = time.perf_counter()
            status, answer = client.request("POST", API_REQUEST, body)
            latencies.append(time.perf_counter() - start)
            if status != expect:
                raise RuntimeError(f"expected {expect}, got {status}: {answer[:200]!r}")
    finally:
        client.close()
    return latencies


def interleaved_latencies(
    servers: dict[str, SynapseServer], count: int, tag: str
) -> dict[str, list[float]]:
    """``count`` sequential accepted requests to each server, alternating server by
    server (the order flips each round), so that the machine's moods fall on all
    alike; the answer latencies per server, in seconds."""
    clients = {label: Client(server.port) for label, server in servers.items()}
    latencies: dict[str, list[float]] = {label: [] for label in servers}
    labels = list(servers)
    try:
        for i in range(count):
            for label in labels if i % 2 == 0 else labels[::-1]:
                name = f"{tag}{label}u{unbannable(i)}"
                body = {"username": name, "email": f"{name}@example.org"}
                start = time.perf_counter()
                status, answer = clients[label].request("POST", API_REQUEST, body)
                latencies[label].append(time.perf_counter() - start)
                if status != 202:
                    raise RuntimeError(f"expected 202, got {status}: {answer[:200]!r}")
    finally:
        for client in clients.values():
            client.close()
    return latencies


def warm_up(server: SynapseServer, tag: str = "warm", count: int = 20) -> None:
    """First requests wait for the schema and the compiled policy: get them done."""
    timed_requests(server, count, tag)
