"""Prometheus metrics, registered in prometheus_client's default REGISTRY.

Synapse's `metrics` listener (with `enable_metrics: true`) serves that registry,
so these appear next to Synapse's own. Like Synapse's homeserver-scoped metrics
(synapse/metrics/__init__.py, SERVER_NAME_LABEL), every series carries a
`server_name` label. Each process counts what it did itself; add the series of
all processes (`sum by (...)`) for the whole deployment. docs/metrics.md lists
every metric.

The collectors are made once per process. Making one whose name is already in
the registry (this file imported again, e.g. by importlib.reload) reuses the
registered one instead of failing, so constructing the module twice, or
re-importing it, never breaks start-up.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TypeVar

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.metrics import MetricWrapperBase

logger = logging.getLogger(__name__)

PREFIX = "synapse_email_gate_"
SERVER_NAME_LABEL = "server_name"  # the same label name as Synapse's own metrics

M = TypeVar("M", bound=MetricWrapperBase)


def _make(kind: type[M], name: str, doc: str, labels: Sequence[str] = ()) -> M:
    labelnames = [*labels, SERVER_NAME_LABEL]
    try:
        return kind(PREFIX + name, doc, labelnames=labelnames)
    except ValueError:  # "Duplicated timeseries in CollectorRegistry"
        pass
    suffix = "_total" if kind is Counter else ""
    existing = getattr(REGISTRY, "_names_to_collectors", {}).get(PREFIX + name + suffix)
    if isinstance(existing, kind):
        return existing
    # Something else holds the name: count into an unregistered collector rather than fail.
    logger.warning("metric %s%s is registered by something else; not exported", PREFIX, name)
    return kind(PREFIX + name, doc, labelnames=labelnames, registry=None)


REQUESTS = _make(
    Counter,
    "requests",
    "Token requests answered, by outcome (accepted, refused) and reason code.",
    ("outcome", "reason"),
)
PROCESSED = _make(
    Counter,
    "requests_processed",
    "Accepted requests assessed after the answer: issued, or suppressed with a reason code.",
    ("outcome", "reason"),
)
TOKENS_ISSUED = _make(
    Counter, "tokens_issued", "Registration tokens issued, by source.", ("source",)
)
TOKENS_USED = _make(
    Counter,
    "tokens_used",
    "Accounts registered with a token of this module, by kind (email, invite).",
    ("kind",),
)
REGISTRATIONS_REFUSED = _make(
    Counter,
    "registrations_refused",
    "Registrations the module refused, by reason (token_used, username_banned, unavailable, ...).",
    ("reason",),
)
REVOKED = _make(
    Counter,
    "revoked",
    "Open requests (and their tokens) revoked by a ban, by reason: username_banned, "
    "email_banned, ip_banned.",
    ("reason",),
)
MAILS_QUEUED = _make(Counter, "mails_queued", "Mails written to the outbox.")
MAILS_SENT = _make(Counter, "mails_sent", "Mails the SMTP server accepted (250).")
MAILS_RETRIED = _make(
    Counter, "mails_retried", "Failed delivery attempts that will be retried later."
)
MAILS_FAILED = _make(
    Counter,
    "mails_failed",
    "Mails given up: permanent (5xx), expired (mail_retry_for passed), unbuildable.",
    ("reason",),
)
QUEUE_LENGTH = _make(
    Gauge, "mail_queue_length", "Mails waiting in the outbox (set by the background sweep)."
)
QUEUE_OLDEST_AGE = _make(
    Gauge,
    "mail_queue_oldest_age_seconds",
    "Age of the oldest mail waiting in the outbox; 0 when empty (set by the sweep).",
)
BATCHES = _make(
    Counter,
    "batches",
    "Transactions of the request path (group commit), by step: intake, issue.",
    ("step",),
)
BATCHED_REQUESTS = _make(
    Counter,
    "batched_requests",
    "Requests those transactions served, by step; divided by batches: the mean batch size.",
    ("step",),
)
POLICY_ROOM_RULES = _make(
    Gauge,
    "policy_room_rules",
    "Ban rules from each policy room in force on this process (0 while the bot is not in it).",
    ("room",),
)
POLICY_ROOM_JOINED = _make(
    Gauge,
    "policy_room_joined",
    "1 when this process reads the policy room with the bot joined to it, else 0.",
    ("room",),
)
POLICY_ROOM_FAILURES = _make(
    Counter,
    "policy_room_failures",
    "Failed attempts to look up, join (background-tasks process) or read a policy room.",
    ("room",),
)
DNSBL_LOOKUPS = _make(
    Counter,
    "dnsbl_lookups",
    "DNS blocklist queries (answers not in the cache), by zone and result: listed, "
    "not_listed, timeout, servfail, error.",
    ("zone", "result"),
)
MAIL_DOMAIN_LOOKUPS = _make(
    Counter,
    "mail_domain_lookups",
    "Mail-domain DNS checks (domains not in the cache), by result: ok, no_mail_host, "
    "null_mx, throwaway_mx, timeout, servfail, error.",
    ("result",),
)
DNS_CACHE_HITS = _make(
    Counter,
    "dns_cache_hits",
    "DNS check answers taken from the cache, by check: dnsbl (per zone asked), mail_domain.",
    ("check",),
)
DNS_FAIL_OPEN = _make(
    Counter,
    "dns_fail_open",
    "DNS checks that failed and let the request through, by check (dnsbl, mail_domain) "
    "and reason (timeout, servfail, error).",
    ("check", "reason"),
)
POLICY_RELOADS = _make(
    Counter, "policy_reloads", "Policy reloads, by result (ok, failed).", ("result",)
)


# The counter of each (outcome, reason, server name): looking a child up by its labels
# cost as much as the rest of a refusal from memory (benchmarks/bench_flood.py).
_ANSWERED: dict[tuple[str, str, str], Counter] = {}


def request_answered(server_name: str, outcome: str, reason: str) -> None:
    key = (outcome, reason, server_name)
    child = _ANSWERED.get(key)
    if child is None:
        child = _ANSWERED[key] = REQUESTS.labels(
            outcome=outcome, reason=reason, server_name=server_name
        )
    child.inc()


def request_processed(server_name: str, outcome: str, reason: str) -> None:
    PROCESSED.labels(outcome=outcome, reason=reason, server_name=server_name).inc()


def token_issued(server_name: str, source: str = "email") -> None:
    TOKENS_ISSUED.labels(source=source, server_name=server_name).inc()


def token_used(server_name: str, kind: str) -> None:
    TOKENS_USED.labels(kind=kind, server_name=server_name).inc()


def registration_refused(server_name: str, reason: str) -> None:
    REGISTRATIONS_REFUSED.labels(reason=reason, server_name=server_name).inc()


def revoked(server_name: str, reason: str, count: int) -> None:
    REVOKED.labels(reason=reason, server_name=server_name).inc(count)


def mail_queued(server_name: str) -> None:
    MAILS_QUEUED.labels(server_name=server_name).inc()


def mail_sent(server_name: str) -> None:
    MAILS_SENT.labels(server_name=server_name).inc()


def mail_retried(server_name: str) -> None:
    MAILS_RETRIED.labels(server_name=server_name).inc()


def mail_failed(server_name: str, reason: str) -> None:
    MAILS_FAILED.labels(reason=reason, server_name=server_name).inc()


def queue_state(server_name: str, length: int, oldest_age_s: float) -> None:
    QUEUE_LENGTH.labels(server_name=server_name).set(length)
    QUEUE_OLDEST_AGE.labels(server_name=server_name).set(oldest_age_s)


def batch_committed(server_name: str, step: str, size: int) -> None:
    BATCHES.labels(step=step, server_name=server_name).inc()
    BATCHED_REQUESTS.labels(step=step, server_name=server_name).inc(size)


def policy_reloaded(server_name: str, ok: bool) -> None:
    POLICY_RELOADS.labels(result="ok" if ok else "failed", server_name=server_name).inc()


def policy_room_state(server_name: str, room: str, joined: bool, rules: int) -> None:
    POLICY_ROOM_JOINED.labels(room=room, server_name=server_name).set(1 if joined else 0)
    POLICY_ROOM_RULES.labels(room=room, server_name=server_name).set(rules)


def policy_room_failed(server_name: str, room: str) -> None:
    POLICY_ROOM_FAILURES.labels(room=room, server_name=server_name).inc()


def dnsbl_lookup(server_name: str, zone: str, result: str) -> None:
    DNSBL_LOOKUPS.labels(zone=zone, result=result, server_name=server_name).inc()


def mail_domain_lookup(server_name: str, result: str) -> None:
    MAIL_DOMAIN_LOOKUPS.labels(result=result, server_name=server_name).inc()


def dns_fail_open(server_name: str, check: str, reason: str) -> None:
    DNS_FAIL_OPEN.labels(check=check, reason=reason, server_name=server_name).inc()


PROBATION_REFUSALS = _make(
    Counter,
    "probation_refusals",
    "What accounts on probation were refused, by what: create_room, invite, message.",
    ("what",),
)
ACCOUNT_ACTIONS = _make(
    Counter,
    "account_actions",
    "Accounts changed by mass action, by action: lock, unlock, suspend, unsuspend, deactivate.",
    ("action",),
)


def probation_refused(server_name: str, what: str) -> None:
    PROBATION_REFUSALS.labels(what=what, server_name=server_name).inc()


def account_changed(server_name: str, action: str) -> None:
    ACCOUNT_ACTIONS.labels(action=action, server_name=server_name).inc()


SURGE_ON = _make(
    Gauge,
    "surge_on",
    "1 while the surge switch is on in this mode (challenge, approval), else 0; set by"
    " the process that measures the rate and by the one a moderator switched on.",
    ("mode",),
)
SURGE_SWITCHES = _make(
    Counter,
    "surge_switches",
    "Surge switches, by direction (on, off) and cause (overall, domain, network, range,"
    " manual, calm, expired).",
    ("direction", "cause"),
)


def surge_state(server_name: str, mode: str) -> None:
    for each in ("challenge", "approval"):
        SURGE_ON.labels(mode=each, server_name=server_name).set(1 if mode == each else 0)


def surge_switched(server_name: str, on: bool, cause: str) -> None:
    SURGE_SWITCHES.labels(
        direction="on" if on else "off", cause=cause, server_name=server_name
    ).inc()
