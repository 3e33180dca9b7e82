"""`synapse-email-gate`: the admin API from a shell, and an offline config check.

    synapse-email-gate --server https://matrix.example.org tokens create --uses 5
    EMAIL_GATE_TOKEN=syt_... synapse-email-gate requests list --status issued --json
    synapse-email-gate check-config /etc/synapse/homeserver.yaml

Exit codes: 0 ok, 1 the server refused (or check-config found problems), 2 usage
or config error, 3 cannot connect. See docs/cli.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from typing import Any

from synapse_email_gate.cli import commands as cmd
from synapse_email_gate.cli.client import (
    AdminClient,
    BadServerUrl,
    Refused,
    Unreachable,
    plain_http_warning,
)
from synapse_email_gate.cli.commands import UsageError

PROG = "synapse-email-gate"
ENV_SERVER = "EMAIL_GATE_SERVER"
ENV_ACCESS_TOKEN = "EMAIL_GATE_TOKEN"  # noqa: S105 - the name of a variable
ENV_ACCESS_TOKEN_FILE = "EMAIL_GATE_TOKEN_FILE"  # noqa: S105 - the name of a variable

Handler = Callable[[cmd.Context], int]

EPILOG = f"""\
server and access token (of a Synapse server admin or a moderator):
  --server URL         or ${ENV_SERVER}, e.g. https://matrix.example.org
  --token-file FILE    or ${ENV_ACCESS_TOKEN_FILE}: a file holding the access token
  --token TOKEN        or ${ENV_ACCESS_TOKEN} (a flag is visible to other local users)

exit codes:
  0  ok
  1  the server refused (errcode and error on stderr); check-config found problems
  2  usage or configuration error (bad arguments, no server or token, unreadable file)
  3  cannot connect to the server

