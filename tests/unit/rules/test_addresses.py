import pytest
from hypothesis import given
from hypothesis import strategies as st

from synapse_email_gate.rules.addresses import (
    PROVIDER_RULES,
    DomainAllowList,
    EmailRuleError,
    EmailRules,
    InvalidEmail,
    ParsedEmail,
    domain_verdict,
    is_disposable,
    normalise_address,
    normalise_domain,
    parse_email,
)

# --- parse_email -------------------------------------------------------------


def test_plain_address_is_parsed_into_its_parts() -> None:
    parsed = parse_email("alice@example.org")
    assert parsed == ParsedEmail(
        address="alice@example.org",
        local="alice",
        domain="example.org",
        normalised="alice@example.org",
    )


def test_address_keeps_local_case_but_lowercases_domain() -> None:
    parsed = parse_email("Alice@EXAMPLE.Org")
    assert parsed.address == "Alice@example.org"
    assert parsed.local == "Alice"
    assert parsed.domain == "example.org"


def test_idna_domain_is_converted_to_ascii() -> None:
    parsed = parse_email("bob@Bücher.DE")
    assert parsed.domain == "xn--bcher-kva.de"
    assert parsed.address == "bob@xn--bcher-kva.de"


def test_punycode_domain_is_accepted_as_is() -> None:
    assert parse_email("bob@xn--bcher-kva.de").domain == "xn--bcher-kva.de"


def test_surrounding_spaces_are_forgiven() -> None:
    assert parse_email("  alice@example.org ").address == "alice@example.org"


def _reason(raw: str) -> str:
    with pytest.raises(InvalidEmail) as info:
        parse_email(raw)
    return info.value.reason


@pytest.mark.parametrize(
    "raw",
    [
        "alice@example.org\r\nBcc: victim@example.org",
        "alice@example.org\n",
        "\ralice@example.org",
        "alice\t@example.org",
        "alice\x00@example.org",
        "alice\x7f@example.org",
        "alice\u200b@example.org",
        "alice@example.org\u202e",
        "alice@example.org\u2028",
    ],
)
def test_control_and_invisible_characters_are_refused(raw: str) -> None:
    assert _reason(raw) == "control_characters"


@pytest.mark.parametrize(
    "raw",
    [
        "a@example.org,b@example.org",
        "a@example.org, b@example.org",
        "a@example.org;b@example.org",
        "a@example.org b@example.org",
        "a b@example.org",
    ],
)
def test_several_addresses_or_inner_spaces_are_refused(raw: str) -> None:
    assert _reason(raw) == "multiple_addresses"


@pytest.mark.parametrize(
    "raw",
    [
        "Alice <alice@example.org>",
        "<alice@example.org>",
        "alice@example.org <victim@example.org>",
        "alice@example.org>",
    ],
)
def test_display_name_forms_are_refused(raw: str) -> None:
    assert _reason(raw) == "display_name"


@pytest.mark.parametrize("raw", ['"alice"@example.org', '"a@b"@example.org'])
def test_quoted_local_parts_are_refused(raw: str) -> None:
    assert _reason(raw) == "quoted_local_part"


@pytest.mark.parametrize(
    "raw", ["alice@[192.0.2.1]", "alice@[IPv6:2001:db8::1]", "alice@192.0.2.1"]
)
def test_ip_literal_domains_are_refused(raw: str) -> None:
    assert _reason(raw) == "ip_literal"


def test_addresses_longer_than_254_characters_are_refused() -> None:
    local = "a" * 64
    domain = ".".join(["b" * 60] * 4) + ".org"
    assert len(f"{local}@{domain}") > 254
    assert _reason(f"{local}@{domain}") == "too_long"


def test_empty_input_is_refused() -> None:
    assert _reason("   ") == "empty"


def test_non_ascii_local_part_is_refused() -> None:
    assert _reason("älice@example.org") == "non_ascii_local_part"


@pytest.mark.parametrize(
    "raw",
    [
        "alice",
        "alice@",
        "@example.org",
        "a@b@example.org",
        "alice@localhost",
        "alice@example",
        "alice@example.invalid",
        "alice@host.local",
        "alice..bob@example.org",
        ".alice@example.org",
        "alice@-example.org",
        "alice@example..org",
        "alice(comment)@example.org",
    ],
)
def test_malformed_or_undeliverable_addresses_are_refused(raw: str) -> None:
    assert _reason(raw) == "invalid"


def test_test_domains_need_test_environment() -> None:
    assert _reason("alice@example.test") == "invalid"
    assert parse_email("alice@example.test", test_environment=True).domain == "example.test"


def test_invalid_email_is_a_value_error_with_message() -> None:
    with pytest.raises(ValueError) as info:
        parse_email("nope")
    assert isinstance(info.value, InvalidEmail)
    assert info.value.message == str(info.value)


