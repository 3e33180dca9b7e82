"""One Synapse deployment with workers (PostgreSQL, redis, main + 2 generic workers,
nginx) shared by every test in this package: it takes several seconds to start."""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.harness.postgres import PostgresCluster
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import REPO_ROOT
from tests.harness.workers import WorkerDeployment
from tests.workers.steps import POLICY_START, policy_text

ARTIFACTS = REPO_ROOT / "test-artifacts"
SENDER = "Email Gate <gate@test.local>"
# The instance Synapse runs background tasks on. A worker rather than main
# ("master"), to show that the module follows Synapse's choice.
BACKGROUND_ON = "worker1"
MODERATOR = "@mod:test.local"
MODERATION_ROOM = "#moderation:test.local"


def _artifact_dir(nodeid: str) -> Path:
    return ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:150]


def run_deployment(deployment: WorkerDeployment, name: str) -> Iterator[WorkerDeployment]:
    """Start `deployment` for a fixture to yield, and close it after; a failed start
    leaves its logs under `name` in the artifacts."""
    try:
        deployment.start()
    except Exception:
        deployment.save_artifacts(_artifact_dir(name))
        deployment.close()
        raise
    try:
        yield deployment
    finally:
        deployment.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    deployment = getattr(item, "funcargs", {}).get("deployment")
    if report.failed and isinstance(deployment, WorkerDeployment):
        deployment.save_artifacts(_artifact_dir(item.nodeid))
    return report


@pytest.fixture(scope="package")
def smtp() -> Iterator[SmtpCatcher]:
    """One mail catcher for the whole package (replaces the per-module one)."""
    with SmtpCatcher() as catcher:
        yield catcher


@pytest.fixture(scope="package")
def policy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("policy") / "email_gate_policy.yaml"
    path.write_text(policy_text(*POLICY_START))
    return path


POLICY_ROOM = "#worker-bans:test.local"


@pytest.fixture(scope="package")
def deployment(
    postgres: PostgresCluster, smtp: SmtpCatcher, policy_file: Path
) -> Iterator[WorkerDeployment]:
    """Started as in production after an upgrade: Synapse's schema exists, the
    module's does not, and main and both workers start at the same moment."""
    config = {
        "smtp": smtp.config(),
        "sender": SENDER,
        "trusted_proxies": ["127.0.0.1"],  # nginx
        "policy_file": str(policy_file),
        "moderators": [MODERATOR],
        "moderation_room": MODERATION_ROOM,
        "policy_rooms": [POLICY_ROOM],
        # quick retries, so the sweep's work shows within a test
        "mail_sweep_interval": "1s",
        "mail_retry_initial": "1s",
        "rate_limits": {
            "per_ip": {"burst": 5, "per_second": 0.001},
            "global": {"burst": 10_000, "per_second": 1_000},
        },
    }
    yield from run_deployment(
        WorkerDeployment(postgres, config, background_on=BACKGROUND_ON),
        "workers-deployment-start-failed",
    )


@pytest.fixture(scope="package")
def admin_token(deployment: WorkerDeployment) -> str:
    """A Synapse server admin, registered on main (shared-secret registration)."""
    return deployment.main.register_admin("ops", "ops password 1")


@pytest.fixture
def mailbox(smtp: SmtpCatcher) -> SmtpCatcher:
    smtp.clear()
    smtp.accept()
    return smtp
