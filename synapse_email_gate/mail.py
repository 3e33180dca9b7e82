"""What the mails say: rendered from templates an admin can override."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from urllib.parse import urlencode

import attrs
import jinja2

from synapse_email_gate.smtp import OutgoingMail

TemplateLoader = Callable[[list[str]], list[jinja2.Template]]

TOKEN_TEMPLATES = [
    "email_gate_token_subject.txt",
    "email_gate_token.txt",
    "email_gate_token.html",
]


@attrs.frozen
class TokenMailFacts:
    to: str
    localpart: str
    token: str
    expires_ts: int
    request_id: str


def describe_duration(ms: int) -> str:
    """`86400000` -> `24 hours`; whole units, largest that fits."""
    seconds = max(0, ms // 1000)
    for size, unit in ((86_400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size and (seconds % size == 0 or seconds >= 2 * size):
            count = round(seconds / size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def format_utc(ts_ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ts_ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def registration_link(base_url: str, token: str) -> str:
    return f"{base_url}register?{urlencode({'token': token})}"


class MailComposer:
    def __init__(
        self,
        load_templates: TemplateLoader,
        *,
        server_name: str,
        sender: str,
        page_base_url: str,
    ) -> None:
        self._subject, self._text, self._html = load_templates(TOKEN_TEMPLATES)
        self._server_name = server_name
        self._sender = sender
        self._page_base_url = page_base_url

    def token_mail(self, facts: TokenMailFacts, now_ms: int) -> OutgoingMail:
        variables = {
            "server_name": self._server_name,
            "user_id": f"@{facts.localpart}:{self._server_name}",
            "localpart": facts.localpart,
            "token": facts.token,
            "link": registration_link(self._page_base_url, facts.token),
            "expires_utc": format_utc(facts.expires_ts),
            "expires_in": describe_duration(facts.expires_ts - now_ms),
        }
        subject = " ".join(self._subject.render(**variables).split())
        return OutgoingMail(
            to=facts.to,
            subject=subject,
            text=self._text.render(**variables),
            html=self._html.render(**variables),
            sender=self._sender,
            headers={"X-Email-Gate-Request": facts.request_id},
        )
