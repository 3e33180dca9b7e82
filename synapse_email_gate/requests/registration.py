"""Synapse's registration callbacks: where a token of the module is spent.

One `POST /register` that completes the interactive auth runs, in order and
on one process: `get_username_for_registration` → Synapse's registration rate
limit → `check_registration_for_spam` → Synapse's username check → the
account → `on_user_registration` → Synapse counts the token stage complete.

- get_username_for_registration claims one use of a token of ours for the
  localpart it makes (storage.tokens.claim_txn), and returns that localpart.
  Synapse turns any exception raised there into a 500, so it never raises: it
  records its verdict (claimed, refused and why, or none: it could not tell) for the
  spam check of the same HTTP request, keyed by Synapse's request id, which
  both callbacks see (Synapse's `Measure` runs the spam check in a child
  logging context that inherits the request).
- check_registration_for_spam answers that verdict: a refusal raises a
  `SynapseError` with a documented errcode (`DENY` would answer a misleading
  `429 "Rate limited"`); no verdict is a retryable `503`, and the
  token stays usable because no claim was written. Registrations without a
  token of ours (other tokens, single sign-on, the admin API) are checked
  against `banned_usernames` only.
- on_user_registration confirms the claim of the new account's localpart,
  links the account to its token (and request), and expires Synapse's row of
  a token whose uses are all made. An exception there would answer 500 after
  the account exists, so it is caught and logged. Then the
  `after_registration` actions (requests/after_registration.py) start in the
  background.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from synapse.api.errors import Codes, SynapseError
from synapse.logging.context import current_context
from synapse.module_api import ModuleApi
from synapse.spam_checker_api import RegistrationBehaviour

from synapse_email_gate import metrics
from synapse_email_gate.policy.live import LivePolicy
from synapse_email_gate.requests import outcomes
from synapse_email_gate.requests.client_address import PARAM as CLIENT_ADDRESS_PARAM
from synapse_email_gate.requests.client_address import AddressSeal
from synapse_email_gate.storage import tokens
from synapse_email_gate.storage.requests import RequestStore
from synapse_email_gate.storage.tokens import TokenStore

logger = logging.getLogger(__name__)

TOKEN_STAGE = "m.login.registration_token"  # noqa: S105 - a stage name

# Error codes of registrations the module refuses (docs/api.md#registering).
TOKEN_USED = "EMAIL_GATE_TOKEN_USED"  # noqa: S105 - an errcode
TOKEN_BUSY = "EMAIL_GATE_TOKEN_BUSY"  # noqa: S105
TOKEN_REVOKED = "EMAIL_GATE_TOKEN_REVOKED"  # noqa: S105
TOKEN_EXPIRED = "EMAIL_GATE_TOKEN_EXPIRED"  # noqa: S105
TOKEN_DISABLED = "EMAIL_GATE_TOKEN_DISABLED"  # noqa: S105
RETRY_AFTER_MS = 5_000
_MAX_VERDICTS = 100_000

_REFUSALS: dict[str, tuple[int, str, str]] = {
    tokens.USED: (
        403,
        TOKEN_USED,
        "This registration token has been used: it makes no more accounts.",
    ),
    tokens.BUSY: (
        403,
        TOKEN_BUSY,
        "Every use left of this registration token is taken by a registration under way. "
        "If that one fails, the token can be used again in a minute.",
    ),
    tokens.REVOKED: (
        403,
        TOKEN_REVOKED,
        "This registration token was withdrawn and no longer works.",
    ),
    tokens.EXPIRED: (403, TOKEN_EXPIRED, "This registration token has expired."),
    tokens.DISABLED: (
        403,
        TOKEN_DISABLED,
        "This registration token is disabled for now: ask whoever gave it to you.",
    ),
    tokens.USERNAME_BANNED: (
        403,
        outcomes.USERNAME_BANNED,
        "This username is not allowed on this server.",
    ),
    tokens.USERNAME_TAKEN: (
        400,
        Codes.USER_IN_USE,
        "This username is taken, or being registered by someone else right now.",
    ),
    tokens.USERNAME_MISSING: (
        400,
        Codes.MISSING_PARAM,
        "A username is required to register with this token.",
    ),
    tokens.USERNAME_INVALID: (
        400,
        Codes.INVALID_USERNAME,
        "User ID can only contain characters a-z, 0-9, or '=_-./+'",
    ),
}


@attrs.frozen
class NoVerdict:
    """The claim could not be made or refused (a database error, tables not ready)."""


NO_VERDICT = NoVerdict()
Verdict = tokens.ClaimResult | NoVerdict


class Verdicts:
    """What get_username_for_registration found, until the spam check of the same
    request reads it. Entries live `ttl_s` at most, so the memory stays small
    whatever happens between the two callbacks."""

    def __init__(self, ttl_s: float = 120.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._items: dict[str, tuple[float, Verdict]] = {}

    def put(self, key: str, verdict: Verdict) -> None:
        now = self._clock()
        # Insertion order is expiry order: drop expired entries from the front.
        while self._items:
            oldest = next(iter(self._items))
            if self._items[oldest][0] > now and len(self._items) < _MAX_VERDICTS:
                break
            del self._items[oldest]
        self._items.pop(key, None)
        self._items[key] = (now + self._ttl_s, verdict)

    def pop(self, key: str) -> Verdict | None:
        item = self._items.pop(key, None)
        if item is None or item[0] < self._clock():
            return None
        return item[1]

    def __len__(self) -> int:
        return len(self._items)


def http_request_key(localpart: str | None) -> str:
    """The HTTP request both callbacks run in (the localpart only if there is none)."""
    http_request = getattr(current_context(), "request", None)
    request_id = getattr(http_request, "request_id", None)
    return f"request:{request_id}" if request_id else f"localpart:{localpart}"


def client_ip() -> str | None:
    """The address Synapse sees for the current HTTP request."""
    http_request = getattr(current_context(), "request", None)
    ip = getattr(http_request, "ip_address", None)
    return ip if isinstance(ip, str) else None


class RegistrationHooks:
    def __init__(
        self,
        api: ModuleApi,
        policy: LivePolicy,
        seal: AddressSeal,
        tokens: TokenStore,
        requests: RequestStore,
        tables_ready: Callable[[], Awaitable[bool]],
        after: Callable[[str, str | None, str], Awaitable[None]] | None = None,
        made: Callable[[str], None] | None = None,
    ) -> None:
        """`tables_ready` waits until the module's tables exist (False if they never will);
        `made` hears of each account the gate made on this process (probation)."""
        self._api = api
        self._policy = policy
        self._seal = seal
        self._tokens = tokens
        self._requests = requests
        self._tables_ready = tables_ready
        self._after = after
        self._made = made
        self._verdicts = Verdicts()

    def register(self) -> None:
        self._api.register_password_auth_provider_callbacks(
            get_username_for_registration=self.get_username_for_registration,
        )
        self._api.register_spam_checker_callbacks(
            check_registration_for_spam=self.check_registration_for_spam,
        )
        self._api.register_account_validity_callbacks(
            on_user_registration=self.on_user_registration,
        )

    def _username_banned(self, localpart: str) -> bool:
        return self._policy.current.username_ban(localpart) is not None

    async def get_username_for_registration(
        self, uia_results: dict[str, Any], params: dict[str, Any]
    ) -> str | None:
        token = uia_results.get(TOKEN_STAGE)
        if not isinstance(token, str):
            return None
        asked = params.get("username")
        asked = asked if isinstance(asked, str) else None
        try:
            if not await self._tables_ready():
                raise RuntimeError("the module's tables are not ready")
            sealed = await self._seal.open(token, params.get(CLIENT_ADDRESS_PARAM))
            ip, via = (sealed, "web") if sealed is not None else (client_ip(), "client")
            claim = await self._tokens.claim(
                token, asked, ip, via, self._api.get_current_time_msec(), self._username_banned
            )
        except Exception:
            # Never raise here (Synapse would answer 500); the spam check refuses.
            logger.exception("registration: no verdict on a token; refused, retryable")
            self._verdicts.put(http_request_key(asked), NO_VERDICT)
            return None
        if claim.outcome == tokens.NOT_OURS:
            return None
        self._verdicts.put(http_request_key(claim.localpart or asked), claim)
        if claim.outcome == tokens.CLAIMED:
            if asked not in (None, claim.localpart):
                logger.info(
                    "registration: %s token makes %r; the client asked for %r",
                    claim.kind,
                    claim.localpart,
                    asked,
                )
            logger.info("registration: %s token use claimed for %r", claim.kind, claim.localpart)
        else:
            logger.info(
                "registration refused: reason=token_%s kind=%s localpart=%r",
                claim.outcome,
                claim.kind,
                claim.localpart,
            )
        return claim.localpart

    async def check_registration_for_spam(
        self,
        email_threepid: dict[str, Any] | None,
        username: str | None,
        request_info: Any,
        auth_provider_id: str | None = None,
    ) -> RegistrationBehaviour:
        verdict = self._verdicts.pop(http_request_key(username))
        if isinstance(verdict, NoVerdict):
            raise self._unavailable("token")
        if verdict is not None and verdict.outcome != tokens.CLAIMED:
            status, errcode, message = _REFUSALS[verdict.outcome]
            metrics.registration_refused(self._api.server_name, f"token_{verdict.outcome}")
            extra = {"retry_after_ms": verdict.retry_after_ms} if verdict.retry_after_ms else None
            raise SynapseError(status, message, errcode, additional_fields=extra)
        if username is None:
            return RegistrationBehaviour.ALLOW
        try:
            pattern = self._policy.current.username_ban(username)
        except Exception:
            logger.exception("username ban check failed; refused, retryable")
            raise self._unavailable("ban_check") from None
        if pattern is not None:
            logger.info("registration refused: reason=username_banned localpart=%r", username)
            metrics.registration_refused(self._api.server_name, "username_banned")
            status, errcode, message = _REFUSALS[tokens.USERNAME_BANNED]
            raise SynapseError(status, message, errcode)
        return RegistrationBehaviour.ALLOW

    def _unavailable(self, what: str) -> SynapseError:
        metrics.registration_refused(self._api.server_name, f"unavailable_{what}")
        return SynapseError(
            503,
            "Registration is not possible at the moment; please try again in a few seconds.",
            outcomes.UNAVAILABLE,
            additional_fields={"retry_after_ms": RETRY_AFTER_MS},
            headers={"Retry-After": str(RETRY_AFTER_MS // 1000)},
        )

    async def on_user_registration(self, user_id: str) -> None:
        try:
            if not await self._tables_ready():
                return
            localpart = user_id[1:].split(":", 1)[0]
            confirmed = await self._requests.registered(
                localpart, user_id, self._api.get_current_time_msec()
            )
            if confirmed is None:
                return
            logger.info(
                "account %s made with a %s token%s%s",
                user_id,
                confirmed.kind,
                f" (request {confirmed.request_id})" if confirmed.request_id else "",
                "; the token is used up" if confirmed.used_up else "",
            )
            metrics.token_used(self._api.server_name, confirmed.kind)
            if self._made is not None:
                self._made(user_id)
            if self._after is not None:
                self._api.run_as_background_process(
                    "email_gate_after_registration",
                    self._after,
                    user_id,
                    confirmed.request_id,
                    confirmed.kind,
                )
        except Exception:
            logger.exception("could not record the use of the token that made %s", user_id)
