"""The email side of recorded requests, a batch per transaction: token (or, in
approval mode, code) + queued mail, or a reason for no mail.

A batch costs a few statements whatever its size (on PostgreSQL each statement
is a round trip):

1. read the batch's requests, the reservations of their usernames (made at
   intake, storage/intake.py), their addresses' rows and per-address buckets: one
   SELECT each;
2. assess each request in memory, in arrival order (`assess`), each one seeing
   what the earlier ones of the batch did;
3. write the assessments: one batched statement per kind of write.

Other processes writing at the same time: on PostgreSQL (REPEATABLE READ) a
row read here, or a key found free here, that another transaction changes
before this one commits makes this one fail with a serialisation error, and the
batch is retried on fresh reads (storage/runner.py); on SQLite there is one writer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs
from synapse.storage.database import LoggingTransaction
from twisted.internet.defer import Deferred

from synapse_email_gate.config.policy_lists import Bucket
from synapse_email_gate.rules.addresses import ParsedEmail, parse_email
from synapse_email_gate.rules.identifiers import new_id
from synapse_email_gate.rules.notifications import REQUEST, Event
from synapse_email_gate.storage import notifications
from synapse_email_gate.storage import tokens as token_store
from synapse_email_gate.storage.buckets import BucketBook
from synapse_email_gate.storage.group_commit import GroupCommit
from synapse_email_gate.storage.runner import Runner, batch_txn, select_in


@attrs.frozen
class IssueParams:
    request_id: str
    now_ms: int
    token_lifetime_ms: int
    cooldown_ms: int
    multiple_users_per_email: bool
    per_email: Bucket
    outbox_id: str
    # The limit per mail domain (`rate_limits.per_email_domain`); None: none.
    per_email_domain: Bucket | None = None
    # What the mail carries, one of the two: the registration token to make, or with
    # `approval: required` the code that verifies the address first (no token yet).
    token: str | None = None
    code: str | None = None
    # With hash_emails: a request that gets no mail keeps only its address's hash.
    forget_address: bool = False
    # The address as parsed when the request was answered (saves parsing it again).
    parsed_email: ParsedEmail | None = attrs.field(default=None, eq=False, repr=False)
    # Moderators are told of the assessed request (config `notifications`).
    notify: bool = False

    def __attrs_post_init__(self) -> None:
        if (self.token is None) == (self.code is None):
            raise ValueError("IssueParams takes a token or a code, not both or neither")


@attrs.frozen
class Issued:
    """A request's mail is queued: with its registration token, or in approval mode
    with the code that verifies the address."""

    request_id: str
    outbox_id: str
    localpart: str
    email: str
    lang: str
    expires_ts: int
    token: str | None = None
    code: str | None = None


@attrs.frozen
class NotIssued:
    """The request was assessed: no mail; `reason` is a reason code."""

    reason: str
    request_id: str = attrs.field(default="", eq=False)


IssueOutcome = Issued | NotIssued | None


@attrs.frozen
class Waiting:
    """A recorded request whose email side is not assessed yet."""

    localpart: str
    email: str
    email_key: str
    lang: str
    created_ts: int
    # The bucket of the address's mail domain (`DomainKey`); "" for none.
    domain_key: str = ""


# The bucket key of an address's mail domain, "" for none (requests/service.py).
DomainKey = Callable[[str], str]


@attrs.frozen
class Held:
    """A username's reservation."""

    request_id: str
    email_key: str
    expires_ts: int


@attrs.define
class IssueBook:
    """The rows a batch's assessments read, kept up to date as each is made."""

    waiting: dict[str, Waiting]
    reservations: dict[str, Held]
    addresses: dict[str, tuple[int, int]]  # email key -> (last_sent_ts, accounts)
    buckets: BucketBook


@attrs.define
class Writes:
    """Everything a batch's assessments write, in `apply`."""

    addresses: dict[str, int] = attrs.Factory(dict)  # email key -> last_sent_ts
    reservations: dict[str, Held] = attrs.Factory(dict)
    tokens: list[token_store.NewToken] = attrs.Factory(list)
    issued: list[tuple[str, int, int, str]] = attrs.Factory(list)
    verifying: list[tuple[str, int, int, str]] = attrs.Factory(list)
    mails: list[tuple[str, str, str, int, int]] = attrs.Factory(list)
    suppressed: list[tuple[str, int, str]] = attrs.Factory(list)
    forgotten: list[tuple[str]] = attrs.Factory(list)
    notifications: list[Event] = attrs.Factory(list)


