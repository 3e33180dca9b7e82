"""The request path: one function shared by the HTML form and the JSON API.

`submit` settles everything that may be said to the requester (IP ban, rate
limits, username and domain problems), records the request, reserves its
username and answers. The
email-side work — bans on the address, cooldown, already used, per-address
limit, token, mail — is assessed after the answer, in the next issue batch
(storage/issue.py), so every email-side outcome looks the same from outside, in
body and in timing. Recording and issuing each run one transaction for all the
requests waiting for it (storage/group_commit.py).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Awaitable, Callable

import attrs
from synapse.module_api import ModuleApi
from twisted.python.failure import Failure

from synapse_email_gate import metrics
from synapse_email_gate.config.gate import GateConfig
from synapse_email_gate.config.policy_lists import Bucket
from synapse_email_gate.mail.delivery import MailDelivery
from synapse_email_gate.policy.live import LivePolicy
from synapse_email_gate.policy.surge import SurgeMode
from synapse_email_gate.requests import outcomes
from synapse_email_gate.requests.challenge_gate import ChallengeGate
from synapse_email_gate.requests.dns_checks import Dnsbl, MailDomains
from synapse_email_gate.requests.outcomes import Outcome, Refusal
from synapse_email_gate.requests.usernames import UsernameCheck
from synapse_email_gate.rules.addresses import (
    InvalidEmail,
    ParsedEmail,
    address_key,
    parse_email,
    registrable_domain,
)
from synapse_email_gate.rules.identifiers import new_id, new_token
from synapse_email_gate.rules.ips import network_of
from synapse_email_gate.storage.intake import IntakeStore, NewRequest
from synapse_email_gate.storage.issue import (
    DomainKey,
    IssueOutcome,
    IssueParams,
    IssueStore,
    NotIssued,
)
from synapse_email_gate.storage.requests import PendingRequest, RequestStore

logger = logging.getLogger(__name__)

MAX_FIELD_LENGTH = 320
MAX_REASON_LENGTH = 2000
# A request still `received` this long after intake was orphaned by a crash.
ORPHAN_AFTER_MS = 30_000
_MAX_IP_KEYS = 100_000


@attrs.frozen
class RequestInput:
    username: str
    email: str
    lang: str = "en"
    reason: str = ""
    # The proof-of-work fields as sent, for a client a blocklist sends to the challenge.
    challenge: object = None
    nonce: object = None


class RequestService:
    def __init__(
        self,
        api: ModuleApi,
        config: GateConfig,
        policy: LivePolicy,
        delivery: MailDelivery,
        requests: RequestStore,
        intake: IntakeStore,
        issue: IssueStore,
        on_pending: Callable[[PendingRequest], Awaitable[None]] | None = None,
        *,
        dnsbl: Dnsbl | None = None,
        mail_domains: MailDomains | None = None,
        challenges: ChallengeGate | None = None,
        surge: SurgeMode | None = None,
    ) -> None:
        """`on_pending` is told about each request that starts waiting for a moderator.
        `dnsbl` and `mail_domains` are None when off: then they cost nothing at all."""
        self._api = api
        self._dnsbl = dnsbl
        self._mail_domains = mail_domains
        self._challenges = challenges
        self._surge = surge
        self._config = config
        self._policy = policy
        self._delivery = delivery
        self._requests = requests
        self._intake = intake
        self._issue = issue
        self._on_pending = on_pending
        self._usernames = UsernameCheck(api, policy)
        # Per-process memory of buckets known to be empty, so a flood from one
        # address is refused without touching the database.
        self._empty_until: dict[str, tuple[int, Bucket]] = {}
        # Client address -> (the network prefix lengths, its per-IP bucket's key, its
        # network bucket's key): parsing the address each time cost more than the rest
        # of a refusal from memory.
        self._ip_keys: dict[str, tuple[tuple[int, int], str, str | None]] = {}
        self._flood_log = FloodLog(logger)

    @property
    def approval_required(self) -> bool:
        return self._config.approval == "required"

    @property
    def reason_min_length(self) -> int:
        return self._config.approval_reason_min_length

    def refusal_from_memory(self, ip: str) -> Refusal | None:
        """The refusals that need only the client's address and this process's memory:
        an IP ban, and a per-IP or global bucket known to be empty. The API asks this
        before it reads the body (a flood is refused without parsing it); `submit`
        asks it first too. None: nothing known, go on."""
        if self._policy.current.ip_ban(ip) is not None:
            self._refused("ip_banned", flood=True)
            return outcomes.IP_BANNED
        if not self._empty_until:
            return None
        wait = self._known_wait(self._request_limits(ip), self._api.get_current_time_msec())
        return self._limited(wait) if wait else None

    def refusal_before_lookups(self, form: RequestInput) -> Refusal | None:
        """For a request `refusal_from_memory` let through: what `submit` would refuse
        next, before its first database query or DNS lookup, by the same checks in the
        same order: the approval statement's length and the username's own problems
        (missing, not ASCII, banned); nothing when a DNS blocklist is asked first.
        None: `submit` must go on. The API answers these without a coroutine
        (web/resource.py)."""
        if self._dnsbl is not None:
            return None
        short = self._reason_refusal(form)
        if short is not None:
            return short
        checked = self._usernames.check_in_memory(form.username)
        if isinstance(checked, Refusal):
            self._username_refused(checked)
            return checked
        return None

    def _reason_refusal(self, form: RequestInput) -> Refusal | None:
        if self._config.approval != "required":
            return None
        minimum = self._config.approval_reason_min_length
        if len(form.reason.strip()) >= minimum:
            return None
        return Refusal(
            400,
            outcomes.REASON_TOO_SHORT,
            f"Please tell the moderators in at least {minimum} characters why you "
            "would like an account.",
            "reason",
        )

    async def submit(self, form: RequestInput, ip: str) -> Outcome:
        known = self.refusal_from_memory(ip)
        if known is not None:
            return known
        policy = self._policy.current
        now = self._api.get_current_time_msec()
        limits = self._request_limits(ip)
        approval = self._config.approval == "required" or self._surge_approval()
        if self._dnsbl is not None:
            action = await self._dnsbl.action(ip)
            if action == "refuse":
                self._refused("dnsbl_listed", flood=True)
                return outcomes.IP_BANNED
            if action == "challenge":
                unsolved = await self._challenge_for_listed(form)
                if unsolved is not None:
                    return unsolved
            approval = approval or action == "approval"

        short = self._reason_refusal(form)
        if short is not None:
            return short
        localpart_or_refusal = await self._check_username(form.username)
        if isinstance(localpart_or_refusal, Refusal):
            return localpart_or_refusal
        localpart = localpart_or_refusal
        try:
            email = parse_email(form.email)
        except InvalidEmail as e:
            self._refused("invalid_email", e.reason)
            return Refusal(400, outcomes.INVALID_EMAIL, e.message, "email")
        domain_problem = policy.domain_refusal(email)
        if domain_problem is not None:
            self._refused(domain_problem)
            return _domain_refusal(domain_problem)
        if self._mail_domains is not None:
            mail_problem = await self._mail_domains.problem(email.domain)
            if mail_problem is not None:
                self._refused(mail_problem)
                return _mail_domain_refusal(mail_problem)

        request = NewRequest(
            id=new_id(),
            now_ms=now,
            localpart=localpart,
            email=email.address,
            email_key=self._email_key(email),
            ip=ip,
            lang=form.lang,
            hold_ms=self._config.token_lifetime_ms,
            statement=form.reason.strip() if self._config.approval == "required" else None,
            limits=tuple(limits),
        )
        refusal = await self._intake.record(request)
        if refusal is not None and refusal.reason == "username_reserved":
            self._refused("username_reserved")
            return Refusal(
                400,
                "M_USER_IN_USE",
                "This username is reserved by a pending request. Please choose another.",
                "username",
            )
        if refusal is not None:
            bucket = dict(limits)[refusal.bucket]
            self._remember_empty(refusal.bucket, bucket, now + refusal.wait_ms)
            return self._limited(refusal.wait_ms)
        logger.info("request %s received for %r: reason=accepted", request.id, localpart)
        metrics.request_answered(self._api.server_name, "accepted", "accepted")
        # Assessed after the answer, with the next issue batch (no task per request).
        assessed = self._issue.enqueue(self._issue_params(request.id, approval, email))
        assessed.addCallbacks(
            self._assessed,
            self._not_assessed,
            callbackArgs=(approval,),
            errbackArgs=(request.id,),
        )
        return outcomes.ACCEPTED

    def _surge_approval(self) -> bool:
        """A surge in `approval` mode: new requests wait for a moderator."""
        return self._surge is not None and self._surge.approval

    async def _challenge_for_listed(self, form: RequestInput) -> Refusal | None:
        """A blocklist wants the challenge solved. With the challenge on for everyone the
        page or API has checked it already; else it is checked now."""
        if self._challenges is None or self._challenges.enabled:
            return None
        unsolved = await self._challenges.check(form.challenge, form.nonce, required=True)
        if unsolved is not None:
            metrics.request_answered(self._api.server_name, "refused", "dnsbl_challenge")
        return unsolved

    async def challenge_wanted(self, ip: str) -> bool:
        """Whether the page should offer the challenge to this client."""
        if self._challenges is not None and self._challenges.enabled:
            return True
        if self._dnsbl is None or self._challenges is None or not self._challenges.available:
            return False
        return await self._dnsbl.action(ip) == "challenge"

    async def process(self, request_id: str, ip: str | None = None) -> None:
        """Assess the email side of a recorded request; issue and mail a token if due.

        `ip`, the address it came from, is asked about again when a blocklist may
        send it to approval."""
        approval = self._config.approval == "required" or self._surge_approval()
        if not approval and ip is not None and self._dnsbl is not None:
            approval = await self._dnsbl.action(ip) == "approval"
        self._assessed(await self._issue.issue(self._issue_params(request_id, approval)), approval)

    def _issue_params(
        self, request_id: str, approval: bool, email: ParsedEmail | None = None
    ) -> IssueParams:
        """`approval`: the address is checked first and a moderator decides (with
        `approval: required`, or for a client a blocklist sends to approval)."""
        policy = self._policy.current
        return IssueParams(
            request_id=request_id,
            now_ms=self._api.get_current_time_msec(),
            token_lifetime_ms=self._config.token_lifetime_ms,
            cooldown_ms=self._config.email_cooldown_ms,
            multiple_users_per_email=self._config.multiple_users_per_email,
            per_email=policy.rate_limits.per_email,
            per_email_domain=policy.rate_limits.email_domain_limit,
            outbox_id=new_id(),
            token=None if approval else new_token(),
            code=new_token() if approval else None,
            forget_address=self._config.privacy.hash_emails,
            parsed_email=email,
            notify=self._config.notifications.wants("requests"),
        )

    def _assessed(self, issued: IssueOutcome, approval: bool) -> None:
        if isinstance(issued, NotIssued):
            logger.info("request %s: no mail, reason=%s", issued.request_id, issued.reason)
            metrics.request_processed(self._api.server_name, "suppressed", issued.reason)
            return
        if issued is None:
            return
        request_id = issued.request_id
        if approval:
            logger.info("request %s: address check queued for %r", request_id, issued.localpart)
            metrics.request_processed(self._api.server_name, "verifying", "verifying")
        else:
            logger.info(
                "request %s: token issued for %r, mail queued", request_id, issued.localpart
            )
            metrics.request_processed(self._api.server_name, "issued", "issued")
            metrics.token_issued(self._api.server_name)
        self._delivery.kick(issued.outbox_id)

    def _not_assessed(self, failure: Failure, request_id: str) -> None:
        # The request stays `received`; the mail sweep assesses it later (process_orphans).
        logger.error(
            "request %s: not assessed, retried by the sweep: %s",
            request_id,
            failure.getErrorMessage(),
            exc_info=failure.value,
        )

    async def verify_address(self, code: str) -> bool:
        """Approval mode: the link in the mail was followed; moderators are told."""
        notices = [(new_id(), address) for address in self._config.approval_notify_emails]
        pending = await self._requests.verify_address(
            code, self._api.get_current_time_msec(), notices
        )
        if pending is None:
            return False
        logger.info("request %s: address confirmed, waiting for a moderator", pending.request_id)
        for outbox_id, _ in notices:
            self._delivery.kick(outbox_id)
        if self._on_pending is not None:
            await self._on_pending(pending)
        return True

    async def process_orphans(self) -> None:
        """Finish requests whose process died between the answer and `process`."""
        cutoff = self._api.get_current_time_msec() - ORPHAN_AFTER_MS
        for request_id, ip in await self._requests.orphans(cutoff, 100):
            await self.process(request_id, ip)

    def _email_key(self, email: ParsedEmail) -> str:
        """The identity rules use: the normalised address, or its keyed hash."""
        privacy = self._config.privacy
        return address_key(email.normalised, privacy.hash_secret if privacy.hash_emails else None)

    async def _check_username(self, raw: str) -> str | Refusal:
        checked = await self._usernames.check(raw)
        if isinstance(checked, Refusal):
            self._username_refused(checked)
        return checked

    def _username_refused(self, checked: Refusal) -> None:
        if checked.errcode == outcomes.USERNAME_BANNED:
            self._refused("username_banned", flood=True)
        elif checked.errcode == "M_MISSING_PARAM":
            self._refused("username_missing")
        else:
            self._refused(f"username_{checked.errcode}")

    def _request_limits(self, ip: str) -> list[tuple[str, Bucket]]:
        limits = self._policy.current.rate_limits
        v4_prefix, v6_prefix = limits.ipv4_network_prefix, limits.ipv6_network_prefix
        keys = self._ip_keys.get(ip)
        if keys is None or keys[0] != (v4_prefix, v6_prefix):
            if len(self._ip_keys) >= _MAX_IP_KEYS:
                self._ip_keys.clear()
            network = network_of(ip, v4_prefix, v6_prefix)
            keys = self._ip_keys[ip] = (
                (v4_prefix, v6_prefix),
                "ip:" + rate_limit_key(ip),
                None if network is None else f"net:{network}",
            )
        _, ip_key, network_key = keys
        if network_key is None:
            return [(ip_key, limits.per_ip), ("global", limits.global_)]
        return [
            (ip_key, limits.per_ip),
            (network_key, limits.network_limit),
            ("global", limits.global_),
        ]

    def _known_wait(self, limits: list[tuple[str, Bucket]], now: int) -> int:
        for key, bucket in limits:
            known = self._empty_until.get(key)
            if known is None:
                continue
            until, remembered = known
            # A memory made under other limits (a reload changed them) is void.
            if until > now and remembered == bucket:
                return until - now
            del self._empty_until[key]
        return 0

    def _remember_empty(self, key: str, bucket: Bucket, until: int) -> None:
        if len(self._empty_until) > 100_000:
            self._empty_until.clear()
        self._empty_until[key] = (until, bucket)

    def _refused(self, reason: str, detail: str | None = None, *, flood: bool = False) -> None:
        """Log and count one refusal. `flood`: one a flood repeats thousands of times a
        second, logged at most once a second (FloodLog); every one is counted."""
        if flood:
            self._flood_log.refused(reason)
        elif detail is not None:
            logger.info("request refused: reason=%s (%s)", reason, detail)
        else:
            logger.info("request refused: reason=%s", reason)
        metrics.request_answered(self._api.server_name, "refused", reason)

    def _limited(self, wait_ms: int) -> Refusal:
        self._refused("rate_limited", flood=True)
        return outcomes.rate_limited(math.ceil(wait_ms / 1000))


def rate_limit_key(ip: str) -> str:
    """IPv6 clients are limited per /64: one subscriber usually holds a whole /64."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def domain_bucket_key(hash_secret: str | None) -> DomainKey:
    """The bucket key of an address's mail domain (its registrable part,
    rules/addresses.py): `domain:example.org`, or with `privacy.hash_emails` the
    domain's keyed hash, like the address's."""

    def key(address: str) -> str:
        _, at, domain = address.rpartition("@")
        if not at or not domain:
            return ""
        return "domain:" + address_key(registrable_domain(domain), hash_secret)

    return key


