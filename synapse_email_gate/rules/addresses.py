"""Email addresses: strict parsing, one identity per mailbox, and address rules.

Parsing is deliberately stricter than RFC 5322.  Only a bare
``local@domain`` is accepted: no display names, comments, quoted local
parts, IP literals, several addresses, or control characters, because every
one of those has been used to smuggle a second recipient or a header into an
outgoing mail.  The syntax itself is checked by ``email-validator`` (a
maintained, RFC-aware validator that also handles IDNA), without DNS lookups.

Local parts must be ASCII.  Internationalised local parts need SMTPUTF8 all
the way to the recipient, which many relays lack, and they widen the room for
look-alike addresses; IDNA *domains* are fine and are kept in ASCII form.

Normalisation (``ParsedEmail.normalised``) says when two addresses are the
same person, for cooldowns, one-account-per-address and bans:

* everything is lowercased, the local part too.  RFC 5321 allows
  case-sensitive local parts but practically no provider has them, and
  treating ``Alice@`` and ``alice@`` as two people would let anyone double
  their quota;
* domains are in IDNA ASCII form (``bücher.de`` -> ``xn--bcher-kva.de``);
* ``+tag`` sub-addressing is removed for every domain: most large providers
  deliver ``alice+x@`` to ``alice@``, and the rare provider that does not
  only loses the ability to have two accounts differing by a ``+tag``;
* provider rules (:data:`PROVIDER_RULES`) go further where a provider is
  known to ignore more, e.g. Gmail ignores dots and ``googlemail.com`` is
  ``gmail.com``.  ``A.l.i.c.e+x@GMail.com`` -> ``alice@gmail.com``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import unicodedata
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Literal

import attrs
import idna
from disposable_email_domains import blocklist as _DISPOSABLE_BLOCKLIST
from email_validator import EmailNotValidError, validate_email

from synapse_email_gate.rules.usernames import PatternError, PatternSet

__all__ = [
    "DISPOSABLE_DOMAINS",
    "MAX_ADDRESS_LENGTH",
    "PROVIDER_RULES",
    "DomainAllowList",
    "DomainVerdict",
    "EmailRuleError",
    "EmailRules",
    "InvalidEmail",
    "InvalidEmailReason",
    "ParsedEmail",
    "ProviderRule",
    "domain_verdict",
    "is_disposable",
    "normalise_address",
    "normalise_domain",
    "parse_email",
]

MAX_ADDRESS_LENGTH = 254  # RFC 5321 path limit (256) minus the angle brackets

InvalidEmailReason = Literal[
    "empty",
    "too_long",
    "control_characters",
    "display_name",
    "quoted_local_part",
    "multiple_addresses",
    "ip_literal",
    "non_ascii_local_part",
    "invalid",
]


class InvalidEmail(ValueError):
    """The text is not one plain address we are willing to mail.

    ``reason`` is a stable code for logs and API error mapping; the message is
    a short human explanation (it may quote an offending character, never
    the whole input), fit to show the requester once escaped.
    """

    def __init__(self, reason: InvalidEmailReason, message: str) -> None:
        super().__init__(message)
        self.reason: InvalidEmailReason = reason
        self.message = message


class EmailRuleError(ValueError):
    """A ban or allow-list entry cannot be used.  The message names the entry."""


# --- normalisation ----------------------------------------------------------


@attrs.frozen
class ProviderRule:
    """How one mail provider maps many spellings onto one mailbox."""

    canonical_domain: str
    ignore_dots: bool = False
    tag_separator: str = "+"


# Keyed by ASCII lowercase domain.  Add a provider here when it is known to
# deliver several spellings to the same mailbox.
PROVIDER_RULES: Mapping[str, ProviderRule] = {
    "gmail.com": ProviderRule("gmail.com", ignore_dots=True),
    "googlemail.com": ProviderRule("gmail.com", ignore_dots=True),
}


def normalise_address(local: str, domain: str) -> str:
    """The identity of the mailbox ``local@domain`` (``domain`` in ASCII form).

    Idempotent.  If stripping the tag and dots would leave nothing (``+x@``),
    the lowercased local part is kept as it is rather than producing ``@``.
    """
    domain = domain.lower()
    local = local.lower()
    rule = PROVIDER_RULES.get(domain) or ProviderRule(domain)
    key = local.split(rule.tag_separator, 1)[0]
    if rule.ignore_dots:
        key = key.replace(".", "")
    return f"{key or local}@{rule.canonical_domain}"


def address_key(normalised: str, hash_secret: str | None) -> str:
    """The identity rules store for an address: the normalised address, or (with
    `privacy.hash_emails`) its keyed hash."""
    if hash_secret is None:
        return normalised
    digest = hmac.new(hash_secret.encode(), normalised.encode(), hashlib.sha256)
    return "hmac:" + digest.hexdigest()


def normalise_domain(domain: str) -> str:
    """``domain`` in lowercase IDNA ASCII form; ``ValueError`` if it is not a domain name."""
    text = domain.strip()
    text = text.removesuffix(".")
    if not text:
        raise ValueError("empty domain")
    try:
        ascii_domain = idna.encode(text, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError) as exc:
        raise ValueError(f"not a valid domain name ({exc})") from None
    if len(ascii_domain) > 253:
        raise ValueError("domain name longer than 253 characters")
    return ascii_domain


# Second-level labels under which country-code registries hand out names
# (``example.co.uk``, ``example.com.au``).  Without a public-suffix list this
# covers the common cases; a rarer one only makes the registrable part one
# label too short, which groups more domains together, never fewer.
_SECOND_LEVEL_LABELS = frozenset(
    {"ac", "co", "com", "edu", "gob", "gov", "govt", "ltd", "ne", "net", "nic", "or", "org"}
)


def registrable_domain(domain: str) -> str:
    """The part of ``domain`` (ASCII form) a registrant controls, under the provider
    rules: ``mx1.mail.example.co.uk`` -> ``example.co.uk``, ``googlemail.com`` ->
    ``gmail.com``.  One owner's rotated subdomains share it."""
    domain = _lookup_key(domain)
    rule = PROVIDER_RULES.get(domain)
    if rule is not None:
        return rule.canonical_domain
    labels = domain.split(".")
    keep = 2
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL_LABELS:
        keep = 3
    return ".".join(labels[-keep:])


