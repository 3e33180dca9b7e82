"""`EmailGate`: reads the config and wires the parts together; nothing else.

See docs/internals.md for the shape of the module.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from email.utils import formataddr
from pathlib import Path
from typing import Any

from synapse.http.site import SynapseRequest
from synapse.logging.context import make_deferred_yieldable
from synapse.module_api import ModuleApi
from synapse.module_api.errors import ConfigError
from synapse.util.async_helpers import ObservableDeferred
from twisted.internet import reactor

from synapse_email_gate.config.gate import GateConfig, check_moderators
from synapse_email_gate.config.i18n import Translations
from synapse_email_gate.config.listeners import warn_about_forwarding
from synapse_email_gate.housekeeping import Housekeeping
from synapse_email_gate.mail.asyncio_bridge import AsyncioThread
from synapse_email_gate.mail.compose import MailComposer
from synapse_email_gate.mail.delivery import MailDelivery, RetryPolicy
from synapse_email_gate.moderation.account_actions import SynapseAccounts
from synapse_email_gate.moderation.accounts import AccountService
from synapse_email_gate.moderation.imports import RecordImport
from synapse_email_gate.moderation.moderators import Moderators
from synapse_email_gate.moderation.notifications import Notifier
from synapse_email_gate.moderation.probation import Probation
from synapse_email_gate.moderation.room import ModerationRoom
from synapse_email_gate.moderation.service import ModerationService
from synapse_email_gate.moderation.stats import GateStats
from synapse_email_gate.moderation.surge import SurgeService
from synapse_email_gate.policy.live import LivePolicy
from synapse_email_gate.policy.revocation import SYSTEM_ACTOR, Revoker
from synapse_email_gate.policy.rooms import PolicyRooms
from synapse_email_gate.policy.surge import SurgeMode
from synapse_email_gate.policy.sync import PolicySync
from synapse_email_gate.requests import log_redaction, outcomes
from synapse_email_gate.requests.after_registration import AfterRegistration
from synapse_email_gate.requests.challenge_gate import ChallengeGate
from synapse_email_gate.requests.client_address import AddressSeal
from synapse_email_gate.requests.dns_checks import dns_checks
from synapse_email_gate.requests.refusal_tally import FLUSH_INTERVAL_MS, RefusalTally
from synapse_email_gate.requests.registration import RegistrationHooks
from synapse_email_gate.requests.service import RequestService, domain_bucket_key
from synapse_email_gate.requests.usernames import UsernameCheck
from synapse_email_gate.rules.identifiers import new_id
from synapse_email_gate.rules.ips import IpRules
from synapse_email_gate.rules.notifications import SURGE, Event
from synapse_email_gate.storage.accounts import AccountStore
from synapse_email_gate.storage.buckets import BucketStore
from synapse_email_gate.storage.imports import ImportStore
from synapse_email_gate.storage.intake import IntakeStore
from synapse_email_gate.storage.issue import IssueStore
from synapse_email_gate.storage.moderation import ModerationStore
from synapse_email_gate.storage.notifications import NotificationStore
from synapse_email_gate.storage.outbox import OutboxStore
from synapse_email_gate.storage.policy_rooms import PolicyRoomStore
from synapse_email_gate.storage.requests import RequestStore
from synapse_email_gate.storage.runner import Runner
from synapse_email_gate.storage.schema import SchemaStore
from synapse_email_gate.storage.state import StateStore
from synapse_email_gate.storage.stats import StatsStore
from synapse_email_gate.storage.surge import SurgeStore
from synapse_email_gate.storage.token_counters import retry_token_counters
from synapse_email_gate.storage.tokens import TokenStore
from synapse_email_gate.web.admin import AdminHandlers
from synapse_email_gate.web.finish import REGISTER_TEMPLATE, FinishHandlers
from synapse_email_gate.web.handlers import PAGE_TEMPLATES, RequestHandlers
from synapse_email_gate.web.http import respond_json
from synapse_email_gate.web.pages import PageKit
from synapse_email_gate.web.resource import BASE_PATH, GateResource, Handler
from synapse_email_gate.web.routes import WebHandlers, early_routes, gate_routes

logger = logging.getLogger(__name__)

TEMPLATE_DIR = str(Path(__file__).resolve().parent / "templates")


class EmailGate:
    def __init__(self, config: GateConfig, api: ModuleApi) -> None:
        try:  # needs the server name, which parse_config does not know
            check_moderators(config.moderators, api.server_name)
        except ConfigError as e:
            raise ConfigError(f"email_gate: {e.msg}", e.path) from e
        self._api = api
        self._config = config
        db = Runner(api)
        retry_token_counters(api, db)
        self._schema_store = SchemaStore(db)
        state = StateStore(db)
        moderation = ModerationStore(db)
        tokens = TokenStore(db)
        requests = RequestStore(db)
        log_redaction.install()
        warn_about_forwarding(api)
        self._policy = LivePolicy(
            config.policy, config.policy_file, api.get_current_time_msec, api.server_name
        )
        privacy = config.privacy
        self._revoker = Revoker(
            api,
            self._policy,
            privacy.hash_secret if privacy.hash_emails else None,
            moderation,
            requests,
        )
        self._policy_sync = PolicySync(self._policy, self._revoker, state, moderation)
        self._policy_rooms: PolicyRooms | None = None
        if config.policy_rooms:
            self._policy_rooms = PolicyRooms(
                api,
                config.policy_rooms,
                f"@{config.bot_localpart}:{api.server_name}",
                self._policy,
                self._revoker,
                PolicyRoomStore(db),
            )
            self._policy_rooms.register()
        self._bridge = AsyncioThread(reactor)
        pages_config = config.pages
        translations = Translations.load(
            pages_config.translations_dir, pages_config.default_language
        )
        kit = PageKit(api, pages_config, translations)
        # Where the pages are: the links in mails and the invite links.
        page_base_url = kit.page_url
        composer = MailComposer(
            lambda names: api.read_templates(names, TEMPLATE_DIR),
            server_name=api.server_name,
            sender=config.sender or formataddr((api.server_name, f"noreply@{api.server_name}")),
            page_base_url=page_base_url,
            translations=translations,
            display_name=kit.display_name,
        )
        self._delivery = MailDelivery(
            api,
            config.smtp,
            composer,
            self._bridge,
            RetryPolicy(config.mail_retry_for_ms, config.mail_retry_initial_ms),
            forget_addresses=config.privacy.hash_emails,
            queue=OutboxStore(db),
        )
        notifications = NotificationStore(db)
        self._notifications = notifications
        notify = config.notifications
        after = AfterRegistration(
            api,
            pages_config.after_registration,
            pages_config.default_language,
            requests,
            config.bot_localpart,
            notifications,
            notify_accounts=notify.wants("accounts"),
            report_failures=bool(notify.emails) or config.moderation_room is not None,
        )
        after.register()
        seal = AddressSeal(api, state)
        account_store = AccountStore(db)
        self._probation = Probation(api, config.probation, account_store)
        self._probation.register()
        hooks = RegistrationHooks(
            api,
            self._policy,
            seal,
            tokens,
            requests,
            self._schema_ready,
            after.run if after.active else None,
            self._probation.noted,
        )
        hooks.register()

        self._schema = ObservableDeferred(
            api.run_as_background_process("email_gate_schema", self._create_schema),
            consumeErrors=True,
        )
        moderators = Moderators(api, config.moderators, moderation)
        housekeeping = Housekeeping(api, config, self._policy, requests)
        moderation_service = ModerationService(
            api,
            self._policy_sync,
            self._delivery,
            config.token_lifetime_ms,
            moderation,
            tokens,
            requests,
            page_base_url,
            self._policy_rooms,
            probation=self._probation,
            purge=housekeeping.purge,
        )
        accounts = AccountService(
            api,
            account_store,
            moderation,
            self._probation,
            SynapseAccounts(api),
            f"@{config.bot_localpart}:{api.server_name}",
        )
        self._surge_mode = SurgeMode(SurgeStore(db), api.get_current_time_msec, api.server_name)
        surge = SurgeService(
            api,
            config.surge,
            config.challenge.difficulty,
            SurgeStore(db),
            self._surge_mode,
            self._policy,
            tell=self._tell_moderators,
        )
        stats_store = StatsStore(db)
        self._refusals = RefusalTally(stats_store, api.get_current_time_msec)
        stats = GateStats(api, stats_store, self._when_schema(self._refusals.flush))
        self._room = self._moderation_room(
            moderation_service, accounts, moderators, state, surge, stats
        )
        if notify.channels or self._room is not None:
            notifier = Notifier(api, notify, notifications, self._delivery, self._room)
            api.looping_background_call(
                self._when_schema(notifier.deliver),
                notify.check_interval_ms,
                desc="email_gate_notify",
            )
        challenges = ChallengeGate(
            api,
            config.challenge,
            state,
            on_demand=config.dnsbl.uses("challenge"),
            surge=self._surge_mode,
        )
        dnsbl, mail_domains = dns_checks(config, reactor, api.server_name)
        self._service = RequestService(
            api,
            config,
            self._policy,
            self._delivery,
            requests,
            IntakeStore(db),
            IssueStore(
                db,
                lambda: self._policy.current.email_ban,
                domain_bucket_key(
                    config.privacy.hash_secret if config.privacy.hash_emails else None
                ),
            ),
            on_pending=self._room.announce_pending if self._room is not None else None,
            dnsbl=dnsbl,
            mail_domains=mail_domains,
            challenges=challenges,
            surge=self._surge_mode,
        )
        pages = RequestHandlers(
            api,
            self._service,
            api.read_templates(PAGE_TEMPLATES, TEMPLATE_DIR),
            IpRules.compile(config.trusted_proxies),
            challenges,
            kit,
            self._refusals,
        )
        (register_page,) = api.read_templates([REGISTER_TEMPLATE], TEMPLATE_DIR)
        finish = FinishHandlers(
            api,
            kit,
            register_page,
            pages_config,
            self._policy,
            IpRules.compile(config.trusted_proxies),
            seal,
            BucketStore(db),
            requests,
            tokens,
            UsernameCheck(api, self._policy),
        )
        (admin_page,) = api.read_templates(["email_gate_admin.html"], TEMPLATE_DIR)
        admin = AdminHandlers(
            api,
            moderators,
            moderation_service,
            accounts,
            admin_page,
            kit.admin_variables(),
            surge=surge,
            imports=RecordImport(
                api,
                ImportStore(db),
                moderation,
                privacy.hash_secret if privacy.hash_emails else None,
            ),
            stats=stats,
        )
        web = WebHandlers(pages, finish, admin)
        api.register_web_resource(
            BASE_PATH, GateResource(gate_routes(web, self._when_ready), early_routes(web))
        )

        api.looping_background_call(
            self._check_policy,
            config.policy_check_interval_ms,
            desc="email_gate_check_policy",
            run_on_all_instances=True,
        )
        api.looping_background_call(
            self._sweep, config.mail_sweep_interval_ms, desc="email_gate_sweep"
        )
        if self._policy_rooms is not None:
            api.looping_background_call(
                self._when_schema(self._policy_rooms.check),
                config.policy_check_interval_ms,
                desc="email_gate_policy_rooms",
                run_on_all_instances=True,
            )
        if config.probation.enabled:
            api.looping_background_call(
                self._when_schema(self._probation.refresh),
                config.probation.refresh_interval_ms,
                desc="email_gate_probation",
                run_on_all_instances=True,
            )
        api.looping_background_call(
            self._when_schema(self._flush_refusals),
            FLUSH_INTERVAL_MS,
            desc="email_gate_flush_refusals",
            run_on_all_instances=True,
        )
        # The counts since the last flush are written before the database closes.
        # (mypy without the zope plugin reads the interface's methods as taking self)
        reactor.addSystemEventTrigger(
            "before",
            "shutdown",  # type: ignore[arg-type]
            self._flush_at_shutdown,
        )
        api.looping_background_call(
            self._when_schema(surge.check), config.surge.check_interval_ms, desc="email_gate_surge"
        )
        api.looping_background_call(
            self._when_schema(housekeeping.scheduled_purge),
            config.retention.purge_interval_ms,
            desc="email_gate_purge",
        )

    @staticmethod
    def parse_config(config: dict[str, Any]) -> GateConfig:
        try:
            return GateConfig.parse(config)
        except ConfigError as e:
            raise ConfigError(f"email_gate: {e.msg}", e.path) from e

    def _moderation_room(
        self,
        service: ModerationService,
        accounts: AccountService,
        moderators: Moderators,
        state: StateStore,
        surge: SurgeService,
        stats: GateStats,
    ) -> ModerationRoom | None:
        if self._config.moderation_room is None:
            return None
        room = ModerationRoom(
            self._api,
            self._config.moderation_room,
            self._config.bot_localpart,
            service,
            moderators,
            state,
            self._config.command_prefix,
            accounts,
            surge=surge,
            stats=stats,
        )
        room.register()
        return room

    async def _create_schema(self) -> bool:
        await self._schema_store.create()
        await self._policy_sync.follow()
        await self._probation.start()
        if self._api.should_run_background_tasks():
            # Bans in homeserver.yaml may have changed with this start.
            self._api.run_as_background_process(
                "email_gate_revoke", self._revoker.revoke_banned, SYSTEM_ACTOR, "start-up"
            )
        joins_rooms = bool(self._config.pages.after_registration.join_rooms)
        if self._room is not None or self._policy_rooms is not None or joins_rooms:
            # Not awaited: registering the bot runs our own on_user_registration,
            # which waits for this very function to finish.
            self._api.run_as_background_process("email_gate_bot", self._ensure_bot)
        return True

    async def _ensure_bot(self) -> None:
        """On the background instance at start-up: the bot user (of the moderation
        room, the policy rooms and the invites to `join_rooms`) exists."""
        if not self._api.should_run_background_tasks():
            return
        localpart = self._config.bot_localpart
        bot = f"@{localpart}:{self._api.server_name}"
        try:
            if await self._api.check_user_exists(bot) is None:
                await self._api.register_user(localpart, displayname="Registration gate")
                logger.info("bot %s created", bot)
        except Exception:
            logger.exception("could not create the bot user %s", bot)

    async def _schema_ready(self) -> bool:
        try:
            ready: bool | None = await make_deferred_yieldable(self._schema.observe())
            return bool(ready)
        except Exception:
            return False

    def _when_ready(self, handler: Handler) -> Handler:
        """Requests that touch our tables wait for them to exist."""

        async def wrapped(request: SynapseRequest) -> None:
            if await self._schema_ready():
                await handler(request)
            else:
                respond_json(
                    request,
                    503,
                    {"errcode": outcomes.UNAVAILABLE, "error": "Not ready; see the server log"},
                )

        return wrapped

    def _when_schema(self, task: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        async def wrapped() -> None:
            if await self._schema_ready():
                await task()

        return wrapped

    async def _tell_moderators(self, text: str) -> None:
        """Tell the moderators about a surge switch: in the moderation room, and by
        mail to `notifications.emails` (through the notifications, so it is retried)."""
        if self._room is not None:
            await self._room.announce(text)
        else:
            logger.info("no moderation room to tell: %s", text)
        if self._config.notifications.emails:
            now = self._api.get_current_time_msec()
            event = Event(new_id(), now, SURGE, "", None, text)
            try:
                await self._notifications.record([event])
            except Exception:
                logger.exception("could not record the mail about a surge switch")

    async def _check_policy(self) -> None:
        file_loaded = self._policy.check()
        if not await self._schema_ready():
            return
        await self._surge_mode.refresh()
        followed = await self._policy_sync.follow()
        # One process revokes what a changed policy_file bans; a change made
        # through the admin API was revoked by the process that made it, and
        # this finds nothing left (or what that process could not finish).
        if (file_loaded or followed) and self._api.should_run_background_tasks():
            cause = "policy_file changed" if file_loaded else "policy changed elsewhere"
            await self._revoker.revoke_banned(SYSTEM_ACTOR, cause)

    async def _flush_refusals(self) -> None:
        await self._refusals.flush()
        if self._api.should_run_background_tasks():
            await self._refusals.purge()

    def _flush_at_shutdown(self) -> object:
        if not self._schema.has_succeeded():
            return None
        return self._api.run_as_background_process(
            "email_gate_flush_refusals", self._refusals.flush
        )

    async def _sweep(self) -> None:
        if not await self._schema_ready():
            return
        await self._service.process_orphans()
        await self._delivery.sweep()
