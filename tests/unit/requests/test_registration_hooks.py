"""The registration callbacks without Synapse: the verdict handed from the username
callback to the spam check of the same request, and the refusals when the module
cannot check a registration (a database error, a ban check that fails)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from synapse.api.errors import SynapseError
from synapse.logging.context import ContextRequest, LoggingContext
from synapse.spam_checker_api import RegistrationBehaviour

from synapse_email_gate.config.policy_lists import BanEntry, PolicyLists
from synapse_email_gate.policy.live import LivePolicy
from synapse_email_gate.requests.client_address import AddressSeal
from synapse_email_gate.requests.registration import NO_VERDICT, RegistrationHooks, Verdicts
from synapse_email_gate.storage import tokens
from synapse_email_gate.storage.requests import RequestStore
from synapse_email_gate.storage.runner import Runner
from synapse_email_gate.storage.state import StateStore
from synapse_email_gate.storage.tokens import TokenStore
from tests.unit.fake_api import FakeApi

NOW = 1_800_000_000_000
TOKEN_STAGE = "m.login.registration_token"


class Api(FakeApi):
    server_name = "test.local"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.fail_with: Exception | None = None

    async def run_db_interaction(self, desc: str, func: Callable[..., Any], *args: Any) -> Any:
        if self.fail_with is not None:
            raise self.fail_with
        return await super().run_db_interaction(desc, func, *args)


def policy(*banned: str) -> LivePolicy:
    lists = PolicyLists(banned_usernames=tuple(BanEntry(b) for b in banned))
    return LivePolicy(lists, None, lambda: NOW)


def in_request(request_id: str, coro: Any) -> Any:
    """Run ``coro`` in a logging context of an HTTP request, as Synapse's /register does."""
    request = ContextRequest(
        request_id=request_id,
        ip_address="192.0.2.7",
        site_tag="test",
        requester=None,
        authenticated_entity=None,
        method="POST",
        url="/_matrix/client/v3/register",
        protocol="1.1",
        user_agent="test",
    )

    async def run() -> Any:
        with LoggingContext(name=request_id, server_name="test.local", request=request):
            return await coro

    return asyncio.run(run())


@pytest.fixture
def api(tmp_path: Path) -> Api:
    return Api(tmp_path / "hooks.db")


async def tables_ready() -> bool:
    return True


def hooks(api: Api, live: LivePolicy | None = None) -> RegistrationHooks:
    runner = Runner(api)  # type: ignore[arg-type]
    seal = AddressSeal(api, StateStore(runner))  # type: ignore[arg-type]
    stores = TokenStore(runner), RequestStore(runner)
    return RegistrationHooks(api, live or policy(), seal, *stores, tables_ready)  # type: ignore[arg-type]


def make_invite(api: Api, token: str, uses: int) -> None:
    new = tokens.NewToken(token, tokens.INVITE, uses, None, NOW, "@mod:test.local")
    asyncio.run(api.run_db_interaction("invite", tokens.create_invite_txn, new))


def spam_check(h: RegistrationHooks, username: str | None) -> Any:
    return h.check_registration_for_spam(None, username, [("ua", "192.0.2.7")], None)


def refusal(request_id: str, coro: Any) -> SynapseError:
    with pytest.raises(SynapseError) as raised:
        in_request(request_id, coro)
    return raised.value


def test_the_verdict_reaches_the_spam_check_of_the_same_request_only(api: Api) -> None:
    h = hooks(api)
    make_invite(api, "ONE", 1)
    auth = {TOKEN_STAGE: "ONE"}
    assert in_request("POST-1", h.get_username_for_registration(auth, {"username": "Amy"})) == "amy"
    assert in_request("POST-1", spam_check(h, "amy")) == RegistrationBehaviour.ALLOW
    # A second client: its claim is refused (the first one holds the only use) ...
    assert in_request("POST-2", h.get_username_for_registration(auth, {"username": "bob"})) == "bob"
    # ... a spam check of another request knows nothing of it ...
    assert in_request("POST-3", spam_check(h, "bob")) == RegistrationBehaviour.ALLOW
    # ... and the one of its own request answers the refusal with its errcode.
    error = refusal("POST-2", spam_check(h, "bob"))
    assert (error.code, error.errcode) == (403, "EMAIL_GATE_TOKEN_BUSY")
    assert error.error_dict(None)["retry_after_ms"] > 0


