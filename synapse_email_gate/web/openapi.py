"""The OpenAPI 3.1 description of everything the module serves over HTTP.

Built from Python so that it reads like the API it describes: each operation
names its parameters, body, answers and the errcodes each answer can carry.
`GET admin/openapi.json` serves it (no auth); docs/openapi.json is the same
text, written by `python -m synapse_email_gate.web.openapi > docs/openapi.json`.
Tests check that it matches the router tables and that a real Synapse answers
as it says (tests/unit/web/test_openapi.py, tests/integration/test_openapi.py).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from synapse_email_gate.moderation.service import ADMIN_ONLY, REQUEST_STATUSES
from synapse_email_gate.requests import outcomes
from synapse_email_gate.rules import proof_of_work, words
from synapse_email_gate.web.resource import BASE_PATH

Schema = dict[str, Any]

VERSION = "1"
JSON = "application/json"
HTML = "text/html; charset=utf-8"
FORM = "application/x-www-form-urlencoded"

# Synapse's own answers to a bad access token (`get_user_by_req`), and ours.
AUTH_401 = ("M_MISSING_TOKEN", "M_UNKNOWN_TOKEN", "M_USER_LOCKED")
AUTH_403 = ("M_FORBIDDEN", "M_GUEST_ACCESS_FORBIDDEN", "M_EXPIRED_ACCOUNT")
JSON_BODY_400 = ("M_NOT_JSON", "M_BAD_JSON")
REQUEST_400 = (
    *JSON_BODY_400,
    "M_MISSING_PARAM",
    "M_INVALID_PARAM",
    proof_of_work.REQUIRED,
    proof_of_work.INVALID,
    proof_of_work.TOO_EASY,
    proof_of_work.EXPIRED,
    proof_of_work.REPLAYED,
    outcomes.REASON_TOO_SHORT,
    "M_INVALID_USERNAME",
    "M_USER_IN_USE",
    "M_EXCLUSIVE",
    outcomes.USERNAME_BANNED,
    outcomes.INVALID_EMAIL,
    outcomes.DOMAIN_NOT_ALLOWED,
    outcomes.DOMAIN_DISPOSABLE,
)


# --- small builders ----------------------------------------------------------


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(type_: str, **more: Any) -> Schema:
    return {"type": [type_, "null"], **more}


def obj(required: tuple[str, ...] = (), **properties: Schema) -> Schema:
    """An object with these properties; others may be added in later versions."""
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
TIMESTAMP: Schema = {"type": "integer", "description": "milliseconds since the epoch"}


def json_answer(description: str, schema: Schema, headers: Schema | None = None) -> Schema:
    answer: Schema = {"description": description, "content": {JSON: {"schema": schema}}}
    if headers:
        answer["headers"] = headers
    return answer


def html_answer(description: str, headers: Schema | None = None) -> Schema:
    answer: Schema = {"description": description, "content": {HTML: {"schema": STRING}}}
    if headers:
        answer["headers"] = headers
    return answer


def error(description: str, *errcodes: str, headers: Schema | None = None) -> Schema:
    """A JSON error answer whose errcode is one of `errcodes`."""
    schema: Schema = {
        "allOf": [ref("Error"), {"properties": {"errcode": {"enum": list(errcodes)}}}]
    }
    return json_answer(description, schema, headers)


RETRY_AFTER: Schema = {
    "Retry-After": {
        "description": "whole seconds until a new attempt can succeed (at least 1)",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}
SET_CSRF_COOKIE: Schema = {
    "Set-Cookie": {
        "description": "the CSRF cookie `email_gate_csrf`, whose value the form repeats",
        "schema": STRING,
    }
}


def shared(name: str) -> Schema:
    """One of the answers many operations share (components.responses)."""
    return {"$ref": f"#/components/responses/{name}"}


UNAVAILABLE = shared("Unavailable")
TOO_LARGE = shared("TooLarge")


def _shared_answers() -> dict[str, Schema]:
    return {
        "Unavailable": error(
            "The module's tables do not exist yet (a moment after start-up; see the log).",
            outcomes.UNAVAILABLE,
        ),
        "TooLarge": error("The body is over 16 KiB.", "M_TOO_LARGE"),
        "Unauthorized": error("No access token, or one Synapse does not accept.", *AUTH_401),
        "NotModerator": error("Not a moderator.", *AUTH_403),
        "NotModeratorOrAdminOnly": error(
            "Not a moderator, or a moderator asking for what only server admins may do.",
            *AUTH_403,
            ADMIN_ONLY,
        ),
    }


def query(name: str, description: str, schema: Schema = STRING) -> Schema:
    return {"name": name, "in": "query", "description": description, "schema": schema}


def path_param(name: str, description: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description + " (one percent-encoded path segment)",
        "schema": {"type": "string", "minLength": 1},
    }


def json_body(schema: Schema, required: bool = True) -> Schema:
    return {"required": required, "content": {JSON: {"schema": schema}}}


def form_body(*fields: str) -> Schema:
    return {
        "required": True,
        "content": {
            FORM: {"schema": {"type": "object", "properties": dict.fromkeys(fields, STRING)}}
        },
    }


# --- the public pages and JSON API ----------------------------------------------


def _public() -> dict[str, Schema]:
    lang = query("lang", "the page's language (`de`); remembered in a cookie")
    return {
        "/": {
            "get": {
                "operationId": "requestPage",
                "tags": ["pages"],
                "summary": "The request page: one form with username and email",
                "parameters": [lang],
                "responses": {
                    "200": html_answer("The page, with the CSRF cookie.", SET_CSRF_COOKIE),
                    "503": UNAVAILABLE,
                },
            },
            "post": {
                "operationId": "requestForm",
                "tags": ["pages"],
                "summary": "The page's form post (with the CSRF cookie of the page)",
                "requestBody": form_body(
                    "username",
                    "email",
                    "csrf",
                    "lang",
                    "reason",
                    "consent",
                    "challenge",
                    "nonce",
                ),
                "responses": {
                    "202": html_answer("Accepted: check your inbox (whatever the mail side does)."),
                    "400": html_answer(
                        "The form again with the problem, or a new CSRF cookie and field, or "
                        "a body that could not be read.",
                        SET_CSRF_COOKIE,
                    ),
                    "403": html_answer("The client IP is banned."),
                    "429": html_answer("The per-IP or global rate limit.", RETRY_AFTER),
                    "503": UNAVAILABLE,
                },
            },
        },
        "/api/request": {
            "post": {
                "operationId": "requestToken",
                "tags": ["request"],
                "summary": "Ask for a registration token by email",
                "description": (
                    "The same `202` whether a mail is sent or not (cooldown, used address, "
                    "banned address, per-address limit). Fields not named here are ignored."
                ),
                "requestBody": json_body(ref("TokenRequest")),
                "responses": {
                    "202": json_answer("Accepted.", obj(("status",), status={"const": "accepted"})),
                    "400": error("The request cannot be accepted.", *REQUEST_400),
                    "403": error(
                        "The client IP is banned, or the request came from another website "
                        "(`Origin` is not this server's).",
                        "M_FORBIDDEN",
                        outcomes.ORIGIN,
                    ),
                    "413": TOO_LARGE,
                    "429": json_answer(
                        "The per-IP or global rate limit.",
                        {
                            "allOf": [
                                ref("Error"),
                                obj(
                                    ("retry_after_ms",),
                                    errcode={"const": "M_LIMIT_EXCEEDED"},
                                    retry_after_ms={"type": "integer", "minimum": 1000},
                                ),
                            ]
                        },
                        RETRY_AFTER,
                    ),
                    "503": UNAVAILABLE,
                },
            }
        },
        "/api/challenge": {
            "get": {
                "operationId": "getChallenge",
                "tags": ["request"],
                "summary": "A proof-of-work challenge to solve before `POST api/request`",
                "responses": {
                    "200": json_answer("A fresh challenge.", ref("Challenge")),
                    "404": error("The challenge is off on this server.", "M_NOT_FOUND"),
                    "503": UNAVAILABLE,
                },
            }
        },
        "/register": {
            "get": {
                "operationId": "landingPage",
                "tags": ["pages"],
                "summary": "The page the mailed link opens; shows the token and the reserved ID",
                "parameters": [query("token", "the mailed (or invite) token"), lang],
                "responses": {
                    "200": html_answer(
                        "A token of the module: usable (with the form to finish on the web), "
                        "or used, expired or replaced.",
                        SET_CSRF_COOKIE,
                    ),
                    "404": html_answer("Any other token: this link does not work."),
                    "503": UNAVAILABLE,
                },
            },
            "post": {
                "operationId": "finishRegistration",
                "tags": ["pages"],
                "summary": "Finish the registration on the web (form of the landing page)",
                "requestBody": form_body(
                    "token", "password", "password_confirm", "csrf", "lang", "consent", "username"
                ),
                "responses": {
                    "200": html_answer("Done, or the token cannot be used (any more)."),
                    "400": html_answer("The form again with the problem.", SET_CSRF_COOKIE),
                    "403": html_answer("The client IP is banned, or the registration refused."),
                    "404": html_answer("A token the module does not know."),
                    "429": html_answer(
                        "A rate limit, or the token's last use is held by a registration "
                        "under way.",
                        RETRY_AFTER,
                    ),
                    "503": html_answer(
                        "Synapse could not be reached at `web_registration.client_api_url`."
                    ),
                },
            },
        },
        "/verify": {
            "get": {
                "operationId": "verifyPage",
                "tags": ["pages"],
                "summary": "Approval mode: the button that confirms the address",
                "parameters": [query("code", "the mailed confirmation code"), lang],
                "responses": {
                    "200": html_answer("The page with the button.", SET_CSRF_COOKIE),
                    "503": UNAVAILABLE,
                },
            },
            "post": {
                "operationId": "verifyAddress",
                "tags": ["pages"],
                "summary": "Approval mode: confirm the address (form of the page)",
                "requestBody": form_body("code", "csrf", "lang"),
                "responses": {
                    "200": html_answer("Confirmed: the request waits for a moderator."),
                    "400": html_answer("The CSRF cookie is missing or does not match."),
                    "404": html_answer("The code is unknown, used or expired."),
                    "503": UNAVAILABLE,
                },
            },
        },
        "/static/{file}": {
            "get": {
                "operationId": "staticFile",
                "tags": ["pages"],
                "summary": "The pages' CSS and JavaScript, favicon, logo and theme",
                "description": (
                    "The module's own files, and those its config makes: the logo and "
                    "favicon (`logo-<hash>.png`, `favicon-<hash>.svg`, ...) and the theme "
                    "(`theme-<hash>.css`), whose names change with their content."
                ),
                "parameters": [path_param("file", "the file name, like `email_gate.css`")],
                "responses": {
                    "200": {
                        "description": "The file.",
                        "content": {
                            "text/css; charset=utf-8": {"schema": STRING},
                            "text/javascript; charset=utf-8": {"schema": STRING},
                            "image/svg+xml": {"schema": STRING},
                            "image/*": {"schema": {"type": "string", "format": "binary"}},
                        },
                    },
                    "404": error("No such file.", "M_NOT_FOUND", "M_UNRECOGNIZED"),
                },
            }
        },
        "/admin": {
            "get": {
                "operationId": "moderationPage",
                "tags": ["pages"],
                "summary": "The moderation page (it signs in with the moderator's account)",
                "responses": {"200": html_answer("The page.")},
            }
        },
        "/admin/openapi.json": {
            "get": {
                "operationId": "getDescription",
                "tags": ["admin"],
                "summary": "This description (no access token needed)",
                "security": [],
                "responses": {
                    "200": json_answer(
                        "The OpenAPI 3.1 description.", obj(("openapi", "info", "paths"))
                    )
                },
            }
        },
    }


# --- the admin API ---------------------------------------------------------------


def admin_op(
    operation_id: str,
    summary: str,
    answers: dict[str, Schema],
    *,
    parameters: list[Schema] | None = None,
    body: Schema | None = None,
    refused: tuple[str, ...] = (),
    admin_only: bool = False,
) -> Schema:
    """An admin operation: a moderator's access token, its own answers, and those
    every admin route can give (`refused`: the errcodes of its `400`)."""
    responses = dict(answers)
    if body is not None:
        refused = (*JSON_BODY_400, *refused)
        responses["413"] = TOO_LARGE
    if refused:
        responses["400"] = error("Bad input: the message names the problem.", *refused)
    responses["401"] = shared("Unauthorized")
    responses["403"] = shared("NotModeratorOrAdminOnly" if admin_only else "NotModerator")
    responses["503"] = UNAVAILABLE
    op: Schema = {
        "operationId": operation_id,
        "tags": ["admin"],
        "summary": summary,
        "security": [{"bearer": []}],
    }
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = json_body(body, required=False)
    op["responses"] = dict(sorted(responses.items()))
    return op


INVALID = ("M_INVALID_PARAM",)
PAGE_PARAMS = [
    query("limit", "page size, 1 to 500 (default 50)", INTEGER),
    query("from", "offset: `next_from` of the previous page (default 0)", INTEGER),
]


def not_found(what: str) -> Schema:
    # An empty segment is no path of ours: M_UNRECOGNIZED.
    return error(f"No such {what}.", "M_NOT_FOUND", "M_UNRECOGNIZED")


def _admin() -> dict[str, Schema]:
    request_id = path_param("id", "the request's id")
    token = path_param("token", "the registration token")
    message = json_body(obj(message={"type": "string", "maxLength": 2000}))["content"][JSON][
        "schema"
    ]
    decided = {
        "200": json_answer("The request, decided.", ref("RequestDetail")),
        "404": not_found("request"),
        "409": error(
            "The request is not waiting, or its username went to another request.",
            "EMAIL_GATE_NOT_PENDING",
            "M_USER_IN_USE",
        ),
    }
    return {
        "/admin/requests": {
            "get": admin_op(
                "listRequests",
                "Token requests, newest first",
                {
                    "200": json_answer(
                        "One page.",
                        obj(("requests",), requests=array(ref("Request")), next_from=INTEGER),
                    ),
                },
                parameters=[
                    query(
                        "status", "only requests in this state", {"enum": list(REQUEST_STATUSES)}
                    ),
                    query("q", "a substring of the username, the address or the IP"),
                    *PAGE_PARAMS,
                ],
                refused=INVALID,
            )
        },
        "/admin/requests/{id}": {
            "get": admin_op(
                "getRequest",
                "One request, with its mails and history",
                {
                    "200": json_answer("The request.", ref("RequestDetail")),
                    "404": not_found("request"),
                },
                parameters=[request_id],
            )
        },
        "/admin/requests/{id}/approve": {
            "post": admin_op(
                "approveRequest",
                "Approval mode: approve a pending request (the token mail goes out)",
                decided,
                parameters=[request_id],
                body=message,
                refused=INVALID,
            )
        },
        "/admin/requests/{id}/deny": {
            "post": admin_op(
                "denyRequest",
                "Approval mode: deny a pending request (a polite mail with the message)",
                decided,
                parameters=[request_id],
                body=message,
                refused=INVALID,
            )
        },
        "/admin/tokens": {
            "get": admin_op(
                "listTokens",
                "Invite tokens and Synapse's other tokens (never the mailed ones)",
                {"200": json_answer("The tokens.", obj(("tokens",), tokens=array(ref("Token"))))},
                parameters=[
                    query("valid", "`true`, `1` or `yes`: only the tokens in state `active`")
                ],
            ),
            "post": admin_op(
                "createToken",
                "Create an invite token",
                {
                    "201": json_answer("The token.", ref("Token")),
                },
                body=ref("NewToken"),
                refused=INVALID,
                admin_only=True,
            ),
        },
        "/admin/tokens/delete": {
            "post": admin_op(
                "deleteTokens",
                "Delete these tokens",
                {
                    "200": json_answer(
                        "The tokens that existed.", obj(("deleted",), deleted=array(STRING))
                    ),
                },
                body=obj(("tokens",), tokens={**array(STRING), "minItems": 1}),
                refused=INVALID,
            )
        },
        "/admin/tokens/delete_all": {
            "post": admin_op(
                "deleteAllTokens",
                "Delete every registration token, the module's included",
                {
                    "200": json_answer("How many.", obj(("deleted_count",), deleted_count=INTEGER)),
                },
                body=obj(("confirm",), confirm={"const": "delete all tokens"}),
                refused=INVALID,
            )
        },
        "/admin/tokens/{token}": {
            "get": admin_op(
                "getToken",
                "One token",
                {"200": json_answer("The token.", ref("Token")), "404": not_found("token")},
                parameters=[token],
            ),
            "patch": admin_op(
                "editToken",
                "Edit an invite token: uses, expiry, disabled",
                {"200": json_answer("The token.", ref("Token")), "404": not_found("token")},
                parameters=[token],
                body=ref("TokenEdit"),
                refused=INVALID,
                admin_only=True,
            ),
            "post": admin_op(
                "editTokenByPost",
                "Edit an invite token (the same as PATCH, for clients without PATCH)",
                {"200": json_answer("The token.", ref("Token")), "404": not_found("token")},
                parameters=[token],
                body=ref("TokenEdit"),
                refused=INVALID,
                admin_only=True,
            ),
            "delete": admin_op(
                "deleteToken",
                "Delete one token",
                {
                    "200": json_answer("Deleted.", obj(("deleted",), deleted=array(STRING))),
                    "404": not_found("token"),
                },
                parameters=[token],
            ),
        },
        "/admin/accounts": {
            "get": admin_op(
                "listAccounts",
                "The accounts made through the gate that a filter matches, newest first",
                {"200": json_answer("The accounts.", ref("AccountListing"))},
                parameters=[
                    query("ip", "registered from, or asked from, this IP address"),
                    query("cidr", "from this network, like `198.51.100.0/24`"),
                    query("domain", "the request's address is at this domain or a subdomain"),
                    query("token", "made with this token"),
                    query("since", "registered at or after: a date, date-time, ms or `24h`"),
                    query("until", "registered before: a date, date-time, ms or `24h`"),
                    query("limit", "at most this many (1 to 1000, default 100)", INTEGER),
                ],
                refused=INVALID,
            )
        },
        "/admin/accounts/action": {
            "post": admin_op(
                "accountAction",
                "Lock, unlock, suspend, unsuspend or deactivate the accounts a filter matches:"
                " a dry run first, then the same with its `confirm`",
                {
                    "200": json_answer("What was (or would be) changed.", ref("AccountAction")),
                    "409": error(
                        "The accounts changed since the dry run.", "EMAIL_GATE_NOT_CONFIRMED"
                    ),
                },
                body=ref("AccountActionRequest"),
                refused=(*INVALID, "EMAIL_GATE_NOT_CONFIRMED", "EMAIL_GATE_TOO_MANY_ACCOUNTS"),
                admin_only=True,
            )
        },
        "/admin/accounts/{user_id}/probation": {
            "post": admin_op(
                "liftProbation",
                "End an account's probation now",
                {
                    "200": json_answer("The account.", ref("Account")),
                    "404": not_found("account"),
                    "409": error("Not on probation.", "EMAIL_GATE_NOT_ON_PROBATION"),
                },
                parameters=[path_param("user_id", "the Matrix ID, like `@alice:example.org`")],
                body=obj(("lift",), lift={"const": True}),
                refused=INVALID,
            )
        },
        "/admin/accounts/{user_id}": {
            "get": admin_op(
                "getAccount",
                "How an account came in, and whom it brought in (the invite tree)",
                {
                    "200": json_answer("The account.", ref("Account")),
                    "404": not_found("account"),
                },
                parameters=[path_param("user_id", "the Matrix ID, like `@alice:example.org`")],
                refused=INVALID,
            )
        },
        "/admin/bans": {
            "get": admin_op(
                "listBans",
                "The bans stored through this API, the CLI or the room",
                {"200": json_answer("The bans.", obj(("bans",), bans=array(ref("Ban"))))},
            ),
            "post": admin_op(
                "addBan",
                "Add a ban; it revokes the open requests it matches",
                {
                    "201": json_answer(
                        "The ban, and how many open requests it revoked.", ref("NewBanResult")
                    ),
                },
                body=ref("NewBan"),
                refused=INVALID,
            ),
        },
        "/admin/bans/{id}": {
            "delete": admin_op(
                "removeBan",
                "Remove a stored ban",
                {
                    "200": json_answer("Removed.", obj(("removed",), removed=STRING)),
                    "404": not_found("ban"),
                },
                parameters=[path_param("id", "the ban's id")],
            )
        },
        "/admin/policy": {
            "get": admin_op(
                "getPolicy",
                "Every entry in force, whatever its source",
                {"200": json_answer("The policy.", ref("Policy"))},
            )
        },
        "/admin/policy/why": {
            "get": admin_op(
                "whyBanned",
                "Which bans refuse a username: local patterns and policy room rules",
                {
                    "200": json_answer(
                        "The bans that match (none: the name is not banned).",
                        obj(
                            ("username", "user_id", "banned", "matches"),
                            username=STRING,
                            user_id=STRING,
                            banned={"type": "boolean"},
                            matches=array({"type": "object"}),
                        ),
                    )
                },
                parameters=[
                    {
                        **query("username", "a localpart or a Matrix ID of this server"),
                        "required": True,
                    }
                ],
                refused=INVALID,
            )
        },
        "/admin/moderators": {
            "get": admin_op(
                "listModerators",
                "The moderator entries added at run time",
                {
                    "200": json_answer(
                        "The entries.", obj(("moderators",), moderators=array(ref("Moderator")))
                    )
                },
            ),
            "post": admin_op(
                "addModerator",
                "Server admins: add a moderator entry (a Matrix ID or a regex)",
                {
                    "200": json_answer("It was there already.", ref("ModeratorAdded")),
                    "201": json_answer("Added.", ref("ModeratorAdded")),
                },
                body=obj(("entry",), entry={"type": "string", "minLength": 1}),
                refused=INVALID,
                admin_only=True,
            ),
        },
        "/admin/moderators/{entry}": {
            "delete": admin_op(
                "removeModerator",
                "Server admins: remove a moderator entry",
                {
                    "200": json_answer("Removed.", obj(("removed",), removed=STRING)),
                    "404": not_found("moderator entry"),
                },
                parameters=[path_param("entry", "the entry, `/` as `%2F`")],
                admin_only=True,
            )
        },
        "/admin/reload": {
            "post": admin_op(
                "reloadPolicy",
                "Re-read policy_file here and on every other process",
                {
                    "200": json_answer("Reloaded.", ref("ReloadResult")),
                },
                body=obj(),
                refused=("EMAIL_GATE_POLICY_INVALID",),
            )
        },
        "/admin/purge": {
            "post": admin_op(
                "purge",
                "Server admins: the retention purge now (a dry run unless dry_run is false)",
                {
                    "200": json_answer(
                        "What went, or in a dry run what would go.",
                        obj(
                            ("dry_run", "older_than_ms", "counts"),
                            dry_run={"type": "boolean"},
                            older_than_ms=nullable("integer"),
                            counts={
                                "type": "object",
                                "description": "rows deleted (or that would be), by kind",
                                "additionalProperties": INTEGER,
                            },
                        ),
                    ),
                },
                body=obj(
                    dry_run={"type": "boolean", "description": "default true: count only"},
                    older_than={
                        "type": ["string", "integer", "null"],
                        "description": "a tighter age than `retention` (`30d`, at least `1h`)",
                    },
                ),
                refused=INVALID,
                admin_only=True,
            )
        },
        "/admin/import/registrations": {
            "post": admin_op(
                "importRegistrations",
                "Server admins: import the request log of the page this module replaces",
                {
                    "200": json_answer(
                        "What was (or, with dry_run, would be) imported; rejected records "
                        "are named by row.",
                        obj(
                            (
                                "dry_run",
                                "imported",
                                "rejected",
                                "addresses",
                                "new_addresses",
                                "with_accounts",
                            ),
                            dry_run={"type": "boolean"},
                            imported=INTEGER,
                            rejected=array(obj(("row", "error"), row=INTEGER, error=STRING)),
                            addresses=INTEGER,
                            new_addresses=INTEGER,
                            with_accounts=INTEGER,
                        ),
                    ),
                },
                body=obj(
                    ("records",),
                    records={
                        **array(
                            obj(
                                ("username", "email", "time_ms"),
                                row={"type": "integer", "minimum": 1},
                                username=STRING,
                                email=STRING,
                                time_ms=INTEGER,
                            )
                        ),
                        "minItems": 1,
                        "maxItems": 500,
                    },
                    dry_run={"type": "boolean"},
                ),
                refused=INVALID,
                admin_only=True,
            )
        },
        "/admin/audit": {
            "get": admin_op(
                "auditLog",
                "What moderators did, newest first",
                {
                    "200": json_answer(
                        "One page.", obj(("entries",), entries=array(ref("AuditEntry")))
                    ),
                },
                parameters=PAGE_PARAMS,
                refused=INVALID,
            )
        },
        "/admin/surge": {
            "get": admin_op(
                "surgeState",
                "The surge switch: on or off, its mode, cause and end, and its settings",
                {"200": json_answer("The state.", ref("Surge"))},
            ),
            "post": admin_op(
                "surgeSwitch",
                "Switch the surge on (a mode, for a duration) or off by hand",
                {
                    "200": json_answer("The state after the switch.", ref("Surge")),
                    "409": error(
                        "Another switch was made at the same moment; try again.",
                        "EMAIL_GATE_SURGE_BUSY",
                    ),
                },
                body=obj(
                    ("on",),
                    on={"type": "boolean"},
                    mode={"type": "string", "enum": ["challenge", "approval"]},
                    duration={
                        "type": ["string", "integer"],
                        "description": "45s, 15m, 24h, 7d or seconds; at most 7d",
                    },
                ),
                refused=INVALID,
            ),
        },
        "/admin/stats": {
            "get": admin_op(
                "gateStats",
                "Requests, issued tokens, accounts and refusals per bucket of the last day or week",
                {"200": json_answer("The picture.", ref("Stats"))},
                parameters=[
                    query(
                        "range",
                        "`day` (24 buckets of an hour, the default) or `week` "
                        "(28 buckets of six hours)",
                        {"type": "string", "enum": ["day", "week"]},
                    )
                ],
                refused=INVALID,
            )
        },
    }


# --- shared schemas -----------------------------------------------------------------


def _schemas() -> dict[str, Schema]:
    request = obj(
        (
            "id",
            "created_ts",
            "updated_ts",
            "localpart",
            "email",
            "ip",
            "status",
            "reason",
            "expires_ts",
            "user_id",
            "statement",
            "decided_by",
            "decision_message",
        ),
        id=STRING,
        created_ts=TIMESTAMP,
        updated_ts=TIMESTAMP,
        localpart=STRING,
        email={"type": "string", "description": "the address, or its keyed hash"},
        ip=STRING,
        status={"enum": list(REQUEST_STATUSES)},
        reason=nullable("string", description="why no mail went out, or why it was revoked"),
        expires_ts=nullable("integer"),
        user_id=nullable("string"),
        statement=nullable("string", description="what the person wrote (approval mode)"),
        decided_by=nullable("string"),
        decision_message=nullable("string"),
    )
    mail = obj(
        ("kind", "status", "created_ts", "attempts", "last_error", "sent_ts"),
        kind=STRING,
        status=STRING,
        created_ts=TIMESTAMP,
        attempts=INTEGER,
        last_error=nullable("string"),
        sent_ts=nullable("integer"),
    )
    audit = obj(
        ("ts", "actor", "action", "target", "detail"),
        ts=TIMESTAMP,
        actor=STRING,
        action=STRING,
        target=nullable("string"),
        detail=nullable("string"),
    )
    account_use = obj(
        ("user_id", "localpart", "registered_ts", "ip", "via"),
        user_id=STRING,
        localpart=STRING,
        registered_ts=TIMESTAMP,
        ip=nullable("string"),
        via={"enum": ["client", "web"]},
    )
    ban_entry = obj(
        ("match", "reason", "expires_ts", "active", "source"),
        match=STRING,
        reason=nullable("string"),
        expires_ts=nullable("integer"),
        active={"type": "boolean"},
        source={"enum": ["config", "policy_file", "stored"]},
    )
    return {
        "Error": obj(
            ("errcode", "error"),
            errcode={"type": "string", "description": "stable; documented in docs/"},
            error={"type": "string", "description": "for people; may change"},
        ),
        "TokenRequest": obj(
            ("username", "email"),
            username={
                "type": "string",
                "maxLength": 320,
                "description": "the localpart (`@alice:<server>` is accepted too)",
            },
            email={"type": "string", "maxLength": 320},
            reason={
                "type": "string",
                "maxLength": 2000,
                "description": "with `approval: required`: why, for the moderators",
            },
            challenge={"type": "string", "description": "from `GET api/challenge`"},
            nonce={"type": "string", "description": "its solution"},
            lang={"type": "string", "description": "the language of the mails"},
        ),
        "Challenge": obj(
            ("challenge", "difficulty", "expires_ms", "expires_in_ms", "algorithm"),
            challenge=STRING,
            difficulty={"type": "integer", "minimum": 1},
            expires_ms=TIMESTAMP,
            expires_in_ms=INTEGER,
            algorithm={"const": "sha256-leading-zero-bits"},
        ),
        "Request": request,
        "RequestDetail": {
            "allOf": [
                ref("Request"),
                obj(("mails", "history"), mails=array(mail), history=array(ref("AuditEntry"))),
            ]
        },
        "Token": obj(
            (
                "token",
                "kind",
                "state",
                "valid",
                "uses_allowed",
                "completed",
                "pending",
                "uses_left",
                "expiry_time",
                "expires",
                "created_by",
                "created_ts",
                "reserved_for",
                "request_id",
                "revoked_ts",
                "revoked_reason",
                "accounts",
            ),
            token=STRING,
            kind={"enum": ["invite", "synapse", "email"]},
            state={"enum": ["active", "busy", "used", "expired", "disabled", "revoked"]},
            valid={"type": "boolean"},
            uses_allowed=nullable("integer"),
            completed=INTEGER,
            pending=INTEGER,
            uses_left=nullable("integer"),
            expiry_time=nullable("integer"),
            expires={"type": "string", "description": "the expiry in words"},
            created_by=nullable("string"),
            created_ts=nullable("integer"),
            reserved_for=nullable("string"),
            request_id=nullable("string"),
            revoked_ts=nullable("integer"),
            revoked_reason=nullable("string"),
            accounts=array(account_use),
            link=nullable(
                "string", description="the invite link (invite tokens only), to share with a person"
            ),
        ),
        "TokenEdit": obj(
            uses_allowed=nullable("integer", minimum=0, maximum=2**31 - 1),
            expiry={
                "type": ["string", "integer", "null"],
                "description": (
                    "`45m`, `24h`, `7d` (or seconds), a date or date-time, or `never`; "
                    "not with `expiry_time`"
                ),
            },
            expiry_time=nullable("integer", description="instead of expiry: ms since the epoch"),
            disabled={"type": "boolean", "description": "true to disable, false to enable"},
        ),
        "NewToken": obj(
            style={
                "enum": ["random", "words"],
                "description": "`words`: a token of words from the BIP-39 list, like"
                " `maple-river-copper-seven-lantern` (not with token or length)",
            },
            words={
                "type": "integer",
                "minimum": words.MIN_WORDS,
                "maximum": words.MAX_WORDS,
                "description": f"with style words: how many (default {words.DEFAULT_WORDS},"
                " 11 bits each)",
            },
            token={"type": "string", "pattern": "^[A-Za-z0-9._~-]{12,64}$"},
            length={"type": "integer", "minimum": 12, "maximum": 64},
            uses_allowed=nullable("integer", minimum=0),
            expiry={
                "type": ["string", "integer", "null"],
                "description": (
                    "`45m`, `24h`, `7d` (or seconds), a date or date-time, or `never`; "
                    "not with `expiry_time`"
                ),
            },
            expiry_time=nullable("integer", description="instead of expiry: ms since the epoch"),
        ),
        "Account": obj(
            (
                "user_id",
                "token",
                "token_kind",
                "token_created_by",
                "request_id",
                "registered_ts",
                "ip",
                "via",
                "tokens_created",
                "invited",
            ),
            user_id=STRING,
            token=nullable("string"),
            token_kind=nullable("string"),
            token_created_by=nullable("string"),
            request_id=nullable("string"),
            registered_ts=nullable("integer"),
            ip=nullable("string"),
            via={"enum": ["client", "web", None]},
            tokens_created=array(obj(("token", "accounts"), token=STRING, accounts=array(STRING))),
            invited=array(STRING),
            probation={
                "description": "null: never on probation",
                "oneOf": [
                    {"type": "null"},
                    obj(
                        ("active", "until_ts", "lifted_ts", "lifted_by", "status"),
                        active={"type": "boolean"},
                        until_ts=INTEGER,
                        lifted_ts=nullable("integer"),
                        lifted_by=nullable("string"),
                        status={"type": "string", "description": "in words"},
                    ),
                ],
            },
        ),
        "AccountFilter": obj(
            ip=STRING,
            cidr=STRING,
            domain=STRING,
            token=STRING,
            since={"type": ["string", "integer"]},
            until={"type": ["string", "integer"]},
        ),
        "ListedAccount": obj(
            (
                "user_id",
                "registered_ts",
                "registration_ip",
                "request_ip",
                "email",
                "token",
                "admin",
                "locked",
                "suspended",
                "deactivated",
                "protected",
            ),
            user_id=STRING,
            registered_ts=INTEGER,
            registered={"type": "string", "description": "in words"},
            registration_ip=nullable("string"),
            via=nullable("string"),
            token=nullable("string", description="null for a mailed token"),
            token_kind=STRING,
            request_id=nullable("string"),
            request_ip=nullable("string"),
            requested_ts=nullable("integer"),
            email=nullable("string", description="null once only its hash is kept"),
            email_hashed={"type": "boolean"},
            admin={"type": "boolean"},
            locked={"type": "boolean"},
            suspended={"type": "boolean"},
            deactivated={"type": "boolean"},
            exists={"type": "boolean"},
            protected={
                "type": "boolean",
                "description": "a server admin or the bot: never acted on",
            },
            probation_until_ts=nullable("integer"),
        ),
        "AccountListing": obj(
            ("filter", "count", "truncated", "accounts"),
            filter={"type": "object"},
            count=INTEGER,
            truncated={"type": "boolean"},
            accounts=array(ref("ListedAccount")),
        ),
        "AccountActionRequest": obj(
            ("filter", "action"),
            filter=ref("AccountFilter"),
            action={"enum": ["lock", "unlock", "suspend", "unsuspend", "deactivate"]},
            dry_run={"type": "boolean", "description": "default true"},
            confirm={"type": "string", "description": "the `confirm` of the dry run"},
        ),
        "AccountAction": obj(
            ("action", "dry_run", "matched", "affected", "skipped", "confirm"),
            action=STRING,
            dry_run={"type": "boolean"},
            filter={"type": "object"},
            matched=INTEGER,
            affected=array(STRING),
            skipped=array(obj(("user_id", "why"), user_id=STRING, why=STRING)),
            failed=array(obj(("user_id", "error"), user_id=STRING, error=STRING)),
            confirm=STRING,
        ),
        "Ban": obj(
            ("id", "kind", "match", "reason", "expires_ts", "active", "created_by", "created_ts"),
            id=STRING,
            kind={"enum": ["username", "email", "ip"]},
            match=STRING,
            reason=nullable("string"),
            expires_ts=nullable("integer"),
            active={"type": "boolean"},
            created_by=STRING,
            created_ts=TIMESTAMP,
        ),
        "NewBan": obj(
            ("kind", "match"),
            kind={"enum": ["username", "email", "ip"]},
            match={"type": "string", "minLength": 1},
            reason=nullable("string"),
            expires={
                "type": ["string", "integer", "null"],
                "description": (
                    "a duration (`30d`, or seconds) or a date (`2026-12-31`); none: for ever"
                ),
            },
        ),
        "NewBanResult": obj(
            ("id", "kind", "match", "reason", "expires_ts", "revoked"),
            id=STRING,
            kind={"enum": ["username", "email", "ip"]},
            match=STRING,
            reason=nullable("string"),
            expires_ts=nullable("integer"),
            revoked={"type": "integer", "minimum": 0},
        ),
        "Policy": obj(
            ("banned_usernames", "banned_emails", "banned_ips", "allowed_email_domains"),
            banned_usernames=array(ban_entry),
            banned_emails=array(ban_entry),
            banned_ips=array(ban_entry),
            allowed_email_domains=array(
                obj(
                    ("match", "source"),
                    match=STRING,
                    source={"enum": ["config", "policy_file", "stored"]},
                )
            ),
        ),
        "Moderator": obj(
            ("entry", "added_by", "added_ts", "problem"),
            entry=STRING,
            added_by=STRING,
            added_ts=TIMESTAMP,
            problem=nullable("string", description="why a stored entry matches nobody"),
        ),
        "ModeratorAdded": obj(("entry", "added"), entry=STRING, added={"type": "boolean"}),
        "ReloadResult": obj(
            ("status", "message", "revoked"),
            status={"const": "reloaded"},
            message=STRING,
            revoked={"type": "integer", "minimum": 0},
        ),
        "AuditEntry": audit,
        "Surge": obj(
            (
                "on",
                "mode",
                "cause",
                "scope",
                "level",
                "since_ts",
                "until_ts",
                "automatic",
                "config",
            ),
            on={"type": "boolean"},
            mode={"type": "string", "enum": ["off", "challenge", "approval"]},
            cause=nullable(
                "string",
                enum=["overall", "domain", "network", "range", "manual", "calm", "expired", None],
            ),
            scope=nullable("string", description="the domain, network or range of the cause"),
            level=nullable("integer", description="challenge difficulty in bits"),
            since_ts=nullable("integer"),
            until_ts=nullable(
                "integer", description="a manual switch ends, an automatic one may end, then"
            ),
            automatic={"type": "boolean", "description": "whether surge.enabled is on"},
            config={"type": "object"},
        ),
        "Stats": _stats_schema(),
    }


def _stats_schema() -> Schema:
    count: Schema = {"type": "integer", "minimum": 0}
    by_errcode: Schema = {
        "type": "object",
        "description": "refusals by errcode",
        "additionalProperties": count,
    }
    counts = {
        "requests": count,
        "tokens": count,
        "accounts": count,
        "refused": count,
        "refusals": by_errcode,
    }
    names = ("requests", "tokens", "accounts", "refused", "refusals")
    return obj(
        ("range", "bucket_ms", "from_ts", "until_ts", "now_ts", "totals", "buckets"),
        range={"type": "string", "enum": ["day", "week"]},
        bucket_ms=INTEGER,
        from_ts=TIMESTAMP,
        until_ts=TIMESTAMP,
        now_ts=TIMESTAMP,
        totals=obj(names, **counts),
        buckets=array(obj(("start_ts", *names), start_ts=TIMESTAMP, **counts)),
    )


def description() -> dict[str, Any]:
    paths = {BASE_PATH + path: item for path, item in {**_public(), **_admin()}.items()}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "synapse_email_gate",
            "version": VERSION,
            "summary": "Registration tokens by email: the request API and the admin API",
            "description": (
                "Served by every Synapse process with the module, below the homeserver's "
                '`public_baseurl`. Errors are `{"errcode", "error"}`; the errcodes are '
                "stable. See docs/api.md and docs/admin-api.md."
            ),
        },
        "tags": [
            {"name": "request", "description": "The JSON API for scripts and front-ends"},
            {"name": "pages", "description": "HTML pages and their forms"},
            {"name": "admin", "description": "The admin API (a moderator's access token)"},
        ],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "responses": _shared_answers(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": (
                        "A Synapse access token of a server admin or of a moderator, in the "
                        "`Authorization` header (`?access_token=` is not accepted)."
                    ),
                }
            },
        },
    }


def render() -> bytes:
    """The description as served and as kept in docs/openapi.json."""
    text = json.dumps(description(), indent=2)
    return (text + "\n").encode("utf-8")


if __name__ == "__main__":
    sys.stdout.buffer.write(render())
