"""The opt-in starter list of abusive username patterns: each pattern bans what it
targets, and none bans an ordinary name (first names and surnames of every locale
Faker knows, folded to ASCII as a localpart is, plus common handles and the
"Scunthorpe" cases a careless pattern would catch)."""

from __future__ import annotations

import functools
import importlib
import re
import unicodedata

import pytest
from faker.config import AVAILABLE_LOCALES
from synapse.module_api.errors import ConfigError

from synapse_email_gate.config.policy_lists import PolicyLists
from synapse_email_gate.config.reader import Section
from synapse_email_gate.config.starter_list import starter_username_patterns
from synapse_email_gate.policy.compiled import Policy
from synapse_email_gate.rules.usernames import LOOKALIKE_MODES, UsernamePatterns

NOW = 1_800_000_000_000

CRYPTO_SUPPORT = (
    "(crypto|bitcoin|btc|binance|coinbase|metamask|wallet)[._=-]?(support|recovery|helpdesk|help)"
)
# Every pattern of the list, with names it must ban. A pattern added to the list
# without examples here fails test_every_pattern_has_targets.
TARGETS = {
    "^(admin|administrator|sysadmin|root|superuser|owner)$": ["admin", "Root", "sysadmin"],
    "^(mod|mods|moderator|moderators|staff|support|helpdesk|security|official|system)$": [
        "mod",
        "moderators",
        "support",
        "official",
    ],
    "^(abuse|postmaster|hostmaster|webmaster|noreply|no-reply|mailer-daemon)$": [
        "abuse",
        "no-reply",
        "postmaster",
    ],
    "^(matrix|synapse)([._=-]?(admin|support|team|staff|official|bot|notices))?$": [
        "matrix",
        "synapse-admin",
        "matrix.support",
        "matrixteam",
    ],
    "(admin|support|staff|moderator)[._=-]?(team|official)": [
        "supportteam",
        "admin.official",
        "the_staff_team",
    ],
    "hitler": ["hitler", "adolfhitler88", "h1tl3r"],
    "sieg[._=-]?heil": ["siegheil", "sieg_heil"],
    "neo[._=-]?nazi": ["neonazi", "neo-nazi_1"],
    "nazi(s|sm)([0-9._=/+-]|$)": ["nazis", "nazism", "ilovenazis"],
    "nazi[._=/+-]*(88|1488|14|power|pride|forever|lover|fan)": [
        "nazi88",
        "nazi_pride",
        "nazilover",
    ],
    "(^|[^0-9])1488([^0-9]|$)": ["1488", "bob1488", "x_1488_x"],
    "kkk": ["kkk", "kkkmember"],
    "n[i1]gg([e3]r|[a4@]h?|uh|[a4]z)": ["nigger", "n1gg3r", "niggaz"],
    "f[a4]gg[o0]ts?": ["faggot", "f4gg0ts"],
    "pa?edo(ph|f)[i1]l": ["pedophile", "paedophilia", "pedofil"],
    "(^|[^e])rap[i1]st": ["rapist", "the_rapist", "rap1st"],
    "k[i1]ll[._=-]?(yo)?urself": ["killyourself", "kill_urself"],
    "^kys$": ["kys"],
    "v[i1][a4]gr[a4]": ["viagra", "cheapv1agra"],
    CRYPTO_SUPPORT: [
        "metamask-support",
        "binancehelp",
        "crypto.recovery",
    ],
}

# Handles people use and names a careless pattern catches ("Scunthorpe" cases):
# each line says which pattern it guards against.
ORDINARY_HANDLES = [
    "alex",
    "anna.smith",
    "maria1990",
    "john_doe",
    "j.garcia",
    "li.wei",
    "nguyen.van.an",
    "mohammed",
    "olga-petrova",
    "kim=jisoo",
    "dev/ops",
    "a+b",
    "scunthorpe",  # the classic
    "essex",
    "therapist",  # rapist
    "grape",
    "specialist",
    "cialis.fan",  # viagra is banned, not every drug name
    "yamashita",
    "kinoshita",
    "pornchai",
    "porntip",
    "niggli",  # Swiss surname
    "niggemann",  # German surname
    "nazir",
    "nazim",
    "nazia",
    "nazi",  # a Persian given name
    "nazira",
    "fagerstrom",
    "fagan",
    "fagottist",
    "torpedo",
    "pedro",
    "admiral",
    "administration.office",
    "siteadmin",
    "rootbeer",
    "groot",
    "modesto",
    "moderna",
    "staffordshire",
    "supporter",
    "security.researcher",
    "systemd-fan",
    "matrixfan",
    "synapses",
    "element",
    "abuser",  # abuse is only the exact role name
    "kirk",
    "skkiller",
    "14888",
    "21488",
    "heiliger",
    "siegfried",
    "killian",
    "skyscraper",
]


