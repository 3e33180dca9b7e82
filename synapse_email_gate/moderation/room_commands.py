"""Moderation-room commands: parsing (pure) and running them through ModerationService.

A message starting with the command prefix (`command_prefix`, default `!gate`)
is a command. Each command calls the same ModerationService method the admin API
calls, so the rules, validation and audit entries are the same whichever way a
moderator acts. Answers mask addresses and IPs (rules/rooms.py), and no answer
ever holds a token mailed to a person.
"""

from __future__ import annotations

import secrets
import shlex
import time
from collections.abc import Callable
from typing import Any

from synapse_email_gate.config.durations import format_utc
from synapse_email_gate.moderation.accounts import FILTER_KEYS, AccountService
from synapse_email_gate.moderation.service import (
    DELETE_ALL_CONFIRMATION,
    AdminError,
    ModerationService,
)
from synapse_email_gate.moderation.stats import GateStats
from synapse_email_gate.moderation.surge import SurgeService
from synapse_email_gate.rules.rooms import mask_ban, mask_email, mask_ip
from synapse_email_gate.rules.surge import MODES as SURGE_MODES

PREFIX = "!gate"
# How long the phrase that confirms `token delete-all` works.
CONFIRM_WITHIN_S = 60.0

HELP = """Commands (in this room, for moderators; help for everyone):
{p} help                              this text
{p} list [STATUS]                     requests, newest first (default: pending)
{p} show ID                           one request with its history
{p} approve ID                        approve a pending request (the token is mailed)
{p} deny ID [MESSAGE]                 deny it (a polite mail, with MESSAGE if given)
{p} token create [USES] [EXPIRY] [words[=N]]
                                      an invite token and its link (default: 1 use, 7d)
                                        EXPIRY: 7d, 2026-12-31 or never
                                        (unlimited / never: server admins only)
                                        words: a token of N words (4-7, default 5) to read aloud
{p} token list                        valid invite tokens
{p} token show TOKEN                  one token: uses, state, who made it, its accounts
{p} token edit TOKEN [uses=N|unlimited] [expiry=WHEN]
                                        change uses allowed (not below those made) or expiry
{p} token disable TOKEN               stop a token for now
{p} token enable TOKEN                let a disabled token work again
{p} token delete TOKEN...             delete tokens
{p} token delete-all                  delete EVERY token (asks for a confirmation first)
{p} account @USER:SERVER              which token brought an account in, and whom it invited
{p} account @USER:SERVER lift-probation   end the account's probation now
{p} accounts FILTER...                accounts made through the gate that FILTER matches
                                        FILTER: ip=IP cidr=NET domain=DOMAIN token=TOKEN
                                        since=WHEN until=WHEN (2026-12-31, 24h ago: since=24h)
{p} accounts lock|unlock|suspend|unsuspend|deactivate FILTER...
                                        a dry run; it says how to confirm (deactivate:
                                        server admins only)
{p} ban username|email|ip MATCH [REASON]
{p} unban ID                          remove a ban added here or through the API
{p} bans                              list stored bans
{p} moderators                        entries added at run time
{p} moderators allow|disallow ENTRY   (server admins only)
{p} reload                            re-read the policy file everywhere
{p} why NAME                          which bans refuse a username (local and policy rooms)
{p} purge [AGE]                       the retention purge now, AGE (30d) tightening it: counts
                                        first, then asks for a confirmation (server admins only)
{p} surge                             the surge switch: on or off, why, until when
{p} surge on [challenge|approval] [DURATION]
                                        switch it on by hand (default: configured mode, hold)
{p} surge off                         switch it off (no automatic switch-on for the hold after)
{p} stats [day|week]                  requests, tokens, accounts and refusals in the last day
                                        (default) or week
Addresses and IPs are shown masked here; the admin API shows them in full."""


class UsageError(Exception):
    pass


def parse(body: str, prefix: str = PREFIX) -> list[str] | None:
    """The words after the prefix, or None when the message is not a command."""
    text = body.strip()
    if text != prefix and not text.startswith(prefix + " "):
        return None
    try:
        return shlex.split(text[len(prefix) :])
    except ValueError:
        return text[len(prefix) :].split()


