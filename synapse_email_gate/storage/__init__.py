"""All SQL. Services call the store classes here, as Synapse's handlers call its
stores; nothing outside this package touches the database
(tests/unit/storage/test_storage_boundary.py checks that).

`EmailGate` (module.py) makes one `Runner` and one of each store, and passes
each to the services that need it:

- `Runner` (runner.py): runs a transaction body, retried on serialisation
  failures; `IN (…)` lists and batched writes. Group commit (group_commit.py)
  runs on it.
- `SchemaStore` (schema.py): creates and upgrades the tables.
- `IntakeStore` (intake.py): records requests as they are answered, a batch
  per transaction.
- `IssueStore` (issue.py): assesses each recorded request and queues its
  token (or code) and mail, a batch per transaction.
- `RequestStore` (requests.py): a request's life after that: verified,
  decided by a moderator, registered, revoked, purged.
- `TokenStore` (tokens.py): the module's tokens and their uses; every read
  and write of Synapse's `registration_tokens`.
- `OutboxStore` (outbox.py): the mail queue: leases, outcomes, backlog.
- `BucketStore` (buckets.py): rate-limit buckets taken one at a time (the
  intake takes its own in its batch).
- `ModerationStore` (moderation.py): requests as moderators list them, bans,
  moderators, the audit log.
- `StateStore` (state.py): what the processes share: the policy generation,
  the module's secrets, room events handled, challenges used.

The `*_txn` functions are the stores' transaction bodies; tests/storage runs
them directly against SQLite and PostgreSQL.
"""