def to_localpart(name: str) -> str | None:
    """A person's name as they would type it as a localpart: accents dropped,
    lowercase, spaces and apostrophes removed; None when it is not ASCII then."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    folded = re.sub("[\\s'\u2019]", "", folded.lower())
    return folded if re.fullmatch(r"[a-z0-9._=/+-]+", folded) else None


@functools.cache
def faker_names() -> frozenset[str]:
    """First names and surnames of every locale Faker has, as localparts."""
    found: set[str] = set()
    for locale in AVAILABLE_LOCALES:
        try:
            provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        except ImportError:
            continue
        for attribute in dir(provider):
            if attribute.startswith("_") or not (
                "first_name" in attribute or "last_name" in attribute
            ):
                continue
            names = getattr(provider, attribute)
            if isinstance(names, tuple | list | dict):
                found.update(n for n in names if isinstance(n, str))
    return frozenset(p for p in map(to_localpart, found) if p is not None)


def test_the_corpus_is_large_and_many_languages() -> None:
    names = faker_names()
    assert len(names) > 20_000
    # A few from far apart: Spanish, Vietnamese, Polish, Turkish, Japanese (romanised),
    # Chinese, Hindi, Igbo, Greek, Maori.
    assert {
        "maria",
        "nguyen",
        "kowalski",
        "yilmaz",
        "hiroshi",
        "wang",
        "kumar",
        "okafor",
        "dimitrios",
        "aroha",
    } <= names


def starter(lookalikes: str) -> UsernamePatterns:
    return UsernamePatterns.compile(starter_username_patterns(), lookalikes)


@pytest.mark.parametrize("lookalikes", LOOKALIKE_MODES)
def test_no_ordinary_name_is_banned(lookalikes: str) -> None:
    patterns = starter(lookalikes)
    banned = {name: patterns.first_match(name) for name in sorted(faker_names())}
    assert {name: why for name, why in banned.items() if why is not None} == {}


@pytest.mark.parametrize("lookalikes", LOOKALIKE_MODES)
def test_no_ordinary_handle_is_banned(lookalikes: str) -> None:
    patterns = starter(lookalikes)
    banned = {name for name in ORDINARY_HANDLES if patterns.matches(name)}
    assert banned == set()


def test_every_pattern_has_targets() -> None:
    assert set(starter_username_patterns()) == set(TARGETS)


@pytest.mark.parametrize(("pattern", "names"), TARGETS.items())
def test_each_pattern_bans_what_it_targets(pattern: str, names: list[str]) -> None:
    patterns = starter("literal")
    for name in names:
        assert pattern in [patterns.sources[i] for i in patterns.match_indices(name)], name


def policy_with(*layers: dict[str, object]) -> Policy:
    parsed = []
    for raw in layers:
        section = Section(raw, "")
        parsed.append(PolicyLists.from_section(section, {}))
        section.finish()
    return Policy.build(parsed, NOW)


def test_the_list_is_off_unless_turned_on() -> None:
    assert policy_with({}).username_ban("hitler") is None
    assert policy_with({"banned_usernames_starter": True}).username_ban("hitler") == "hitler"
    # A later layer (the policy file) decides: it can turn it on or off again.
    on_then_off = policy_with(
        {"banned_usernames_starter": True}, {"banned_usernames_starter": False}
    )
    assert on_then_off.username_ban("hitler") is None
    kept = policy_with({"banned_usernames_starter": True}, {"banned_usernames": ["^x$"]})
    assert kept.username_ban("hitler") == "hitler"
    assert kept.username_ban("x") == "^x$"


def test_the_key_takes_true_or_false_only() -> None:
    section = Section({"banned_usernames_starter": "yes"}, "")
    with pytest.raises(ConfigError, match="banned_usernames_starter: expected true or false"):
        PolicyLists.from_section(section, {})
