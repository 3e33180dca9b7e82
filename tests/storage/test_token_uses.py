"""The module's count of token uses (storage/tokens.py) on real SQLite and PostgreSQL:
claims with a lease, confirmation when the account exists, revocation, and two
processes claiming the last use at the same moment."""

from __future__ import annotations

from typing import Any

from synapse_email_gate.storage import requests, tokens
from synapse_email_gate.storage.schema import create_schema
from tests.harness.postgres import PostgresCluster
from tests.storage.conftest import REGISTRATION_TOKENS, Txn
from tests.storage.test_store import HOUR, NOW, issue, receive, token_row

LEASE = tokens.CLAIM_LEASE_MS


def invite(txn: Txn, token: str, uses: int | None, expiry: int | None = NOW + HOUR) -> None:
    new = tokens.NewToken(
        token=token,
        kind=tokens.INVITE,
        uses_allowed=uses,
        expiry_ts=expiry,
        created_ts=NOW,
        created_by="@mod:x",
    )
    assert tokens.create_invite_txn(txn, new)
    txn.commit()


def claim(
    txn: Txn, token: str, asked: str | None, now: int = NOW, banned: frozenset[str] = frozenset()
) -> tokens.ClaimResult:
    result = tokens.claim_txn(
        txn, token, asked, "192.0.2.9", "client", now, lambda name: name in banned
    )
    txn.commit()
    return result


def outcome(txn: Txn, token: str, asked: str | None, now: int = NOW) -> str:
    return claim(txn, token, asked, now).outcome


def made(txn: Txn, localpart: str, now: int = NOW) -> tokens.Confirmed | None:
    confirmed = requests.registered_txn(txn, localpart, f"@{localpart}:x", now)
    txn.commit()
    return confirmed


def test_an_invite_token_makes_as_many_accounts_as_it_allows(txn: Txn) -> None:
    invite(txn, "INV2", 2)
    assert outcome(txn, "INV2", "Amy") == tokens.CLAIMED  # lowercased, as Synapse does
    assert outcome(txn, "INV2", "bob") == tokens.CLAIMED
    # Both uses are held by registrations under way: a third waits for one to lapse.
    busy = claim(txn, "INV2", "cat")
    assert busy.outcome == tokens.BUSY and busy.retry_after_ms == LEASE
    assert made(txn, "amy") == tokens.Confirmed("INV2", "invite", None, "@mod:x", False)
    confirmed = made(txn, "bob")
    assert confirmed is not None and confirmed.used_up
    assert outcome(txn, "INV2", "cat") == tokens.USED
    # Used up: Synapse's token stage and validity check answer invalid from now on.
    assert token_row(txn, "INV2") == (None, 0, 0, NOW - 1)
    accounts = tokens.accounts_made_with_txn(txn, ["INV2"])["INV2"]
    assert [(a["user_id"], a["ip"], a["via"]) for a in accounts] == [
        ("@amy:x", "192.0.2.9", "client"),
        ("@bob:x", "192.0.2.9", "client"),
    ]


def test_a_claim_whose_account_never_appears_lapses_with_its_lease(txn: Txn) -> None:
    invite(txn, "ONE", 1)
    assert outcome(txn, "ONE", "amy") == tokens.CLAIMED
    assert outcome(txn, "ONE", "bob", now=NOW + LEASE - 1) == tokens.BUSY
    assert outcome(txn, "ONE", "bob", now=NOW + LEASE) == tokens.CLAIMED
    # The lapsed claim is not confirmed by an account of that name made later.
    assert made(txn, "amy", now=NOW + LEASE) is None
    assert made(txn, "bob", now=NOW + LEASE) is not None
    assert outcome(txn, "ONE", "amy", now=NOW + LEASE) == tokens.USED


def test_the_same_localpart_may_claim_again_and_holds_one_use(txn: Txn) -> None:
    invite(txn, "ONE", 1)
    assert outcome(txn, "ONE", "amy") == tokens.CLAIMED
    # A retry of the same registration renews its claim instead of taking a second use.
    assert outcome(txn, "ONE", "amy", now=NOW + 10) == tokens.CLAIMED
    assert outcome(txn, "ONE", "bob", now=NOW + 10) == tokens.BUSY
    assert made(txn, "amy") is not None


