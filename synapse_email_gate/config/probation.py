"""`probation`: what accounts made through the gate may not do at first (docs/moderation.md)."""

from __future__ import annotations

import attrs

from synapse_email_gate.config.reader import Section

_MINUTE_MS = 60_000


@attrs.frozen
class ProbationConfig:
    """No `duration` (or 0): off, and no account is ever on probation."""

    duration_ms: int = 0
    messages_per_minute: int = 10
    # How often every process re-reads who is on probation.
    refresh_interval_ms: int = 5_000

    @property
    def enabled(self) -> bool:
        return self.duration_ms > 0

    @staticmethod
    def from_section(section: Section) -> ProbationConfig:
        config = ProbationConfig(
            duration_ms=section.duration_ms("duration", 0),
            messages_per_minute=section.integer("messages_per_minute", 10, minimum=0),
            refresh_interval_ms=section.duration_ms("refresh_interval", 5_000, minimum_ms=1_000),
        )
        if config.enabled and config.duration_ms < _MINUTE_MS // 60:
            raise section.error("duration", "must be at least 1s, or 0 to turn probation off")
        if config.refresh_interval_ms > 5 * _MINUTE_MS:
            raise section.error("refresh_interval", "must be at most 5m")
        section.finish()
        return config
