"""What every page template gets: language, translations, branding, links.

Templates and their variables are documented in docs/templates.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import attrs
from synapse.http.site import SynapseRequest
from synapse.module_api import ModuleApi

from synapse_email_gate.config.i18n import LANG_COOKIE, Translations, Translator
from synapse_email_gate.config.pages import PagesConfig
from synapse_email_gate.requests.outcomes import Refusal
from synapse_email_gate.web.http import cookie, query_param
from synapse_email_gate.web.resource import BASE_PATH

LANG_COOKIE_MAX_AGE_S = 365 * 24 * 3600
# Shown when no favicon is configured, so that browsers do not ask for /favicon.ico.
BUILT_IN_FAVICON = "email_gate_favicon.svg"
# The names of these change with their content (see config/brand_files.py).
_IMMUTABLE = "public, max-age=31536000, immutable"
# An SVG opened on its own is a document of our origin: no script, no loads.
_IMAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox"


@attrs.frozen
class Asset:
    """A file the module makes from its config and serves below static/."""

    content_type: str
    body: bytes = attrs.field(repr=False)
    headers: Mapping[str, str]


class PageKit:
    def __init__(self, api: ModuleApi, config: PagesConfig, translations: Translations) -> None:
        self._api = api
        self._config = config
        self.translations = translations
        # Where people reach the pages: `public_url` (a sign-up origin behind a proxy
        # that maps its path to BASE_PATH), else BASE_PATH below public_baseurl.
        self.page_url = config.public_url or f"{api.public_baseurl}{BASE_PATH.lstrip('/')}/"
        # The pages' links, form actions and cookies are below this path of page_url.
        self.base_path = (
            urlsplit(config.public_url).path.rstrip("/") if config.public_url else BASE_PATH
        )
        self.cookie_path = self.base_path + "/"
        self.secure = self.page_url.startswith("https://")
        self.assets = _assets(config)
        branding = config.branding
        self._logo_url = branding.logo_url
        if branding.logo_file is not None:
            self._logo_url = f"{self.base_path}/static/{branding.logo_file.name}"
        favicon = branding.favicon_file
        self._favicon_url = (
            f"{self.base_path}/static/{favicon.name if favicon else BUILT_IN_FAVICON}"
        )
        self._favicon_type = favicon.content_type if favicon else "image/svg+xml"
        self._theme_name = config.theme.stylesheet_name()
        stylesheet = config.theme.stylesheet()
        self._theme_url = f"{self.base_path}/static/{self._theme_name}" if stylesheet else None

    def admin_variables(self) -> dict[str, object]:
        """The admin page stays at BASE_PATH on the homeserver, whatever public_url says."""
        favicon = self._config.branding.favicon_file
        name = favicon.name if favicon else BUILT_IN_FAVICON
        return {
            "server_name": self._api.server_name,
            "base_path": BASE_PATH,
            "favicon_url": f"{BASE_PATH}/static/{name}",
            "favicon_type": self._favicon_type,
            **({"theme_url": f"{BASE_PATH}/static/{self._theme_name}"} if self._theme_url else {}),
        }

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
                path=self.cookie_path,
                max_age=str(LANG_COOKIE_MAX_AGE_S),
                httpOnly=True,
                sameSite="lax",
                secure=self.secure,
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
        for document in branding.legal_documents:
            title, title_lang = document.title_in(translate.code, self._config.default_language)
            links.append(
                {
                    "key": document.key,
                    "url": document.url,
                    "text": title or translate(f"page.{document.key}"),
                    "lang": title_lang if title and title_lang != translate.code else None,
                }
            )
        languages = [
            {
                "code": language.code,
                "name": language.name,
                "url": self.base_path
                + path
                + "?"
                + urlencode({**(query or {}), "lang": language.code}),
                "current": language.code == translate.code,
            }
            for language in self.translations.languages()
        ]
        intro, intro_lang = branding.intro_in(translate.code, self._config.default_language)
        return {
            "server_name": self._api.server_name,
            "display_name": self.display_name,
            "base_path": self.base_path,
            "lang": translate.code,
            "dir": translate.dir,
            "_": translate,
            "error_text": error_text(translate),
            "languages": languages,
            "legal_links": links,
            "consent_required": branding.consent_required,
            "logo_url": self._logo_url,
            "favicon_url": self._favicon_url,
            "favicon_type": self._favicon_type,
            "theme_url": self._theme_url,
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


def _assets(config: PagesConfig) -> dict[str, Asset]:
    assets = {}
    for image in (config.branding.logo_file, config.branding.favicon_file):
        if image is not None:
            headers = {"Cache-Control": _IMMUTABLE, "Content-Security-Policy": _IMAGE_CSP}
            assets[image.name] = Asset(image.content_type, image.body, headers)
    stylesheet = config.theme.stylesheet()
    if stylesheet:
        assets[config.theme.stylesheet_name()] = Asset(
            "text/css; charset=utf-8", stylesheet.encode(), {"Cache-Control": _IMMUTABLE}
        )
    return assets


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