def test_a_localpart_held_by_another_tokens_claim_or_account_is_refused(txn: Txn) -> None:
    invite(txn, "A", None)
    invite(txn, "B", None)
    assert outcome(txn, "A", "amy") == tokens.CLAIMED
    assert outcome(txn, "B", "amy") == tokens.USERNAME_TAKEN
    made(txn, "amy")
    assert outcome(txn, "B", "amy", now=NOW + LEASE) == tokens.USERNAME_TAKEN


def test_refusals_say_why(txn: Txn) -> None:
    invite(txn, "OLD", 5, expiry=NOW)
    invite(txn, "NONE", 0)
    invite(txn, "GONE", 5)
    assert tokens.revoke_txn(txn, ["GONE"], "email_banned", NOW) == ["GONE"]
    assert outcome(txn, "UNKNOWN", "amy") == tokens.NOT_OURS
    assert outcome(txn, "OLD", "amy") == tokens.EXPIRED
    assert outcome(txn, "NONE", "amy") == tokens.USED
    assert token_row(txn, "NONE") == (None, 0, 0, NOW - 1)  # Synapse reads 0 as unlimited
    assert outcome(txn, "GONE", "amy") == tokens.REVOKED
    assert token_row(txn, "GONE") == (None, 0, 0, NOW - 1)
    assert outcome(txn, "GONE", None) == tokens.USERNAME_MISSING
    invite(txn, "OK", 5)
    assert claim(txn, "OK", "troll", banned=frozenset({"troll"})).outcome == "username_banned"
    assert outcome(txn, "OK", "x" * 300) == tokens.USERNAME_INVALID


def test_a_mailed_token_makes_its_reserved_name_once(txn: Txn) -> None:
    receive(txn, "r1", "alice", "alice@example.org")
    issue(txn, "r1")
    first = claim(txn, "Tr1", "mallory")
    assert (first.outcome, first.localpart, first.kind) == ("claimed", "alice", "email")
    assert made(txn, "alice") == tokens.Confirmed("Tr1", "email", "r1", None, True)
    late = claim(txn, "Tr1", "alice", now=NOW + 1)
    assert (late.outcome, late.localpart) == (tokens.USED, "alice")
    txn.execute("SELECT status, user_id FROM email_gate_requests WHERE id = 'r1'")
    assert txn.fetchone() == ("registered", "@alice:x")


def test_deleting_a_token_hides_it_and_keeps_synapses_row_expired(txn: Txn) -> None:
    invite(txn, "DEL", 3)
    claim(txn, "DEL", "amy")
    made(txn, "amy")
    assert tokens.delete_txn(txn, ["DEL", "NOPE"], NOW) == ["DEL"]
    txn.commit()
    assert tokens.module_tokens_txn(txn, NOW) == []
    assert token_row(txn, "DEL") == (None, 0, 0, NOW - 1)
    assert tokens.delete_txn(txn, ["DEL"], NOW) == []
    # The account's link stays.
    link = tokens.account_txn(txn, "@amy:x")
    assert link is not None and link["token"] == "DEL" and link["token_created_by"] == "@mod:x"


def test_the_purge_drops_synapses_rows_once_no_session_can_hold_them(txn: Txn) -> None:
    invite(txn, "USED", 1)
    invite(txn, "DEAD", 1)
    claim(txn, "USED", "amy")
    made(txn, "amy")
    tokens.revoke_txn(txn, ["DEAD"], "ip_banned", NOW)
    txn.commit()
    tokens.purge_txn(txn, NOW + tokens.KEEP_SYNAPSE_ROW_MS - 2)
    assert token_row(txn, "USED") is not None and token_row(txn, "DEAD") is not None
    tokens.purge_txn(txn, NOW + tokens.KEEP_SYNAPSE_ROW_MS + 1)
    txn.commit()
    assert token_row(txn, "USED") is None and token_row(txn, "DEAD") is None
    # The used one is kept (it links an account); the unused revoked one goes.
    assert [t["token"] for t in tokens.module_tokens_txn(txn, NOW)] == ["USED"]


