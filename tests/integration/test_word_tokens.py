"""Word tokens against a real Synapse: made through the admin API and the CLI,
valid for Synapse's registration-token stage and validity endpoint, and working
on the invite link, where a person may type them with capitals and spaces."""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

import pytest

from synapse_email_gate.rules.words import wordlist
from tests.harness import http
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import register, registered, token_valid
from tests.integration.test_cli import cli, ok
from tests.integration.test_invite_links import PASSWORD, nio_login, open_link, post_form

WORD_TOKEN = re.compile(r"^[a-z]{3,8}(-[a-z]{3,8}){3,6}$")


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "moderators": ["@wordmod:test.local"],
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
        "password": {"min_length": 10},
    }


@pytest.fixture(scope="module")
def mod_token(synapse: SynapseServer) -> str:
    return synapse.register_user("wordmod", "wordmod-password-1")


def create(synapse: SynapseServer, access_token: str, **body: Any) -> http.Response:
    return http.post(
        synapse.gate_url + "admin/tokens", json=body, headers=synapse.auth_headers(access_token)
    )


def words_of(token: str) -> list[str]:
    assert WORD_TOKEN.match(token), token
    parts = token.split("-")
    assert all(part in wordlist() for part in parts), token
    return parts


def test_a_word_token_is_made_and_registers_in_a_client(
    synapse: SynapseServer, mod_token: str
) -> None:
    made = create(synapse, mod_token, style="words", uses_allowed=1)
    assert made.status == 201, made
    token = made.json()["token"]
    assert len(words_of(token)) == 5  # the default
    assert made.json()["kind"] == "invite" and made.json()["state"] == "active"
    assert made.json()["link"] == synapse.gate_url + f"register?token={token}"
    assert token_valid(synapse.base_url, token)
    assert registered(register(synapse, "wordclient", token))
    assert not token_valid(synapse.base_url, token)

    seven = create(synapse, mod_token, style="words", words=7)
    assert seven.status == 201 and len(words_of(seven.json()["token"])) == 7
    four = create(synapse, mod_token, style="words", words=4)
    assert four.status == 201 and len(words_of(four.json()["token"])) == 4


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"style": "words", "words": 3}, "words must be an integer from 4 to 7"),
        ({"style": "words", "words": 8}, "words must be an integer from 4 to 7"),
        ({"style": "words", "words": "5"}, "words must be an integer from 4 to 7"),
        ({"style": "words", "words": True}, "words must be an integer from 4 to 7"),
        ({"style": "words", "length": 20}, "give words only"),
        ({"style": "words", "token": "maple-river-copper-seven"}, "give words only"),
        ({"words": 5}, 'words goes with "style": "words"'),
        ({"style": "poem"}, "style must be one of random, words"),
    ],
)
def test_bad_word_token_requests_are_refused_with_the_reason(
    synapse: SynapseServer, mod_token: str, body: dict[str, Any], message: str
) -> None:
    refused = create(synapse, mod_token, **body)
    assert refused.status == 400, refused
    assert refused.json()["errcode"] == "M_INVALID_PARAM"
    assert message in refused.json()["error"], refused.json()


def test_the_invite_link_of_a_word_token_registers_on_the_web_even_typed_loosely(
    synapse: SynapseServer, mod_token: str
) -> None:
    made = create(synapse, mod_token, style="words", words=4, uses_allowed=2)
    assert made.status == 201, made
    token = made.json()["token"]
    csrf, cookies, page = open_link(made.json()["link"])
    assert page.status == 200 and 'name="username"' in page.text, page.text
    assert post_form(synapse, token, "wordweb", (csrf, cookies)).status == 200
    assert nio_login(synapse, "wordweb", PASSWORD) == "@wordweb:test.local"

    # Read aloud and typed: capitals, spaces for dashes. The page finds the token
    # and its form carries the token itself, so Synapse gets it verbatim.
    typed = "  " + " ".join(word.capitalize() for word in token.split("-")) + " "
    query = urllib.parse.urlencode({"token": typed})
    csrf, cookies, page = open_link(synapse.gate_url + "register?" + query)
    assert page.status == 200 and 'name="username"' in page.text, page.text
    assert f'name="token" value="{token}"' in page.text
    done = post_form(synapse, typed.upper().replace(" ", "_"), "wordtyped", (csrf, cookies))
    assert done.status == 200 and "@wordtyped:test.local" in done.text, done.text
    assert nio_login(synapse, "wordtyped", PASSWORD) == "@wordtyped:test.local"
    assert not token_valid(synapse.base_url, token)


def test_loose_typing_never_reaches_another_token(synapse: SynapseServer, mod_token: str) -> None:
    # A random token is never rewritten: lowercased it is simply unknown.
    made = create(synapse, mod_token, uses_allowed=1)
    assert made.status == 201, made
    token = made.json()["token"]
    assert http.get(synapse.gate_url + "register?token=" + token.lower()).status == 404
    # Words that make no token stay unknown too.
    loose = urllib.parse.urlencode({"token": "Abandon Ability Able About"})
    assert http.get(synapse.gate_url + "register?" + loose).status == 404


def test_the_cli_makes_word_tokens(synapse: SynapseServer, mod_token: str) -> None:
    default = ok(cli(synapse, mod_token, "tokens", "create", "--words", "-q"))
    assert len(words_of(default.strip())) == 5
    six = ok(cli(synapse, mod_token, "tokens", "create", "--words", "6", "--count", "2", "-q"))
    tokens = six.split()
    assert len(tokens) == 2 and all(len(words_of(t)) == 6 for t in tokens)
    assert all(token_valid(synapse.base_url, t) for t in tokens)
    refused = cli(synapse, mod_token, "tokens", "create", "--words", "3")
    assert refused.returncode == 1 and "from 4 to 7" in refused.stderr, refused
    both = cli(synapse, mod_token, "tokens", "create", "--words", "5", "--length", "20")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr, both
