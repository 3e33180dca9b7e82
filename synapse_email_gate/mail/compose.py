"""What the mails say: rendered from templates an admin can override.

Each mail is written in the language its request was made in (`lang`, stored
with the request); mails to moderators in the default language. Templates get
`_` (the translator of that language) and the variables listed in
docs/templates.md.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

import jinja2

from synapse_email_gate.config.durations import format_utc
from synapse_email_gate.config.i18n import Translations
from synapse_email_gate.mail.mime import OutgoingMail
from synapse_email_gate.storage.outbox import MailFacts

TemplateLoader = Callable[[list[str]], list[jinja2.Template]]

# Each kind of mail has a subject, a text and an HTML template:
# email_gate_<kind>_subject.txt, email_gate_<kind>.txt, email_gate_<kind>.html
#   token   the registration token (after approval, when approval is on)
#   verify  approval mode: prove the address
#   notice  approval mode: to moderators, a request waits
#   denied  approval mode: the request was declined
#   notification  to moderators: new requests and accounts (its text is made by
#           moderation/notifications.py and stored with it: `subject`, `message`)
MAIL_KINDS = ("token", "verify", "notice", "denied", "notification")
# Mails to moderators, written in the server's default language.
_MODERATOR_KINDS = ("notice", "notification")
# A notification names its message, not a request.
_ID_HEADER = {"notification": "X-Email-Gate-Notification"}


def template_names(kind: str) -> list[str]:
    return [f"email_gate_{kind}_subject.txt", f"email_gate_{kind}.txt", f"email_gate_{kind}.html"]


def registration_link(base_url: str, token: str) -> str:
    return f"{base_url}register?{urlencode({'token': token})}"


def verify_link(base_url: str, code: str) -> str:
    return f"{base_url}verify?{urlencode({'code': code})}"


class MailComposer:
    def __init__(
        self,
        load_templates: TemplateLoader,
        *,
        server_name: str,
        sender: str,
        page_base_url: str,
        translations: Translations | None = None,
        display_name: str | None = None,
    ) -> None:
        self._templates = {kind: load_templates(template_names(kind)) for kind in MAIL_KINDS}
        self._server_name = server_name
        self._sender = sender
        self._page_base_url = page_base_url
        self._translations = translations or Translations.load()
        self._display_name = display_name or server_name

    def compose(self, facts: MailFacts, now_ms: int) -> OutgoingMail:
        subject_t, text_t, html_t = self._templates[facts.kind]
        expires_ts = facts.expires_ts or now_ms
        # Moderators get their notices in the server's language, not the requester's.
        lang = self._translations.default if facts.kind in _MODERATOR_KINDS else facts.lang
        translate = self._translations.translator(lang)
        variables = {
            "_": translate,
            "lang": translate.code,
            "dir": translate.dir,
            "display_name": self._display_name,
            "server_name": self._server_name,
            "user_id": f"@{facts.localpart}:{self._server_name}",
            "localpart": facts.localpart,
            "token": facts.token,
            "link": registration_link(self._page_base_url, facts.token or ""),
            "verify_link": verify_link(self._page_base_url, facts.code or ""),
            "expires_utc": format_utc(expires_ts),
            "expires_in": translate.duration(expires_ts - now_ms),
            "statement": facts.statement or "",
            "message": facts.message or "",
            "requester": facts.requester or facts.to,
            "request_id": facts.request_id,
            "subject": facts.subject or "",
        }
        subject = " ".join(subject_t.render(**variables).split())
        return OutgoingMail(
            to=facts.to,
            subject=subject,
            text=text_t.render(**variables),
            html=html_t.render(**variables),
            sender=self._sender,
            headers={_ID_HEADER.get(facts.kind, "X-Email-Gate-Request"): facts.request_id},
        )