def test_two_processes_claiming_the_last_use_at_once_on_postgres(
    postgres: PostgresCluster,
) -> None:
    """The second claim's snapshot predates the first one's commit: its write to the
    token's row fails with a serialisation error (Synapse's REPEATABLE READ), and
    the retry sees the first claim. Without that write, both inserts of their own
    claim rows would commit."""
    db = postgres.create_database("store_concurrent_claims")
    first, second = (Txn(postgres.connect(db), "psycopg2") for _ in range(2))
    first.execute(REGISTRATION_TOKENS)
    create_schema(first)
    first.commit()
    for t in (first, second):
        t._connection.set_session(isolation_level="REPEATABLE READ")
    invite(first, "RACE", 1)
    second.execute("SELECT COUNT(*) FROM email_gate_token_uses")  # its snapshot starts now
    second.fetchone()
    assert outcome(first, "RACE", "amy") == tokens.CLAIMED
    error: Any = None
    try:
        tokens.claim_txn(second, "RACE", "bob", None, "client", NOW, lambda _: False)
    except Exception as e:
        error = e
    assert getattr(error, "pgcode", None) == "40001", error
    second.rollback()
    assert outcome(second, "RACE", "bob") == tokens.BUSY


def test_upgrading_from_version_1_puts_waiting_mailed_tokens_under_the_modules_count(
    txn: Txn,
) -> None:
    """A database of version 1: Synapse counted the uses (uses_allowed 1) and an
    abandoned attempt left the token `pending` and its request `registering`."""
    for rid, status in (("r1", "registering"), ("r2", "issued"), ("r3", "registered")):
        txn.execute(
            """
            INSERT INTO email_gate_requests (id, created_ts, updated_ts, localpart, email,
                email_key, ip, lang, status, token, expires_ts)
            VALUES (?, ?, ?, ?, ?, ?, '192.0.2.1', 'en', ?, ?, ?)
            """,
            (
                rid,
                NOW,
                NOW,
                f"user{rid}",
                f"{rid}@x.org",
                f"{rid}@x.org",
                status,
                f"T{rid}",
                NOW + HOUR,
            ),
        )
        completed = 1 if status == "registered" else 0
        txn.execute(
            "INSERT INTO registration_tokens VALUES (?, 1, ?, ?, ?)",
            (f"T{rid}", 1 if status == "registering" else 0, completed, NOW + HOUR),
        )
    txn.execute("UPDATE email_gate_schema_version SET version = 1")
    txn.commit()
    create_schema(txn)
    txn.commit()
    txn.execute("SELECT version FROM email_gate_schema_version")
    assert txn.fetchone() == (2,)
    assert token_row(txn, "Tr1") == (None, 1, 0, NOW + HOUR)  # Synapse's stale pending: harmless
    assert token_row(txn, "Tr3") == (1, 0, 1, NOW + HOUR)  # used: left as it was
    txn.execute("SELECT status FROM email_gate_requests ORDER BY id")
    assert [row[0] for row in txn.fetchall()] == ["issued", "issued", "registered"]
    assert claim(txn, "Tr1", None).outcome == tokens.CLAIMED
    assert claim(txn, "Tr2", None).localpart == "userr2"
    assert claim(txn, "Tr3", None).outcome == tokens.NOT_OURS


def test_two_processes_confirming_the_last_uses_at_once_on_postgres(
    postgres: PostgresCluster,
) -> None:
    """Two accounts made at the same moment with a two-use token: the confirmation
    that makes the last use must see the other one, or Synapse's row would stay open."""
    db = postgres.create_database("store_concurrent_confirms")
    first, second = (Txn(postgres.connect(db), "psycopg2") for _ in range(2))
    first.execute(REGISTRATION_TOKENS)
    create_schema(first)
    first.commit()
    for t in (first, second):
        t._connection.set_session(isolation_level="REPEATABLE READ")
    invite(first, "PAIR", 2)
    assert outcome(first, "PAIR", "amy") == tokens.CLAIMED
    assert outcome(first, "PAIR", "bob") == tokens.CLAIMED
    second.execute("SELECT COUNT(*) FROM email_gate_token_uses")  # its snapshot starts now
    second.fetchone()
    confirmed = made(first, "amy")
    assert confirmed is not None and not confirmed.used_up
    error: Any = None
    try:
        requests.registered_txn(second, "bob", "@bob:x", NOW)
    except Exception as e:
        error = e
    assert getattr(error, "pgcode", None) == "40001", error
    second.rollback()
    again = made(second, "bob")
    assert again is not None and again.used_up
    assert token_row(second, "PAIR") == (None, 0, 0, NOW - 1)