def test_a_database_error_is_a_retryable_refusal_not_a_500(api: Api) -> None:
    h = hooks(api)
    make_invite(api, "ONE", 1)
    api.fail_with = RuntimeError("the database is gone")
    auth = {TOKEN_STAGE: "ONE"}
    # Never raises (Synapse would answer 500 and the client could not retry cleanly).
    assert in_request("POST-1", h.get_username_for_registration(auth, {"username": "amy"})) is None
    error = refusal("POST-1", spam_check(h, "amy"))
    assert (error.code, error.errcode) == (503, "EMAIL_GATE_UNAVAILABLE")
    assert error.error_dict(None)["retry_after_ms"] == 5000
    assert error.headers == {"Retry-After": "5"}
    # Nothing was claimed: once the database is back the token works.
    api.fail_with = None
    assert in_request("POST-2", h.get_username_for_registration(auth, {"username": "amy"})) == "amy"
    assert in_request("POST-2", spam_check(h, "amy")) == RegistrationBehaviour.ALLOW


def test_a_failing_ban_check_refuses_retryably(api: Api) -> None:
    live = policy("^troll")
    h = hooks(api, live)

    class Broken:
        def username_ban(self, localpart: str) -> str | None:
            raise RuntimeError("broken pattern set")

    live.current = Broken()  # type: ignore[assignment]
    error = refusal("POST-1", spam_check(h, "amy"))
    assert (error.code, error.errcode) == (503, "EMAIL_GATE_UNAVAILABLE")


def test_banned_names_get_403_whatever_made_the_registration(api: Api) -> None:
    h = hooks(api, policy("^troll"))
    error = refusal("POST-1", spam_check(h, "trollface"))  # SSO, admin API, other tokens
    assert (error.code, error.errcode) == (403, "EMAIL_GATE_USERNAME_BANNED")
    make_invite(api, "ONE", 1)
    auth = {TOKEN_STAGE: "ONE"}
    in_request("POST-2", h.get_username_for_registration(auth, {"username": "troll"}))
    error = refusal("POST-2", spam_check(h, "troll"))
    assert (error.code, error.errcode) == (403, "EMAIL_GATE_USERNAME_BANNED")
    # The refused attempt claimed nothing: the one use is still free.
    in_request("POST-3", h.get_username_for_registration(auth, {"username": "amy"}))
    assert in_request("POST-3", spam_check(h, "amy")) == RegistrationBehaviour.ALLOW


def test_an_invite_token_needs_a_username(api: Api) -> None:
    h = hooks(api)
    make_invite(api, "ONE", 1)
    assert in_request("POST-1", h.get_username_for_registration({TOKEN_STAGE: "ONE"}, {})) is None
    error = refusal("POST-1", spam_check(h, None))
    assert (error.code, error.errcode) == (400, "M_MISSING_PARAM")


def test_tokens_that_are_not_ours_are_left_to_synapse(api: Api) -> None:
    h = hooks(api)
    auth = {TOKEN_STAGE: "SYNAPSE-MADE"}
    assert in_request("POST-1", h.get_username_for_registration(auth, {"username": "x"})) is None
    assert in_request("POST-1", spam_check(h, "x")) == RegistrationBehaviour.ALLOW


def test_verdicts_live_only_their_time() -> None:
    now = [0.0]
    verdicts = Verdicts(ttl_s=10, clock=lambda: now[0])
    verdicts.put("a", NO_VERDICT)
    now[0] = 5
    verdicts.put("b", NO_VERDICT)
    now[0] = 11
    assert verdicts.pop("a") is None  # expired
    verdicts.put("c", NO_VERDICT)  # drops what expired ("a" is gone already)
    assert len(verdicts) == 2
    now[0] = 16
    verdicts.put("d", NO_VERDICT)  # "b" expired at 15
    assert len(verdicts) == 2
    assert verdicts.pop("c") == NO_VERDICT
    assert verdicts.pop("c") is None  # read once


def test_synapses_measure_block_keeps_the_request_the_verdict_is_keyed_by(api: Api) -> None:
    """Synapse runs the spam check inside `Measure`, in a child logging context: the
    child inherits the request, so the spam check finds the username callback's verdict."""
    from synapse.util.metrics import Measure

    class Clock:
        def time(self) -> float:
            return 0.0

    h = hooks(api)
    make_invite(api, "ONE", 0)  # no use at all: every claim is refused

    async def register() -> Any:
        await h.get_username_for_registration({TOKEN_STAGE: "ONE"}, {"username": "amy"})
        with Measure(Clock(), name="spam", server_name="test.local"):  # type: ignore[arg-type]
            return await spam_check(h, "amy")

    error = refusal("POST-9", register())
    assert (error.code, error.errcode) == (403, "EMAIL_GATE_TOKEN_USED")
