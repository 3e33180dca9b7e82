"""storage.issue.assess with `rate_limits.per_email_domain`: rotated addresses in one
domain share a bucket; a refusal takes no credit from either bucket."""

from __future__ import annotations

import attrs

from synapse_email_gate.config.policy_lists import Bucket
from synapse_email_gate.requests.service import domain_bucket_key
from synapse_email_gate.storage.issue import Issued, NotIssued, Writes, assess
from tests.unit.storage.test_issue_assess import NOW, book, params

DOMAIN = Bucket(burst=2, per_second=0.0)


def test_rotated_addresses_in_one_domain_share_its_bucket() -> None:
    key = domain_bucket_key(None)
    waiting = {f"r{i}": (f"user{i}", f"u{i}@a{i}.spam.example") for i in range(4)}
    waiting["other"] = ("other", "x@good.example")
    b, w = book(waiting), Writes()
    b.waiting = {rid: attrs.evolve(v, domain_key=key(v.email)) for rid, v in b.waiting.items()}
    outcomes = [assess(b, w, params(rid, per_email_domain=DOMAIN), False) for rid in waiting]
    assert [type(o) for o in outcomes[:4]] == [Issued, Issued, NotIssued, NotIssued]
    assert outcomes[2] == NotIssued("rate_limited_email_domain")
    assert isinstance(outcomes[4], Issued)
    # The refused ones took no per-address credit.
    assert "email:u2@a2.spam.example" not in b.buckets._changed


def test_the_domain_key_follows_the_registrable_part_and_may_be_hashed() -> None:
    plain = domain_bucket_key(None)
    assert plain("a@x.mail.example.co.uk") == "domain:example.co.uk"
    assert plain("a@googlemail.com") == plain("b@gmail.com")
    assert plain("hmac:abcdef") == ""
    hashed = domain_bucket_key("s" * 32)
    assert hashed("a@spam.example").startswith("domain:hmac:")
    assert "spam" not in hashed("a@spam.example")


def test_no_domain_limit_without_a_domain_key() -> None:
    b, w = book({"r1": ("a", "a@spam.example"), "r2": ("b", "b@spam.example")}), Writes()
    one = Bucket(burst=1, per_second=0.0)
    first = assess(b, w, params("r1", now=NOW, per_email_domain=one), False)
    second = assess(b, w, params("r2", now=NOW, per_email_domain=one), False)
    assert isinstance(first, Issued) and isinstance(second, Issued)
