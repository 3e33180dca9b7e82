"""What each subcommand of `synapse-email-gate` does: one or a few admin API calls,
then a table (or the raw JSON with `--json`). See docs/cli.md."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable
from typing import Any

from synapse_email_gate.cli import format as fmt
from synapse_email_gate.cli.client import AdminClient, Refused, segment

OK = 0
REFUSED = 1  # the server answered with an error (or named things were not found)
USAGE = 2  # bad arguments, missing server or token, unreadable file
UNREACHABLE = 3  # no answer from the server
PROBLEMS = 1  # check-config found problems

DELETE_ALL_CONFIRMATION = "delete all tokens"


class UsageError(Exception):
    """Bad arguments or settings found after parsing (exit code 2)."""


class Context:
    """What a command needs: its arguments, and the client (built on first use, so a
    command that refuses early never needs a server)."""

    def __init__(self, args: argparse.Namespace, make_client: Callable[[], AdminClient]) -> None:
        self.args = args
        self.json: bool = bool(getattr(args, "json", False))
        self._make_client = make_client
        self._client: AdminClient | None = None

    @property
    def api(self) -> AdminClient:
        if self._client is None:
            self._client = self._make_client()
        return self._client


def out(text: str) -> None:
    print(text)


def err(text: str) -> None:
    print(f"synapse-email-gate: {text}", file=sys.stderr)


def refused(e: Refused) -> None:
    err(f"{e.errcode}: {e.error} (HTTP {e.status})")


def show(ctx: Context, answer: Any, human: Callable[[], str]) -> int:
    out(fmt.as_json(answer) if ctx.json else human())
    return OK


def _rows(answer: Any, key: str) -> list[dict[str, Any]]:
    rows = answer.get(key) if isinstance(answer, dict) else None
    return [row for row in rows if isinstance(row, dict)] if isinstance(rows, list) else []


def _listing(ctx: Context, answer: Any, key: str, columns: list[fmt.Column], empty: str) -> int:
    rows = _rows(answer, key)
    return show(ctx, answer, lambda: fmt.table(rows, columns) if rows else empty)


# --- tokens ---------------------------------------------------------------------


def tokens_list(ctx: Context) -> int:
    valid = ctx.args.valid
    answer = ctx.api.get("tokens", {"valid": "true" if valid else None})
    empty = "No valid invite tokens." if valid else "No invite tokens."
    return _listing(ctx, answer, "tokens", fmt.TOKEN_COLUMNS, empty)


def tokens_show(ctx: Context) -> int:
    found: list[Any] = []
    status = OK
    for token in dict.fromkeys(ctx.args.tokens):
        try:
            found.append(ctx.api.get(f"tokens/{segment(token)}"))
        except Refused as e:
            if e.status != 404:
                raise
            err(f"{token}: {e.error}")
            status = REFUSED
    if ctx.json:
        if found:
            out(fmt.as_json(found[0] if len(ctx.args.tokens) == 1 else found))
    elif found:
        out("\n\n".join(fmt.token_fields(token) for token in found))
    return status


_FILTER_OPTIONS = {
    "ip": "--ip",
    "cidr": "--cidr",
    "domain": "--domain",
    "token": "--with-token",
    "since": "--since",
    "until": "--until",
}


def _account_filter(ctx: Context) -> dict[str, str]:
    return {
        key: getattr(ctx.args, key)
        for key in _FILTER_OPTIONS
        if getattr(ctx.args, key, None) is not None
    }


def accounts_lift_probation(ctx: Context) -> int:
    answer = ctx.api.post(f"accounts/{segment(ctx.args.user_id)}/probation", {"lift": True})
    return show(ctx, answer, lambda: f"probation of {ctx.args.user_id} lifted")


def accounts_list(ctx: Context) -> int:
    query: dict[str, str | int | None] = {**_account_filter(ctx), "limit": ctx.args.limit}
    answer = ctx.api.get("accounts", query)
    return _listing(ctx, answer, "accounts", fmt.LISTED_ACCOUNT_COLUMNS, "No matching accounts.")


def accounts_action(ctx: Context) -> int:
    action: str = ctx.args.account_action
    found = _account_filter(ctx)
    if not found:
        raise UsageError(
            f"accounts {action}: name at least one filter ({', '.join(_FILTER_OPTIONS.values())})"
        )
    body: dict[str, Any] = {"filter": found, "action": action, "dry_run": ctx.args.confirm is None}
    if ctx.args.confirm is not None:
        body["confirm"] = ctx.args.confirm
    answer = ctx.api.post("accounts/action", body)

    def human() -> str:
        return fmt.account_action(answer, _again(action, found))

    return show(ctx, answer, human)


def _again(action: str, found: dict[str, str]) -> str:
    """The command line that runs the action the dry run showed."""
    words = ["synapse-email-gate", "accounts", action]
    for key, value in found.items():
        words += [_FILTER_OPTIONS[key], shlex.quote(value)]
    return " ".join(words)


def accounts_show(ctx: Context) -> int:
    answer = ctx.api.get(f"accounts/{segment(ctx.args.user_id)}")
    return show(ctx, answer, lambda: fmt.account_details(answer))


def tokens_create(ctx: Context) -> int:
    args = ctx.args
    body: dict[str, Any] = {}
    if args.unlimited:
        body["uses_allowed"] = None
    elif args.uses is not None:
        body["uses_allowed"] = args.uses
    if args.expiry is not None:
        body["expiry"] = args.expiry
    if args.new_token is not None:
        if args.count > 1:
            raise UsageError("--token names one token: it cannot be used with --count")
        body["token"] = args.new_token
    if args.length is not None:
        body["length"] = args.length
    if args.words is not None:
        body["style"] = "words"
        if args.words:  # `--words` alone: the server's default count
            body["words"] = args.words
    created: list[Any] = []
    try:
        for _ in range(args.count):
            created.append(ctx.api.post("tokens", body))
    finally:
        if created:
            _print_created(ctx, created)
    return OK


def _print_created(ctx: Context, created: list[Any]) -> None:
    if ctx.json:
        out(fmt.as_json(created[0] if ctx.args.count == 1 else created))
    elif ctx.args.quiet:
        out("\n".join(fmt.clean(t.get("token") if isinstance(t, dict) else t) for t in created))
    else:
        rows = [t for t in created if isinstance(t, dict)]
        out(fmt.table(rows, fmt.TOKEN_COLUMNS))
        links = [fmt.clean(t["link"]) for t in rows if t.get("link")]
        if links:
            out("\nInvite links:\n" + "\n".join(links))


def tokens_edit(ctx: Context) -> int:
    args = ctx.args
    body: dict[str, Any] = {}
    if args.unlimited:
        body["uses_allowed"] = None
    elif args.uses is not None:
        body["uses_allowed"] = args.uses
    if args.expiry is not None:
        body["expiry"] = args.expiry
    if not body:
        raise UsageError("nothing to change: give --uses N, --unlimited or --expiry WHEN")
    return _edit(ctx, body)


def tokens_disable(ctx: Context) -> int:
    return _edit(ctx, {"disabled": True})


def tokens_enable(ctx: Context) -> int:
    return _edit(ctx, {"disabled": False})


def _edit(ctx: Context, body: dict[str, Any]) -> int:
    answer = ctx.api.patch(f"tokens/{segment(ctx.args.target)}", body)
    return show(ctx, answer, lambda: fmt.token_fields(answer))


def tokens_delete(ctx: Context) -> int:
    wanted = list(dict.fromkeys(ctx.args.tokens))
    answer = ctx.api.post("tokens/delete", {"tokens": wanted})
    deleted = answer.get("deleted", []) if isinstance(answer, dict) else []
    missing = [t for t in wanted if t not in deleted]
    if ctx.json:
        out(fmt.as_json(answer))
    else:
        for token in deleted:
            out(f"deleted {fmt.clean(token)}")
    for token in missing:
        err(f"{token}: token not found")
    return REFUSED if missing else OK


def tokens_delete_all(ctx: Context) -> int:
    if not ctx.args.yes:
        err(
            "refusing to delete every registration token on the server (invite tokens, "
            "mailed tokens, and those made elsewhere) without --yes"
        )
        return USAGE
    answer = ctx.api.post("tokens/delete_all", {"confirm": DELETE_ALL_CONFIRMATION})
    count = answer.get("deleted_count") if isinstance(answer, dict) else None
    return show(ctx, answer, lambda: f"deleted {count} tokens")


# --- purge --------------------------------------------------------------------------


def purge(ctx: Context) -> int:
    args = ctx.args
    body: dict[str, Any] = {"dry_run": bool(args.dry_run)}
    if args.older_than is not None:
        body["older_than"] = args.older_than
    answer = ctx.api.post("purge", body)
    counts = answer.get("counts") if isinstance(answer, dict) else None

    def human() -> str:
        rows = counts.items() if isinstance(counts, dict) else ()
        head = "would delete (dry run):" if args.dry_run else "deleted:"
        return "\n".join([head, *(f"  {fmt.clean(kind)}: {fmt.clean(n)}" for kind, n in rows)])

    return show(ctx, answer, human)


# --- requests -------------------------------------------------------------------


def requests_list(ctx: Context) -> int:
    args = ctx.args
    answer = ctx.api.get(
        "requests",
        {"status": args.status, "q": args.search, "limit": args.limit, "from": args.start},
    )
    rows = _rows(answer, "requests")

    def human() -> str:
        if not rows:
            return "No requests."
        text = fmt.table(rows, fmt.REQUEST_COLUMNS)
        next_from = answer.get("next_from")
        if next_from is not None:
            text += f"\n(more: add --from {next_from})"
        return text

    return show(ctx, answer, human)


def requests_show(ctx: Context) -> int:
    answer = ctx.api.get(f"requests/{segment(ctx.args.id)}")
    return show(ctx, answer, lambda: fmt.request_details(answer))


def _decide(ctx: Context, verb: str, done: str) -> int:
    body = {} if ctx.args.message is None else {"message": ctx.args.message}
    answer = ctx.api.post(f"requests/{segment(ctx.args.id)}/{verb}", body)

    def human() -> str:
        text = f"{done} request {fmt.clean(ctx.args.id)}"
        status = answer.get("status") if isinstance(answer, dict) else None
        return f"{text} (status: {fmt.clean(status)})" if status else text

    return show(ctx, answer, human)


def requests_approve(ctx: Context) -> int:
    return _decide(ctx, "approve", "approved")


def requests_deny(ctx: Context) -> int:
    return _decide(ctx, "deny", "denied")


# --- bans -------------------------------------------------------------------------


def bans_list(ctx: Context) -> int:
    if ctx.args.all:
        policy = ctx.api.get("policy")
        rows = fmt.policy_rows(policy) if isinstance(policy, dict) else []
        return show(ctx, policy, lambda: fmt.table(rows, fmt.POLICY_COLUMNS) if rows else "None.")
    answer = ctx.api.get("bans")
    empty = "No bans added through the admin API (homeserver.yaml and policy_file are not listed)."
    return _listing(ctx, answer, "bans", fmt.BAN_COLUMNS, empty)


def bans_why(ctx: Context) -> int:
    answer = ctx.api.get("policy/why", {"username": ctx.args.username})
    return show(ctx, answer, lambda: fmt.why_lines(answer) if isinstance(answer, dict) else "")


def bans_add(ctx: Context) -> int:
    args = ctx.args
    body: dict[str, Any] = {"kind": args.kind, "match": args.match}
    if args.reason is not None:
        body["reason"] = args.reason
    if args.expires is not None:
        body["expires"] = args.expires
    ban = ctx.api.post("bans", body)

    def human() -> str:
        ban_id = ban.get("id") if isinstance(ban, dict) else None
        revoked = ban.get("revoked") if isinstance(ban, dict) else None
        return (
            f"added ban {fmt.clean(ban_id)}; revoked {fmt.clean(revoked)} open request(s)\n"
            + fmt.table([ban], fmt.BAN_COLUMNS[:5])
        )

    return show(ctx, ban, human)


def bans_remove(ctx: Context) -> int:
    answer = ctx.api.delete(f"bans/{segment(ctx.args.id)}")
    return show(ctx, answer, lambda: f"removed ban {fmt.clean(ctx.args.id)}")


# --- moderators, reload, audit ---------------------------------------------------------


def moderators_list(ctx: Context) -> int:
    answer = ctx.api.get("moderators")
    empty = (
        "No moderators added through the admin API "
        "(server admins and `moderators` in homeserver.yaml always moderate)."
    )
    return _listing(ctx, answer, "moderators", fmt.MODERATOR_COLUMNS, empty)


def moderators_allow(ctx: Context) -> int:
    entry = ctx.args.entry
    answer = ctx.api.post("moderators", {"entry": entry})
    added = answer.get("added") if isinstance(answer, dict) else True
    text = f"allowed {fmt.clean(entry)}" if added else f"{fmt.clean(entry)} was allowed already"
    return show(ctx, answer, lambda: text)


def moderators_disallow(ctx: Context) -> int:
    entry = ctx.args.entry
    answer = ctx.api.delete(f"moderators/{segment(entry)}")
    return show(ctx, answer, lambda: f"disallowed {fmt.clean(entry)}")


def reload(ctx: Context) -> int:
    answer = ctx.api.post("reload")
    message = answer.get("message") if isinstance(answer, dict) else None
    revoked = answer.get("revoked") if isinstance(answer, dict) else None
    return show(
        ctx,
        answer,
        lambda: f"reloaded: {fmt.clean(message)}; revoked {fmt.clean(revoked)} open request(s)",
    )


def audit(ctx: Context) -> int:
    answer = ctx.api.get("audit", {"limit": ctx.args.limit, "from": ctx.args.start})
    return _listing(ctx, answer, "entries", fmt.AUDIT_COLUMNS, "The audit log is empty.")


def surge_status(ctx: Context) -> int:
    answer = ctx.api.get("surge")
    return show(ctx, answer, lambda: fmt.surge(answer))


def surge_on(ctx: Context) -> int:
    body: dict[str, Any] = {"on": True}
    if ctx.args.mode is not None:
        body["mode"] = ctx.args.mode
    if ctx.args.duration is not None:
        body["duration"] = ctx.args.duration
    answer = ctx.api.post("surge", body)
    return show(ctx, answer, lambda: fmt.surge(answer))


def surge_off(ctx: Context) -> int:
    answer = ctx.api.post("surge", {"on": False})
    return show(ctx, answer, lambda: fmt.surge(answer))


# --- check-config -------------------------------------------------------------------------


def stats(ctx: Context) -> int:
    answer = ctx.api.get("stats", {"range": ctx.args.range_name})
    return show(ctx, answer, lambda: fmt.stats_text(answer))


def check_config(ctx: Context) -> int:
    # Here, not at the top: the config parsers (and Synapse's config package) are
    # loaded only for check-config, not for every call to the admin API.
    from synapse_email_gate.cli.check import Report, Unreadable, check_homeserver, check_policy_file

    args = ctx.args
    if args.file is None and not args.policy_files:
        err("check-config: give homeserver.yaml, --policy-file FILE, or both")
        return USAGE
    report = Report()
    try:
        if args.file is not None:
            report = check_homeserver(args.file)
    except Unreadable as e:
        err(str(e))
        return USAGE
    for path in args.policy_files or ():
        part = check_policy_file(path)
        report.problems += part.problems
        report.valid += part.valid
    if ctx.json:
        out(fmt.as_json(report.as_dict()))
    else:
        for warning in report.warnings:
            out(f"warning: {fmt.clean(warning.line())}")
        for problem in report.problems:
            out(fmt.clean(problem.line()))
        for valid in report.valid:
            out(f"ok: {fmt.clean(valid)}")
        count = len(report.problems)
        out(f"{count} problem{'s' if count != 1 else ''} found" if count else "config is valid")
    return OK if report.ok else PROBLEMS


# --- import ---------------------------------------------------------------------------


def import_old(ctx: Context) -> int:
    """The FastAPI page's ban lists (to list files) and request log (through the API)."""
    from synapse_email_gate.cli import importer

    args = ctx.args
    source: str = args.source
    if not os.path.isdir(source):
        raise UsageError(f"{source}: not a directory")
    present = {
        name: os.path.join(source, name)
        for name in (*importer.LISTS, importer.OLD_LOG)
        if os.path.isfile(os.path.join(source, name))
    }
    if not present:
        raise UsageError(
            f"{source}: none of {', '.join((*importer.LISTS, importer.OLD_LOG))} found"
        )
    try:
        converted = {
            old: importer.convert_list(path, importer.CONVERTERS[old])
            for old, path in present.items()
            if old in importer.LISTS
        }
        records: list[dict[str, Any]] = []
        bad_rows: list[importer.Problem] = []
        if importer.OLD_LOG in present:
            records, bad_rows = importer.read_log(present[importer.OLD_LOG])
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UsageError(str(e)) from e
    if converted and args.out is None:
        raise UsageError("--out DIR: where to write the converted lists and their policy file")
    files = importer.outputs(converted)
    written: list[str] = []
    if converted and not args.dry_run:
        try:
            written = importer.write_outputs(args.out, files, args.overwrite)
        except (OSError, ValueError) as e:
            raise UsageError(str(e)) from e
    answer = importer.send_records(ctx.api, records, args.dry_run) if records else None
    not_imported = [p for c in converted.values() for p in c.problems]
    rejected_rows = [p.describe("row") for p in bad_rows]
    if answer is not None:
        log = present[importer.OLD_LOG]
        rejected_rows += [
            f"{log}: row {r.get('row')}: {r.get('error')}"
            for r in answer["rejected"]
            if isinstance(r, dict)
        ]
    report = {
        "dry_run": args.dry_run,
        "lists": [
            {
                "source": c.source,
                "to": os.path.join(args.out, importer.LISTS[old][0]),
                "entries": len(c.entries),
                "not_imported": [p.describe() for p in c.problems],
            }
            for old, c in converted.items()
        ],
        "policy_file": os.path.join(args.out, importer.POLICY_NAME) if converted else None,
        "written": written,
        "records": answer,
        "rejected_rows": rejected_rows,
    }
    show(ctx, report, lambda: _import_text(report))
    return OK if not not_imported and not rejected_rows else PROBLEMS


def _import_text(report: dict[str, Any]) -> str:
    would = "would write" if report["dry_run"] else "wrote"
    lines = []
    for item in report["lists"]:
        lines.append(f"{item['source']}: {item['entries']} entries; {would} {item['to']}")
        lines += [f"  not imported: {fmt.clean(p)}" for p in item["not_imported"]]
    if report["policy_file"] is not None:
        lines.append(f"{would} {report['policy_file']}: point policy_file at it")
    records = report["records"]
    if records is not None:
        verb = "would import" if report["dry_run"] else "imported"
        lines.append(
            f"{verb} {records['imported']} record(s): {records['addresses']} address(es), "
            f"{records['new_addresses']} new, {records['with_accounts']} with an account here"
        )
    lines += [f"  rejected: {fmt.clean(row)}" for row in report["rejected_rows"]]
    return "\n".join(lines)
