"""Accounts made through the gate: lifting a probation early, and mass action
(list the accounts a filter matches, then lock, suspend or deactivate them in one
action after a dry run). The admin API, the CLI and the room all come here."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping
from typing import Any

import attrs
from synapse.module_api import ModuleApi

from synapse_email_gate import metrics
from synapse_email_gate.config.durations import format_utc, parse_duration_ms
from synapse_email_gate.config.policy_lists import parse_timestamp_ms
from synapse_email_gate.moderation.account_actions import ACTIONS, IRREVERSIBLE, SynapseAccounts
from synapse_email_gate.moderation.probation import Probation
from synapse_email_gate.moderation.service import AdminError, admin_only, bad, not_found
from synapse_email_gate.rules.moderator_entries import is_plain_user_id
from synapse_email_gate.storage import tokens as token_store
from synapse_email_gate.storage.accounts import MAX_ACCOUNTS, SCAN_LIMIT, AccountStore, AccountWhere
from synapse_email_gate.storage.moderation import ModerationStore

FILTER_KEYS = ("ip", "cidr", "domain", "token", "since", "until")
NOT_ON_PROBATION = "EMAIL_GATE_NOT_ON_PROBATION"
NOT_CONFIRMED = "EMAIL_GATE_NOT_CONFIRMED"
TOO_MANY = "EMAIL_GATE_TOO_MANY_ACCOUNTS"
_HASHED = "hmac:"  # an address kept only as its keyed hash (privacy.hash_emails)
# The state an action leaves an account in: one already there is skipped.
_ALREADY = {
    "lock": "locked",
    "suspend": "suspended",
}
_NOT_YET = {
    "unlock": "locked",
    "unsuspend": "suspended",
}


@attrs.frozen
class AccountFilter:
    ip: str | None = None
    cidr: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    domain: str | None = None
    token: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    @property
    def empty(self) -> bool:
        return self == AccountFilter()

    def describe(self) -> dict[str, Any]:
        return {
            "ip": self.ip,
            "cidr": None if self.cidr is None else str(self.cidr),
            "domain": self.domain,
            "token": self.token,
            "since_ts": self.since_ms,
            "until_ts": self.until_ms,
        }

    def words(self) -> str:
        """For the audit log: the filter's set keys."""
        return " ".join(f"{k}={v}" for k, v in self.describe().items() if v is not None) or "all"


def confirmation(action: str, user_ids: list[str]) -> str:
    """Names one action on one set of accounts: what the dry run showed is what is done."""
    digest = hashlib.sha256("\n".join([action, *sorted(user_ids)]).encode()).hexdigest()
    return digest[:16]


