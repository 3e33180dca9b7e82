"""Delivers queued mails over SMTP without blocking Synapse's reactor.

aiosmtplib runs on a private asyncio loop in its own thread (see
asyncio_bridge.py); results come back to the reactor. A mail is tried at once by
the process that queued it, and again by the background sweep on the process
Synapse runs background tasks on, with exponential backoff, until
`mail_retry_for` has passed; then it is marked failed and logged.
"""

from __future__ import annotations

import logging
from email.message import EmailMessage

from synapse.module_api import ModuleApi

from synapse_email_gate import outbox
from synapse_email_gate.asyncio_bridge import AsyncioThread
from synapse_email_gate.mail import MailComposer
from synapse_email_gate.smtp import SendResult, SmtpSettings, build_message, send_batch

logger = logging.getLogger(__name__)

SWEEP_BATCH = 50


class MailDelivery:
    def __init__(
        self,
        api: ModuleApi,
        smtp: SmtpSettings,
        composer: MailComposer,
        bridge: AsyncioThread,
        retry_for_ms: int,
        forget_addresses: bool,
    ) -> None:
        self._api = api
        self._smtp = smtp
        self._composer = composer
        self._bridge = bridge
        self._retry_for_ms = retry_for_ms
        self._forget_addresses = forget_addresses

    def kick(self, outbox_id: str) -> None:
        """Try one queued mail now, in the background."""
        self._api.run_as_background_process("email_gate_send", self._deliver, outbox_id)

    async def sweep(self) -> None:
        """Deliver every due mail (retries, and mails queued by crashed processes)."""
        while await self._deliver(None):
            pass

    async def _deliver(self, outbox_id: str | None) -> bool:
        now = self._api.get_current_time_msec()
        claimed = await self._api.run_db_interaction(
            "email_gate_claim_mail", outbox.claim_txn, now, outbox_id, SWEEP_BATCH
        )
        if not claimed:
            return False
        sendable: list[tuple[outbox.ClaimedMail, EmailMessage]] = []
        for mail in claimed:
            try:
                message = build_message(
                    self._composer.token_mail(mail.facts, now),
                    message_id_domain=self._api.server_name,
                )
            except ValueError as e:
                await self._record(mail, SendResult(ok=False, permanent=True, error=str(e)))
                continue
            sendable.append((mail, message))
        if sendable:
            results = await self._bridge.run(
                send_batch(self._smtp, [message for _, message in sendable])
            )
            for (mail, _), result in zip(sendable, results, strict=True):
                await self._record(mail, result)
        return outbox_id is None and len(claimed) == SWEEP_BATCH

    async def _record(self, mail: outbox.ClaimedMail, result: SendResult) -> None:
        now = self._api.get_current_time_msec()
        request_id = mail.facts.request_id
        if result.ok:
            await self._api.run_db_interaction(
                "email_gate_mail_sent", outbox.mark_sent_txn, mail, now, self._forget_addresses
            )
            logger.info("request %s: mail sent", request_id)
            return
        error = result.error or "unknown error"
        if result.permanent or now - mail.created_ts >= self._retry_for_ms:
            await self._api.run_db_interaction(
                "email_gate_mail_failed",
                outbox.mark_failed_txn,
                mail,
                error,
                self._forget_addresses,
            )
            logger.warning("request %s: mail failed for good: %s", request_id, error)
            return
        next_attempt = now + outbox.next_attempt_delay_ms(mail.attempts)
        await self._api.run_db_interaction(
            "email_gate_mail_retry", outbox.mark_retry_txn, mail.outbox_id, error, next_attempt
        )
        logger.warning(
            "request %s: mail not sent (attempt %d), will retry: %s",
            request_id,
            mail.attempts,
            error,
        )
