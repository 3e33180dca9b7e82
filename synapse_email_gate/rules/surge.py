"""The surge switch, decided: from the requests of the last window to the mode in force.

Pure: the caller reads the recent requests and the stored state, and writes the
state this returns. docs/moderation.md#surge tells moderators what it does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

import attrs

OFF = "off"
CHALLENGE = "challenge"
APPROVAL = "approval"
MODES = (CHALLENGE, APPROVAL)

# Why the switch went on: requests overall, from one mail domain, from one network
# (a /24 or /48), from one range (a wider, provider-sized prefix: /16 or /32), or a
# moderator. Why it went off: the rate fell (`calm`), a moderator's duration
# ran out (`expired`), or a moderator.
OVERALL = "overall"
DOMAIN = "domain"
NETWORK = "network"
RANGE = "range"
MANUAL = "manual"
CALM = "calm"
EXPIRED = "expired"


@attrs.frozen
class SurgeState:
    """The mode in force. `until_ts`: for a moderator's switch, when it ends; for an
    automatic one, the end of its minimum hold. `quiet_until_ts`: after a
    moderator switched it off, no automatic switch-on before then."""

    mode: str = OFF
    cause: str = ""
    scope: str = ""  # the domain, network or range of a `domain`/`network`/`range` cause
    level: int = 0  # the challenge difficulty (bits) in `challenge` mode
    since_ts: int = 0
    until_ts: int = 0
    quiet_until_ts: int = 0

    @property
    def on(self) -> bool:
        return self.mode != OFF

    @property
    def manual(self) -> bool:
        return self.cause == MANUAL

    def in_force(self, now_ms: int) -> SurgeState:
        """What applies at `now_ms`: a moderator's switch past its end is off already,
        before the background process writes so."""
        if self.on and self.manual and self.until_ts <= now_ms:
            return switched_off(self, EXPIRED, now_ms, quiet_ms=0)
        return self


@attrs.frozen
class Counts:
    """Requests in the window: in all, and from the busiest domain, network and range."""

    total: int
    top_domain: tuple[str, int] | None = None
    top_network: tuple[str, int] | None = None
    top_range: tuple[str, int] | None = None


@attrs.frozen
class Thresholds:
    """Requests per window that switch the surge on; 0: that one never does. It
    switches off only below `release` times each (hysteresis)."""

    overall: int
    per_domain: int
    per_network: int
    release: float = 0.5
    per_range: int = 0


def count(
    rows: Iterable[tuple[str | None, str | None]],
    network_of: Callable[[str], str | None],
    domain_of: Callable[[str], str | None],
    range_of: Callable[[str], str | None] | None = None,
) -> Counts:
    """`rows`: (ip, address) of each recent request. Without `range_of`, no range
    is counted."""
    total = 0
    networks: Counter[str] = Counter()
    ranges: Counter[str] = Counter()
    domains: Counter[str] = Counter()
    for ip, address in rows:
        total += 1
        network = network_of(ip) if ip else None
        if network is not None:
            networks[network] += 1
        wide = range_of(ip) if ip and range_of is not None else None
        if wide is not None:
            ranges[wide] += 1
        domain = domain_of(address) if address else None
        if domain is not None:
            domains[domain] += 1
    return Counts(
        total,
        top_domain=domains.most_common(1)[0] if domains else None,
        top_network=networks.most_common(1)[0] if networks else None,
        top_range=ranges.most_common(1)[0] if ranges else None,
    )


def exceeded(counts: Counts, thresholds: Thresholds, share: float = 1.0) -> tuple[str, str] | None:
    """The first (cause, scope) whose count reaches `share` of its threshold: the
    narrower scope first, so a wave from one /24 is named by its network."""

    def reaches(value: int, threshold: int) -> bool:
        return threshold > 0 and value >= threshold * share

    if reaches(counts.total, thresholds.overall):
        return OVERALL, ""
    if counts.top_domain is not None and reaches(counts.top_domain[1], thresholds.per_domain):
        return DOMAIN, counts.top_domain[0]
    if counts.top_network is not None and reaches(counts.top_network[1], thresholds.per_network):
        return NETWORK, counts.top_network[0]
    if counts.top_range is not None and reaches(counts.top_range[1], thresholds.per_range):
        return RANGE, counts.top_range[0]
    return None


def switched_on(
    mode: str, level: int, cause: str, scope: str, now_ms: int, until_ms: int
) -> SurgeState:
    return SurgeState(mode, cause, scope, level, now_ms, until_ms)


def switched_off(state: SurgeState, cause: str, now_ms: int, quiet_ms: int) -> SurgeState:
    return SurgeState(OFF, cause, "", 0, now_ms, 0, now_ms + quiet_ms)


def next_state(
    state: SurgeState,
    counts: Counts,
    thresholds: Thresholds,
    now_ms: int,
    *,
    mode: str,
    level: int,
    hold_ms: int,
) -> SurgeState | None:
    """The automatic switch: the new state, or None for no change.

    On when a count reaches its threshold; off once the hold has passed and every
    count is below `release` of its threshold. A moderator's switch is left alone
    until its duration ends.
    """
    if state.on and state.manual:
        return (
            switched_off(state, EXPIRED, now_ms, quiet_ms=0) if state.until_ts <= now_ms else None
        )
    if state.on:
        if now_ms < state.until_ts or exceeded(counts, thresholds, thresholds.release):
            return None
        return switched_off(state, CALM, now_ms, quiet_ms=0)
    if now_ms < state.quiet_until_ts:
        return None
    hit = exceeded(counts, thresholds)
    if hit is None:
        return None
    cause, scope = hit
    return switched_on(mode, level, cause, scope, now_ms, now_ms + hold_ms)