def is_help(words: list[str]) -> bool:
    return not words or words[0] == "help"


class RoomCommands:
    """Runs the commands of one room; keeps the `token delete-all` phrases waiting
    to be sent back (one per moderator, once, within CONFIRM_WITHIN_S)."""

    def __init__(
        self,
        service: ModerationService,
        prefix: str = PREFIX,
        clock: Callable[[], float] = time.monotonic,
        accounts: AccountService | None = None,
        surge: SurgeService | None = None,
        stats: GateStats | None = None,
    ) -> None:
        self._service = service
        self._accounts = accounts
        self._surge = surge
        self._stats = stats
        self.prefix = prefix
        self._clock = clock
        self._phrases: dict[str, tuple[str, float]] = {}
        # `purge` phrases: (phrase, deadline, the AGE they confirm), one per moderator.
        self._purges: dict[str, tuple[str, float, str | None]] = {}

    @property
    def help(self) -> str:
        return HELP.format(p=self.prefix)

    def parse(self, body: str) -> list[str] | None:
        return parse(body, self.prefix)

    async def run(self, actor: str, words: list[str]) -> str:
        """Run one command; the answer is the text to post in the room."""
        try:
            return await self._dispatch(actor, words)
        except AdminError as e:
            return f"Refused: {e.message}"
        except UsageError as e:
            return f"{e}\nSay `{self.prefix} help` for the commands."

    async def _dispatch(self, actor: str, words: list[str]) -> str:
        if is_help(words):
            return self.help
        if words[:2] == ["token", "delete-all"]:
            return await self._delete_all(actor, words[2:])
        if words[0] == "purge":
            return await self._purge(actor, words[1:])
        if self._accounts is not None and words[0] == "accounts":
            return await _accounts(self._accounts, actor, words[1:], self.prefix)
        if self._accounts is not None and words[0] == "account" and words[2:] == ["lift-probation"]:
            await self._accounts.lift_probation(actor, words[1], {"lift": True})
            return f"Probation of {words[1]} lifted."
        if words[0] == "surge" and self._surge is not None:
            return await _surge(self._surge, actor, words[1:], self.prefix)
        if words[0] == "stats" and self._stats is not None:
            if len(words) > 2:
                raise UsageError(f"Usage: {self.prefix} stats [day|week]")
            return _stats(await self._stats.picture(words[1] if len(words) > 1 else None))
        return await _dispatch(self._service, actor, words, self.prefix)

    async def _purge(self, actor: str, args: list[str]) -> str:
        """`purge [AGE]` counts (a dry run) and hands out a phrase; `purge confirm
        PHRASE` runs the purge it counted, with the same AGE."""
        if args[:1] == ["confirm"]:
            waiting = self._purges.pop(actor, None)  # one try per phrase
            if waiting is None or waiting[1] < self._clock():
                return f"No confirmation is waiting: send `{self.prefix} purge` first."
            if len(args) != 2 or not secrets.compare_digest(args[1], waiting[0]):
                return "That is not the confirmation phrase; nothing was purged."
            done = await self._service.purge(actor, _purge_body(waiting[2], dry_run=False))
            return "Purged: " + _counts(done["counts"]) + "."
        if len(args) > 1:
            raise UsageError(f"Usage: {self.prefix} purge [AGE]")
        age = args[0] if args else None
        counted = await self._service.purge(actor, _purge_body(age, dry_run=True))
        phrase = secrets.token_hex(4)
        self._purges[actor] = (phrase, self._clock() + CONFIRM_WITHIN_S, age)
        rule = "the retention rules" if age is None else f"the retention rules, tightened to {age}"
        return (
            f"A purge under {rule} would delete: {_counts(counted['counts'])}."
            f" To go ahead, send within a minute:\n{self.prefix} purge confirm {phrase}"
        )

    async def _delete_all(self, actor: str, args: list[str]) -> str:
        if not args:
            phrase = secrets.token_hex(4)
            self._phrases[actor] = (phrase, self._clock() + CONFIRM_WITHIN_S)
            return (
                "This deletes EVERY registration token on the server: invite tokens, mailed"
                " tokens and those made elsewhere. To go ahead, send within a minute:\n"
                f"{self.prefix} token delete-all {phrase}"
            )
        waiting = self._phrases.pop(actor, None)  # one try per phrase
        if waiting is None or waiting[1] < self._clock():
            return f"No confirmation is waiting: send `{self.prefix} token delete-all` first."
        if len(args) != 1 or not secrets.compare_digest(args[0], waiting[0]):
            return "That is not the confirmation phrase; nothing was deleted."
        count = await self._service.delete_all_tokens(actor, DELETE_ALL_CONFIRMATION)
        return f"Deleted {count} token(s)."


