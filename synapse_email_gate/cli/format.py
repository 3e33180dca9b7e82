"""How the command-line tool prints what the admin API answers: aligned tables,
`key: value` blocks, timestamps in UTC. `--json` bypasses all of this."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from synapse_email_gate.config.durations import format_utc

Row = Mapping[str, Any]
Column = tuple[str, Callable[[Row], object]]

NONE = "-"


def clean(value: object) -> str:
    """Text for a terminal: None as `-`, control characters (from user input, such
    as an escape sequence in a requested username) shown as `\\xNN`."""
    if value is None:
        return NONE
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)


def when(ts_ms: object) -> str:
    """Milliseconds since the epoch -> `2026-01-31 18:05 UTC`; None -> `-`."""
    if isinstance(ts_ms, bool) or not isinstance(ts_ms, int | float):
        return clean(ts_ms)
    return format_utc(ts_ms)


def table(rows: Sequence[Row], columns: Sequence[Column]) -> str:
    """Rows under an upper-case header, columns aligned by two spaces; no trailing blanks."""
    cells = [[header for header, _ in columns]]
    cells += [[clean(get(row)) for _, get in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = []
    for line in cells:
        padded = [text.ljust(width) for text, width in zip(line, widths, strict=True)]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def fields(pairs: Sequence[tuple[str, object]]) -> str:
    """`key: value` lines with the values aligned."""
    width = max((len(key) for key, _ in pairs), default=0) + 1
    return "\n".join(f"{(key + ':').ljust(width)} {clean(value)}".rstrip() for key, value in pairs)


def as_json(value: object) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


# --- what each kind of row shows ---------------------------------------------


def _or_unlimited(value: object) -> object:
    return "unlimited" if value is None else value


def uses_left(token: Row) -> str:
    return str(_or_unlimited(token.get("uses_left")))


def uses_used(token: Row) -> str:
    allowed = token.get("uses_allowed")
    used = f"{token.get('completed', 0)}/{'∞' if allowed is None else allowed}"
    pending = token.get("pending") or 0
    return f"{used} (+{pending} pending)" if pending else used


TOKEN_COLUMNS: list[Column] = [
    ("TOKEN", lambda t: t.get("token")),
    ("KIND", lambda t: t.get("kind")),
    ("STATE", lambda t: t.get("state")),
    ("USES LEFT", uses_left),
    ("USED", uses_used),
    ("EXPIRES", lambda t: t.get("expires")),
    ("FOR", lambda t: t.get("reserved_for")),
]


ACCOUNT_COLUMNS: list[Column] = [
    ("ACCOUNT", lambda a: a.get("user_id")),
    ("REGISTERED", lambda a: when(a.get("registered_ts"))),
    ("FROM", lambda a: a.get("ip")),
    ("VIA", lambda a: a.get("via")),
]


def token_fields(token: Row) -> str:
    text = fields(
        [
            ("token", token.get("token")),
            ("kind", token.get("kind")),
            ("state", token.get("state")),
            ("valid", token.get("valid")),
            ("uses left", uses_left(token)),
            ("uses allowed", _or_unlimited(token.get("uses_allowed"))),
            ("completed", token.get("completed")),
            ("pending", token.get("pending")),
            ("expires", token.get("expires")),
            ("reserved for", token.get("reserved_for")),
            ("request", token.get("request_id")),
            ("created by", token.get("created_by")),
            ("created", when(token.get("created_ts"))),
            ("revoked", token.get("revoked_reason")),
            ("link", token.get("link")),
        ]
    )
    accounts = token.get("accounts")
    if isinstance(accounts, list) and accounts:
        rows = [a for a in accounts if isinstance(a, dict)]
        text += "\n\nAccounts:\n" + table(rows, ACCOUNT_COLUMNS)
    return text


def account_details(account: Row) -> str:
    text = fields(
        [
            ("account", account.get("user_id")),
            ("token", account.get("token")),
            ("token kind", account.get("token_kind")),
            ("token made by", account.get("token_created_by")),
            ("request", account.get("request_id")),
            ("registered", when(account.get("registered_ts"))),
            ("from", account.get("ip")),
            ("via", account.get("via")),
            ("probation", _probation(account.get("probation"))),
        ]
    )
    made = account.get("tokens_created")
    if isinstance(made, list) and made:
        rows = [
            {"token": m.get("token"), "accounts": ", ".join(map(clean, m.get("accounts") or []))}
            for m in made
            if isinstance(m, dict)
        ]
        columns: list[Column] = [
            ("TOKEN", lambda r: r.get("token")),
            ("ACCOUNTS", lambda r: r.get("accounts") or None),
        ]
        text += "\n\nTokens it made:\n" + table(rows, columns)
    return text


def _probation(probation: object) -> str | None:
    return str(probation.get("status")) if isinstance(probation, Mapping) else None


def _account_flags(a: Row) -> str | None:
    flags = [f for f in ("admin", "deactivated", "locked", "suspended") if a.get(f)]
    if a.get("probation_until_ts") is not None:
        flags.append("probation")
    return ", ".join(flags) or None


LISTED_ACCOUNT_COLUMNS: list[Column] = [
    ("REGISTERED", lambda a: when(a.get("registered_ts"))),
    ("ACCOUNT", lambda a: a.get("user_id")),
    ("EMAIL", lambda a: "(hashed)" if a.get("email_hashed") else a.get("email")),
    ("IP", lambda a: a.get("request_ip") or a.get("registration_ip")),
    ("TOKEN", lambda a: a.get("token")),
    ("STATE", _account_flags),
]


def account_action(answer: Any, again: str) -> str:
    """A dry run (what would change, and the command that does it) or what was done."""
    if not isinstance(answer, Mapping):
        return clean(answer)
    action = clean(answer.get("action"))
    affected = [clean(a) for a in answer.get("affected") or []]
    skipped = [s for s in answer.get("skipped") or [] if isinstance(s, Mapping)]
    lines = [f"- {a}" for a in affected]
    lines += [f"  skipped {clean(s.get('user_id'))}: {clean(s.get('why'))}" for s in skipped]
    if answer.get("dry_run"):
        head = f"dry run: {action} would change {len(affected)} account(s)"
        if not affected:
            return "\n".join([head, *lines])
        return "\n".join(
            [
                head,
                *lines,
                "",
                "to do it, run:",
                f"{again} --confirm {clean(answer.get('confirm'))}",
            ]
        )
    failed = [f for f in answer.get("failed") or [] if isinstance(f, Mapping)]
    lines += [f"  FAILED {clean(f.get('user_id'))}: {clean(f.get('error'))}" for f in failed]
    return "\n".join([f"{action}: changed {len(affected)} account(s)", *lines])


REQUEST_COLUMNS: list[Column] = [
    ("CREATED", lambda r: when(r.get("created_ts"))),
    ("ID", lambda r: r.get("id")),
    ("USERNAME", lambda r: r.get("localpart")),
    ("EMAIL", lambda r: r.get("email")),
    ("IP", lambda r: r.get("ip")),
    ("STATUS", lambda r: r.get("status")),
    ("REASON", lambda r: r.get("reason")),
]

_REQUEST_FIELDS = (
    ("id", "id", False),
    ("username", "localpart", False),
    ("user id", "user_id", False),
    ("email", "email", False),
    ("ip", "ip", False),
    ("status", "status", False),
    ("reason", "reason", False),
    ("statement", "statement", False),
    ("decided by", "decided_by", False),
    ("decision message", "decision_message", False),
    ("created", "created_ts", True),
    ("updated", "updated_ts", True),
    ("token expires", "expires_ts", True),
)

MAIL_COLUMNS: list[Column] = [
    ("CREATED", lambda m: when(m.get("created_ts"))),
    ("KIND", lambda m: m.get("kind")),
    ("STATUS", lambda m: m.get("status")),
    ("ATTEMPTS", lambda m: m.get("attempts")),
    ("SENT", lambda m: when(m.get("sent_ts"))),
    ("LAST ERROR", lambda m: m.get("last_error")),
]

AUDIT_COLUMNS: list[Column] = [
    ("WHEN", lambda e: when(e.get("ts"))),
    ("ACTOR", lambda e: e.get("actor")),
    ("ACTION", lambda e: e.get("action")),
    ("TARGET", lambda e: e.get("target")),
    ("DETAIL", lambda e: e.get("detail") or None),
]


def request_details(request: Row) -> str:
    known = {key for _, key, _ in _REQUEST_FIELDS} | {"mails", "history"}
    pairs: list[tuple[str, object]] = [
        (label, when(request.get(key)) if is_time else request.get(key))
        for label, key, is_time in _REQUEST_FIELDS
        if key in request
    ]
    # Fields a newer server adds are shown too, as they come.
    pairs += [(key, value) for key, value in request.items() if key not in known]
    parts = [fields(pairs)]
    mails = request.get("mails")
    if isinstance(mails, list) and mails:
        parts.append("\nMails:\n" + table(mails, MAIL_COLUMNS))
    history = request.get("history")
    if isinstance(history, list) and history:
        parts.append("\nHistory:\n" + table(history, AUDIT_COLUMNS))
    return "\n".join(parts)


def ban_expiry(ban: Row) -> str:
    expires = ban.get("expires_ts")
    if expires is None:
        return "never"
    return when(expires) if ban.get("active", True) else f"expired {when(expires)}"


BAN_COLUMNS: list[Column] = [
    ("ID", lambda b: b.get("id")),
    ("KIND", lambda b: b.get("kind")),
    ("MATCH", lambda b: b.get("match")),
    ("REASON", lambda b: b.get("reason")),
    ("EXPIRES", ban_expiry),
    ("BY", lambda b: b.get("created_by")),
    ("ADDED", lambda b: when(b.get("created_ts"))),
]

POLICY_COLUMNS: list[Column] = [
    ("KIND", lambda e: e.get("kind")),
    ("MATCH", lambda e: e.get("match")),
    ("REASON", lambda e: e.get("reason")),
    ("EXPIRES", lambda e: ban_expiry(e) if e.get("kind") != "allowed domain" else None),
    ("SOURCE", lambda e: e.get("source")),
]


def policy_rows(policy: Row) -> list[dict[str, Any]]:
    """GET admin/policy's lists as one list of rows, each with its `kind`."""
    # Here, not at the top: the config parsers (Synapse's config package) are not
    # loaded for the commands that do not print the policy.
    from synapse_email_gate.config.policy_lists import BAN_KINDS

    rows = []
    kinds = [(kind.key, kind.name) for kind in BAN_KINDS] + [
        ("allowed_email_domains", "allowed domain")
    ]
    for key, kind in kinds:
        entries = policy.get(key)
        if isinstance(entries, list):
            rows += [{**entry, "kind": kind} for entry in entries if isinstance(entry, dict)]
    room_rules = policy.get("policy_room_rules")
    if isinstance(room_rules, list):
        rows += [
            {**rule, "kind": "username", "match": rule.get("entity"), "source": rule.get("room")}
            for rule in room_rules
            if isinstance(rule, dict)
        ]
    return rows