def issue_txn(
    txn: LoggingTransaction,
    batch: Sequence[IssueParams],
    email_banned: Callable[[str], bool],
    domain_key: DomainKey | None = None,
    server_name: str = "",
) -> list[IssueOutcome]:
    """Assess each request of the batch; None for one no longer waiting (assessed by
    another process, or by an earlier item of this batch)."""
    book = load(txn, [p.request_id for p in batch], domain_key)
    writes = Writes()
    outcomes = []
    for p in batch:
        waiting = book.waiting.get(p.request_id)
        banned = waiting is not None and email_banned(waiting.email)
        outcome = assess(book, writes, p, banned)
        outcomes.append(outcome)
        if p.notify and waiting is not None and outcome is not None:
            writes.notifications.append(_request_event(p, waiting, outcome, server_name))
    book.buckets.write(txn)
    apply(txn, writes)
    notifications.record_txn(txn, writes.notifications)
    return outcomes


def _request_event(p: IssueParams, w: Waiting, outcome: Issued | NotIssued, server: str) -> Event:
    """What moderators are told of an assessed request: never its token or code, and
    its address only while addresses are kept in the clear."""
    if isinstance(outcome, NotIssued):
        detail = f"no mail ({outcome.reason})"
    elif outcome.code is not None:
        detail = "address confirmation mailed"
    else:
        detail = "token mailed"
    return Event(
        event_id=new_id(),
        ts=p.now_ms,
        kind=REQUEST,
        user_id=f"@{w.localpart}:{server}",
        email=None if p.forget_address else w.email,
        detail=f"request {p.request_id}, {detail}",
    )


def assess(book: IssueBook, writes: Writes, p: IssueParams, banned: bool) -> IssueOutcome:
    """One request's outcome, recorded in `writes` and in `book` for the next ones."""
    w = book.waiting.pop(p.request_id, None)
    if w is None:
        return None
    reason = "email_banned" if banned else _refusal(book, p, w)
    if reason is not None:
        writes.suppressed.append((reason, p.now_ms, p.request_id))
        if p.forget_address:
            writes.forgotten.append((p.request_id,))
        return NotIssued(reason, p.request_id)

    # The token lives as long as the name is held for the request (from the request,
    # not from now): a mailed request and a suppressed one hold it equally long.
    expires_ts = w.created_ts + p.token_lifetime_ms
    _, accounts = book.addresses.get(w.email_key, (0, 0))
    book.addresses[w.email_key] = (p.now_ms, accounts)
    writes.addresses[w.email_key] = p.now_ms
    held = book.reservations.get(w.localpart)
    if held is None or held.request_id != p.request_id:
        # Only for a request recorded without its reservation (before the intake made
        # them), or whose hold lapsed: the intake reserved the name for this request.
        held = Held(p.request_id, w.email_key, expires_ts)
        book.reservations[w.localpart] = held
        writes.reservations[w.localpart] = held
    if p.code is not None:
        writes.verifying.append((p.code, expires_ts, p.now_ms, p.request_id))
        writes.mails.append((p.outbox_id, p.request_id, "verify", p.now_ms, p.now_ms))
    else:
        assert p.token is not None  # IssueParams holds one of the two
        writes.tokens.append(
            token_store.NewToken(
                token=p.token,
                kind=token_store.EMAIL,
                uses_allowed=1,
                expiry_ts=expires_ts,
                created_ts=p.now_ms,
                request_id=p.request_id,
                localpart=w.localpart,
            )
        )
        writes.issued.append((p.token, expires_ts, p.now_ms, p.request_id))
        writes.mails.append((p.outbox_id, p.request_id, "token", p.now_ms, p.now_ms))
    return Issued(
        request_id=p.request_id,
        outbox_id=p.outbox_id,
        localpart=w.localpart,
        email=w.email,
        lang=w.lang,
        expires_ts=expires_ts,
        token=p.token,
        code=p.code,
    )


def _refusal(book: IssueBook, p: IssueParams, w: Waiting) -> str | None:
    """Why this request gets no mail, or None; takes its per-address credit if not."""
    held = book.reservations.get(w.localpart)
    if held is not None and held.expires_ts > p.now_ms and held.request_id != p.request_id:
        return "username_reserved"  # another request took the name after this one's hold
    address = book.addresses.get(w.email_key)
    if address is not None:
        last_sent_ts, accounts = address
        if accounts > 0 and not p.multiple_users_per_email:
            return "already_used"
        if last_sent_ts > p.now_ms - p.cooldown_ms:
            return "cooldown"
    # Last: a refused request must not have taken credit, from either bucket.
    limits = [("rate_limited_email", f"email:{w.email_key}", p.per_email)]
    if w.domain_key and p.per_email_domain is not None:
        limits.append(("rate_limited_email_domain", w.domain_key, p.per_email_domain))
    for reason, key, bucket in limits:
        if book.buckets.wait(key, bucket, p.now_ms):
            return reason
    for _, key, bucket in limits:
        book.buckets.take(key, bucket, p.now_ms)
    return None