def edit(txn: Txn, token: str, now: int = NOW, admin: bool = False, **change: Any) -> str:
    result = tokens.edit_txn(txn, token, tokens.TokenEdit(**change), admin, now)
    txn.commit()
    return result.outcome


def test_a_disabled_token_outlives_the_purge_until_its_own_expiry(txn: Txn) -> None:
    far = NOW + 10 * tokens.KEEP_SYNAPSE_ROW_MS
    invite(txn, "OFF", 2, expiry=far)
    assert edit(txn, "OFF", disabled=True) == tokens.EDITED
    assert outcome(txn, "OFF", "amy") == tokens.DISABLED
    later = NOW + tokens.KEEP_SYNAPSE_ROW_MS + 1
    tokens.purge_txn(txn, later)
    txn.commit()
    assert token_row(txn, "OFF") == (None, 0, 0, NOW - 1)  # Synapse's row: kept, closed
    assert [t["token"] for t in tokens.module_tokens_txn(txn, later)] == ["OFF"]
    assert edit(txn, "OFF", later, disabled=False) == tokens.EDITED
    assert token_row(txn, "OFF") == (None, 0, 0, far)
    assert outcome(txn, "OFF", "amy", later) == tokens.CLAIMED


def test_enabling_writes_synapses_row_again_if_it_is_gone(txn: Txn) -> None:
    invite(txn, "GONE", 1, expiry=NOW + HOUR)
    edit(txn, "GONE", disabled=True)
    txn.execute("DELETE FROM registration_tokens WHERE token = ?", ("GONE",))
    txn.commit()
    assert edit(txn, "GONE", disabled=False) == tokens.EDITED
    assert token_row(txn, "GONE") == (None, 0, 0, NOW + HOUR)


def test_edits_refuse_what_they_must(txn: Txn) -> None:
    invite(txn, "TWO", 2)
    claim(txn, "TWO", "amy")
    made(txn, "amy")
    assert edit(txn, "TWO", uses_allowed=0) == tokens.BELOW_USED
    assert edit(txn, "TWO", uses_allowed=None) == tokens.ADMIN_ONLY
    assert edit(txn, "TWO", expiry_ts=None) == tokens.ADMIN_ONLY
    assert edit(txn, "TWO", admin=True, uses_allowed=None) == tokens.EDITED
    assert edit(txn, "TWO", disabled=True) == tokens.EDITED
    assert edit(txn, "TWO", disabled=False) == tokens.ADMIN_ONLY  # enabling an unlimited one
    assert edit(txn, "TWO", uses_allowed=1) == tokens.EDITED  # limiting it is fine
    assert edit(txn, "TWO", disabled=False) == tokens.EDITED
    assert token_row(txn, "TWO") == (None, 0, 0, NOW - 1)  # 1 of 1 used: closed
    assert edit(txn, "NOPE", disabled=True) == tokens.NOT_FOUND
    receive(txn, "r1", "bob", "bob@example.org")
    assert issue(txn, "r1") is not None
    assert edit(txn, "Tr1", disabled=True) == tokens.NOT_INVITE


def test_an_invite_cannot_claim_a_name_a_request_holds(txn: Txn) -> None:
    receive(txn, "r2", "held", "held@example.org")
    invite(txn, "INV", 1)
    assert outcome(txn, "INV", "held") == tokens.USERNAME_TAKEN
    assert outcome(txn, "INV", "free") == tokens.CLAIMED
