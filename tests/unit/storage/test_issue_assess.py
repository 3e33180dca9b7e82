"""storage.issue.assess: the email side of a batch of requests, assessed in memory.

Pure: no database. tests/storage/test_batches.py runs the same decisions through
real SQLite and PostgreSQL transactions.
"""

from __future__ import annotations

from typing import Any

from synapse_email_gate.config.policy_lists import Bucket
from synapse_email_gate.storage.buckets import BucketBook
from synapse_email_gate.storage.issue import (
    Held,
    IssueBook,
    Issued,
    IssueParams,
    NotIssued,
    Waiting,
    Writes,
    assess,
)

NOW = 1_800_000_000_000
HOUR = 3_600_000


def params(request_id: str, now: int = NOW, **overrides: Any) -> IssueParams:
    fields: dict[str, Any] = dict(
        request_id=request_id,
        now_ms=now,
        token=f"T{request_id}",
        token_lifetime_ms=24 * HOUR,
        cooldown_ms=HOUR,
        multiple_users_per_email=False,
        per_email=Bucket(burst=10, per_second=1.0),
        outbox_id=f"o{request_id}",
    )
    fields.update(overrides)
    return IssueParams(**fields)


def book(waiting: dict[str, tuple[str, str]], **rows: Any) -> IssueBook:
    """`waiting`: request id -> (localpart, address), each received at NOW with the
    reservation the intake made for it, unless `reservations` says otherwise."""
    held = {lp: Held(rid, addr, NOW + 24 * HOUR) for rid, (lp, addr) in waiting.items()}
    return IssueBook(
        waiting={rid: Waiting(lp, addr, addr, "en", NOW) for rid, (lp, addr) in waiting.items()},
        reservations=rows.get("reservations", held),
        addresses=rows.get("addresses", {}),
        buckets=BucketBook(rows.get("buckets", {})),
    )


def test_a_request_gets_a_token_and_a_mail_under_the_reservation_it_holds() -> None:
    b, w = book({"r1": ("alice", "a@example.org")}), Writes()
    issued = assess(b, w, params("r1"), banned=False)
    assert isinstance(issued, Issued) and issued.localpart == "alice"
    assert [
        (t.token, t.expiry_ts, t.uses_allowed, t.localpart, t.request_id) for t in w.tokens
    ] == [("Tr1", NOW + 24 * HOUR, 1, "alice", "r1")]
    assert w.reservations == {}  # made at intake
    assert w.mails == [("or1", "r1", "token", NOW, NOW)]
    assert w.addresses == {"a@example.org": NOW}


def test_the_token_runs_out_with_the_hold_counted_from_the_request() -> None:
    b, w = book({"r1": ("alice", "a@example.org")}), Writes()
    issued = assess(b, w, params("r1", now=NOW + 40_000), banned=False)  # an orphan, late
    assert isinstance(issued, Issued) and issued.expires_ts == NOW + 24 * HOUR
    assert [(t.token, t.expiry_ts) for t in w.tokens] == [("Tr1", NOW + 24 * HOUR)]


def test_a_request_recorded_without_a_reservation_takes_it_when_issued() -> None:
    b, w = book({"r1": ("alice", "a@example.org")}, reservations={}), Writes()
    assert isinstance(assess(b, w, params("r1"), banned=False), Issued)
    assert w.reservations == {"alice": Held("r1", "a@example.org", NOW + 24 * HOUR)}


def test_the_second_request_for_an_address_in_one_batch_meets_the_cooldown() -> None:
    b, w = book({"r1": ("alice", "a@example.org"), "r2": ("bob", "a@example.org")}), Writes()
    assert isinstance(assess(b, w, params("r1"), banned=False), Issued)
    assert assess(b, w, params("r2"), banned=False) == NotIssued("cooldown")
    assert w.suppressed == [("cooldown", NOW, "r2")]
    assert [m[1] for m in w.mails] == ["r1"]


def test_refusals_in_order_and_a_refused_request_takes_no_token() -> None:
    reserved = {"taken": Held("old", "other@example.org", NOW + HOUR)}
    used = {"used@example.org": (NOW - 2 * HOUR, 1)}
    empty = {"email:empty@example.org": (0.0, NOW)}
    b = book(
        {
            "r1": ("taken", "x@example.org"),
            "r2": ("free", "used@example.org"),
            "r3": ("free2", "empty@example.org"),
            "r4": ("free3", "banned@example.org"),
        },
        reservations=reserved,
        addresses=used,
        buckets=empty,
    )
    w = Writes()
    tight = Bucket(burst=1, per_second=0.0)
    assert assess(b, w, params("r1", per_email=tight), banned=False) == NotIssued(
        "username_reserved"
    )
    assert assess(b, w, params("r2"), banned=False) == NotIssued("already_used")
    assert assess(b, w, params("r3", per_email=tight), banned=False) == NotIssued(
        "rate_limited_email"
    )
    assert assess(b, w, params("r4"), banned=True) == NotIssued("email_banned")
    # r1 was refused before its per-address bucket: its one unit of credit is still there.
    assert b.buckets.take("email:x@example.org", tight, NOW) == 0
    assert w.tokens == [] and w.mails == [] and w.reservations == {} and w.addresses == {}


def test_a_repeated_request_is_assessed_once() -> None:
    b, w = book({"r1": ("alice", "a@example.org")}), Writes()
    assert isinstance(assess(b, w, params("r1"), banned=False), Issued)
    assert assess(b, w, params("r1", token="T2"), banned=False) is None
    assert len(w.tokens) == 1


def test_a_name_held_by_another_request_gets_no_mail_even_from_the_same_address() -> None:
    held = {"alice": Held("old", "a@example.org", NOW + HOUR)}
    b = book(
        {"r1": ("alice", "a@example.org")},
        reservations=held,
        addresses={"a@example.org": (NOW - 2 * HOUR, 0)},
    )
    w = Writes()
    assert assess(b, w, params("r1"), banned=False) == NotIssued("username_reserved")
    assert w.tokens == [] and w.reservations == {}


def test_approval_mode_queues_an_address_check_and_no_token() -> None:
    b, w = book({"r1": ("alice", "a@example.org")}), Writes()
    assert isinstance(assess(b, w, params("r1", token=None, code="Cr1"), banned=False), Issued)
    assert w.tokens == [] and w.issued == []
    assert w.verifying == [("Cr1", NOW + 24 * HOUR, NOW, "r1")]
    assert w.mails == [("or1", "r1", "verify", NOW, NOW)]


def test_hash_emails_forgets_the_address_of_a_request_without_mail() -> None:
    b, w = book({"r1": ("alice", "a@example.org")}), Writes()
    assert assess(b, w, params("r1", forget_address=True), banned=True) == NotIssued("email_banned")
    assert w.forgotten == [("r1",)]