def _domain_refusal(reason: str) -> Refusal:
    if reason == "disposable":
        return Refusal(
            400,
            outcomes.DOMAIN_DISPOSABLE,
            "Addresses from disposable-mail providers are not accepted. "
            "Please use a permanent address.",
            "email",
        )
    return Refusal(
        400,
        outcomes.DOMAIN_NOT_ALLOWED,
        "Addresses at this domain are not accepted here. Please use another address.",
        "email",
    )


def _mail_domain_refusal(reason: str) -> Refusal:
    """A domain DNS says takes no personal mail: answered as a disposable one."""
    if reason == "no_mail_host":
        message = (
            "Mail cannot be delivered to this domain: it has no mail server. "
            "Please check the address, or use another one."
        )
    else:
        message = (
            "Addresses at this domain do not receive personal mail here. "
            "Please use a permanent address."
        )
    return Refusal(400, outcomes.DOMAIN_DISPOSABLE, message, "email")


class FloodLog:
    """At most one line per second per refusal reason that a flood can repeat.

    Under a flood the same refusal comes thousands of times a second; writing
    each to the log cost more than answering it (benchmarks/bench_flood.py). The
    first refusal of a second is logged at once, the rest are counted into the
    next line; the metrics count every one.
    """

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._windows: dict[str, list[float]] = {}  # reason -> [window start, unlogged]

    def refused(self, reason: str) -> None:
        now = time.monotonic()
        window = self._windows.get(reason)
        if window is not None and now - window[0] < 1.0:
            window[1] += 1
            return
        unlogged = int(window[1]) if window is not None else 0
        if unlogged:
            self._log.info(
                "request refused: reason=%s (and %d more since the last such line)",
                reason,
                unlogged,
            )
        else:
            self._log.info("request refused: reason=%s", reason)
        self._windows[reason] = [now, 0]