def why_lines(answer: Row) -> str:
    """GET admin/policy/why: one line per ban that refuses the name."""
    matches = [m for m in answer.get("matches") or [] if isinstance(m, dict)]
    user_id = clean(answer.get("user_id"))
    if not matches:
        return f"{user_id} is not banned"
    lines = [f"{user_id} is banned by:"]
    for m in matches:
        reason = f" ({clean(m.get('reason'))})" if m.get("reason") else ""
        if m.get("source") == "policy_room":
            lines.append(
                f"  rule {clean(m.get('entity'))} in policy room {clean(m.get('room'))}"
                f" ({clean(m.get('room_id'))}, {clean(m.get('type'))},"
                f" state key {clean(m.get('state_key'))!r}, by {clean(m.get('sender'))}){reason}"
            )
        else:
            lines.append(f"  {clean(m.get('source'))} pattern {clean(m.get('match'))!r}{reason}")
    return "\n".join(lines)


MODERATOR_COLUMNS: list[Column] = [
    ("ENTRY", lambda m: m.get("entry")),
    ("ADDED BY", lambda m: m.get("added_by")),
    ("ADDED", lambda m: when(m.get("added_ts"))),
]


def surge(state: object) -> str:
    """`GET/POST admin/surge`, for a person."""
    if not isinstance(state, dict):
        return clean(state)
    if not state.get("on"):
        last = f" (last switch: {clean(state.get('cause'))})" if state.get("cause") else ""
        return f"surge: off{last}"
    what = (
        f"challenge at {clean(state.get('level'))} bits"
        if state.get("mode") == "challenge"
        else "approval required"
    )
    why = clean(state.get("cause")) + (f" {clean(state['scope'])}" if state.get("scope") else "")
    return fields(
        [
            ("surge", f"ON: {what}"),
            ("cause", why),
            ("since", when(state.get("since_ts"))),
            ("until", when(state.get("until_ts"))),
        ]
    )


STATS_COLUMNS: list[Column] = [
    ("FROM", lambda b: when(b.get("start_ts"))),
    ("REQUESTS", lambda b: b.get("requests")),
    ("TOKENS", lambda b: b.get("tokens")),
    ("ACCOUNTS", lambda b: b.get("accounts")),
    ("REFUSED", lambda b: b.get("refused")),
]


def stats_text(answer: Row) -> str:
    """The totals of `GET admin/stats`, the refusals by errcode, then one line per bucket."""
    totals = answer.get("totals") or {}
    pairs: list[tuple[str, object]] = [
        ("range", f"{answer.get('range')} ({when(answer.get('from_ts'))} to now)"),
        ("requests", totals.get("requests")),
        ("tokens", totals.get("tokens")),
        ("accounts", totals.get("accounts")),
        ("refused", totals.get("refused")),
    ]
    pairs += [(f"  {reason}", count) for reason, count in (totals.get("refusals") or {}).items()]
    return fields(pairs) + "\n\n" + table(answer.get("buckets") or [], STATS_COLUMNS)