async def _dispatch(service: ModerationService, actor: str, words: list[str], p: str) -> str:
    command, args = words[0], words[1:]
    if command == "list":
        status = args[0] if args else "pending"
        page = await service.list_requests(status, None, 20, 0)
        return _requests(page["requests"], status)
    if command == "show":
        return _request(await service.show_request(_one(args, "show ID", p)))
    if command in ("approve", "deny"):
        if not args:
            raise UsageError(f"Usage: {p} {command} ID")
        message = " ".join(args[1:]) or None
        request = await service.decide(actor, args[0], command == "approve", message)
        return f"Request {request['id']} ({request['localpart']}): {request['status']}."
    if command == "token":
        return await _token(service, actor, args, p)
    if command == "account":
        return _account(await service.show_account(_one(args, "account @USER:SERVER", p)))
    if command == "ban":
        if len(args) < 2:
            raise UsageError(f"Usage: {p} ban username|email|ip MATCH [REASON]")
        body: dict[str, Any] = {"kind": args[0], "match": args[1]}
        if args[2:]:
            body["reason"] = " ".join(args[2:])
        ban = await service.add_ban(actor, body)
        return (
            f"Banned {ban['kind']} {ban['match']!r}; {_revoked(ban['revoked'])} "
            f"(ban id {ban['id']})."
        )
    if command == "unban":
        ban_id = _one(args, "unban ID", p)
        await service.remove_ban(actor, ban_id)
        return f"Ban {ban_id} removed."
    if command == "bans":
        bans = await service.list_bans()
        lines = [
            f"{b['id']}  {b['kind']}  {mask_ban(b['kind'], b['match'])}  {b['reason'] or ''}"
            for b in bans
            if b["active"]
        ]
        return "\n".join(lines) or "No stored bans."
    if command == "moderators":
        return await _moderators(service, actor, args, p)
    if command == "why":
        return _why(service.why(_one(args, "why NAME", p)))
    if command == "reload":
        result = await service.reload(actor)
        if not result.ok:
            return "Reload refused: " + result.message
        return f"Reloaded: {result.message}; {_revoked(result.revoked)}."
    raise UsageError(f"Unknown command {command!r}.")


async def _surge(surge: SurgeService, actor: str, args: list[str], p: str) -> str:
    if not args:
        return _surge_state(await surge.status())
    if args[0] == "off" and len(args) == 1:
        return "Surge switch " + _surge_state(await surge.switch_off(actor, tell=False))
    if args[0] == "on" and len(args) <= 3:
        mode = next((a for a in args[1:] if a in SURGE_MODES), None)
        durations = [a for a in args[1:] if a not in SURGE_MODES]
        duration = durations[0] if durations else None
        return "Surge switch " + _surge_state(
            await surge.switch_on(actor, mode, duration, tell=False)
        )
    raise UsageError(f"Usage: {p} surge [on [challenge|approval] [DURATION] | off]")


def _surge_state(state: dict[str, Any]) -> str:
    if not state["on"]:
        cause = f" (last: {state['cause']})" if state["cause"] else ""
        return f"off{cause}."
    what = (
        f"challenge at {state['level']} bits"
        if state["mode"] == "challenge"
        else "approval required"
    )
    why = state["cause"] + (f" {state['scope']}" if state["scope"] else "")
    return f"ON: {what} ({why}), until at least {format_utc(state['until_ts'])}."


