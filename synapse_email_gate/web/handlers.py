"""The request page, its form post, the JSON API, the address check and static files.

The token landing page and the web registration are in finish.py.
"""

from __future__ import annotations

import functools
import json
import logging
import weakref
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import jinja2
from synapse.http.site import SynapseRequest
from synapse.module_api import ModuleApi

from synapse_email_gate.requests import outcomes
from synapse_email_gate.requests.challenge_gate import ChallengeGate
from synapse_email_gate.requests.outcomes import Outcome, Refusal
from synapse_email_gate.requests.refusal_tally import RefusalTally
from synapse_email_gate.requests.service import (
    MAX_FIELD_LENGTH,
    MAX_REASON_LENGTH,
    RequestInput,
    RequestService,
)
from synapse_email_gate.rules.ips import IpRules
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
    respond,
    respond_html,
    respond_json,
    set_cookie_header,
)
from synapse_email_gate.web.pages import Asset, PageKit

logger = logging.getLogger(__name__)

CONSENT_REQUIRED = "EMAIL_GATE_CONSENT_REQUIRED"
PAGE_TEMPLATES = [
    "email_gate_request.html",
    "email_gate_request_sent.html",
    "email_gate_refused.html",
    "email_gate_verify_page.html",
]
_STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
# A refusal with one of these re-renders the form with the challenge on it.
_CHALLENGE_ERRCODES = "EMAIL_GATE_CHALLENGE_"
_STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
_STATIC_CACHE = {"Cache-Control": "public, max-age=3600"}


