"""The surge switch: measured and switched on the background-tasks process, switched
by hand from the admin API, the CLI and the room (one code path, one audit entry).

The decision is rules/surge.py; the row every process follows is storage/surge.py;
what a process applies is policy/surge.py.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from synapse.module_api import ModuleApi

from synapse_email_gate import metrics
from synapse_email_gate.config.durations import format_duration, format_utc, parse_duration_ms
from synapse_email_gate.config.surge import SurgeConfig
from synapse_email_gate.moderation.service import AdminError, bad
from synapse_email_gate.policy.live import LivePolicy
from synapse_email_gate.policy.surge import SurgeMode
from synapse_email_gate.rules import surge as rules
from synapse_email_gate.rules.addresses import registrable_domain
from synapse_email_gate.rules.ips import network_of
from synapse_email_gate.rules.surge import SurgeState
from synapse_email_gate.storage.surge import SurgeStore

logger = logging.getLogger(__name__)

# Who the audit log names for an automatic switch.
AUTOMATIC = "surge (automatic)"
MAX_DURATION_MS = 7 * 24 * 3600 * 1000
SURGE_BUSY = "EMAIL_GATE_SURGE_BUSY"

# Tells the moderators about a switch (the room; see `tell_moderators` in module.py).
Tell = Callable[[str], Awaitable[None]]


class SurgeService:
    def __init__(
        self,
        api: ModuleApi,
        config: SurgeConfig,
        base_difficulty: int,
        store: SurgeStore,
        mode: SurgeMode,
        policy: LivePolicy,
        tell: Tell | None = None,
    ) -> None:
        self._api = api
        self._config = config
        self._level = config.level(base_difficulty)
        self._store = store
        self._mode = mode
        self._policy = policy
        self._tell = tell

    def _now(self) -> int:
        return self._api.get_current_time_msec()

    async def check(self) -> None:
        """Measure the recent rate and switch if due (the background-tasks process)."""
        try:
            await self._check()
        except Exception:
            logger.exception("surge: check failed; the mode in force is unchanged")

    async def _check(self) -> None:
        now = self._now()
        state = await self._store.current()
        self._mode.learn(state)
        if self._config.enabled:
            rows = await self._store.recent_requests(now - self._config.window_ms)
            limits = self._policy.current.rate_limits
            config = self._config
            counts = rules.count(
                rows,
                lambda ip: network_of(ip, limits.ipv4_network_prefix, limits.ipv6_network_prefix),
                _domain_of,
                lambda ip: network_of(ip, config.range_ipv4_prefix, config.range_ipv6_prefix),
            )
        else:
            counts = rules.Counts(0)  # off: an automatic surge ends after its hold
        new = rules.next_state(
            state,
            counts,
            self._config.thresholds,
            now,
            mode=self._config.mode,
            level=self._level,
            hold_ms=self._config.hold_ms,
        )
        if new is not None:
            await self._write(state, new, AUTOMATIC, _counts_text(counts, self._config))

    async def switch(self, actor: str, body: dict[str, Any]) -> dict[str, Any]:
        """`POST admin/surge`: `{"on": true, "mode": ..., "duration": ...}` or
        `{"on": false}`; every field given is checked, also those `off` ignores."""
        on = body.get("on")
        if not isinstance(on, bool):
            raise bad("on must be true or false")
        mode = body.get("mode")
        if "mode" in body and mode not in rules.MODES:
            raise bad(f"mode must be one of {', '.join(rules.MODES)}")
        duration = body.get("duration")
        if "duration" in body:
            _duration(duration)
        if on:
            return await self.switch_on(actor, mode, duration)
        return await self.switch_off(actor)

    async def switch_on(
        self, actor: str, mode: object, duration: object, *, tell: bool = True
    ) -> dict[str, Any]:
        """A moderator switches the surge on for `duration` (default: the hold).
        `tell=False`: the switch was made in the moderation room, which sees the answer."""
        chosen = self._config.mode if mode is None else mode
        if chosen not in rules.MODES:
            raise bad(f"mode must be one of {', '.join(rules.MODES)}")
        duration_ms = self._config.hold_ms if duration is None else _duration(duration)
        now = self._now()
        new = rules.switched_on(str(chosen), self._level, rules.MANUAL, "", now, now + duration_ms)
        await self._write(None, new, actor, f"for {format_duration(duration_ms)}", tell)
        return self.describe(new)

    async def switch_off(self, actor: str, *, tell: bool = True) -> dict[str, Any]:
        """A moderator switches it off; no automatic switch-on for the hold after."""
        now = self._now()
        new = rules.switched_off(self._mode.state, rules.MANUAL, now, self._config.hold_ms)
        await self._write(None, new, actor, "", tell)
        return self.describe(new)

    async def status(self) -> dict[str, Any]:
        await self._mode.refresh()
        return self.describe(self._mode.state)

    def describe(self, state: SurgeState) -> dict[str, Any]:
        state = state.in_force(self._now())
        return {
            "on": state.on,
            "mode": state.mode,
            "cause": state.cause or None,
            "scope": state.scope or None,
            "level": state.level if state.mode == rules.CHALLENGE else None,
            "since_ts": state.since_ts or None,
            "until_ts": state.until_ts or None,
            "automatic": self._config.enabled,
            "config": {
                "mode": self._config.mode,
                "window_s": self._config.window_ms // 1000,
                "threshold": self._config.threshold,
                "per_domain_threshold": self._config.per_domain_threshold,
                "per_network_threshold": self._config.per_network_threshold,
                "per_range_threshold": self._config.per_range_threshold,
                "range_ipv4_prefix": self._config.range_ipv4_prefix,
                "range_ipv6_prefix": self._config.range_ipv6_prefix,
                "release": self._config.release,
                "hold_s": self._config.hold_ms // 1000,
                "challenge_level": self._level,
            },
        }

    async def _write(
        self,
        expected: SurgeState | None,
        new: SurgeState,
        actor: str,
        detail: str,
        tell: bool = True,
    ) -> None:
        written = await self._store.switch(expected, new, actor, detail)
        if written is None:
            if expected is None:
                raise AdminError(409, SURGE_BUSY, "the surge state changed; try again")
            return  # another process switched first; it told the moderators
        self._mode.learn(written)
        server = self._api.server_name
        metrics.surge_switched(server, written.on, written.cause)
        logger.warning("surge: %s by %s (%s)", describe_switch(written), actor, detail)
        if tell and self._tell is not None:
            await self._tell(f"Surge switch: {describe_switch(written)} by {actor}. {detail}")


def describe_switch(state: SurgeState) -> str:
    """One line for moderators."""
    if not state.on:
        return f"off ({state.cause})"
    what = (
        f"challenge at {state.level} bits" if state.mode == rules.CHALLENGE else "approval required"
    )
    why = state.cause if not state.scope else f"{state.cause} {state.scope}"
    return f"ON: {what} ({why}) until at least {format_utc(state.until_ts)}"


def _domain_of(address: str) -> str | None:
    _, at, domain = address.rpartition("@")
    return registrable_domain(domain) if at and domain else None


def _duration(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise bad("duration must be a duration like 30m or 2h, or a number of seconds")
    try:
        ms = parse_duration_ms(value)
    except (ValueError, TypeError) as e:
        raise bad(f"duration: {e}") from None
    if not 0 < ms <= MAX_DURATION_MS:
        raise bad("duration must be above 0 and at most 7d")
    return ms


def _counts_text(counts: rules.Counts, config: SurgeConfig) -> str:
    window = format_duration(config.window_ms)
    parts = [f"{counts.total} requests in {window}"]
    if counts.top_domain is not None:
        parts.append(f"busiest domain {counts.top_domain[0]}: {counts.top_domain[1]}")
    if counts.top_network is not None:
        parts.append(f"busiest network {counts.top_network[0]}: {counts.top_network[1]}")
    if counts.top_range is not None:
        parts.append(f"busiest range {counts.top_range[0]}: {counts.top_range[1]}")
    return "; ".join(parts)