def _stats(picture: dict[str, Any]) -> str:
    """The totals of `GET admin/stats`, in two lines."""
    totals = picture["totals"]
    line = (
        f"Last {picture['range']} (since {format_utc(picture['from_ts'])}):"
        f" {totals['requests']} request(s), {totals['tokens']} token(s) issued,"
        f" {totals['accounts']} account(s) made, {totals['refused']} refused."
    )
    refusals = totals["refusals"]
    if not refusals:
        return line
    by_count = sorted(refusals.items(), key=lambda item: (-item[1], item[0]))
    return line + "\nRefusals: " + ", ".join(f"{errcode} {n}" for errcode, n in by_count) + "."


def _why(answer: dict[str, Any]) -> str:
    matches = answer["matches"]
    if not matches:
        return f"{answer['user_id']} is not banned."
    lines = [f"{answer['user_id']} is banned by:"]
    for match in matches:
        reason = f" ({match['reason']})" if match.get("reason") else ""
        if match["source"] == "policy_room":
            lines.append(
                f"- rule {match['entity']} in policy room {match['room']} "
                f"({match['type']}, state key {match['state_key']!r}, by {match['sender']}){reason}"
            )
        else:
            lines.append(f"- {match['source']} pattern {match['match']!r}{reason}")
    return "\n".join(lines)


async def _token(service: ModerationService, actor: str, args: list[str], p: str) -> str:
    sub = args[0] if args else "list"
    rest = args[1:]
    if sub == "create":
        body: dict[str, Any] = {}
        style = [word for word in rest if word == "words" or word.startswith("words=")]
        rest = [word for word in rest if word not in style]
        if len(style) > 1 or len(rest) > 2:
            raise UsageError(f"Usage: {p} token create [USES] [EXPIRY] [words[=N]]")
        if style:
            body["style"] = "words"
            count = style[0].removeprefix("words").removeprefix("=")
            if count:
                if not count.isdigit():
                    raise UsageError("words=N needs a number of words, like words=5.")
                body["words"] = int(count)
        if rest:
            body["uses_allowed"] = _uses_word(rest[0])
        if len(rest) > 1:
            body["expiry"] = rest[1]
        token = await service.create_token(actor, body)
        uses = "unlimited" if token["uses_allowed"] is None else token["uses_allowed"]
        return f"Token {token['token']}: {uses} use(s), expires {token['expires']}." + _link(token)
    if sub == "list":
        # Invite tokens only: list_tokens never returns a token bound to a request.
        tokens = await service.list_tokens(valid_only=True)
        lines = [
            f"{t['token']}  uses left: {_uses(t)}  expires {t['expires']}"
            + (f"  {t['link']}" if _shareable(t) else "")
            for t in tokens
        ]
        return "\n".join(lines) or "No valid invite tokens."
    if sub == "show":
        return _token_details(await service.show_token(_one(rest, "token show TOKEN", p)))
    if sub == "edit":
        if len(rest) < 2:
            raise UsageError(f"Usage: {p} token edit TOKEN [uses=N|unlimited] [expiry=WHEN]")
        edit: dict[str, Any] = {}
        for word in rest[1:]:
            key, eq, value = word.partition("=")
            if key == "uses" and eq:
                edit["uses_allowed"] = _uses_word(value)
            elif key == "expiry" and eq and value:
                edit["expiry"] = value
            else:
                raise UsageError(f"{word!r}: say uses=N, uses=unlimited or expiry=WHEN.")
        return _token_details(await service.edit_token(actor, rest[0], edit))
    if sub in ("disable", "enable"):
        name = _one(rest, f"token {sub} TOKEN", p)
        shown = await service.edit_token(actor, name, {"disabled": sub == "disable"})
        return f"Token {shown['token']} is {shown['state']} now."
    if sub == "delete":
        if not rest:
            raise UsageError(f"Usage: {p} token delete TOKEN...")
        deleted = await service.delete_tokens(actor, rest)
        missing = [t for t in rest if t not in deleted]
        text = f"Deleted: {', '.join(deleted) or 'none'}."
        return text + (f" Not found: {', '.join(missing)}." if missing else "")
    raise UsageError(f"Unknown token command {sub!r}.")