# --- parsing ----------------------------------------------------------------

# Cc: C0/C1 controls incl. CR/LF/TAB; Cf: invisible format chars (bidi
# overrides, zero-width joiners); Zl/Zp: line and paragraph separators;
# Cs: lone surrogates, which cannot even be encoded.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


@attrs.frozen
class ParsedEmail:
    """A validated address.

    ``address`` is what we mail: the local part as typed, the domain in
    lowercase ASCII.  ``normalised`` is the identity used by every rule.
    """

    address: str
    local: str
    domain: str
    normalised: str


def _has_forbidden_characters(text: str) -> bool:
    return any(unicodedata.category(char) in _FORBIDDEN_CATEGORIES for char in text)


def _is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _precheck(text: str) -> None:
    """Refuse the forms email-validator might accept or explain poorly."""
    if not text:
        raise InvalidEmail("empty", "No email address was given.")
    if len(text) > MAX_ADDRESS_LENGTH:
        raise InvalidEmail(
            "too_long", f"An email address has at most {MAX_ADDRESS_LENGTH} characters."
        )
    if "<" in text or ">" in text:
        raise InvalidEmail("display_name", "Give the bare address, without a name or <brackets>.")
    if '"' in text:
        raise InvalidEmail("quoted_local_part", "Quoted addresses are not accepted.")
    if any(sep in text for sep in ",;") or any(char.isspace() for char in text):
        raise InvalidEmail("multiple_addresses", "Give exactly one address, without spaces.")
    local, at, domain = text.rpartition("@")
    if not at:
        raise InvalidEmail("invalid", "An email address needs an @-sign.")
    if domain.startswith("[") or _is_ip_address(domain):
        raise InvalidEmail("ip_literal", "The part after the @-sign must be a domain name.")
    if not local.isascii():
        raise InvalidEmail(
            "non_ascii_local_part", "The part before the @-sign must use ASCII characters only."
        )


