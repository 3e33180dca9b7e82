"""The token landing page, and finishing registration on the web.

`GET register?token=` shows, for a mailed token, the reserved Matrix ID, the
token, client links and a form (password twice, consent when required); for an
invite token (its shareable link) the same with a username field: the person
chooses the name, checked as on the request page. An unknown token and an
invite token that can make no more accounts get the same page, which says no
more than Synapse's validity endpoint would. `POST register` checks the
form and then registers exactly as a Matrix client would: it drives Synapse's
own `POST /_matrix/client/v3/register` on `web_registration.client_api_url`
(default: public_baseurl) through the user-interactive auth stages
`m.login.registration_token` then `m.login.dummy`. So Synapse validates and
consumes the token, runs every registration callback (ours force the reserved
username of a mailed token, and claim a use of an invite token for the chosen
one), applies its own password policy and rate limits, and hashes the
password, as for any client. `inhibit_login` keeps it from opening a session:
the person logs in with a client afterwards.

Synapse sees that POST come from this server, not from the person: its
`rc_registration` limit and `user_ips` count the server's own address for
every web registration. So the page resolves the person's address itself
(through `trusted_proxies`, as the request page does), refuses a banned one,
applies its own per-person limit (`rate_limits.web_registration`), and passes
the address, sealed, in the `/register` body for the registration callback to
record with the account (requests/client_address.py). docs/pages.md says what admins
should set.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from io import BytesIO
from typing import Any

import attrs
import jinja2
from synapse.http.client import read_body_with_max_size
from synapse.http.site import SynapseRequest
from synapse.logging.context import make_deferred_yieldable
from synapse.module_api import ModuleApi
from twisted.web.http_headers import Headers

from synapse_email_gate.config.durations import format_utc
from synapse_email_gate.config.pages import PagesConfig
from synapse_email_gate.policy.live import LivePolicy
from synapse_email_gate.requests import outcomes
from synapse_email_gate.requests.client_address import PARAM as CLIENT_ADDRESS_PARAM
from synapse_email_gate.requests.client_address import AddressSeal
from synapse_email_gate.requests.outcomes import Refusal
from synapse_email_gate.requests.registration import (
    TOKEN_BUSY,
    TOKEN_DISABLED,
    TOKEN_EXPIRED,
    TOKEN_REVOKED,
    TOKEN_STAGE,
    TOKEN_USED,
)
from synapse_email_gate.requests.service import rate_limit_key
from synapse_email_gate.requests.usernames import UsernameCheck
from synapse_email_gate.rules.ips import IpRules
from synapse_email_gate.rules.words import typed_word_token
from synapse_email_gate.storage.buckets import BucketStore
from synapse_email_gate.storage.requests import RequestStore, TokenDetails
from synapse_email_gate.storage.tokens import InviteLanding, TokenStore
from synapse_email_gate.web.http import (
    CSRF_COOKIE,
    JsonProblem,
    content_type,
    csrf_cookie,
    csrf_matches,
    form_fields,
    new_csrf,
    parse_json_object,
    query_param,
    read_body,
    request_client_ip,
    respond_html,
    set_cookie_header,
)
from synapse_email_gate.web.pages import PageKit, error_text

logger = logging.getLogger(__name__)

REGISTER_TEMPLATE = "email_gate_register.html"
DUMMY_STAGE = "m.login.dummy"
MAX_PASSWORD = 512
# Synapse's answers to /register are small; anything larger is not one.
MAX_ANSWER = 64 * 1024
# zxcvbn refuses longer input; the first 72 characters are what it rates.
ZXCVBN_MAX = 72
_CSRF_SHAPE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


@attrs.frozen
class Registered:
    user_id: str


@attrs.frozen
class NotRegistered:
    """Why Synapse did not make the account: `token` (used or expired), `password`
    (its policy), `username` (`errcode` says why), `busy` (rate limited; wait
    `retry_after_s`), `refused`, `failed`."""

    reason: str
    retry_after_s: int = 0
    errcode: str = ""


# Synapse's and our answers to /register that are about the username chosen.
USERNAME_ERRCODES = frozenset(
    {"M_USER_IN_USE", "M_INVALID_USERNAME", "M_EXCLUSIVE", outcomes.USERNAME_BANNED}
)


class FinishHandlers:
    def __init__(
        self,
        api: ModuleApi,
        kit: PageKit,
        template: jinja2.Template,
        config: PagesConfig,
        policy: LivePolicy,
        trusted_proxies: IpRules,
        seal: AddressSeal,
        buckets: BucketStore,
        requests: RequestStore,
        tokens: TokenStore,
        usernames: UsernameCheck,
    ) -> None:
        self._api = api
        self._usernames = usernames
        self._kit = kit
        self._template = template
        self._config = config
        self._policy = policy
        self._trusted_proxies = trusted_proxies
        self._seal = seal
        self._buckets = buckets
        self._requests = requests
        self._tokens = tokens
        base = config.web_registration.client_api_url or api.public_baseurl
        self._register_url = base + "_matrix/client/v3/register"
        self._secure_cookies = kit.secure

    # --- the landing page --------------------------------------------------

    async def landing(self, request: SynapseRequest) -> None:
        lang = self._kit.language(request)
        token = await self._as_known(query_param(request, "token") or "")
        csrf = csrf_cookie(request)
        if not _CSRF_SHAPE.match(csrf):
            csrf = new_csrf()
        await self._render(request, lang, token, csrf, set_cookie=True)

    async def _as_known(self, typed: str) -> str:
        """The token as sent, or the word token a person meant by typing it with
        capitals or spaces (`Maple River Copper Seven`), when only that one exists.
        Only a text made of listed words is ever rewritten; Synapse itself and
        Matrix clients take the token verbatim."""
        token = typed.strip()
        meant = typed_word_token(token)
        if meant is None or meant == token or await self._token(token) is not None:
            return token
        return meant

    async def _details(self, token: str) -> TokenDetails | None:
        if not token or len(token) > 64:
            return None
        return await self._requests.token_details(token, self._api.get_current_time_msec())

    async def _invite(self, token: str) -> InviteLanding | None:
        if not token or len(token) > 64:
            return None
        return await self._tokens.invite_landing(token, self._api.get_current_time_msec())

    async def _token(self, token: str) -> TokenDetails | InviteLanding | None:
        """A mailed token's details, or a usable invite token's, or None."""
        details = await self._details(token)
        return details if details is not None else await self._invite(token)

    async def _render(
        self,
        request: SynapseRequest,
        lang: str,
        token: str,
        csrf: str,
        *,
        set_cookie: bool = False,
        errors: Mapping[str, str] | None = None,
        form_error: str | None = None,
        status: int | None = None,
        retry_after_s: int | None = None,
        username: str = "",
    ) -> None:
        details = await self._token(token)
        if details is None:
            state = "invalid"
        elif isinstance(details, InviteLanding):
            state = "invite"
        elif details.usable:
            state = "form"
        else:
            state = "used"
        variables = self._variables(lang, token, details, username)
        html = self._template.render(
            **variables,
            state=state,
            csrf=csrf,
            errors=errors or {},
            form_error=form_error,
        )
        headers = {}
        if retry_after_s is not None:
            headers["Retry-After"] = str(retry_after_s)
        if set_cookie:
            headers["Set-Cookie"] = set_cookie_header(
                CSRF_COOKIE, csrf, self._kit.cookie_path, self._secure_cookies
            )
        if status is None:
            status = 404 if state == "invalid" else 200
        respond_html(request, status, html, headers)

    def _variables(
        self,
        lang: str,
        token: str,
        details: TokenDetails | InviteLanding | None,
        username: str = "",
    ) -> dict[str, Any]:
        query = {"token": token} if details is not None else {}
        variables = self._kit.variables(lang, "/register", query)
        translate = variables["_"]
        if details is None:
            return {**variables, "token": None, "user_id": None, "localpart": None}
        now = self._api.get_current_time_msec()
        if isinstance(details, InviteLanding):
            expiry = details.expiry_ts
            return {
                **variables,
                "token": token,
                "user_id": None,
                "localpart": username,
                "server_name": self._api.server_name,
                "usable": True,
                "expires_utc": format_utc(expiry) if expiry is not None else None,
                "expires_in": translate.duration(expiry - now) if expiry is not None else None,
                "clients": self._kit.client_links("", ""),
                "web_registration": self._config.web_registration.enabled,
                "password_min_length": self._config.password.min_length,
                "joined_rooms": list(self._config.after_registration.join_rooms),
            }
        user_id = f"@{details.localpart}:{self._api.server_name}"
        return {
            **variables,
            "token": token,
            "user_id": user_id,
            "localpart": details.localpart,
            "usable": details.usable,
            "expires_utc": format_utc(details.expires_ts),
            "expires_in": translate.duration(details.expires_ts - now),
            "clients": self._kit.client_links(user_id, details.localpart),
            "web_registration": self._config.web_registration.enabled,
            "password_min_length": self._config.password.min_length,
            "joined_rooms": list(self._config.after_registration.join_rooms),
        }

    # --- the form ------------------------------------------------------------

    async def submit(self, request: SynapseRequest) -> None:
        body = read_body(request)
        fields = form_fields(body or b"")
        lang = self._kit.language(request, fields.get("lang"))
        token = await self._as_known(fields.get("token", "")[:200])
        translate = self._kit.translator(lang)
        csrf = csrf_cookie(request)
        if (
            body is None
            or content_type(request) != "application/x-www-form-urlencoded"
            or not self._config.web_registration.enabled
        ):
            await self._render(request, lang, token, new_csrf(), set_cookie=True)
            return
        if not csrf_matches(request, fields):
            error = translate("errors.EMAIL_GATE_CSRF")
            await self._render(
                request, lang, token, new_csrf(), set_cookie=True, form_error=error, status=400
            )
            return
        details = await self._token(token)
        if details is None or not details.usable:
            await self._render(request, lang, token, csrf)
            return
        invite = isinstance(details, InviteLanding)
        chosen = fields.get("username", "")[:320] if invite else ""
        ip = request_client_ip(request, self._trusted_proxies)
        if self._policy.current.ip_ban(ip) is not None:
            logger.info("web registration refused: reason=ip_banned")
            error = translate("errors.registration_refused")
            await self._render(
                request, lang, token, csrf, form_error=error, status=403, username=chosen
            )
            return

        password = fields.get("password", "")
        if isinstance(details, InviteLanding):
            checked = await self._check_username(chosen)
            localpart = checked if isinstance(checked, str) else clean_name(chosen)
            errors = await self._check_form(fields, password, localpart, lang)
            if isinstance(checked, Refusal):
                errors["username"] = error_text(translate)(checked)
        else:
            localpart = details.localpart
            errors = await self._check_form(fields, password, localpart, lang)
        if errors:
            logger.info("web registration form refused: %s", ",".join(sorted(errors)))
            await self._render(
                request, lang, token, csrf, errors=errors, status=400, username=chosen
            )
            return
        wait_ms = await self._take_limit(ip)
        if wait_ms:
            logger.info("web registration refused: reason=rate_limited")
            seconds = math.ceil(wait_ms / 1000)
            error = translate("errors.registration_busy", seconds=seconds)
            await self._render(
                request,
                lang,
                token,
                csrf,
                form_error=error,
                status=429,
                retry_after_s=seconds,
                username=chosen,
            )
            return

        result = await self.register(localpart, password, token, ip)
        if isinstance(result, Registered):
            logger.info("web registration: %s created", result.user_id)
            variables = self._variables(lang, token, details, chosen)
            html = self._template.render(
                **{**variables, "user_id": result.user_id}, state="done", errors={}, csrf=""
            )
            respond_html(request, 200, html)
            return
        logger.info("web registration for %r not made: %s", localpart, result.reason)
        if result.reason == "token":
            await self._render(request, lang, token, csrf)
        elif result.reason == "password":
            errors = {"password": translate("errors.password_weak")}
            await self._render(
                request, lang, token, csrf, errors=errors, status=400, username=chosen
            )
        elif result.reason == "username" and invite:
            refusal = Refusal(400, result.errcode, "", "username")
            errors = {"username": error_text(translate)(refusal)}
            await self._render(
                request, lang, token, csrf, errors=errors, status=400, username=chosen
            )
        else:
            reason = "refused" if result.reason == "username" else result.reason
            if reason == "busy":
                message = translate("errors.registration_busy", seconds=result.retry_after_s)
            elif reason == "refused":
                message = translate("errors.registration_refused")
            else:
                message = translate("errors.registration_failed")
            status = {"busy": 429, "refused": 403}.get(reason, 503)
            retry = result.retry_after_s if reason == "busy" else None
            await self._render(
                request,
                lang,
                token,
                csrf,
                form_error=message,
                status=status,
                retry_after_s=retry,
                username=chosen,
            )

    async def _check_username(self, raw: str) -> str | Refusal:
        """The request page's checks, and a name held for a mailed request is taken."""
        checked = await self._usernames.check(raw)
        if isinstance(checked, Refusal):
            return checked
        reserved = await self._tokens.username_reserved(checked, self._api.get_current_time_msec())
        if reserved:
            return Refusal(400, "M_USER_IN_USE", "This username is taken.", "username")
        return checked

    async def _take_limit(self, ip: str) -> int:
        """Credit from this person's web-registration bucket: 0, or ms to wait."""
        return await self._buckets.take(
            f"web_registration:{rate_limit_key(ip)}",
            self._policy.current.rate_limits.web_registration,
            self._api.get_current_time_msec(),
        )

    async def _check_form(
        self, fields: Mapping[str, str], password: str, localpart: str, lang: str
    ) -> dict[str, str]:
        translate = self._kit.translator(lang)
        policy = self._config.password
        errors: dict[str, str] = {}
        if not password:
            errors["password"] = translate("errors.password_missing")
        elif len(password) < policy.min_length:
            errors["password"] = translate("errors.password_short", min_length=policy.min_length)
        elif len(password) > MAX_PASSWORD:
            errors["password"] = translate("errors.password_weak")
        elif policy.min_score > 0:
            score = await self._api.defer_to_thread(
                password_score, password, [localpart, self._api.server_name]
            )
            if score < policy.min_score:
                errors["password"] = translate("errors.password_weak")
        if "password" not in errors and fields.get("password_confirm", "") != password:
            errors["password_confirm"] = translate("errors.password_mismatch")
        if self._config.branding.consent_required and fields.get("consent") != "yes":
            errors["consent"] = translate("errors.EMAIL_GATE_CONSENT_REQUIRED")
        return errors

    # --- Synapse's own registration API -------------------------------------------

    async def register(
        self, localpart: str, password: str, token: str, ip: str
    ) -> Registered | NotRegistered:
        """Register as a client does: token stage, then dummy stage, in one UIA session.
        `ip` is the person's address, passed sealed for the account's record."""
        body: dict[str, Any] = {
            "username": localpart,
            "password": password,
            "inhibit_login": True,
            CLIENT_ADDRESS_PARAM: await self._seal.seal(token, ip),
        }
        auth: dict[str, Any] | None = None
        for _ in range(4):
            code, answer = await self._post({**body, "auth": auth} if auth else body)
            if code == 200 and isinstance(answer.get("user_id"), str):
                return Registered(answer["user_id"])
            if code == 401 and isinstance(answer.get("flows"), list):
                completed = set(answer.get("completed") or [])
                token_sent = auth is not None and auth["type"] == TOKEN_STAGE
                if token_sent and TOKEN_STAGE not in completed:
                    return NotRegistered("token")
                stage = next_stage(answer["flows"], completed)
                if stage is None:
                    logger.warning(
                        "web registration: no flow with %s in %r", TOKEN_STAGE, answer["flows"]
                    )
                    return NotRegistered("failed")
                auth = {"type": stage, "session": answer.get("session")}
                if stage == TOKEN_STAGE:
                    auth["token"] = token
                continue
            return _refusal(code, answer)
        return NotRegistered("failed")

    async def _post(self, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        # Not post_json_get_json: it logs the whole body (token, password) at DEBUG.
        client = self._api.http_client
        try:
            response = await client.request(
                "POST",
                self._register_url,
                data=json.dumps(payload).encode("utf-8"),
                headers=Headers({b"Content-Type": [b"application/json"]}),
            )
            body = BytesIO()
            await make_deferred_yieldable(read_body_with_max_size(response, body, MAX_ANSWER))
        except Exception as e:
            logger.warning("web registration: %s unreachable: %s", self._register_url, e)
            return 0, {}
        return response.code, _json_object(body.getvalue())


def clean_name(raw: str) -> str:
    """A rough localpart for zxcvbn's user inputs when the chosen name was refused."""
    return raw.strip().lstrip("@").split(":", 1)[0].lower()


def password_score(password: str, user_inputs: list[str]) -> int:
    """zxcvbn's estimate, 0 to 4, of how hard the password is to guess."""
    # Here, not at the top: zxcvbn loads its dictionaries on import, which only
    # web registrations with a password score need.
    from zxcvbn import zxcvbn

    result = zxcvbn(password[:ZXCVBN_MAX], user_inputs=user_inputs)
    return int(result["score"])


def next_stage(flows: list[Any], completed: set[str]) -> str | None:
    """The next stage of the first flow that uses a registration token and that we
    can do (token and dummy stages only)."""
    for flow in flows:
        stages = flow.get("stages") if isinstance(flow, dict) else None
        if not isinstance(stages, list) or TOKEN_STAGE not in stages:
            continue
        if not set(stages) <= {TOKEN_STAGE, DUMMY_STAGE}:
            continue
        for stage in stages:
            if stage not in completed:
                return str(stage)
    return None


def _json_object(raw: bytes) -> dict[str, Any]:
    data = parse_json_object(raw)
    return {} if isinstance(data, JsonProblem) else data


def _refusal(code: int, answer: dict[str, Any]) -> NotRegistered:
    errcode = answer.get("errcode")
    if errcode in (TOKEN_USED, TOKEN_REVOKED, TOKEN_EXPIRED, TOKEN_DISABLED):
        return NotRegistered("token")
    if code == 429 or errcode in ("M_LIMIT_EXCEEDED", TOKEN_BUSY, outcomes.UNAVAILABLE):
        retry_ms = answer.get("retry_after_ms")
        seconds = int(retry_ms) // 1000 + 1 if isinstance(retry_ms, int) else 10
        return NotRegistered("busy", seconds)
    if errcode == "M_WEAK_PASSWORD":
        return NotRegistered("password")
    if isinstance(errcode, str) and errcode in USERNAME_ERRCODES:
        return NotRegistered("username", errcode=errcode)
    if code in (400, 403):
        logger.warning("web registration refused: %s %s", code, answer)
        return NotRegistered("refused")
    logger.warning("web registration failed: %s %s", code, answer)
    return NotRegistered("failed")