@given(st.text(max_size=300))
def test_parse_email_raises_only_invalid_email_on_arbitrary_text(raw: str) -> None:
    try:
        parsed = parse_email(raw)
    except InvalidEmail:
        return
    assert "\n" not in parsed.address and "\r" not in parsed.address
    assert parsed.address.count("@") == 1


_ADDRESS_CHARS = st.sampled_from(list("aAbB.+-_=0123456789@\u00e9\u00fc"))


@given(st.text(_ADDRESS_CHARS, min_size=1, max_size=40), st.sampled_from(["", "@gmail.com"]))
def test_parse_email_raises_only_invalid_email_on_address_like_text(
    local: str, suffix: str
) -> None:
    try:
        parsed = parse_email(local + suffix)
    except InvalidEmail:
        return
    assert parsed.local.isascii()


# --- normalisation -----------------------------------------------------------


def test_gmail_dots_tag_and_case_are_normalised() -> None:
    assert parse_email("A.l.i.c.e+x@GMail.com").normalised == "alice@gmail.com"


def test_googlemail_is_gmail() -> None:
    assert parse_email("a.lice@googlemail.com").normalised == "alice@gmail.com"


def test_plus_tag_is_stripped_for_every_domain() -> None:
    assert parse_email("bob+news@example.org").normalised == "bob@example.org"


def test_only_first_plus_starts_the_tag() -> None:
    assert parse_email("bob+a+b@example.org").normalised == "bob@example.org"


def test_dots_are_kept_for_other_domains() -> None:
    assert parse_email("b.o.b@example.org").normalised == "b.o.b@example.org"


def test_local_part_is_lowercased() -> None:
    assert parse_email("BOB@example.org").normalised == "bob@example.org"


def test_idna_domain_is_normalised_to_ascii() -> None:
    assert parse_email("Bob@BÜCHER.de").normalised == "bob@xn--bcher-kva.de"


def test_local_part_that_is_only_a_tag_is_kept() -> None:
    assert parse_email("+x@gmail.com").normalised == "+x@gmail.com"


def test_provider_rules_include_gmail_and_googlemail() -> None:
    assert PROVIDER_RULES["googlemail.com"].canonical_domain == "gmail.com"
    assert PROVIDER_RULES["gmail.com"].ignore_dots


@given(st.text(max_size=30), st.sampled_from(["gmail.com", "googlemail.com", "example.org"]))
def test_normalisation_is_idempotent(local: str, domain: str) -> None:
    once = normalise_address(local, domain)
    once_local, _, once_domain = once.rpartition("@")
    assert normalise_address(once_local, once_domain) == once


@given(st.text(_ADDRESS_CHARS, min_size=1, max_size=40), st.sampled_from(["gmail.com", "x.org"]))
def test_normalised_valid_address_parses_to_itself(local: str, domain: str) -> None:
    try:
        parsed = parse_email(f"{local}@{domain}")
        again = parse_email(parsed.normalised)
    except InvalidEmail:
        return
    assert again.normalised == parsed.normalised


def test_normalise_domain_lowercases_and_encodes_idna() -> None:
    assert normalise_domain(" Bücher.DE. ") == "xn--bcher-kva.de"


@pytest.mark.parametrize("bad", ["", ".", "*.example.org", "a..b", "-a.org", "a_b.org"])
def test_normalise_domain_refuses_non_domains(bad: str) -> None:
    with pytest.raises(ValueError):
        normalise_domain(bad)


# --- EmailRules --------------------------------------------------------------


def _ban(entries: list[str], raw: str) -> str | None:
    return EmailRules.compile(entries).first_match(parse_email(raw))


def test_exact_address_bans_every_spelling_of_it() -> None:
    assert _ban(["alice@gmail.com"], "A.L.I.C.E+spam@googlemail.com") == "alice@gmail.com"


def test_exact_ban_entry_is_itself_normalised() -> None:
    assert _ban(["Bob+x@Example.org"], "bob@example.org") == "Bob+x@Example.org"


def test_exact_address_does_not_ban_others() -> None:
    assert _ban(["alice@example.org"], "alicia@example.org") is None


def test_domain_entry_bans_domain() -> None:
    assert _ban(["*@mailinator.com"], "x@mailinator.com") == "*@mailinator.com"


def test_domain_entry_bans_subdomains() -> None:
    assert _ban(["*@mailinator.com"], "x@a.b.Mailinator.com") == "*@mailinator.com"


def test_domain_entry_does_not_ban_lookalike_suffix() -> None:
    assert _ban(["*@mailinator.com"], "x@notmailinator.com") is None