def parse_email(raw: str, *, test_environment: bool = False) -> ParsedEmail:
    """Validate ``raw`` as one plain address; raise :class:`InvalidEmail` otherwise.

    Surrounding spaces are forgiven; any control or invisible character,
    anywhere, is not.  No DNS lookups.  ``test_environment`` admits the
    special-use ``*.test`` domains (for test set-ups only); other special-use
    names (``localhost``, ``*.local``, ``*.invalid``, ``*.onion``) are refused.
    """
    if _has_forbidden_characters(raw):
        raise InvalidEmail("control_characters", "The address contains control characters.")
    text = raw.strip()
    _precheck(text)
    try:
        validated = validate_email(
            text,
            check_deliverability=False,
            allow_smtputf8=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
            allow_empty_local=False,
            test_environment=test_environment,
        )
    except EmailNotValidError as exc:
        raise InvalidEmail("invalid", str(exc)) from None
    except ValueError:  # IDNA and codec errors that slip past email-validator
        raise InvalidEmail("invalid", "The address is not valid.") from None
    local = text.rpartition("@")[0]
    domain = validated.ascii_domain.lower()
    return ParsedEmail(
        address=f"{local}@{domain}",
        local=local,
        domain=domain,
        normalised=normalise_address(local, domain),
    )


# --- domain policy ----------------------------------------------------------


def _suffixes(domain: str) -> Iterator[str]:
    """``a.b.c`` -> ``a.b.c``, ``b.c``, ``c``: the domain, then each parent."""
    labels = domain.split(".")
    for start in range(len(labels)):
        yield ".".join(labels[start:])


def _lookup_key(domain: str) -> str:
    return domain.lower().removesuffix(".")


DISPOSABLE_DOMAINS: Collection[str] = frozenset(_DISPOSABLE_BLOCKLIST)


def is_disposable(domain: str) -> bool:
    """Whether ``domain`` (ASCII form) or a parent is a known disposable-mail domain.

    The list is the ``disposable-email-domains`` package, the community
    list maintained on GitHub and released to PyPI as it changes; upgrading
    the package updates the list.
    """
    return any(suffix in DISPOSABLE_DOMAINS for suffix in _suffixes(_lookup_key(domain)))


@attrs.frozen
class DomainAllowList:
    """Domains (each covering its subdomains).  Empty means "no restriction"."""

    entries: tuple[str, ...]
    domains: frozenset[str] = attrs.field(repr=False)

    @classmethod
    def compile(cls, entries: Sequence[str]) -> DomainAllowList:
        domains = set()
        for entry in entries:
            try:
                domains.add(normalise_domain(entry))
            except ValueError as exc:
                raise EmailRuleError(f"domain {entry!r}: {exc}") from None
        return cls(tuple(entries), frozenset(domains))

    @classmethod
    def empty(cls) -> DomainAllowList:
        return cls((), frozenset())

    def __len__(self) -> int:
        return len(self.domains)

    def covers(self, domain: str) -> bool:
        """Whether ``domain`` is listed, or is a subdomain of a listed one."""
        return any(suffix in self.domains for suffix in _suffixes(_lookup_key(domain)))

    def allows(self, domain: str) -> bool:
        """``covers``, except that an empty list allows every domain."""
        return not self.domains or self.covers(domain)


DomainVerdict = Literal["ok", "domain_not_allowed", "disposable"]


def domain_verdict(
    domain: str,
    allowed: DomainAllowList,
    block_disposable: bool,
    extra_allowed: DomainAllowList | None = None,
) -> DomainVerdict:
    """Domain-level policy for an address at ``domain`` (ASCII form).

    ``allowed`` is ``allowed_email_domains``: when non-empty, other domains
    are refused.  A domain it names explicitly is trusted even if it is on
    the disposable list, and so is any domain in ``extra_allowed`` (for
    exempting a wrongly listed provider without restricting everyone else).
    """
    if not allowed.allows(domain):
        return "domain_not_allowed"
    exempt = allowed.covers(domain) or (extra_allowed is not None and extra_allowed.covers(domain))
    if block_disposable and not exempt and is_disposable(domain):
        return "disposable"
    return "ok"


