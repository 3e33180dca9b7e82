"""What every page template gets: language, translations, branding, links.

Templates and their variables are documented in docs/templates.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

from synapse.http.site import SynapseRequest
from synapse.module_api import ModuleApi

from synapse_email_gate.config.i18n import LANG_COOKIE, Translations, Translator
from synapse_email_gate.config.pages import PagesConfig
from synapse_email_gate.requests.outcomes import Refusal
from synapse_email_gate.web.http import cookie, query_param
from synapse_email_gate.web.resource import BASE_PATH

LANG_COOKIE_MAX_AGE_S = 365 * 24 * 3600


class PageKit:
    def __init__(self, api: ModuleApi, config: PagesConfig, translations: Translations) -> None:
        self._api = api
        self._config = config
        self.translations = translations
        self._secure = api.public_baseurl.startswith("https://")

    @property
    def config(self) -> PagesConfig:
        return self._config

    def language(self, request: SynapseRequest, field: object = None) -> str:
        """The page's language: a form's hidden `lang` field when we have that
        language, else `?lang=` (a valid one is remembered in a cookie), the cookie,
        Accept-Language, the default."""
        if isinstance(field, str) and self.translations.known(field):
            return self.translations.negotiate(field)
        asked = query_param(request, "lang")
        lang = self.translations.negotiate(
            asked,
            cookie(request, LANG_COOKIE),
            request.getHeader("Accept-Language"),
        )
        if asked is not None and self.translations.known(asked) == lang:
            request.addCookie(
                LANG_COOKIE,
                lang,
                path=BASE_PATH + "/",
                max_age=str(LANG_COOKIE_MAX_AGE_S),
                httpOnly=True,
                sameSite="lax",
                secure=self._secure,
            )
        return lang

    def api_language(self, request: SynapseRequest, field: object) -> str:
        """A JSON request's language: its `lang` field, then Accept-Language, the
        default (no `?lang=`, no cookie)."""
        return self.translations.negotiate(
            field if isinstance(field, str) else None, None, request.getHeader("Accept-Language")
        )

    def translator(self, lang: str) -> Translator:
        return self.translations.translator(lang)

    @property
    def display_name(self) -> str:
        return self._config.branding.display_name or self._api.server_name

    def variables(
        self, lang: str, path: str = "/", query: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """The shared variables; `path` and `query` build the language links."""
        translate = self.translator(lang)
        branding = self._config.branding
        links = []
        for key, url in (
            ("rules", branding.rules_url),
            ("terms", branding.terms_url),
            ("privacy", branding.privacy_url),
        ):
            if url:
                links.append({"key": key, "url": url, "text": translate(f"page.{key}")})
        languages = [
            {
                "code": language.code,
                "name": language.name,
                "url": BASE_PATH + path + "?" + urlencode({**(query or {}), "lang": language.code}),
                "current": language.code == translate.code,
            }
            for language in self.translations.languages()
        ]
        intro, intro_lang = branding.intro_in(translate.code, self._config.default_language)
        return {
            "server_name": self._api.server_name,
            "display_name": self.display_name,
            "base_path": BASE_PATH,
            "lang": translate.code,
            "dir": translate.dir,
            "_": translate,
            "error_text": error_text(translate),
            "languages": languages,
            "legal_links": links,
            "consent_required": branding.consent_required,
            "logo_url": branding.logo_url,
            "logo_alt": branding.logo_alt or translate("page.logo_alt", server=self.display_name),
            "intro": intro,
            "intro_lang": intro_lang if intro_lang != translate.code else None,
            "homeserver_url": self._api.public_baseurl,
        }

    def client_links(self, user_id: str, localpart: str) -> list[dict[str, str]]:
        values = {
            "homeserver_url": self._api.public_baseurl,
            "server_name": self._api.server_name,
            "user_id": user_id,
            "localpart": localpart,
        }
        encoded = {key: quote(value, safe="") for key, value in values.items()}
        return [
            {"name": client.name, "url": client.render(**encoded)}
            for client in self._config.clients
        ]


def error_text(translate: Translator) -> Callable[..., str]:
    """A refusal in the page's language: `errors.<code>.<field>`, `errors.<code>`, or
    the refusal's own (English) message when no translation has the code."""

    def text(refusal: Refusal | None, **values: Any) -> str:
        if refusal is None:
            return ""
        # Synapse's codes are a str Enum: its value is the code ("M_USER_IN_USE").
        code = str(getattr(refusal.errcode, "value", refusal.errcode))
        keys = [f"errors.{code}"]
        if refusal.field:
            keys.insert(0, f"errors.{code}.{refusal.field}")
        for key in keys:
            if translate.text(key) is not None:
                return translate(key, **values)
        return refusal.message

    return text