async def _moderators(service: ModerationService, actor: str, args: list[str], p: str) -> str:
    sub = args[0] if args else "list"
    if sub == "list":
        rows = await service.list_moderators()
        lines = [
            f"{r['entry']}  added by {r['added_by']}"
            + (f"  (ignored: {r['problem']})" if r.get("problem") else "")
            for r in rows
        ]
        return "\n".join(lines) or (
            "No moderators added at run time (server admins and the config's"
            " `moderators` always moderate)."
        )
    if sub in ("allow", "disallow"):
        entry = _one(args[1:], f"moderators {sub} ENTRY", p)
        if sub == "allow":
            added = await service.allow(actor, entry)
            return f"Allowed {entry}." if added else f"{entry} was allowed already."
        await service.disallow(actor, entry)
        return f"Disallowed {entry}."
    raise UsageError(f"Unknown moderators command {sub!r}.")


def _purge_body(age: str | None, dry_run: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"dry_run": dry_run}
    if age is not None:
        body["older_than"] = age
    return body


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in counts.items())


def _uses_word(word: str) -> int | None:
    if word in ("unlimited", "0"):
        return None
    if word.isdigit():
        return int(word)
    raise UsageError("USES must be a number or `unlimited`.")


def _shareable(token: dict[str, Any]) -> bool:
    # Only invite tokens carry a link; a mailed token is never shown anywhere.
    return token.get("kind") == "invite" and bool(token.get("link"))


def _link(token: dict[str, Any]) -> str:
    return f"\nInvite link: {token['link']}" if _shareable(token) else ""


def _revoked(count: int) -> str:
    if count == 0:
        return "no open request matched"
    return f"{count} open request(s) and their tokens revoked"


def _token_details(t: dict[str, Any]) -> str:
    allowed = "unlimited" if t["uses_allowed"] is None else t["uses_allowed"]
    lines = [
        f"Token {t['token']} ({t['kind']}, {t['state']}): {t['completed']} of {allowed} used,"
        f" {_uses(t)} left, expires {t['expires']}",
    ]
    if t.get("created_by"):
        lines.append(f"Made by {t['created_by']}")
    if t.get("reserved_for"):
        lines.append(f"Reserved for {t['reserved_for']} (request {t['request_id']})")
    if t.get("revoked_reason"):
        lines.append(f"Revoked: {t['revoked_reason']}")
    for account in t.get("accounts") or []:
        lines.append(f"- {account['user_id']} (from {_ip(account['ip'])})")
    return "\n".join(lines) + _link(t)


def _account(a: dict[str, Any]) -> str:
    if a["token_kind"] is None:
        lines = [f"{a['user_id']} was not made with a token of this module."]
    else:
        by = f", made by {a['token_created_by']}" if a["token_created_by"] else ""
        # A mailed token is never shown outside its mail: name its request instead.
        which = f"token {a['token']}" if a["token"] is not None else f"request {a['request_id']}"
        lines = [
            f"{a['user_id']} came in with {a['token_kind']} {which}{by} (from {_ip(a['ip'])})."
        ]
    probation = a.get("probation")
    if probation is not None:
        lines.append(f"Probation: {probation['status']}.")
    for made in a["tokens_created"]:
        accounts = ", ".join(made["accounts"]) or "no account yet"
        lines.append(f"- made token {made['token']}: {accounts}")
    return "\n".join(lines)


_ACCOUNT_ACTIONS = ("lock", "unlock", "suspend", "unsuspend", "deactivate")