class RequestHandlers:
    def __init__(
        self,
        api: ModuleApi,
        service: RequestService,
        templates: list[jinja2.Template],
        trusted_proxies: IpRules,
        challenges: ChallengeGate,
        kit: PageKit,
        tally: RefusalTally | None = None,
    ) -> None:
        self._api = api
        self._service = service
        self._tally = tally
        self._challenges = challenges
        self._kit = kit
        self._form, self._sent, self._refused, self._verify = templates
        self._trusted_proxies = trusted_proxies
        self._secure_cookies = kit.secure
        # The page posts from its own origin: the sign-up origin when there is one.
        self._own_origins = {origin_of(api.public_baseurl), origin_of(kit.page_url)}
        # API requests the early path read but could not settle: their input, so that
        # the body is parsed once (api_request_from_memory, then api_request).
        self._parsed: weakref.WeakKeyDictionary[
            SynapseRequest, tuple[RequestInput, Refusal | None]
        ] = weakref.WeakKeyDictionary()
        static_files = {
            path.name: Asset(_STATIC_TYPES[path.suffix], path.read_bytes(), _STATIC_CACHE)
            for path in _STATIC_DIR.iterdir()
            if path.suffix in _STATIC_TYPES
        }
        self._static = {**static_files, **kit.assets}

    def _page_vars(
        self, lang: str = "en", path: str = "/", challenge: bool | None = None
    ) -> dict[str, object]:
        return {
            **self._kit.variables(lang, path),
            "server_name": self._api.server_name,
            "base_path": self._kit.base_path,
            "approval": self._service.approval_required,
            "reason_min": self._service.reason_min_length,
            "challenge": self._challenges.enabled if challenge is None else challenge,
        }

    async def _challenge_refusal(self, fields: Mapping[str, object]) -> Refusal | None:
        """Checked before anything else; see requests/challenge_gate.py."""
        return await self._challenges.check(fields.get("challenge"), fields.get("nonce"))

    def client_ip(self, request: SynapseRequest) -> str:
        return request_client_ip(request, self._trusted_proxies)

    # --- the page --------------------------------------------------------

    def _consent_refusal(self, fields: Mapping[str, str]) -> Refusal | None:
        if not self._kit.config.branding.consent_required:
            return None
        if fields.get("consent") == "yes":
            return None
        return Refusal(
            400,
            CONSENT_REQUIRED,
            "Please read the rules and terms, then tick the box to accept them.",
            "consent",
        )

    async def page(self, request: SynapseRequest) -> None:
        csrf = new_csrf()
        lang = self._kit.language(request)
        # A client a blocklist sends to the challenge sees it even when it is off.
        challenge = await self._service.challenge_wanted(self.client_ip(request))
        self._render_form(request, 200, csrf, lang, set_cookie=True, challenge=challenge)

    def _render_form(
        self,
        request: SynapseRequest,
        status: int,
        csrf: str,
        lang: str,
        *,
        set_cookie: bool,
        values: RequestInput | None = None,
        refusal: Refusal | None = None,
        consent: bool = False,
        challenge: bool | None = None,
    ) -> None:
        html = self._form.render(
            **self._page_vars(lang, challenge=challenge),
            csrf=csrf,
            username=values.username if values else "",
            email=values.email if values else "",
            reason=values.reason if values else "",
            consent=consent,
            error=refusal,
        )
        headers = {}
        if set_cookie:
            headers["Set-Cookie"] = set_cookie_header(
                CSRF_COOKIE, csrf, self._kit.cookie_path, self._secure_cookies
            )
        respond_html(request, status, html, headers)

    async def form_post(self, request: SynapseRequest) -> None:
        body = read_body(request)
        if body is None or content_type(request) != "application/x-www-form-urlencoded":
            lang = self._kit.language(request)
            self._render_refused(request, outcomes.bad_param("The form could not be read."), lang)
            return
        fields = form_fields(body)
        lang = self._kit.language(request, fields.get("lang"))
        if not csrf_matches(request, fields):
            expired = Refusal(
                400,
                outcomes.CSRF,
                "Your session expired or cookies are blocked. Please submit the form again.",
            )
            self._render_form(request, 400, new_csrf(), lang, set_cookie=True, refusal=expired)
            return
        unsolved = await self._challenge_refusal(fields)
        form_input, refusal = _read_input(
            fields.get("username"),
            fields.get("email"),
            fields.get("reason"),
            lang,
            fields.get("challenge"),
            fields.get("nonce"),
        )
        refusal = refusal or self._consent_refusal(fields)
        outcome = (
            unsolved or refusal or await self._service.submit(form_input, self.client_ip(request))
        )
        if isinstance(outcome, Refusal) and self._tally is not None:
            self._tally.count(outcome.errcode)
        if isinstance(outcome, Refusal) and (outcome.field is not None or outcome is unsolved):
            self._render_form(
                request,
                outcome.status,
                csrf_cookie(request),
                lang,
                set_cookie=False,
                values=form_input,
                refusal=outcome,
                consent=fields.get("consent") == "yes",
                challenge=True if outcome.errcode.startswith(_CHALLENGE_ERRCODES) else None,
            )
        elif isinstance(outcome, Refusal):
            self._render_refused(request, outcome, lang)
        else:
            html = self._sent.render(**self._page_vars(lang))
            respond_html(request, outcome.status, html)

    def _render_refused(self, request: SynapseRequest, refusal: Refusal, lang: str) -> None:
        headers = {}
        if refusal.retry_after_s is not None:
            headers["Retry-After"] = str(refusal.retry_after_s)
        html = self._refused.render(**self._page_vars(lang), error=refusal)
        respond_html(request, refusal.status, html, headers)

    # --- the JSON API ----------------------------------------------------

    def api_request_from_memory(self, request: SynapseRequest) -> bool:
        """POST api/request answered at once, before its body is read, when this
        process's memory settles it (RequestService.refusal_from_memory: an IP ban,
        a bucket known to be empty). Called synchronously by the resource, so a flood
        of such requests costs no coroutine, no Deferred and no JSON parsing. False:
        not settled here; the request goes the whole way (api_request)."""
        if self._foreign_origin(request):
            return False
        ip = self.client_ip(request)
        refusal = self._service.refusal_from_memory(ip)
        if refusal is None and not self._challenges.enabled:
            parsed = self._api_input(request)
            if isinstance(parsed, Refusal):
                refusal = parsed
            else:
                refusal = parsed[1] or self._service.refusal_before_lookups(parsed[0])
                if refusal is None:
                    self._parsed[request] = parsed
        if refusal is None:
            return False
        if self._tally is not None:
            self._tally.count(refusal.errcode)
        _answer_refusal(request, refusal)
        return True

    async def api_request(self, request: SynapseRequest) -> None:
        outcome = await self._api_outcome(request)
        if isinstance(outcome, Refusal):
            if self._tally is not None:
                self._tally.count(outcome.errcode)
            _answer_refusal(request, outcome)
        else:
            respond(request, outcome.status, "application/json", _ACCEPTED_BODY)

    def _foreign_origin(self, request: SynapseRequest) -> bool:
        # Synapse answers every CORS preflight with "*": without this, any website
        # could make its visitors' browsers send requests from their addresses.
        origin = request.getHeader("Origin")
        return origin is not None and origin not in self._own_origins

    async def _api_outcome(self, request: SynapseRequest) -> Outcome:
        if self._foreign_origin(request):
            return Refusal(403, outcomes.ORIGIN, "Requests from other websites are not accepted.")
        parsed = self._parsed.pop(request, None) or self._api_input(request)
        if isinstance(parsed, Refusal):
            return parsed
        form_input, refusal = parsed
        unsolved = await self._challenges.check(form_input.challenge, form_input.nonce)
        if unsolved is not None:
            return unsolved
        return refusal or await self._service.submit(form_input, self.client_ip(request))

    def _api_input(self, request: SynapseRequest) -> Refusal | tuple[RequestInput, Refusal | None]:
        """The JSON body read as a request, and the problem of its fields if any; or the
        problem of the body itself (too large, not JSON, not an object)."""
        body = read_body(request)
        if body is None:
            return Refusal(413, "M_TOO_LARGE", "The request body is too large.")
        if content_type(request) != "application/json":
            return Refusal(400, "M_NOT_JSON", "Send the request as application/json.")
        data = parse_json_object(body)
        if isinstance(data, JsonProblem):
            return Refusal(400, data.errcode, data.message)
        return _read_input(
            data.get("username"),
            data.get("email"),
            data.get("reason"),
            self._kit.api_language(request, data.get("lang")),
            data.get("challenge"),
            data.get("nonce"),
        )

    # --- approval mode: the address check ------------------------------------

    async def verify_page(self, request: SynapseRequest) -> None:
        """The link in the mail shows a button: mail scanners that open links confirm nothing."""
        code = (query_param(request, "code") or "").strip()[:64]
        csrf = new_csrf()
        lang = self._kit.language(request)
        html = self._verify.render(
            **self._page_vars(lang, "/verify"), code=code, csrf=csrf, state="confirm"
        )
        cookie_header = set_cookie_header(
            CSRF_COOKIE, csrf, self._kit.cookie_path, self._secure_cookies
        )
        respond_html(request, 200, html, {"Set-Cookie": cookie_header})

    async def verify_post(self, request: SynapseRequest) -> None:
        body = read_body(request) or b""
        fields = form_fields(body)
        lang = self._kit.language(request, fields.get("lang"))
        if not csrf_matches(request, fields):
            html = self._verify.render(
                **self._page_vars(lang, "/verify"), state="expired", code="", csrf=""
            )
            respond_html(request, 400, html)
            return
        confirmed = await self._service.verify_address(fields.get("code", "")[:64])
        state = "confirmed" if confirmed else "invalid"
        html = self._verify.render(
            **self._page_vars(lang, "/verify"), state=state, code="", csrf=""
        )
        respond_html(request, 200 if confirmed else 404, html)

    async def challenge(self, request: SynapseRequest) -> None:
        """GET api/challenge: a fresh challenge for the page or a script."""
        if not self._challenges.available:
            respond_json(
                request,
                404,
                {"errcode": "M_NOT_FOUND", "error": "The challenge is off on this server."},
            )
            return
        issued = await self._challenges.issue()
        now = self._api.get_current_time_msec()
        respond_json(
            request,
            200,
            {
                "challenge": issued.challenge,
                "difficulty": issued.difficulty,
                "expires_ms": issued.expires_ms,
                "expires_in_ms": issued.expires_ms - now,
                "algorithm": "sha256-leading-zero-bits",
            },
        )

    async def static(self, request: SynapseRequest) -> None:
        name = (request.postpath or [b""])[-1].decode("utf-8", errors="replace")
        asset = self._static.get(name)
        if asset is None:
            respond_json(request, 404, {"errcode": "M_NOT_FOUND", "error": "No such file"})
            return
        respond(request, 200, asset.content_type, asset.body, asset.headers)