# --- individual bans ----------------------------------------------------------


def _regex_body(entry: str) -> str | None:
    """The regex of a ``/regex/`` entry, or ``None`` if it is not one."""
    if len(entry) >= 2 and entry.startswith("/") and entry.endswith("/"):
        return entry[1:-1]
    return None


def _domain_entry(entry: str) -> str:
    domain = entry.removeprefix("*@")
    if domain == entry:
        raise ValueError("expected an address, *@domain or /regex/")
    return normalise_domain(domain)


def _address_entry(entry: str) -> str:
    if "@" not in entry:
        raise ValueError("expected an address, *@domain or /regex/")
    try:
        return parse_email(entry, test_environment=True).normalised
    except InvalidEmail as exc:
        raise ValueError(f"not a valid address: {exc.message}") from None


@attrs.frozen
class EmailRules:
    """``banned_emails``: exact addresses, ``*@domain`` and ``/regex/`` entries.

    * an address bans every spelling with the same normalised identity;
    * ``*@domain`` bans the domain and all its subdomains, whether the
      address is spelt with the domain or with a provider alias of it;
    * ``/regex/`` is searched, case-insensitively and in linear time (RE2),
      in the *normalised* address, so ``/^bob@/`` also catches
      ``B.o.b+x@gmail.com``; a regex cannot see ``+tags`` or Gmail dots.
    """

    entries: tuple[str, ...]
    addresses: Mapping[str, str] = attrs.field(repr=False)
    domains: Mapping[str, str] = attrs.field(repr=False)
    regex_entries: tuple[str, ...] = attrs.field(repr=False)
    regexes: PatternSet = attrs.field(repr=False)

    @classmethod
    def compile(cls, entries: Sequence[str]) -> EmailRules:
        """Compile the entries; :class:`EmailRuleError` names the first bad one."""
        addresses: dict[str, str] = {}
        domains: dict[str, str] = {}
        regex_entries: list[str] = []
        for entry in entries:
            text = entry.strip()
            try:
                if _regex_body(text) is not None:
                    regex_entries.append(entry)
                elif text.startswith("*"):
                    domains.setdefault(_domain_entry(text), entry)
                else:
                    addresses.setdefault(_address_entry(text), entry)
            except ValueError as exc:
                raise EmailRuleError(f"entry {entry!r}: {exc}") from None
        regexes = _compile_regexes(regex_entries)
        return cls(tuple(entries), addresses, domains, tuple(regex_entries), regexes)

    @classmethod
    def empty(cls) -> EmailRules:
        return cls((), {}, {}, (), PatternSet.empty())

    def __len__(self) -> int:
        return len(self.entries)

    def first_match(self, parsed: ParsedEmail) -> str | None:
        """The entry that bans ``parsed``, or ``None``.

        Addresses are checked first, then domains (most specific first),
        then regexes (earliest listed first).
        """
        exact = self.addresses.get(parsed.normalised)
        if exact is not None:
            return exact
        canonical_domain = parsed.normalised.rpartition("@")[2]
        for domain in dict.fromkeys((parsed.domain, canonical_domain)):
            for suffix in _suffixes(domain):
                if suffix in self.domains:
                    return self.domains[suffix]
        indices = self.regexes.match_indices(parsed.normalised)
        return self.regex_entries[indices[0]] if indices else None


def _compile_regexes(entries: Sequence[str]) -> PatternSet:
    bodies = [_regex_body(entry.strip()) or "" for entry in entries]
    try:
        return PatternSet.compile(bodies)
    except PatternError as exc:
        if exc.index is None:
            raise EmailRuleError(f"/regex/ entries: {exc}") from None
        raise EmailRuleError(f"entry {entries[exc.index]!r}: {exc.reason}") from None
