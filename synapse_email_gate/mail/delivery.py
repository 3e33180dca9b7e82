"""Delivers queued mails over SMTP without blocking Synapse's reactor.

aiosmtplib runs on a private asyncio loop in its own thread (see
mail/asyncio_bridge.py); results come back to the reactor. A mail is tried at once by
the process that queued it (`kick`), and again by the background sweep on the
process Synapse runs background tasks on, with exponential backoff
(`mail_retry_initial`, doubling, at most 30 min apart), until `mail_retry_for`
has passed; then it is marked failed, logged and counted. docs/mail.md tells
the whole story, crashes included.

Mails go out in batches over one SMTP connection: the sweep takes up to
`SWEEP_BATCH` due mails at a time, and kicks that arrive while this process is
already sending are collected and sent together.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence

import attrs
from synapse.module_api import ModuleApi

from synapse_email_gate import metrics
from synapse_email_gate.mail.asyncio_bridge import AsyncioThread
from synapse_email_gate.mail.compose import MailComposer
from synapse_email_gate.mail.mime import WireMail, build_mail
from synapse_email_gate.mail.smtp import SendResult, SmtpSettings, send_batch
from synapse_email_gate.storage import outbox
from synapse_email_gate.storage.outbox import OutboxStore

logger = logging.getLogger(__name__)

SWEEP_BATCH = 50
# After this long on one batch, the sender stops and leaves the rest for later.
MIN_BATCH_TIME_S = 60.0
# Lease = batch time limit + this margin for the database write that ends it.
LEASE_MARGIN_MS = 60_000


@attrs.frozen
class RetryPolicy:
    retry_for_ms: int
    initial_ms: int = 30_000


def batch_time_limit_s(smtp: SmtpSettings) -> float:
    """Connect + TLS + login + a few commands may each take `smtp.timeout`."""
    return max(MIN_BATCH_TIME_S, 4 * smtp.timeout_seconds)


def lease_ms(smtp: SmtpSettings) -> int:
    """How long a claimed mail stays ours: longer than any batch can take."""
    return int(batch_time_limit_s(smtp) * 1000) + LEASE_MARGIN_MS


class MailDelivery:
    def __init__(
        self,
        api: ModuleApi,
        smtp: SmtpSettings,
        composer: MailComposer,
        bridge: AsyncioThread,
        retry: RetryPolicy | int,
        forget_addresses: bool,
        queue: OutboxStore,
    ) -> None:
        self._api = api
        self._smtp = smtp
        self._composer = composer
        self._bridge = bridge
        self._retry = retry if isinstance(retry, RetryPolicy) else RetryPolicy(retry)
        self._forget_addresses = forget_addresses
        self._queue = queue
        self._server = api.server_name
        self._time_limit_s = batch_time_limit_s(smtp)
        self._lease_ms = lease_ms(smtp)
        self._kicked: set[str] = set()
        self._draining = False
        self._sweeping = False

    def kick(self, outbox_id: str) -> None:
        """Try one queued mail now, in the background (batched with other kicks)."""
        metrics.mail_queued(self._server)
        self._kicked.add(outbox_id)
        if not self._draining:
            self._draining = True
            self._api.run_as_background_process("email_gate_send", self._drain_kicked)

    async def _drain_kicked(self) -> None:
        try:
            while self._kicked:
                batch = list(self._kicked)[:SWEEP_BATCH]
                self._kicked.difference_update(batch)
                try:
                    await self._deliver(batch)
                except Exception:
                    # The rows stay queued: the sweep retries them.
                    logger.exception("mail delivery failed; the sweep will retry")
        finally:
            self._draining = False

    async def sweep(self) -> None:
        """Deliver every due mail (retries, and mails queued by crashed processes)."""
        if self._sweeping:
            return
        self._sweeping = True
        try:
            while await self._deliver(None):
                pass
            await self.update_queue_metrics()
        finally:
            self._sweeping = False

    async def update_queue_metrics(self) -> None:
        length, oldest = await self._queue.backlog()
        now = self._api.get_current_time_msec()
        age_s = 0.0 if oldest is None else max(0, now - oldest) / 1000
        metrics.queue_state(self._server, length, age_s)

    async def _deliver(self, outbox_ids: Sequence[str] | None) -> bool:
        """Claim and send one batch; True when a sweep should take another."""
        now = self._api.get_current_time_msec()
        claimed = await self._queue.claim(now, outbox_ids, SWEEP_BATCH, self._lease_ms)
        if not claimed:
            return False
        results: dict[str, SendResult] = {}
        due: list[outbox.ClaimedMail] = []
        for mail in claimed:
            expires_ts = mail.facts.expires_ts
            if mail.kind == "token" and expires_ts is not None and expires_ts <= now:
                # Sent now it would carry a dead token: the person asks again instead.
                results[mail.outbox_id] = SendResult(
                    ok=False,
                    permanent=True,
                    error="the token expired before the mail could be sent",
                    reason="token_expired",
                )
                continue
            due.append(mail)
        if due:
            results.update(await self._bridge.run(self._build_and_send(due, now)))
        await self._record([(mail, results[mail.outbox_id]) for mail in claimed])
        return outbox_ids is None and len(claimed) == SWEEP_BATCH

    async def _build_and_send(
        self, mails: Sequence[outbox.ClaimedMail], now: int
    ) -> dict[str, SendResult]:
        """Runs on the mail thread, not on Synapse's reactor: a batch of 50 mails
        rendered and built on the reactor stalled every other request for 100 ms and
        more (benchmarks/bench_mail.py).
        The mails are built while the batch goes out: while the sender waits for the
        SMTP server's replies, the next ones are built."""
        results: dict[str, SendResult] = {}
        # One mail built ahead: the next is built while the sender waits for the
        # server's replies, never while a reply waits to be read.
        ready: asyncio.Queue[tuple[outbox.ClaimedMail, WireMail] | None] = asyncio.Queue(1)
        handed: list[outbox.ClaimedMail] = []  # what send_batch took, in order

        async def build() -> None:
            try:
                for mail in mails:
                    message = self._build(mail, now, results)
                    if message is not None:
                        await ready.put((mail, message))
            finally:
                await ready.put(None)

        async def built() -> AsyncIterator[WireMail]:
            while (item := await ready.get()) is not None:
                handed.append(item[0])
                yield item[1]

        builder = asyncio.create_task(build())
        try:
            sent = await send_batch(self._smtp, built(), self._time_limit_s)
        finally:
            builder.cancel()
        # Equal lengths unless the batch's time limit struck while a mail was built.
        for mail, result in zip(handed, sent, strict=False):
            results[mail.outbox_id] = result
        for mail in mails:
            results.setdefault(
                mail.outbox_id, SendResult(ok=False, error="the batch ended before this mail")
            )
        return results

    def _build(
        self, mail: outbox.ClaimedMail, now: int, results: dict[str, SendResult]
    ) -> WireMail | None:
        """The mail as it goes out; or None, its result written, when it cannot be built."""
        try:
            return build_mail(
                self._composer.compose(mail.facts, now), message_id_domain=self._server
            )
        except ValueError as e:
            reason, error, permanent = "unbuildable", str(e), True
        except Exception as e:  # a bug: logged, and the mail tried again later
            logger.exception("request %s: the mail could not be built", mail.facts.request_id)
            reason, error, permanent = "unbuildable", f"{type(e).__name__}: {e}", False
        results[mail.outbox_id] = SendResult(
            ok=False, permanent=permanent, error=error, reason=reason
        )
        return None

    async def _record(self, attempts: list[tuple[outbox.ClaimedMail, SendResult]]) -> None:
        now = self._api.get_current_time_msec()
        outcomes = [self._disposition(mail, result, now) for mail, result in attempts]
        # Retried hard: a result not written makes the mail due again after the lease.
        await self._queue.record(outcomes, now, self._forget_addresses)
        for outcome in outcomes:
            mail = outcome.mail
            request_id = mail.facts.request_id
            if outcome.state == "sent":
                metrics.mail_sent(self._server)
                logger.info("request %s: mail sent (attempt %d)", request_id, mail.attempts)
            elif outcome.state == "failed":
                metrics.mail_failed(self._server, outcome.reason)
                logger.warning(
                    "request %s: mail failed for good, reason=%s (attempt %d): %s",
                    request_id,
                    outcome.reason,
                    mail.attempts,
                    outcome.error,
                )
            else:
                metrics.mail_retried(self._server)
                logger.warning(
                    "request %s: mail not sent (attempt %d), retry in %ds: %s",
                    request_id,
                    mail.attempts,
                    max(0, outcome.next_attempt_ts - now) // 1000,
                    outcome.error,
                )

    def _disposition(
        self, mail: outbox.ClaimedMail, result: SendResult, now: int
    ) -> outbox.Disposition:
        if result.ok:
            return outbox.Disposition(mail, "sent")
        error = result.error or "unknown error"
        give_up_ts = mail.created_ts + self._retry.retry_for_ms
        if result.permanent:
            return outbox.Disposition(mail, "failed", error, reason=result.reason or "permanent")
        if now >= give_up_ts:
            return outbox.Disposition(mail, "failed", error, reason="expired")
        delay = outbox.next_attempt_delay_ms(mail.attempts, self._retry.initial_ms)
        # The last try falls on the deadline itself, not after it.
        return outbox.Disposition(mail, "retry", error, min(now + delay, give_up_ts))
