"""The notification store (storage/notifications.py) and its mails in the outbox, on
real SQLite and PostgreSQL: events recorded by the issue step, each taken once per
channel, notification mails claimed like every mail, old rows purged."""

from __future__ import annotations

from synapse_email_gate.rules.notifications import ACCOUNT, REQUEST, Event
from synapse_email_gate.storage import notifications, outbox, requests
from synapse_email_gate.storage.issue import issue_txn
from tests.storage.conftest import Txn
from tests.storage.test_store import NOW, issue_params, receive

DAY = 86_400_000


def event(i: int, ts: int = NOW, kind: str = ACCOUNT) -> Event:
    return Event(f"e{i:05}", ts + i, kind, f"@u{i}:test.local", None, "made with a mailed token")


def test_the_issue_step_records_what_moderators_are_told(txn: Txn) -> None:
    receive(txn, "r1", "alice", "alice@example.org")
    receive(txn, "r2", "bob", "bob@example.org")
    receive(txn, "r3", "carol", "carol@example.org")
    issue_txn(
        txn,
        [
            issue_params("r1", notify=True),
            issue_params("r2", notify=True, forget_address=True),
            issue_params("r3"),  # not asked to notify
        ],
        lambda _: False,
        server_name="test.local",
    )
    txn.commit()
    pending = notifications.pending_txn(txn, "mail", 10)
    assert sorted((e.kind, e.user_id, e.email) for e in pending) == [
        (REQUEST, "@alice:test.local", "alice@example.org"),
        (REQUEST, "@bob:test.local", None),  # hashed addresses: none at all
    ]  # (one batch, one timestamp: in no particular order)
    assert all(e.detail and "token mailed" in e.detail and "Tr1" not in e.detail for e in pending)


def test_each_channel_takes_an_event_once(txn: Txn) -> None:
    notifications.record_txn(txn, [event(i) for i in range(1200)])  # more than one chunk
    ids = [e.event_id for e in notifications.pending_txn(txn, "mail", 5000)]
    assert len(ids) == 1200
    notifications.sent_txn(txn, "mail", "m1", ids, NOW + 5, "subject", "body", [("o1", "a@x.org")])
    txn.commit()
    assert notifications.pending_txn(txn, "mail", 10) == []
    assert len(notifications.pending_txn(txn, "room", 5000)) == 1200  # the room's are its own
    notifications.skip_txn(txn, "room", ids[:10])
    assert len(notifications.pending_txn(txn, "room", 5000)) == 1190
    assert notifications.window_txn(txn, "mail", NOW) == (1, NOW + 5)
    assert notifications.window_txn(txn, "mail", NOW + 6) == (0, NOW + 5)
    assert notifications.window_txn(txn, "room", 0) == (0, None)


def test_a_notification_mail_is_claimed_with_its_text(txn: Txn) -> None:
    notifications.record_txn(txn, [event(1)])
    notifications.sent_txn(
        txn,
        "mail",
        "m1",
        ["e00001"],
        NOW,
        "[test.local] subject",
        "the body\n",
        [("o1", "a@x.org")],
    )
    txn.commit()
    (claimed,) = outbox.claim_txn(txn, NOW, None, 10)
    assert claimed.kind == "notification" and claimed.attempts == 1
    facts = claimed.facts
    assert (facts.to, facts.subject, facts.message, facts.request_id) == (
        "a@x.org",
        "[test.local] subject",
        "the body\n",
        "m1",
    )
    assert facts.token is None and facts.code is None


def test_old_delivered_rows_go_and_the_request_purge_keeps_notification_mails(txn: Txn) -> None:
    notifications.record_txn(txn, [event(1, NOW - 8 * DAY), event(2, NOW - 8 * DAY), event(3)])
    notifications.sent_txn(txn, "mail", "old", ["e00001"], NOW - 8 * DAY, "s", "b", [("o1", "a@x")])
    notifications.sent_txn(txn, "room", "r", ["e00001"], NOW - 8 * DAY, "s", "b")
    notifications.sent_txn(txn, "mail", "new", ["e00003"], NOW, "s", "b", [("o2", "a@x")])
    txn.execute("UPDATE email_gate_outbox SET status = 'sent'")
    requests.purge_txn(txn, NOW, DAY, DAY, DAY, DAY)  # no request: not its mails
    assert {r[0] for r in _rows(txn, "SELECT id FROM email_gate_outbox")} == {"o1", "o2"}
    notifications.purge_txn(txn, NOW)
    txn.commit()
    # e00002 is old but not delivered on either channel: it stays
    assert {r[0] for r in _rows(txn, "SELECT id FROM email_gate_notifications")} == {
        "e00002",
        "e00003",
    }
    assert {r[0] for r in _rows(txn, "SELECT id FROM email_gate_outbox")} == {"o2"}
    assert {r[0] for r in _rows(txn, "SELECT id FROM email_gate_notification_messages")} == {"new"}


def _rows(txn: Txn, sql: str) -> list[tuple[object, ...]]:
    txn.execute(sql)
    return [tuple(row) for row in txn.fetchall()]
