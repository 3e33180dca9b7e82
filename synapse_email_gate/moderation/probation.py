"""Probation: for `probation.duration` after registering, an account made through
the gate may not create rooms or invite, and may send at most
`probation.messages_per_minute` messages (Synapse's spam-checker callbacks).

Every process keeps the probationers in memory, re-read every
`probation.refresh_interval`, so a callback for anyone else costs one dict
lookup and no database. The message count is per process, in memory: behind
workers a probationer may send that many per minute to each process that
handles its sends (docs/moderation.md).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, Literal

from synapse.api.errors import Codes
from synapse.module_api import ModuleApi

from synapse_email_gate import metrics
from synapse_email_gate.config.durations import format_utc
from synapse_email_gate.config.probation import ProbationConfig
from synapse_email_gate.storage.accounts import AccountStore

logger = logging.getLogger(__name__)

_WINDOW_MS = 60_000
NOT_SPAM: Literal["NOT_SPAM"] = "NOT_SPAM"
Verdict = Literal["NOT_SPAM"] | tuple[Codes, dict[str, Any]]


class Probation:
    def __init__(self, api: ModuleApi, config: ProbationConfig, store: AccountStore) -> None:
        self._api = api
        self._config = config
        self._store = store
        # When probation was switched on; None until the first refresh.
        self._since_ms: int | None = None
        self._until: dict[str, int] = {}
        self._sent: dict[str, deque[int]] = {}

    @property
    def enabled(self) -> bool:
        return self._config.enabled

    def register(self) -> None:
        if not self._config.enabled:
            return
        self._api.register_spam_checker_callbacks(
            user_may_create_room=self.user_may_create_room,
            user_may_invite=self.user_may_invite,
            check_event_for_spam=self.check_event_for_spam,
        )

    def _now(self) -> int:
        return self._api.get_current_time_msec()

    async def start(self) -> None:
        """At start-up, once the tables exist: note since when probation is on (or
        forget it, when off: accounts made meanwhile are existing ones later)."""
        if not self._config.enabled:
            if self._api.should_run_background_tasks():
                await self._store.stop_probation()
            return
        try:
            self._since_ms = await self._store.start_probation(self._now())
            await self.refresh()
        except Exception:  # the next refresh tries again; start-up goes on
            logger.exception("probation: could not read the probationers")

    async def refresh(self) -> None:
        """Re-read the probationers (every process, periodically)."""
        if not self._config.enabled:
            return
        if self._since_ms is None:
            self._since_ms = await self._store.start_probation(self._now())
        now = self._now()
        registered = await self._store.probationers(
            max(self._since_ms, now - self._config.duration_ms)
        )
        self._until = {
            user_id: ts + self._config.duration_ms
            for user_id, ts in registered.items()
            if ts + self._config.duration_ms > now
        }
        for user_id in list(self._sent):
            if user_id not in self._until:
                del self._sent[user_id]

    def noted(self, user_id: str) -> None:
        """An account the gate just made on this process: on probation from now, before
        the next refresh."""
        if self._config.enabled and self._since_ms is not None:
            self._until[user_id] = self._now() + self._config.duration_ms

    def forget(self, user_id: str) -> None:
        """Lifted here: at once on this process, by the next refresh on the others."""
        self._until.pop(user_id, None)
        self._sent.pop(user_id, None)

    def until(self, user_id: str) -> int | None:
        """When this account's probation ends, if it is on probation now (memory only)."""
        until = self._until.get(user_id)
        if until is None:
            return None
        if until <= self._now():
            self.forget(user_id)
            return None
        return until

    def end_of(self, registered_ts: int | None) -> int | None:
        """When the probation of an account of the gate made at `registered_ts` ends (or
        ended); None if it never had one."""
        if not self._config.enabled or registered_ts is None or self._since_ms is None:
            return None
        if registered_ts < self._since_ms:
            return None
        return registered_ts + self._config.duration_ms

    def _refusal(self, user_id: str, what: str, metric: str) -> Verdict:
        until = self.until(user_id)
        if until is None:
            return NOT_SPAM
        metrics.probation_refused(self._api.server_name, metric)
        return (
            Codes.FORBIDDEN,
            {
                "error": f"New accounts may not {what} until {format_utc(until)} (probation).",
                "email_gate_probation_until_ts": until,
            },
        )

    async def user_may_create_room(self, user_id: str, _room_config: Any = None) -> Verdict:
        return self._refusal(user_id, "create rooms", "create_room")

    async def user_may_invite(self, inviter: str, _invitee: str, _room_id: str) -> Verdict:
        return self._refusal(inviter, "invite", "invite")

    async def check_event_for_spam(self, event: Any) -> Verdict:
        sender = event.sender
        if sender not in self._until or event.is_state() or self.until(sender) is None:
            return NOT_SPAM
        now = self._now()
        sent = self._sent.setdefault(sender, deque())
        while sent and sent[0] <= now - _WINDOW_MS:
            sent.popleft()
        if len(sent) >= self._config.messages_per_minute:
            retry_after = (sent[0] + _WINDOW_MS - now) if sent else _WINDOW_MS
            limit = self._config.messages_per_minute
            metrics.probation_refused(self._api.server_name, "message")
            return (
                Codes.LIMIT_EXCEEDED,
                {
                    "error": f"New accounts may send at most {limit} messages a minute"
                    " (probation).",
                    "retry_after_ms": max(1, retry_after),
                },
            )
        sent.append(now)
        return NOT_SPAM

    async def status(self, user_id: str, registered_ts: int | None) -> dict[str, Any] | None:
        """What moderators see of an account's probation; None if it never had one."""
        until = self.end_of(registered_ts)
        if until is None:
            return None
        lift = await self._store.probation_lift(user_id)
        active = lift is None and until > self._now()
        if lift is not None:
            said = f"probation lifted by {lift.lifted_by} ({format_utc(lift.lifted_ts)})"
        elif active:
            said = f"on probation (until {format_utc(until)})"
        else:
            said = f"probation ended {format_utc(until)}"
        return {
            "active": active,
            "until_ts": until,
            "lifted_ts": None if lift is None else lift.lifted_ts,
            "lifted_by": None if lift is None else lift.lifted_by,
            "status": said,
        }

    async def lift(self, user_id: str, actor: str) -> bool:
        """False if it was lifted already."""
        lifted = await self._store.lift_probation(user_id, self._now(), actor)
        self.forget(user_id)
        return lifted