_ACCEPTED_BODY = b'{"status":"accepted"}'


@functools.lru_cache(maxsize=1024)
def _refusal_answer(refusal: Refusal) -> tuple[bytes, dict[str, str] | None]:
    """A refusal's JSON body and extra headers, encoded once per distinct refusal
    (refusals are immutable, and a flood repeats a few of them)."""
    body = json.dumps(refusal.json(), separators=(",", ":")).encode("utf-8")
    if refusal.retry_after_s is None:
        return body, None
    return body, {"Retry-After": str(refusal.retry_after_s)}


def _answer_refusal(request: SynapseRequest, refusal: Refusal) -> None:
    body, headers = _refusal_answer(refusal)
    respond(request, refusal.status, "application/json", body, headers)


def _read_input(
    username: object,
    email: object,
    reason: object = None,
    lang: str = "en",
    challenge: object = None,
    nonce: object = None,
) -> tuple[RequestInput, Refusal | None]:
    """Type and length checks shared by the form and the API."""
    form_input = RequestInput(
        username=username if isinstance(username, str) else "",
        email=email if isinstance(email, str) else "",
        lang=lang,
        reason=reason if isinstance(reason, str) else "",
        challenge=challenge,
        nonce=nonce,
    )
    for name, value in (("username", username), ("email", email)):
        if value is None or value == "":
            return form_input, outcomes.missing_param(name)
        if not isinstance(value, str):
            return form_input, outcomes.bad_param(f"'{name}' must be a string.", name)
        if len(value) > MAX_FIELD_LENGTH:
            return form_input, outcomes.bad_param(f"'{name}' is too long.", name)
    if reason is not None and not isinstance(reason, str):
        return form_input, outcomes.bad_param("'reason' must be a string.", "reason")
    if len(form_input.reason) > MAX_REASON_LENGTH:
        return form_input, outcomes.bad_param("'reason' is too long.", "reason")
    return form_input, None


def origin_of(url: str) -> str:
    """`https://matrix.example.org/` -> `https://matrix.example.org` (scheme://host[:port])."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