Every command takes --help. Full reference: docs/cli.md.
"""


def _positive(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


class _Parser(argparse.ArgumentParser):
    """Takes `-u9cmz10TH` for a value when it is none of the command's options.

    Request ids and hand-made tokens may begin with '-'. Plain argparse reads
    them as an unknown option and then says the ID is missing.
    """

    def _parse_optional(self, arg_string: str) -> Any:
        if _is_dashed_value(arg_string, self._option_string_actions):
            return None
        return super()._parse_optional(arg_string)


def _is_dashed_value(word: str, options: Mapping[str, object]) -> bool:
    # Only single-dash words longer than a short option: `--bogus` stays an error,
    # `-q` and `-qv` stay options, and `--` still ends the options.
    return (
        word.startswith("-")
        and not word.startswith("--")
        and len(word) > 2
        and word[:2] not in options
        and word.split("=", 1)[0] not in options
    )


def _common_options(json_only: bool = False, access_token: bool = True) -> argparse.ArgumentParser:
    """Options every command also takes after its name (`tokens list --json`).

    Defaults are SUPPRESS so that they don't overwrite the same options given
    before the command name.
    """
    parent = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    parent.add_argument("--json", action="store_true", help="print the raw JSON answer")
    if json_only:
        return parent
    parent.add_argument("--server", metavar="URL", help=f"the homeserver (or ${ENV_SERVER})")
    if access_token:  # `tokens create --token T` names the new token instead
        parent.add_argument(
            "--token",
            dest="access_token",
            metavar="TOKEN",
            help=f"access token (or ${ENV_ACCESS_TOKEN})",
        )
    parent.add_argument(
        "--token-file",
        dest="access_token_file",
        metavar="FILE",
        help=f"file holding the access token (or ${ENV_ACCESS_TOKEN_FILE})",
    )
    parent.add_argument(
        "--timeout", metavar="SECONDS", type=float, help="give up waiting after this (default 30)"
    )
    return parent


class _Tree:
    """Builds the nested subcommands, each with --help and the common options."""

    def __init__(self) -> None:
        self.common = _common_options()
        self.json_only = _common_options(json_only=True)
        self.without_access_token = _common_options(access_token=False)

    def group(
        self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser], name: str, text: str
    ) -> argparse._SubParsersAction[argparse.ArgumentParser]:
        parser = subparsers.add_parser(name, help=text, description=text)
        return parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def leaf(
        self,
        subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        handler: Handler,
        text: str,
        offline: bool = False,
        epilog: str | None = None,
        parent: argparse.ArgumentParser | None = None,
    ) -> argparse.ArgumentParser:
        if parent is None:
            parent = self.json_only if offline else self.common
        parser = subparsers.add_parser(
            name,
            help=text,
            description=text,
            epilog=epilog,
            parents=[parent],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.set_defaults(handler=handler, offline=offline)
        return parser


def _surge(tree: _Tree, commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    surge = tree.group(commands, "surge", "the surge switch (docs/moderation.md#surge)")
    tree.leaf(surge, "status", cmd.surge_status, "on or off, the mode, why, until when")
    on = tree.leaf(surge, "on", cmd.surge_on, "switch it on by hand, on every process")
    on.add_argument(
        "--mode", choices=("challenge", "approval"), help="default: the configured surge.mode"
    )
    on.add_argument(
        "--duration", metavar="DURATION", help="45s, 15m, 24h, 7d (default: surge.hold)"
    )
    tree.leaf(surge, "off", cmd.surge_off, "switch it off (no automatic switch-on for the hold)")


def build_parser() -> argparse.ArgumentParser:
    # Declared as the base class: subcommands are made with type(parser) at run time.
    parser: argparse.ArgumentParser = _Parser(
        prog=PROG,
        description="Moderate synapse_email_gate from a shell: invite tokens, requests, bans, "
        "moderators, policy reload, audit log; and check its config offline.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--server", metavar="URL", help=f"the homeserver (or ${ENV_SERVER})")
    parser.add_argument(
        "--token",
        dest="access_token",
        metavar="TOKEN",
        help=f"access token (or ${ENV_ACCESS_TOKEN})",
    )
    parser.add_argument(
        "--token-file",
        dest="access_token_file",
        metavar="FILE",
        help=f"file holding the access token (or ${ENV_ACCESS_TOKEN_FILE})",
    )
    parser.add_argument("--json", action="store_true", help="print the raw JSON answer")
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        default=30.0,
        help="give up waiting for the server after this (default 30)",
    )
    tree = _Tree()
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _tokens(tree, commands)
    accounts = tree.group(commands, "accounts", "accounts made with the module's tokens")
    account = tree.leaf(
        accounts,
        "show",
        cmd.accounts_show,
        "which token brought an account in (and who made it), and whom it invited",
    )
    account.add_argument("user_id", metavar="@USER:SERVER")
    _mass_action(tree, accounts)
    _requests(tree, commands)
    _bans(tree, commands)
    _moderators(tree, commands)
    tree.leaf(commands, "reload", cmd.reload, "re-read policy_file now, on every process")
    purge = tree.leaf(
        commands,
        "purge",
        cmd.purge,
        "the retention purge now (server admins only)",
        epilog="The same deletions as the hourly purge under `retention`; --older-than tightens\n"
        "the ages of requests and addresses. Try --dry-run first: it counts, deleting nothing.",
    )
    purge.add_argument("--dry-run", action="store_true", help="count what would go; delete nothing")
    purge.add_argument(
        "--older-than", metavar="AGE", help="requests older than this go too (30d; at least 1h)"
    )
    _surge(tree, commands)
    audit = tree.leaf(
        commands, "audit", cmd.audit, "the audit log of moderator actions, newest first"
    )
    audit.add_argument(
        "--limit", type=_positive, metavar="N", help="at most N entries (default 50)"
    )
    audit.add_argument("--from", dest="start", type=_non_negative, metavar="N", help="skip N")
    imported = tree.leaf(
        commands,
        "import",
        cmd.import_old,
        "import the FastAPI page's banned_*.txt (as list files) and registrations.json "
        "(server admins)",
        epilog="Reads banned_usernames.txt, banned_emails.txt, banned_ips.txt and "
        "registrations.json\nfrom SOURCE (those present). Writes the lists and "
        "email_gate_policy.yaml to --out; sends\nthe records to the server. Exit code 0 "
        "when everything was imported, 1 when an\nentry or a row was not (each is named), "
        "2 for bad arguments or unreadable files.",
    )
    imported.add_argument("source", metavar="SOURCE", help="the old page's data directory")
    imported.add_argument(
        "--out", metavar="DIR", help="where to write the converted lists and their policy file"
    )
    imported.add_argument(
        "--dry-run", action="store_true", help="write nothing; show what would be imported"
    )
    imported.add_argument(
        "--overwrite", action="store_true", help="replace files that exist already in --out"
    )
    stats = tree.leaf(
        commands,
        "stats",
        cmd.stats,
        "requests, issued tokens, accounts and refusals over the last day or week",
    )
    stats.add_argument(
        "--range",
        dest="range_name",
        choices=("day", "week"),
        default="day",
        help="day: per hour (the default); week: per six hours",
    )
    check = tree.leaf(
        commands,
        "check-config",
        cmd.check_config,
        "validate the module's config in homeserver.yaml and its policy_file, offline",
        offline=True,
        epilog="Prints every problem as FILE: KEY: PROBLEM. Exit code 0 when valid, 1 when "
        "there are problems,\n2 when the file cannot be read.",
    )
    check.add_argument("file", nargs="?", metavar="homeserver.yaml", help="Synapse's config file")
    check.add_argument(
        "--policy-file",
        dest="policy_files",
        action="append",
        metavar="FILE",
        help="also check this policy file (repeatable); policy_file named in the config is "
        "checked anyway",
    )
    return parser


def _account_filter(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ip", help="registered from, or asked from, this IP address")
    parser.add_argument("--cidr", metavar="NET", help="from this network, like 198.51.100.0/24")
    parser.add_argument("--domain", help="the request's address is at this domain (or below)")
    parser.add_argument("--with-token", dest="token", metavar="TOKEN", help="made with TOKEN")
    parser.add_argument(
        "--since", metavar="WHEN", help="registered at or after: 2026-12-31, ...T18:00Z, or 24h"
    )
    parser.add_argument("--until", metavar="WHEN", help="registered before (the same forms)")


def _mass_action(
    tree: _Tree, accounts: argparse._SubParsersAction[argparse.ArgumentParser]
) -> None:
    lift = tree.leaf(
        accounts, "lift-probation", cmd.accounts_lift_probation, "end an account's probation now"
    )
    lift.add_argument("user_id", metavar="@USER:SERVER")
    listing = tree.leaf(
        accounts, "list", cmd.accounts_list, "accounts made through the gate that match a filter"
    )
    _account_filter(listing)
    listing.add_argument("--limit", type=_positive, metavar="N", help="at most N (default 100)")
    for action, text in (
        ("lock", "lock accounts (Synapse refuses their access tokens until unlocked)"),
        ("unlock", "unlock accounts"),
        ("suspend", "suspend accounts (they may read and leave, not send)"),
        ("unsuspend", "lift the suspension of accounts"),
        ("deactivate", "deactivate accounts, for good (server admins only)"),
    ):
        parser = tree.leaf(
            accounts,
            action,
            cmd.accounts_action,
            text,
            epilog="Without --confirm: a dry run that lists the accounts it would change and"
            " prints\nthe command that does it (with --confirm CODE). Server admins and the"
            " bot are never changed.",
        )
        parser.set_defaults(account_action=action)
        _account_filter(parser)
        parser.add_argument("--confirm", metavar="CODE", help="the code the dry run printed")


def _tokens(tree: _Tree, commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tokens = tree.group(commands, "tokens", "invite tokens (Synapse's registration tokens)")
    listing = tree.leaf(tokens, "list", cmd.tokens_list, "list tokens with uses left and expiry")
    listing.add_argument("--valid", action="store_true", help="only tokens that still work")
    show = tree.leaf(
        tokens,
        "show",
        cmd.tokens_show,
        "show tokens with who made them and the accounts they made; exit 1 if one is not found",
    )
    show.add_argument("tokens", nargs="+", metavar="TOKEN")
    create = tree.leaf(
        tokens,
        "create",
        cmd.tokens_create,
        "create invite tokens",
        epilog="Defaults (the server's): 1 use, expiry in 7 days, a random token of 16 characters."
        "\nHere --token names the new token: give the access token before the command name\n"
        f"(synapse-email-gate --token-file FILE tokens create ...) or in ${ENV_ACCESS_TOKEN}.",
        parent=tree.without_access_token,
    )
    uses = create.add_mutually_exclusive_group()
    uses.add_argument("--uses", type=_non_negative, metavar="N", help="uses allowed (default 1)")
    uses.add_argument("--unlimited", action="store_true", help="no limit on uses")
    create.add_argument(
        "--expiry", metavar="WHEN", help="a duration (7d, 24h), a date (2026-12-31), or never"
    )
    chosen = create.add_mutually_exclusive_group()
    chosen.add_argument("--token", dest="new_token", metavar="T", help="the token text itself")
    chosen.add_argument("--length", type=_positive, metavar="N", help="random token of N chars")
    chosen.add_argument(
        "--words",
        type=_positive,
        nargs="?",
        const=0,
        metavar="N",
        help="a token of N words read aloud, like maple-river-copper-seven-lantern (4 to 7,"
        " default 5)",
    )
    create.add_argument("--count", type=_positive, default=1, metavar="N", help="create N tokens")
    create.add_argument("-q", "--quiet", action="store_true", help="print only the tokens")
    edit = tree.leaf(
        tokens,
        "edit",
        cmd.tokens_edit,
        "change an invite token's uses allowed or expiry",
        epilog="Uses allowed cannot go below the uses already made. Unlimited uses and no\n"
        "expiry are for server admins.",
    )
    edit.add_argument("target", metavar="TOKEN")
    edit_uses = edit.add_mutually_exclusive_group()
    edit_uses.add_argument("--uses", type=_non_negative, metavar="N", help="uses allowed")
    edit_uses.add_argument("--unlimited", action="store_true", help="no limit on uses")
    edit.add_argument(
        "--expiry", metavar="WHEN", help="a duration from now (7d), a date (2026-12-31), or never"
    )
    for name, handler, text in (
        ("disable", cmd.tokens_disable, "stop an invite token for now (enable undoes it)"),
        ("enable", cmd.tokens_enable, "let a disabled invite token work again"),
    ):
        switch = tree.leaf(tokens, name, handler, text)
        switch.add_argument("target", metavar="TOKEN")
    delete = tree.leaf(
        tokens, "delete", cmd.tokens_delete, "delete tokens; exit 1 if one is missing"
    )
    delete.add_argument("tokens", nargs="+", metavar="TOKEN")
    delete_all = tree.leaf(
        tokens, "delete-all", cmd.tokens_delete_all, "delete EVERY registration token on the server"
    )
    delete_all.add_argument("--yes", action="store_true", help="yes, really delete all of them")


def _requests(tree: _Tree, commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    requests = tree.group(commands, "requests", "token requests made on the request page")
    listing = tree.leaf(requests, "list", cmd.requests_list, "list requests, newest first")
    listing.add_argument("--status", metavar="S", help="received, issued, suppressed, ...")
    listing.add_argument("--search", metavar="Q", help="part of a username, address or IP")
    listing.add_argument("--limit", type=_positive, metavar="N", help="at most N (default 50)")
    listing.add_argument("--from", dest="start", type=_non_negative, metavar="N", help="skip N")
    show = tree.leaf(requests, "show", cmd.requests_show, "one request, its mails and history")
    show.add_argument("id", metavar="ID")
    for name, handler, text in (
        ("approve", cmd.requests_approve, "approve a pending request: its token mail goes out"),
        ("deny", cmd.requests_deny, "deny a pending request: a polite mail goes out"),
    ):
        decide = tree.leaf(requests, name, handler, text + " (approval: required)")
        decide.add_argument("id", metavar="ID")
        decide.add_argument("--message", metavar="M", help="a message to the person, in the mail")


def _bans(tree: _Tree, commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bans = tree.group(commands, "bans", "bans stored in the database (added here or in the room)")
    listing = tree.leaf(bans, "list", cmd.bans_list, "list the stored bans (with their IDs)")
    listing.add_argument(
        "--all",
        action="store_true",
        help="every entry in force: homeserver.yaml, policy_file and stored, with its source",
    )
    why = tree.leaf(
        bans, "why", cmd.bans_why, "which bans refuse a username: patterns and policy room rules"
    )
    why.add_argument("username", metavar="NAME", help="a localpart or @name:server")
    add = tree.leaf(bans, "add", cmd.bans_add, "add a ban; it applies at once, on every process")
    add.add_argument("kind", choices=("username", "email", "ip"), help="what MATCH is")
    add.add_argument(
        "match", metavar="MATCH", help="a username regex, an address/*@domain//regex/, an IP/CIDR"
    )
    add.add_argument("--reason", metavar="R", help="why (shown to moderators only)")
    add.add_argument("--expires", metavar="WHEN", help="a duration (30d) or a date (2026-12-31)")
    remove = tree.leaf(bans, "remove", cmd.bans_remove, "remove a stored ban by its ID")
    remove.add_argument("id", metavar="ID")


def _moderators(tree: _Tree, commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    mods = tree.group(commands, "moderators", "who may moderate, besides server admins")
    tree.leaf(mods, "list", cmd.moderators_list, "entries added through the admin API")
    allow = tree.leaf(mods, "allow", cmd.moderators_allow, "let a Matrix ID (or regex) moderate")
    allow.add_argument("entry", metavar="ENTRY", help="@user:example.org, or a regex of user IDs")
    disallow = tree.leaf(mods, "disallow", cmd.moderators_disallow, "remove an entry")
    disallow.add_argument("entry", metavar="ENTRY")


def _version() -> str:
    try:
        return metadata.version("synapse-email-gate")
    except metadata.PackageNotFoundError:
        return "unknown"


# --- running -------------------------------------------------------------------------------


def _read_access_token_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError as e:
        raise UsageError(f"cannot read the access token file {path}: {e.strerror or e}") from e
    except UnicodeDecodeError:
        raise UsageError(f"the access token file {path} is not text") from None


def credentials(
    args: argparse.Namespace, env: dict[str, str] | os._Environ[str]
) -> tuple[str, str]:
    """(server URL, access token) from the flags, else the environment."""
    server = args.server or env.get(ENV_SERVER)
    if not server:
        raise UsageError(f"no server: give --server URL or set {ENV_SERVER}")
    if args.access_token is not None and args.access_token_file is not None:
        raise UsageError("give --token or --token-file, not both")
    if args.access_token is not None:
        access_token = args.access_token
    elif args.access_token_file is not None:
        access_token = _read_access_token_file(args.access_token_file)
    elif env.get(ENV_ACCESS_TOKEN):
        access_token = env[ENV_ACCESS_TOKEN]
    elif env.get(ENV_ACCESS_TOKEN_FILE):
        access_token = _read_access_token_file(env[ENV_ACCESS_TOKEN_FILE])
    else:
        raise UsageError(
            "no access token: give --token-file FILE, "
            f"or set {ENV_ACCESS_TOKEN} or {ENV_ACCESS_TOKEN_FILE}"
        )
    access_token = access_token.strip()
    if (
        not access_token
        or not access_token.isascii()
        or not access_token.isprintable()
        or " " in access_token
    ):
        raise UsageError("the access token is empty or holds spaces or control characters")
    return server, access_token


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version (0) and usage errors (2)
        return e.code if isinstance(e.code, int) else cmd.USAGE

    def make_client() -> AdminClient:
        server, access_token = credentials(args, os.environ)
        try:
            client = AdminClient(server, access_token, timeout=args.timeout)
        except BadServerUrl as e:
            raise UsageError(str(e)) from None
        warning = plain_http_warning(client.base_url)
        if warning is not None:
            cmd.err(warning)
        return client

    handler: Handler = args.handler
    status: int | None = None
    try:
        status = handler(cmd.Context(args, make_client))
        sys.stdout.flush()  # inside the try: a closed pipe is reported here, not at exit
        return status
    except UsageError as e:
        cmd.err(str(e))
        return cmd.USAGE
    except Refused as e:
        cmd.refused(e)
        return cmd.REFUSED
    except Unreachable as e:
        cmd.err(str(e))
        return cmd.UNREACHABLE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, keeping the command's status.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return cmd.OK if status is None else status
