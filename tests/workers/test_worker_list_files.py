"""Plain-text list files named by `policy_file`, with main + 2 generic workers behind
nginx (PostgreSQL, Redis): a change to a list file alone, with no reload asked,
reaches every process within seconds."""

from __future__ import annotations

import json
from pathlib import Path

from tests.harness.workers import WorkerDeployment
from tests.workers.steps import (
    INVALID_EMAIL,
    POLICY_START,
    USERNAME_BANNED,
    policy_text,
    unique,
    wait_everywhere,
    write_policy,
)

DEADLINE_S = 5.0


def test_a_list_file_change_reaches_every_process_within_5s(
    deployment: WorkerDeployment, policy_file: Path
) -> None:
    listed = policy_file.with_name("worker-usernames.txt")
    first, second = unique("listone"), unique("listtwo")
    write_policy(listed, f"# names\n^{first}$\n")
    try:
        write_policy(
            policy_file,
            policy_text(*POLICY_START) + f"banned_usernames_file: {json.dumps(listed.name)}\n",
        )
        wait_everywhere(deployment, first, USERNAME_BANNED, DEADLINE_S)
        # Only the list file changes: every process sees it by itself.
        write_policy(listed, f"^{second}$\n")
        took = wait_everywhere(deployment, second, USERNAME_BANNED, DEADLINE_S)
        print(f"list file change seen after {took}")
        wait_everywhere(deployment, first, INVALID_EMAIL, DEADLINE_S)
    finally:
        write_policy(policy_file, policy_text(*POLICY_START))
