"""The surge switch's configuration: `surge` (docs/configuration.md#surge)."""

from __future__ import annotations

import attrs

from synapse_email_gate.config.reader import Section
from synapse_email_gate.rules.proof_of_work import MAX_DIFFICULTY
from synapse_email_gate.rules.surge import CHALLENGE, MODES, Thresholds

_MINUTE_MS = 60_000
# Bits the surge adds to `challenge.difficulty` unless `challenge_level` says otherwise:
# each bit doubles the work, four make it sixteen times as much.
EXTRA_BITS = 4
# A range: about what one provider or ASN announces, wider than a network (/24, /48).
DEFAULT_RANGE_IPV4_PREFIX = 16
DEFAULT_RANGE_IPV6_PREFIX = 32


@attrs.frozen
class SurgeConfig:
    """`enabled`: the automatic switch (moderators can always switch by hand).
    Thresholds count requests recorded in `window_ms`; 0 turns one off."""

    enabled: bool = False
    window_ms: int = 10 * _MINUTE_MS
    threshold: int = 300
    per_domain_threshold: int = 100
    per_network_threshold: int = 60
    per_range_threshold: int = 150
    range_ipv4_prefix: int = DEFAULT_RANGE_IPV4_PREFIX
    range_ipv6_prefix: int = DEFAULT_RANGE_IPV6_PREFIX
    release: float = 0.5
    mode: str = CHALLENGE
    # None: `challenge.difficulty` + EXTRA_BITS.
    challenge_level: int | None = None
    hold_ms: int = 30 * _MINUTE_MS
    check_interval_ms: int = 10_000

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(
            self.threshold,
            self.per_domain_threshold,
            self.per_network_threshold,
            self.release,
            self.per_range_threshold,
        )

    def level(self, base_difficulty: int) -> int:
        """The challenge difficulty in `challenge` mode."""
        if self.challenge_level is not None:
            return self.challenge_level
        return min(MAX_DIFFICULTY, base_difficulty + EXTRA_BITS)

    @staticmethod
    def from_section(section: Section) -> SurgeConfig:
        config = SurgeConfig(
            enabled=section.boolean("enabled", False),
            window_ms=section.duration_ms("window", 10 * _MINUTE_MS, minimum_ms=10_000),
            threshold=section.integer("threshold", 300, minimum=0),
            per_domain_threshold=section.integer("per_domain_threshold", 100, minimum=0),
            per_network_threshold=section.integer("per_network_threshold", 60, minimum=0),
            per_range_threshold=section.integer("per_range_threshold", 150, minimum=0),
            range_ipv4_prefix=section.integer(
                "range_ipv4_prefix", DEFAULT_RANGE_IPV4_PREFIX, minimum=8, maximum=32
            ),
            range_ipv6_prefix=section.integer(
                "range_ipv6_prefix", DEFAULT_RANGE_IPV6_PREFIX, minimum=16, maximum=128
            ),
            release=section.convert("release", 0.5, _share),
            mode=section.choice("mode", CHALLENGE, MODES),
            challenge_level=section.convert("challenge_level", None, _level),
            hold_ms=section.duration_ms("hold", 30 * _MINUTE_MS, minimum_ms=0),
            check_interval_ms=section.duration_ms("check_interval", 10_000, minimum_ms=1_000),
        )
        if config.enabled and not (
            config.threshold
            or config.per_domain_threshold
            or config.per_network_threshold
            or config.per_range_threshold
        ):
            raise section.error("enabled", "needs at least one threshold above 0")
        section.finish()
        return config


def _share(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number between 0 and 1, got {value!r}")
    if not 0 < value <= 1:
        raise ValueError(f"must be above 0 and at most 1, got {value!r}")
    return float(value)


def _level(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be an integer, got {value!r}")
    if not 1 <= value <= MAX_DIFFICULTY:
        raise ValueError(f"must be between 1 and {MAX_DIFFICULTY}, got {value}")
    return value
