"""Synapse's registration callbacks.

- get_username_for_registration forces the username a token of ours is bound
  to. Synapse turns any exception raised there into a 500 and leaves the token
  pending, so it never raises: on an internal error it logs and lets the
  registration go on unbound, and the spam check below still applies.
- check_registration_for_spam refuses a banned username whatever token, admin
  call or SSO login created it.
- on_user_registration links the new account to its request. An exception
  there would answer 500 after the account exists, so it is guarded too.
  Then the `after_registration` actions (after_registration.py) start in the
  background.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from synapse.module_api import ModuleApi
from synapse.spam_checker_api import RegistrationBehaviour

from synapse_email_gate import metrics, store
from synapse_email_gate.live_policy import LivePolicy

logger = logging.getLogger(__name__)

TOKEN_STAGE = "m.login.registration_token"  # noqa: S105 - a stage name


class RegistrationHooks:
    def __init__(
        self,
        api: ModuleApi,
        policy: LivePolicy,
        after: Callable[[str, str], Awaitable[None]] | None = None,
    ) -> None:
        self._api = api
        self._policy = policy
        self._after = after
        # Set by the module: waits until its tables exist (False if they never will).
        self.tables_ready: Callable[[], Awaitable[bool]] | None = None

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

    async def get_username_for_registration(
        self, uia_results: dict[str, Any], params: dict[str, Any]
    ) -> str | None:
        token = uia_results.get(TOKEN_STAGE)
        if not isinstance(token, str):
            return None
        try:
            localpart = await self._api.run_db_interaction(
                "email_gate_token_username",
                store.localpart_for_token_txn,
                token,
                self._api.get_current_time_msec(),
            )
        except Exception:
            logger.exception("could not look up the username bound to a token")
            return None
        if localpart is not None:
            asked = params.get("username")
            if asked not in (None, localpart):
                logger.info("registration: token is bound to %r; client asked %r", localpart, asked)
        return localpart

    async def check_registration_for_spam(
        self,
        email_threepid: dict[str, Any] | None,
        username: str | None,
        request_info: Any,
        auth_provider_id: str | None = None,
    ) -> RegistrationBehaviour:
        if username is None:
            return RegistrationBehaviour.ALLOW
        try:
            pattern = self._policy.current.username_ban(username)
        except Exception:
            logger.exception("username ban check failed; refusing to be safe")
            return RegistrationBehaviour.DENY
        if pattern is not None:
            logger.info("registration refused: reason=username_banned localpart=%r", username)
            return RegistrationBehaviour.DENY
        return RegistrationBehaviour.ALLOW

    async def on_user_registration(self, user_id: str) -> None:
        try:
            if self.tables_ready is not None and not await self.tables_ready():
                return
            localpart = user_id[1:].split(":", 1)[0]
            request_id = await self._api.run_db_interaction(
                "email_gate_link_account",
                store.link_account_txn,
                localpart,
                user_id,
                self._api.get_current_time_msec(),
            )
            if request_id is not None:
                logger.info("request %s: account %s created", request_id, user_id)
                metrics.token_used(self._api.server_name)
                if self._after is not None:
                    self._api.run_as_background_process(
                        "email_gate_after_registration", self._after, user_id, request_id
                    )
        except Exception:
            logger.exception("could not link %s to its request", user_id)
