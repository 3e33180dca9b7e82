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

    async def purge(self) -> None:
        retention = self._config.retention
        deleted = await self._requests.purge(
            self._api.get_current_time_msec(),
            retention.unfinished_ms,
            retention.finished_ms,
            self._config.email_cooldown_ms,
            self.bucket_refill_ms(),
        )
        if deleted:
            logger.info("retention: %d old requests deleted", deleted)
