"""Shared fixtures: a mail catcher, a private PostgreSQL, and real Synapse servers.

A test module that needs Synapse uses the ``synapse`` fixture and overrides
``gate_config`` (and optionally ``synapse_extra``); it then runs once per
database, ``[sqlite]`` and ``[postgres]`` (``SYNAPSE_DATABASES = ["sqlite"]`` at
module level narrows it; ``--synapse-db sqlite`` narrows the whole run).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.postgres import PostgresCluster
from tests.harness.smtp import AUTH_WITHOUT_TLS_WARNING, SmtpCatcher
from tests.harness.synapse import INSTANCES, REPO_ROOT, SynapseServer, deep_merge

ARTIFACTS = REPO_ROOT / "test-artifacts"
DATABASES = ("sqlite", "postgres")
SENDER = "Email Gate <gate@test.local>"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--synapse-db",
        action="append",
        choices=DATABASES,
        help="run Synapse-backed tests only against this database (repeatable)",
    )


def pytest_configure(config: pytest.Config) -> None:
    for rule in (
        f"ignore:{AUTH_WITHOUT_TLS_WARNING}:UserWarning",
        # noise from importing Synapse and Twisted, not from this project
        r"ignore::DeprecationWarning:twisted\..*",
        r"ignore::DeprecationWarning:synapse\..*",
    ):
        config.addinivalue_line("filterwarnings", rule)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "synapse_db" in metafunc.fixturenames:
        dbs = list(getattr(metafunc.module, "SYNAPSE_DATABASES", DATABASES))
        only = metafunc.config.getoption("synapse_db")
        if only:
            dbs = [db for db in dbs if db in only]
        metafunc.parametrize("synapse_db", dbs, indirect=True, scope="module")


def _artifact_dir(nodeid: str) -> Path:
    return ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:150]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        for server in list(INSTANCES):
            server.save_artifacts(_artifact_dir(item.nodeid))
    return report


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One private PostgreSQL cluster per test process, started on first use."""
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpCatcher]:
    """A plain (tls: none) mail catcher for this test module."""
    with SmtpCatcher() as catcher:
        yield catcher


@pytest.fixture
def mailbox(smtp: SmtpCatcher) -> SmtpCatcher:
    """The module's catcher, emptied (and accepting mail) for this test."""
    smtp.clear()
    smtp.accept()
    return smtp


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    """The module config; override in a test module. smtp/sender are filled in."""
    return {}


@pytest.fixture(scope="module")
def synapse_extra() -> dict[str, Any]:
    """Extra homeserver.yaml keys (deep-merged); override in a test module."""
    return {}


@pytest.fixture(scope="module")
def synapse_db(request: pytest.FixtureRequest) -> str:
    """ "sqlite" or "postgres" (parametrised by pytest_generate_tests)."""
    db: str = getattr(request, "param", "sqlite")
    return db


def module_config_for(smtp: SmtpCatcher, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with smtp pointing at the catcher and a sender, unless it sets them."""
    return deep_merge({"smtp": smtp.config(), "sender": SENDER}, config)


def _new_server(
    request: pytest.FixtureRequest, db: str, module_config: dict[str, Any] | None, **kwargs: Any
) -> SynapseServer:
    pg = request.getfixturevalue("postgres") if db == "postgres" else None
    return SynapseServer(module_config, postgres=pg, **kwargs)


def _start(server: SynapseServer, label: str) -> None:
    try:
        server.start()
    except Exception:
        server.save_artifacts(_artifact_dir(f"{label}-start-failed"))
        raise


@pytest.fixture(scope="module")
def synapse(
    request: pytest.FixtureRequest,
    synapse_db: str,
    smtp: SmtpCatcher,
    gate_config: dict[str, Any],
    synapse_extra: dict[str, Any],
) -> Iterator[SynapseServer]:
    """A running Synapse with the module, shared by the tests of one module and database."""
    server = _new_server(
        request, synapse_db, module_config_for(smtp, gate_config), extra=synapse_extra, metrics=True
    )
    try:
        _start(server, f"{request.node.nodeid}[{synapse_db}]")
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def admin_token(synapse: SynapseServer) -> str:
    """Access token of a Synapse server admin (@ops:test.local) on ``synapse``."""
    return synapse.register_admin("ops", secrets.token_urlsafe(12))


@pytest.fixture
def make_synapse(
    request: pytest.FixtureRequest, smtp: SmtpCatcher
) -> Iterator[Callable[..., SynapseServer]]:
    """Factory for extra servers in one test: make_synapse(config, db="sqlite",
    start=True, **SynapseServer kwargs). smtp/sender are filled into ``config``
    unless ``raw=True``. All are closed after the test."""
    made: list[SynapseServer] = []

    def make(
        config: dict[str, Any] | None = None,
        db: str = "sqlite",
        start: bool = True,
        raw: bool = False,
        **kwargs: Any,
    ) -> SynapseServer:
        cfg = config if raw else module_config_for(smtp, config or {})
        server = _new_server(request, db, cfg, **kwargs)
        made.append(server)
        if start:
            _start(server, request.node.nodeid)
        return server

    yield make
    for server in made:
        server.close()