def test_domain_entry_covers_provider_alias() -> None:
    assert _ban(["*@gmail.com"], "x@googlemail.com") == "*@gmail.com"


def test_domain_entry_accepts_idna() -> None:
    assert _ban(["*@bücher.de"], "x@xn--bcher-kva.de") == "*@bücher.de"


def test_regex_entry_is_searched_in_normalised_address() -> None:
    assert _ban(["/^bob@/"], "B.o.b+x@gmail.com") == "/^bob@/"


def test_regex_entry_is_case_insensitive() -> None:
    assert _ban(["/SPAM/"], "spammer@example.org") == "/SPAM/"


def test_regex_entry_no_match() -> None:
    assert _ban(["/^spam/"], "alice@example.org") is None


def test_earliest_regex_entry_is_reported() -> None:
    assert _ban(["/zzz/", "/example/", "/alice/"], "alice@example.org") == "/example/"


def test_no_rules_ban_nothing() -> None:
    assert EmailRules.compile([]).first_match(parse_email("a@example.org")) is None
    assert EmailRules.empty().first_match(parse_email("a@example.org")) is None


def test_entries_are_kept_in_order() -> None:
    entries = ["/x/", "a@example.org", "*@example.com"]
    assert EmailRules.compile(entries).entries == tuple(entries)


@pytest.mark.parametrize(
    "bad",
    ["foo", "*@", "@x", "//", "/(a)\\1/", "/(?=x)/", "*@*.example.org", "*foo@x.org", "a@b@c.org"],
)
def test_bad_ban_entries_are_refused_naming_the_entry(bad: str) -> None:
    with pytest.raises(EmailRuleError) as info:
        EmailRules.compile(["ok@example.org", bad])
    assert repr(bad) in str(info.value)


def test_email_rule_error_is_a_value_error() -> None:
    assert issubclass(EmailRuleError, ValueError)


# --- domain policy -----------------------------------------------------------


def test_empty_allow_list_allows_everything() -> None:
    assert DomainAllowList.compile([]).allows("anything.example")
    assert DomainAllowList.empty().allows("anything.example")


def test_allow_list_covers_domain_and_subdomains_only() -> None:
    allowed = DomainAllowList.compile(["Example.ORG"])
    assert allowed.allows("example.org")
    assert allowed.allows("staff.example.org")
    assert not allowed.allows("example.com")
    assert not allowed.allows("badexample.org")


def test_allow_list_accepts_idna_entries() -> None:
    assert DomainAllowList.compile(["bücher.de"]).allows("xn--bcher-kva.de")


@pytest.mark.parametrize("bad", ["", "*.example.org", "a..b", "x@example.org"])
def test_bad_allow_list_entries_are_refused_naming_the_entry(bad: str) -> None:
    with pytest.raises(EmailRuleError) as info:
        DomainAllowList.compile(["example.org", bad])
    assert repr(bad) in str(info.value)


def test_known_disposable_domain_is_disposable() -> None:
    assert is_disposable("mailinator.com")


def test_subdomain_of_disposable_domain_is_disposable() -> None:
    assert is_disposable("foo.mailinator.com")


def test_mainstream_domains_are_not_disposable() -> None:
    assert not is_disposable("gmail.com")
    assert not is_disposable("example.org")


_NOBODY = DomainAllowList.empty()


def test_verdict_ok_for_ordinary_domain() -> None:
    assert domain_verdict("example.org", _NOBODY, True) == "ok"


def test_verdict_disposable_when_blocking() -> None:
    assert domain_verdict("mailinator.com", _NOBODY, True) == "disposable"


def test_verdict_ok_for_disposable_when_not_blocking() -> None:
    assert domain_verdict("mailinator.com", _NOBODY, False) == "ok"


def test_verdict_domain_not_allowed_outside_allow_list() -> None:
    allowed = DomainAllowList.compile(["example.org"])
    assert domain_verdict("example.com", allowed, True) == "domain_not_allowed"


def test_verdict_domain_not_allowed_wins_over_disposable() -> None:
    allowed = DomainAllowList.compile(["example.org"])
    assert domain_verdict("mailinator.com", allowed, True) == "domain_not_allowed"


def test_allow_list_overrides_disposable_verdict() -> None:
    allowed = DomainAllowList.compile(["mailinator.com"])
    assert domain_verdict("x.mailinator.com", allowed, True) == "ok"


def test_extra_allowed_exempts_from_disposable_without_restricting() -> None:
    extra = DomainAllowList.compile(["mailinator.com"])
    assert domain_verdict("mailinator.com", _NOBODY, True, extra) == "ok"
    assert domain_verdict("example.org", _NOBODY, True, extra) == "ok"
    assert domain_verdict("yopmail.com", _NOBODY, True, extra) == "disposable"