async def _accounts(accounts: AccountService, actor: str, args: list[str], p: str) -> str:
    """`accounts FILTER...` lists; `accounts ACTION FILTER...` is a dry run that names
    the `confirm=` to send back; with it, the action runs."""
    action = args[0] if args and args[0] in _ACCOUNT_ACTIONS else None
    pairs = args[1:] if action is not None else args
    raw: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or (key not in FILTER_KEYS and key != "confirm"):
            raise UsageError(
                f"Usage: {p} accounts [ACTION] KEY=VALUE... with keys {', '.join(FILTER_KEYS)}"
            )
        raw[key] = value
    confirm = raw.pop("confirm", None)
    if action is None:
        if confirm is not None:
            raise UsageError(f"Usage: {p} accounts ACTION KEY=VALUE... confirm=CODE")
        listing = await accounts.list_accounts(accounts.parse_filter(raw), 20)
        return _account_list(listing)
    body: dict[str, Any] = {"filter": raw, "action": action, "dry_run": confirm is None}
    if confirm is not None:
        body["confirm"] = confirm
    done = await accounts.act(actor, body)
    if done["dry_run"]:
        if not done["affected"]:
            return f"Dry run: {action} would change no account ({len(done['skipped'])} skipped)."
        names = ", ".join(done["affected"][:20]) + (" ..." if len(done["affected"]) > 20 else "")
        words = " ".join(f"{k}={v}" for k, v in raw.items())
        return (
            f"Dry run: {action} would change {len(done['affected'])} account(s): {names}"
            f" ({len(done['skipped'])} skipped). To go ahead, send:\n"
            f"{p} accounts {action} {words} confirm={done['confirm']}"
        )
    failed = f", {len(done['failed'])} failed" if done["failed"] else ""
    return f"Done: {action} changed {len(done['affected'])} account(s){failed}."


def _account_list(listing: dict[str, Any]) -> str:
    rows = listing["accounts"]
    if not rows:
        return "No account made through the gate matches."
    lines = [
        f"{a['user_id']}  {a['registered']}  {_ip(a['request_ip'] or a['registration_ip'])}"
        f"  {mask_email(a['email']) if a['email'] else '-'}{_flags(a)}"
        for a in rows
    ]
    more = listing["count"] - len(rows)
    if more > 0:
        lines.append(f"... and {more} more (the admin API lists them all)")
    return "\n".join(lines)


def _flags(a: dict[str, Any]) -> str:
    flags = [f for f in ("admin", "deactivated", "locked", "suspended") if a[f]]
    if a["probation_until_ts"] is not None:
        flags.append("on probation")
    return f"  ({', '.join(flags)})" if flags else ""


def _ip(ip: object) -> str:
    return "unknown" if ip is None else mask_ip(ip)


def _uses(token: dict[str, Any]) -> str:
    return "unlimited" if token["uses_left"] is None else str(token["uses_left"])


def _one(args: list[str], usage: str, p: str) -> str:
    if len(args) != 1:
        raise UsageError(f"Usage: {p} {usage}")
    return args[0]


def _requests(rows: list[dict[str, Any]], status: str) -> str:
    if not rows:
        return f"No {status} requests."
    return "\n".join(
        f"{r['id']}  @{r['localpart']}  {r['status']}  {mask_ip(r['ip'])}" for r in rows
    )


def _request(r: dict[str, Any]) -> str:
    lines = [
        f"Request {r['id']}: @{r['localpart']} ({r['status']})",
        f"Address: {mask_email(r['email'])}  IP: {mask_ip(r['ip'])}",
    ]
    if r.get("statement"):
        lines.append(f"Reason: {r['statement']}")
    for entry in r.get("history", []):
        lines.append(f"- {entry['action']} by {entry['actor']}: {entry['detail'] or ''}")
    return "\n".join(lines)


def describe_pending(
    request_id: str, localpart: str, server_name: str, statement: str, prefix: str = PREFIX
) -> str:
    return (
        f"New request {request_id}: @{localpart}:{server_name} waits for a decision.\n"
        f"Reason: {statement}\n"
        f"Say `{prefix} approve {request_id}` or `{prefix} deny {request_id} [message]`."
    )