def load(
    txn: LoggingTransaction, request_ids: Sequence[str], domain_key: DomainKey | None = None
) -> IssueBook:
    ids = list(dict.fromkeys(request_ids))
    rows = select_in(
        txn,
        "SELECT id, localpart, email, email_key, lang, created_ts FROM email_gate_requests"
        " WHERE status = 'received' AND id",
        ids,
    )
    waiting = {
        str(r[0]): Waiting(
            str(r[1]),
            str(r[2]),
            str(r[3]),
            str(r[4]),
            int(r[5]),
            domain_key(str(r[2])) if domain_key is not None else "",
        )
        for r in rows
    }
    localparts = {w.localpart for w in waiting.values()}
    keys = {w.email_key for w in waiting.values()}
    reservations = select_in(
        txn,
        "SELECT localpart, request_id, email_key, expires_ts FROM email_gate_reservations"
        " WHERE localpart",
        localparts,
    )
    addresses = select_in(
        txn,
        "SELECT email_key, last_sent_ts, accounts FROM email_gate_addresses WHERE email_key",
        keys,
    )
    return IssueBook(
        waiting=waiting,
        reservations={str(r[0]): Held(str(r[1]), str(r[2]), int(r[3])) for r in reservations},
        addresses={str(r[0]): (int(r[1]), int(r[2])) for r in addresses},
        buckets=BucketBook.load(
            txn,
            {f"email:{key}" for key in keys}
            | {w.domain_key for w in waiting.values() if w.domain_key},
        ),
    )


def apply(txn: LoggingTransaction, w: Writes) -> None:
    """Write a batch's assessments, in an order where each write finds what it needs."""
    batch_txn(
        txn,
        """
        INSERT INTO email_gate_addresses (email_key, last_sent_ts, accounts) VALUES (?, ?, 0)
        ON CONFLICT (email_key) DO UPDATE SET last_sent_ts = excluded.last_sent_ts
        """,
        list(w.addresses.items()),
    )
    batch_txn(
        txn,
        """
        INSERT INTO email_gate_reservations (localpart, request_id, email_key, expires_ts)
        VALUES (?, ?, ?, ?)
        ON CONFLICT (localpart) DO UPDATE SET request_id = excluded.request_id,
            email_key = excluded.email_key, expires_ts = excluded.expires_ts
        """,
        [(lp, h.request_id, h.email_key, h.expires_ts) for lp, h in w.reservations.items()],
    )
    token_store.add_tokens_txn(txn, w.tokens)
    batch_txn(
        txn,
        """
        UPDATE email_gate_requests SET status = 'issued', token = ?, expires_ts = ?,
            updated_ts = ?
        WHERE id = ?
        """,
        w.issued,
    )
    batch_txn(
        txn,
        """
        UPDATE email_gate_requests SET status = 'verifying', verify_code = ?, expires_ts = ?,
            updated_ts = ?
        WHERE id = ?
        """,
        w.verifying,
    )
    batch_txn(
        txn,
        """
        INSERT INTO email_gate_outbox (id, request_id, kind, recipient, status, created_ts,
            attempts, next_attempt_ts, lease_until_ts)
        VALUES (?, ?, ?, NULL, 'queued', ?, 0, ?, 0)
        """,
        w.mails,
    )
    batch_txn(
        txn,
        """
        UPDATE email_gate_requests SET status = 'suppressed', reason = ?, updated_ts = ?
        WHERE id = ? AND status = 'received'
        """,
        w.suppressed,
    )
    batch_txn(txn, "UPDATE email_gate_requests SET email = email_key WHERE id = ?", w.forgotten)


# The ban on an address in force, or None: the policy's `email_ban`.
EmailBan = Callable[[ParsedEmail], object | None]


class IssueStore:
    """The issue step of recorded requests, a batch per transaction (group commit)."""

    def __init__(
        self,
        runner: Runner,
        email_ban: Callable[[], EmailBan],
        domain_key: DomainKey | None = None,
    ) -> None:
        # `email_ban()`: the check in force when a batch runs.
        self._email_ban = email_ban
        self._domain_key = domain_key
        self._server_name = runner.server_name
        self._batches: GroupCommit[IssueParams, IssueOutcome] = GroupCommit(
            runner, "issue", self._batch_txn
        )

    async def issue(self, params: IssueParams) -> IssueOutcome:
        """Assess one request with the next batch; its outcome."""
        return await self._batches.run(params)

    def enqueue(self, params: IssueParams) -> Deferred[IssueOutcome]:
        """Queue a request for the next batch without waiting (see `GroupCommit.enqueue`)."""
        return self._batches.enqueue(params)

    def _batch_txn(
        self, txn: LoggingTransaction, batch: Sequence[IssueParams]
    ) -> list[IssueOutcome]:
        email_ban = self._email_ban()  # the policy when the batch runs
        # Parsed when the request was answered; parsed again only for orphans.
        parsed = {p.parsed_email.address: p.parsed_email for p in batch if p.parsed_email}

        def banned(address: str) -> bool:
            return email_ban(parsed.get(address) or parse_email(address)) is not None

        return issue_txn(txn, batch, banned, self._domain_key, self._server_name)
