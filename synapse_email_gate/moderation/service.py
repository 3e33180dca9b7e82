"""What moderators can do. The admin API, the CLI (through the API) and room
commands all go through here, so each action has one code path and one audit entry."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from synapse.module_api import ModuleApi

from synapse_email_gate import metrics
from synapse_email_gate.config.durations import describe_duration, format_utc, parse_duration_ms
from synapse_email_gate.config.policy_lists import (
    BAN_KINDS,
    BanEntry,
    ban_kind,
    parse_timestamp_ms,
)
from synapse_email_gate.mail.compose import registration_link
from synapse_email_gate.mail.delivery import MailDelivery
from synapse_email_gate.moderation.probation import Probation
from synapse_email_gate.policy.live import ReloadResult
from synapse_email_gate.policy.rooms import PolicyRooms
from synapse_email_gate.policy.sync import PolicySync
from synapse_email_gate.rules.identifiers import new_id, new_token
from synapse_email_gate.rules.moderator_entries import entry_problem, is_plain_user_id
from synapse_email_gate.rules.policy_rules import RoomRule
from synapse_email_gate.rules.words import (
    DEFAULT_WORDS,
    MAX_WORDS,
    MIN_WORDS,
    entropy_bits,
    new_word_token,
)
from synapse_email_gate.storage import tokens as token_store
from synapse_email_gate.storage.moderation import ModerationStore, StoredBan
from synapse_email_gate.storage.requests import Decision, RequestStore
from synapse_email_gate.storage.tokens import TokenStore

REQUEST_STATUSES = (
    "received",
    "issued",
    "suppressed",
    "registered",
    "superseded",
    "revoked",
    "verifying",
    "pending",
    "denied",
)
# Hand-chosen and generated tokens alike: at least 12 characters (a short one
# can be guessed through the validity endpoint).
MIN_TOKEN_LENGTH = 12
MAX_TOKEN_LENGTH = 64
_TOKEN_TEXT = re.compile(rf"^[A-Za-z0-9._~-]{{{MIN_TOKEN_LENGTH},{MAX_TOKEN_LENGTH}}}$")
ADMIN_ONLY = "EMAIL_GATE_ADMIN_ONLY"
DELETE_ALL_CONFIRMATION = "delete all tokens"
MAX_PAGE = 500
# Synapse keeps uses_allowed in a 32-bit INT; times stay within JSON's safe integers.
MAX_USES = 2**31 - 1
MAX_TIME_MS = 2**53 - 1
TOKEN_STYLES = ("random", "words")
# The manual purge may tighten `retention`, down to what its config allows.
MIN_PURGE_AGE_MS = 3_600_000

# Housekeeping.purge(older_than_ms, dry_run) -> rows of each kind deleted.
Purge = Callable[[int | None, bool], Awaitable[dict[str, int]]]


class AdminError(Exception):
    def __init__(self, status: int, errcode: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.errcode = errcode
        self.message = message


def bad(message: str) -> AdminError:
    return AdminError(400, "M_INVALID_PARAM", message)


def not_found(what: str) -> AdminError:
    return AdminError(404, "M_NOT_FOUND", f"{what} not found")


def admin_only(what: str) -> AdminError:
    return AdminError(403, ADMIN_ONLY, f"only server admins may {what}")


class ModerationService:
    def __init__(
        self,
        api: ModuleApi,
        policy: PolicySync,
        delivery: MailDelivery,
        token_lifetime_ms: int,
        moderation: ModerationStore,
        tokens: TokenStore,
        requests: RequestStore,
        page_base_url: str,
        policy_rooms: PolicyRooms | None = None,
        purge: Purge | None = None,
        probation: Probation | None = None,
    ) -> None:
        self._api = api
        self._purge = purge
        self._probation = probation
        self._policy = policy
        self._policy_rooms = policy_rooms
        self._delivery = delivery
        self._token_lifetime_ms = token_lifetime_ms
        self._moderation = moderation
        self._tokens = tokens
        self._requests = requests
        self._page_base_url = page_base_url

    def _describe(self, row: dict[str, Any], now_ms: int) -> dict[str, Any]:
        return describe_token(row, now_ms, self._page_base_url)

    def _now(self) -> int:
        return self._api.get_current_time_msec()

    async def _is_admin(self, actor: str) -> bool:
        return bool(await self._api.is_user_admin(actor))

    async def _audit(self, actor: str, action: str, target: str | None, detail: str) -> None:
        await self._moderation.audit(self._now(), actor, action, target, detail)

    # --- requests --------------------------------------------------------

    async def list_requests(
        self, status: str | None, search: str | None, limit: int, offset: int
    ) -> dict[str, Any]:
        if status is not None and status not in REQUEST_STATUSES:
            raise bad(f"status must be one of {', '.join(REQUEST_STATUSES)}")
        limit = _page_size(limit)
        rows = await self._moderation.requests(status, search, limit, max(0, offset))
        page: dict[str, Any] = {"requests": rows}
        if len(rows) == limit:
            page["next_from"] = offset + limit
        return page

    async def show_request(self, request_id: str) -> dict[str, Any]:
        request = await self._moderation.request(request_id)
        if request is None:
            raise not_found("request")
        return request

    async def decide(
        self, actor: str, request_id: str, approve: bool, message: object
    ) -> dict[str, Any]:
        """Approval mode: approve (token mail) or deny (polite mail, with `message`)."""
        if message is not None and (not isinstance(message, str) or len(message) > 2000):
            raise bad("message must be a string of at most 2000 characters")
        decision = Decision(
            request_id=request_id,
            approve=approve,
            actor=actor,
            message=message or None,
            now_ms=self._now(),
            token=new_token(),
            token_lifetime_ms=self._token_lifetime_ms,
            outbox_id=new_id(),
        )
        problem = await self._requests.decide(decision)
        if problem == "not_found":
            raise not_found("request")
        if problem == "not_pending":
            raise AdminError(
                409, "EMAIL_GATE_NOT_PENDING", "this request is not waiting for a decision"
            )
        if problem == "username_taken":
            raise AdminError(
                409, "M_USER_IN_USE", "the username was given to another request meanwhile"
            )
        action = "request.approve" if approve else "request.deny"
        await self._audit(actor, action, request_id, message or "")
        if approve:
            metrics.token_issued(self._api.server_name, source="approval")
        self._delivery.kick(decision.outbox_id)
        return await self.show_request(request_id)

    # --- tokens ----------------------------------------------------------

    async def list_tokens(self, valid_only: bool) -> list[dict[str, Any]]:
        now = self._now()
        ours, foreign = await self._tokens.listing(now)
        # A token mailed to one person (bound to a request) is never listed: whoever
        # read it could register the reserved account as their own.
        tokens = sorted(
            (
                self._describe(row, now)
                for row in [*ours, *foreign]
                if row.get("kind") != token_store.EMAIL
            ),
            key=lambda t: (t["expiry_time"] is None, t["expiry_time"] or 0, t["token"]),
        )
        return [t for t in tokens if t["valid"]] if valid_only else tokens

    async def show_token(self, token: str) -> dict[str, Any]:
        now = self._now()
        ours, foreign = await self._tokens.lookup(token, now)
        rows = [row for row in ours if row["revoked_reason"] != token_store.DELETED] or foreign
        if not rows:
            raise not_found("token")
        return self._describe(rows[0], now)

    async def create_token(self, actor: str, body: dict[str, Any]) -> dict[str, Any]:
        token = _new_token_text(body)
        uses = _uses_allowed(body.get("uses_allowed", 1))
        expiry_ts = self._expiry(body)
        if (uses is None or expiry_ts is None) and not await self._is_admin(actor):
            raise admin_only(
                "create tokens with unlimited uses"
                if uses is None
                else "create tokens that never expire"
            )
        new = token_store.NewToken(
            token=token,
            kind=token_store.INVITE,
            uses_allowed=uses,
            expiry_ts=expiry_ts,
            created_ts=self._now(),
            created_by=actor,
        )
        created = await self._tokens.create_invite(new)
        if not created:
            raise AdminError(400, "M_INVALID_PARAM", "this token exists already")
        await self._audit(actor, "token.create", token, f"uses_allowed={uses} expiry={expiry_ts}")
        metrics.token_issued(self._api.server_name, source="invite")
        return await self.show_token(token)

    async def edit_token(self, actor: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
        """Change an invite token: `uses_allowed`, `expiry` (or `expiry_time`),
        `disabled` (true/false); the fields not sent stay as they are. The admin
        API, the CLI and the room all edit through here."""
        unknown = sorted(set(body) - {"uses_allowed", "expiry", "expiry_time", "disabled"})
        if unknown:
            raise bad(f"unknown field(s): {', '.join(unknown)}")
        if not body:
            raise bad("nothing to change: send uses_allowed, expiry or disabled")
        edit = token_store.TokenEdit()
        if "uses_allowed" in body:
            edit = attrs.evolve(edit, uses_allowed=_uses_allowed(body["uses_allowed"]))
        if "expiry" in body or "expiry_time" in body:
            edit = attrs.evolve(edit, expiry_ts=self._expiry(body))
        if "disabled" in body:
            if not isinstance(body["disabled"], bool):
                raise bad("disabled must be true or false")
            edit = attrs.evolve(edit, disabled=body["disabled"])
        result = await self._tokens.edit(token, edit, await self._is_admin(actor), self._now())
        if result.outcome == token_store.NOT_FOUND:
            raise not_found("token")
        if result.outcome == token_store.NOT_INVITE:
            raise bad("a mailed token is bound to its request: it can be deleted, not edited")
        if result.outcome == token_store.FOREIGN:
            raise bad("this token was made outside the module: edit it with Synapse's admin API")
        if result.outcome == token_store.BELOW_USED:
            raise bad(
                f"uses_allowed cannot be below the {result.used} use(s) already made"
                f" (set it to {result.used} to allow no more)"
            )
        if result.outcome == token_store.ADMIN_ONLY:
            raise admin_only("make a token unlimited or never-expiring, or enable such a token")
        detail = " ".join(f"{key}={body[key]}" for key in sorted(body))
        await self._audit(actor, "token.edit", token, detail)
        return await self.show_token(token)

    async def show_account(self, user_id: str) -> dict[str, Any]:
        """How an account came in (its token, who made that token, from which
        address), and whom it brought in with the tokens it made: one step of
        the invite tree each way."""
        if not is_plain_user_id(user_id):
            raise bad("user_id must be a Matrix ID like @alice:example.org")
        link, made = await self._tokens.account(user_id)
        if link is None and not made and await self._api.check_user_exists(user_id) is None:
            raise not_found("account")
        link = link or {}
        return {
            "user_id": user_id,
            # A mailed token is shown only in its mail; its request says the rest.
            "token": None if link.get("token_kind") == token_store.EMAIL else link.get("token"),
            "token_kind": link.get("token_kind"),
            "token_created_by": link.get("token_created_by"),
            "request_id": link.get("request_id"),
            "registered_ts": link.get("registered_ts"),
            "ip": link.get("ip"),
            "via": link.get("via"),
            "tokens_created": [
                {"token": token, "accounts": [a["user_id"] for a in accounts]}
                for token, accounts in made.items()
            ],
            "invited": [a["user_id"] for accounts in made.values() for a in accounts],
            "probation": None
            if self._probation is None
            else await self._probation.status(user_id, link.get("registered_ts")),
        }

    def _expiry(self, body: dict[str, Any]) -> int | None:
        ts = self._expiry_ts(body)
        if ts is not None and ts > MAX_TIME_MS:
            raise bad("expiry is too far in the future")
        return ts

    def _expiry_ts(self, body: dict[str, Any]) -> int | None:
        """`expiry`: a duration (`7d`), a date/time, null/`never`; default 7 days."""
        if "expiry_time" in body and "expiry" in body:
            raise bad("give expiry or expiry_time, not both")
        if "expiry_time" in body:
            value = body["expiry_time"]
            if value is None or (isinstance(value, int) and not isinstance(value, bool)):
                return value
            raise bad("expiry_time must be milliseconds since the epoch, or null")
        value = body.get("expiry", "7d")
        if value is None or value == "never":
            return None
        try:
            return self._now() + parse_duration_ms(value)
        except ValueError:
            pass
        try:
            ts = parse_timestamp_ms(value)
        except ValueError:
            raise bad(
                "expiry must be a duration like 7d, a date like 2026-12-31, or never"
            ) from None
        if ts <= self._now():
            raise bad("expiry is in the past")
        return ts

    async def delete_tokens(self, actor: str, tokens: object) -> list[str]:
        if (
            not isinstance(tokens, list)
            or not tokens
            or not all(isinstance(t, str) for t in tokens)
        ):
            raise bad("tokens must be a non-empty list of strings")
        deleted = await self._tokens.delete(tokens, self._now())
        for token in deleted:
            await self._audit(actor, "token.delete", token, "")
        return deleted

    async def delete_all_tokens(self, actor: str, confirm: object) -> int:
        if confirm != DELETE_ALL_CONFIRMATION:
            raise bad(f'to delete every token, send "confirm": "{DELETE_ALL_CONFIRMATION}"')
        count = await self._tokens.delete_all(self._now())
        await self._audit(actor, "token.delete_all", None, f"{count} deleted")
        return count

    # --- purge ----------------------------------------------------------------

    async def purge(self, actor: str, body: dict[str, Any]) -> dict[str, Any]:
        """The retention purge, now (server admins only): `dry_run` (default true)
        counts what would go and deletes nothing; `older_than` tightens the ages of
        `retention` for requests and addresses. The same code as the hourly purge."""
        if not await self._is_admin(actor):
            raise admin_only("purge old records")
        unknown = sorted(set(body) - {"dry_run", "older_than"})
        if unknown:
            raise bad(f"unknown field(s): {', '.join(unknown)}")
        dry_run = body.get("dry_run", True)
        if not isinstance(dry_run, bool):
            raise bad("dry_run must be true or false")
        older_than_ms = None
        if body.get("older_than") is not None:
            try:
                older_than_ms = parse_duration_ms(body["older_than"])
            except ValueError:
                raise bad("older_than must be a duration like 30d or 12h") from None
            if older_than_ms < MIN_PURGE_AGE_MS:
                raise bad("older_than must be at least 1h")
        if self._purge is None:
            raise AdminError(503, "M_UNKNOWN", "the purge is not available on this process")
        counts = await self._purge(older_than_ms, dry_run)
        if not dry_run:
            detail = " ".join(f"{kind}={n}" for kind, n in counts.items())
            older = "retention" if older_than_ms is None else body["older_than"]
            await self._audit(actor, "purge", None, f"older_than={older} {detail}")
        return {"dry_run": dry_run, "older_than_ms": older_than_ms, "counts": counts}

    # --- bans ---------------------------------------------------------------

    async def list_bans(self) -> list[dict[str, Any]]:
        bans = await self._moderation.bans()
        now = self._now()
        return [
            {
                "id": ban.id,
                "kind": ban.kind,
                "match": ban.entry.match,
                "reason": ban.entry.reason,
                "expires_ts": ban.entry.expires_ts,
                "active": ban.entry.active(now),
                "created_by": ban.created_by,
                "created_ts": ban.created_ts,
            }
            for ban in bans
        ]

    def policy_entries(self) -> dict[str, list[dict[str, Any]]]:
        """Every ban in force, from homeserver.yaml, the policy file, the database and
        the policy rooms, with its reason and expiry (for moderators only)."""
        now = self._now()
        view: dict[str, list[dict[str, Any]]] = {kind.key: [] for kind in BAN_KINDS}
        view["allowed_email_domains"] = []
        for source, lists in self._policy.layers().items():
            for kind in BAN_KINDS:
                view[kind.key] += [
                    {
                        "match": entry.match,
                        "reason": entry.reason,
                        "expires_ts": entry.expires_ts,
                        "active": entry.active(now),
                        "source": source,
                    }
                    for entry in kind.entries(lists)
                ]
            view["allowed_email_domains"] += [
                {"match": domain, "source": source} for domain in lists.allowed_email_domains
            ]
        room_rules = self._policy.current.room_rules
        view["policy_rooms"] = [] if self._policy_rooms is None else self._policy_rooms.status()
        view["policy_room_rules"] = [_room_rule(rule) for rule in room_rules.rules]
        view["policy_room_rules_ignored"] = [
            {**_room_rule(rule), "ignored": why} for rule, why in room_rules.ignored
        ]
        return view

    def why(self, name: object) -> dict[str, Any]:
        """Every ban that refuses this username, local pattern or policy room rule."""
        if not isinstance(name, str) or not name.strip():
            raise bad("username must be a non-empty string")
        localpart = name.strip().lower().removeprefix("@")
        localpart = localpart.removesuffix(f":{self._api.server_name}")
        policy = self._policy.current
        patterns = {policy.usernames.sources[i] for i in policy.usernames.match_indices(localpart)}
        matches: list[dict[str, Any]] = [
            {"source": source, "match": entry.match, "reason": entry.reason}
            for source, lists in self._policy.layers().items()
            for entry in lists.banned_usernames
            if entry.match in patterns
        ]
        matches += [
            {"source": "policy_room", **_room_rule(rule)}
            for rule in policy.room_rules.matching(localpart)
        ]
        return {
            "username": localpart,
            "user_id": f"@{localpart}:{self._api.server_name}",
            "banned": bool(matches),
            "matches": matches,
        }

    async def add_ban(self, actor: str, body: dict[str, Any]) -> dict[str, Any]:
        kind, match, reason = ban_kind(body.get("kind")), body.get("match"), body.get("reason")
        if kind is None:
            raise bad(f"kind must be one of {', '.join(k.name for k in BAN_KINDS)}")
        if not isinstance(match, str) or not match:
            raise bad("match must be a non-empty string")
        if reason is not None and not isinstance(reason, str):
            raise bad("reason must be a string")
        try:
            kind.compile([match])
            expires = body.get("expires")
            expires_ts = None if expires is None else self._ban_expiry(expires)
        except ValueError as e:
            raise bad(str(e)) from e
        ban = StoredBan(
            id=new_id(),
            kind=kind.name,
            entry=BanEntry(match=match, reason=reason, expires_ts=expires_ts),
            created_by=actor,
            created_ts=self._now(),
        )
        await self._moderation.add_ban(ban)
        await self._audit(actor, f"ban.add.{kind.name}", ban.id, match)
        # The cause names the ban, not its match: an address must not reach the log.
        revoked = await self._policy.changed(actor, f"ban {ban.id} ({kind.name})")
        return {
            "id": ban.id,
            "kind": kind.name,
            "match": match,
            "reason": reason,
            "expires_ts": expires_ts,
            "revoked": revoked,
        }

    def _ban_expiry(self, value: object) -> int:
        try:
            ts = self._now() + parse_duration_ms(value)
        except ValueError:
            ts = parse_timestamp_ms(value)
        if ts > MAX_TIME_MS:
            raise ValueError("expires is too far in the future")
        return ts

    async def remove_ban(self, actor: str, ban_id: str) -> None:
        removed = await self._moderation.remove_ban(ban_id)
        if not removed:
            raise not_found("ban")
        await self._audit(actor, "ban.remove", ban_id, "")
        await self._policy.changed(actor, f"ban {ban_id} removed")

    # --- moderators and reload ----------------------------------------------

    async def list_moderators(self) -> list[dict[str, Any]]:
        """The stored entries; `problem` says why one that breaks today's rules
        (stored before they existed) matches nobody."""
        rows = await self._moderation.moderators()
        for row in rows:
            row["problem"] = entry_problem(row["entry"], self._api.server_name)
        return rows

    async def allow(self, actor: str, entry: object) -> bool:
        if not await self._is_admin(actor):
            raise admin_only("change who moderates")
        if not isinstance(entry, str) or not entry:
            raise bad("entry must be a Matrix ID or a regex")
        problem = entry_problem(entry, self._api.server_name)
        if problem is not None:
            raise bad(problem)
        added = await self._moderation.add_moderator(entry, actor, self._now())
        await self._audit(actor, "moderator.allow", entry, "")
        return bool(added)

    async def disallow(self, actor: str, entry: str) -> None:
        if not await self._is_admin(actor):
            raise admin_only("change who moderates")
        removed = await self._moderation.remove_moderator(entry)
        if not removed:
            raise not_found("moderator entry")
        await self._audit(actor, "moderator.disallow", entry, "")

    async def reload(self, actor: str) -> ReloadResult:
        result = await self._policy.reload_everywhere(actor)
        await self._audit(actor, "policy.reload", None, result.message)
        return result

    async def audit_log(self, limit: int, offset: int) -> list[dict[str, Any]]:
        return await self._moderation.audit_log(_page_size(limit), max(0, offset))


def _new_token_text(body: dict[str, Any]) -> str:
    """The token `POST admin/tokens` makes: the one given (`token`), random letters
    and digits (`length`, default 16), or words (`"style": "words"`, `words`)."""
    style = body.get("style", "random")
    if style not in TOKEN_STYLES:
        raise bad(f"style must be one of {', '.join(TOKEN_STYLES)}")
    if style == "words":
        if "token" in body or "length" in body:
            raise bad('"style": "words" draws the token from the word list: give words only')
        count = body.get("words", DEFAULT_WORDS)
        if isinstance(count, bool) or not isinstance(count, int):
            count = 0
        if not MIN_WORDS <= count <= MAX_WORDS:
            bits = entropy_bits(MIN_WORDS)
            raise bad(
                f"words must be an integer from {MIN_WORDS} to {MAX_WORDS} (11 bits a word:"
                f" fewer than {MIN_WORDS} words, {bits:.0f} bits, could be guessed)"
            )
        return new_word_token(count)
    if "words" in body:
        raise bad('words goes with "style": "words"')
    token = body.get("token")
    length = body.get("length", 16)
    lengths = f"{MIN_TOKEN_LENGTH} to {MAX_TOKEN_LENGTH}"
    if token is not None and (not isinstance(token, str) or not _TOKEN_TEXT.match(token)):
        raise bad(f"token must be {lengths} characters of A-Z a-z 0-9 . _ ~ -")
    if token is None or "length" in body:
        if (
            isinstance(length, bool)
            or not isinstance(length, int)
            or not MIN_TOKEN_LENGTH <= length <= MAX_TOKEN_LENGTH
        ):
            raise bad(f"length must be an integer from {lengths}")
        token = token if token is not None else new_token(length)
    return str(token)


def _uses_allowed(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_USES:
        # Synapse's column is 32 bits.
        raise bad(f"uses_allowed must be an integer from 0 to {MAX_USES}, or null (unlimited)")
    return value


def token_state(row: dict[str, Any], now_ms: int) -> str:
    """`active`, `busy` (the uses left are held by registrations under way), `used`,
    `expired`, `disabled` (for now, by a moderator) or `revoked`."""
    uses, completed, pending = row["uses_allowed"], row["completed"], row["pending"]
    expiry = row["expiry_time"]
    if row.get("revoked_ts") is not None:
        return "disabled" if row.get("revoked_reason") == token_store.DISABLED else "revoked"
    if uses is not None and completed >= uses:
        return "used"
    if expiry is not None and expiry <= now_ms:
        return "expired"
    if uses is not None and completed + pending >= uses:
        return "busy"
    return "active"


def describe_token(row: dict[str, Any], now_ms: int, page_base_url: str) -> dict[str, Any]:
    """A token as moderators see it: kind, state, uses left, expiry in words, and
    for the module's tokens who made it and the accounts it made; for an invite
    token its shareable link (`link`, null for other tokens)."""
    token = dict(row)
    if "expiry_ts" in token:  # the module's own row
        token["expiry_time"] = token.pop("expiry_ts")
        token["reserved_for"] = token.pop("localpart")
    else:  # a token made elsewhere: Synapse's counts, nothing known of its accounts
        token.update(
            reserved_for=None,
            request_id=None,
            created_by=None,
            created_ts=None,
            revoked_ts=None,
            revoked_reason=None,
            accounts=[],
        )
    uses, completed, pending = token["uses_allowed"], token["completed"], token["pending"]
    expiry = token["expiry_time"]
    token["uses_left"] = None if uses is None else max(0, uses - completed - pending)
    token["state"] = token_state(token, now_ms)
    token["valid"] = token["state"] == "active"
    invite = token.get("kind") == token_store.INVITE
    token["link"] = registration_link(page_base_url, token["token"]) if invite else None
    if expiry is None:
        token["expires"] = "never"
    elif expiry <= now_ms:
        token["expires"] = f"expired {format_utc(expiry)}"
    else:
        token["expires"] = f"in {describe_duration(expiry - now_ms)} ({format_utc(expiry)})"
    return token


def _room_rule(rule: RoomRule) -> dict[str, Any]:
    return {
        "room": rule.room,
        "room_id": rule.room_id,
        "type": rule.event_type,
        "state_key": rule.state_key,
        "entity": rule.entity,
        "reason": rule.reason,
        "sender": rule.sender,
        "event_id": rule.event_id,
    }


def _page_size(limit: int) -> int:
    return max(1, min(limit, MAX_PAGE))
