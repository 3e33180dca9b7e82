"""Retention: forget requests, mails and counters that are no longer needed."""

from __future__ import annotations

import logging

from synapse.module_api import ModuleApi

from synapse_email_gate.config.gate import GateConfig
from synapse_email_gate.policy.live import LivePolicy
from synapse_email_gate.storage.requests import RequestStore

logger = logging.getLogger(__name__)

_MAX_REFILL_MS = 30 * 86_400_000


class Housekeeping:
    def __init__(
        self, api: ModuleApi, config: GateConfig, policy: LivePolicy, requests: RequestStore
    ) -> None:
        self._api = api
        self._config = config
        self._policy = policy
        self._requests = requests

    def bucket_refill_ms(self) -> int:
        """The longest time any bucket takes to fill up from empty."""
        limits = self._policy.current.rate_limits
        times = [
            bucket.burst / bucket.per_second * 1000
            for bucket in (
                limits.per_ip,
                limits.per_email,
                limits.global_,
                limits.web_registration,
                limits.email_domain_limit,
                limits.network_limit,
            )
            if bucket.per_second > 0
        ]
        return int(min(max(times, default=_MAX_REFILL_MS), _MAX_REFILL_MS))

    async def purge(
        self, older_than_ms: int | None = None, dry_run: bool = False
    ) -> dict[str, int]:
        """The retention purge: the hourly one, and the manual one of moderators
        (`POST admin/purge`, the CLI, the room), which may take a tighter age than
        `retention` for the requests and addresses; how many rows of each kind went
        (or would go, in a dry run)."""
        retention = self._config.retention
        unfinished_ms, finished_ms = retention.unfinished_ms, retention.finished_ms
        if older_than_ms is not None:
            unfinished_ms = min(unfinished_ms, older_than_ms)
            finished_ms = min(finished_ms, older_than_ms)
        counts = await self._requests.purge(
            self._api.get_current_time_msec(),
            unfinished_ms,
            finished_ms,
            self._config.email_cooldown_ms,
            self.bucket_refill_ms(),
            dry_run,
        )
        if counts["requests"] and not dry_run:
            logger.info("retention: %d old requests deleted", counts["requests"])
        return counts

    async def scheduled_purge(self) -> None:
        await self.purge()