class AccountService:
    def __init__(
        self,
        api: ModuleApi,
        store: AccountStore,
        moderation: ModerationStore,
        probation: Probation,
        synapse_accounts: SynapseAccounts,
        bot_user_id: str,
    ) -> None:
        self._api = api
        self._store = store
        self._moderation = moderation
        self._probation = probation
        self._synapse = synapse_accounts
        self._bot = bot_user_id

    def _now(self) -> int:
        return self._api.get_current_time_msec()

    async def _audit(self, actor: str, action: str, target: str | None, detail: str) -> None:
        await self._moderation.audit(self._now(), actor, action, target, detail)

    # --- probation ----------------------------------------------------------------

    async def lift_probation(self, actor: str, user_id: str, body: Mapping[str, Any]) -> None:
        """`{"lift": true}`: the account's probation ends now, on every process within
        `probation.refresh_interval`."""
        if not is_plain_user_id(user_id):
            raise bad("user_id must be a Matrix ID like @alice:example.org")
        unknown = sorted(set(body) - {"lift"})
        if unknown:
            raise bad(f"unknown field(s): {', '.join(unknown)}")
        if body.get("lift") is not True:
            raise bad('send {"lift": true} to lift the probation')
        if not self._probation.enabled:
            raise AdminError(409, NOT_ON_PROBATION, "probation is not enabled on this server")
        registered = await self._store.registered_ts(user_id)
        status = await self._probation.status(user_id, registered)
        if status is None or not status["active"]:
            if registered is None and await self._api.check_user_exists(user_id) is None:
                raise not_found("account")
            raise AdminError(409, NOT_ON_PROBATION, "this account is not on probation")
        await self._probation.lift(user_id, actor)
        await self._audit(actor, "account.probation.lift", user_id, "")

    # --- mass action ----------------------------------------------------------------

    def parse_filter(self, raw: Mapping[str, object]) -> AccountFilter:
        """From query parameters or a JSON object: `ip`, `cidr`, `domain`, `token`,
        `since`, `until` (a time: a date, a date and time, milliseconds since the
        epoch, or a duration back from now such as 24h)."""
        unknown = sorted(set(raw) - set(FILTER_KEYS))
        if unknown:
            raise bad(f"unknown filter(s): {', '.join(unknown)}; known: {', '.join(FILTER_KEYS)}")
        values: dict[str, Any] = {}
        for key in FILTER_KEYS:
            value = raw.get(key)
            if value is None or value == "":
                continue
            if key in ("since", "until"):
                values[f"{key}_ms"] = self._moment(key, value)
                continue
            if not isinstance(value, str):
                raise bad(f"{key} must be a string")
            values[key] = _filter_value(key, value.strip())
        found = AccountFilter(**values)
        if (
            found.since_ms is not None
            and found.until_ms is not None
            and found.since_ms >= found.until_ms
        ):
            raise bad("since must be before until")
        return found

    def _moment(self, key: str, value: object) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 0:
                raise bad(f"{key} must not be negative")
            return value
        if isinstance(value, str) and value.isdigit():
            return int(value)
        try:
            return self._now() - parse_duration_ms(value)
        except ValueError:
            pass
        try:
            return parse_timestamp_ms(value)
        except ValueError:
            raise bad(
                f"{key} must be a date like 2026-12-31, a date and time like"
                " 2026-12-31T18:00Z, milliseconds since the epoch, or a duration back"
                " from now like 24h"
            ) from None

    async def _matching(self, found: AccountFilter) -> list[dict[str, Any]]:
        where = AccountWhere(
            ip=found.ip,
            domain=found.domain,
            token=found.token,
            since_ms=found.since_ms,
            until_ms=found.until_ms,
        )
        # One more than allowed is enough to say the filter matches too many; a
        # network is matched here, among the accounts the rest of the filter leaves.
        limit = MAX_ACCOUNTS + 1 if found.cidr is None else SCAN_LIMIT
        rows = await self._store.gate_accounts(where, limit)
        cidr = found.cidr
        if cidr is not None:
            rows = [
                r for r in rows if _in(r["registration_ip"], cidr) or _in(r["request_ip"], cidr)
            ]
        return [self._describe(row) for row in rows]

    def _describe(self, row: dict[str, Any]) -> dict[str, Any]:
        email = row.pop("email")
        hashed = isinstance(email, str) and email.startswith(_HASHED)
        if row["token_kind"] == token_store.EMAIL:
            row["token"] = None  # a mailed token is shown only in its mail
        registered = row["registered_ts"]
        until = self._probation.until(row["user_id"])
        return {
            **row,
            "registered": format_utc(registered),
            "email": None if hashed else email,
            "email_hashed": hashed,
            "probation_until_ts": until,
            "protected": bool(row["admin"]) or row["user_id"] == self._bot,
        }

    async def list_accounts(self, found: AccountFilter, limit: int) -> dict[str, Any]:
        accounts = await self._matching(found)
        limit = max(1, min(limit, MAX_ACCOUNTS))
        return {
            "filter": found.describe(),
            "count": min(len(accounts), MAX_ACCOUNTS),
            "truncated": len(accounts) > limit,
            "accounts": accounts[:limit],
        }

    async def act(self, actor: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """`{filter, action, dry_run (default true), confirm}`: the dry run says which
        accounts the action would change and gives `confirm`; the action runs only
        with that `confirm`, so it changes exactly the accounts the dry run showed."""
        unknown = sorted(set(body) - {"filter", "action", "dry_run", "confirm"})
        if unknown:
            raise bad(f"unknown field(s): {', '.join(unknown)}")
        action = body.get("action")
        if action not in ACTIONS:
            raise bad(f"action must be one of {', '.join(ACTIONS)}")
        dry_run = body.get("dry_run", True)
        if not isinstance(dry_run, bool):
            raise bad("dry_run must be true or false")
        raw_filter = body.get("filter")
        if not isinstance(raw_filter, Mapping):
            raise bad("filter must be an object with at least one of " + ", ".join(FILTER_KEYS))
        found = self.parse_filter(raw_filter)
        if found.empty:
            raise bad("filter must name at least one of " + ", ".join(FILTER_KEYS))
        if action in IRREVERSIBLE and not await self._api.is_user_admin(actor):
            raise admin_only(f"{action} accounts")
        accounts = await self._matching(found)
        if len(accounts) > MAX_ACCOUNTS:
            raise AdminError(
                400, TOO_MANY, f"more than {MAX_ACCOUNTS} accounts match: narrow the filter"
            )
        affected, skipped = [], []
        for account in accounts:
            why = _skip(action, account, actor)
            if why is None:
                affected.append(account["user_id"])
            else:
                skipped.append({"user_id": account["user_id"], "why": why})
        confirm = confirmation(action, affected)
        answer: dict[str, Any] = {
            "action": action,
            "dry_run": dry_run,
            "filter": found.describe(),
            "matched": len(accounts),
            "affected": affected,
            "skipped": skipped,
            "confirm": confirm,
        }
        if dry_run:
            return answer
        given = body.get("confirm")
        if not isinstance(given, str) or not given:
            raise AdminError(
                400, NOT_CONFIRMED, "confirm is required: send the confirm of a dry run first"
            )
        if given != confirm:
            raise AdminError(
                409,
                NOT_CONFIRMED,
                "the accounts this would change are not the ones of that dry run: run it again",
            )
        done, failed = [], []
        for user_id in affected:
            try:
                await self._synapse.apply(action, user_id, actor)
            except Exception as e:  # one account's failure must not stop the others
                failed.append({"user_id": user_id, "error": str(e) or type(e).__name__})
                continue
            done.append(user_id)
            metrics.account_changed(self._api.server_name, action)
            await self._audit(actor, f"account.{action}", user_id, f"mass action {confirm}")
        await self._audit(
            actor,
            f"accounts.{action}",
            None,
            f"{found.words()}: {len(done)} changed, {len(failed)} failed, {len(skipped)} skipped",
        )
        return {**answer, "affected": done, "failed": failed}


def _filter_value(key: str, value: str) -> Any:
    if key == "ip":
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise bad(f"ip must be an IP address, got {value!r}") from None
    if key == "cidr":
        try:
            return ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise bad(f"cidr must be a network like 198.51.100.0/24, got {value!r}") from None
    if key == "domain":
        domain = value.lower().lstrip("@").rstrip(".")
        if not domain or "@" in domain or any(c.isspace() for c in domain):
            raise bad(f"domain must be a mail domain like example.org, got {value!r}")
        return domain
    if not value or len(value) > 64:
        raise bad("token must be a token's text")
    return value


def _in(ip: object, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    if not isinstance(ip, str):
        return False
    try:
        return ipaddress.ip_address(ip) in network
    except ValueError:
        return False


def _skip(action: str, account: dict[str, Any], actor: str) -> str | None:
    """Why an account is left alone, or None."""
    if account["protected"]:
        return "server admin" if account["admin"] else "the module's bot"
    if account["user_id"] == actor:
        return "yourself"
    if not account["exists"]:
        return "no such account"
    if account["deactivated"]:
        return "deactivated"
    state = _ALREADY.get(action)
    if state is not None and account[state]:
        return f"already {state}"
    state = _NOT_YET.get(action)
    if state is not None and not account[state]:
        return f"not {state}"
    return None
