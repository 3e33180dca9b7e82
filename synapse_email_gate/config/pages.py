"""Config of the pages, the mails' language and registering on the web.

Keys (docs/configuration.md, "The pages"): `branding`, `theme`, `public_url`, `clients`,
`password`, `after_registration`, `web_registration`, `translations_dir`,
`default_language`.
Each bad value stops Synapse with a ConfigError naming its key.
"""

from __future__ import annotations

import os
import string
from collections.abc import Callable, Mapping
from typing import TypeVar
from urllib.parse import urlsplit

import attrs

from synapse_email_gate.config.brand_files import ImageFile, read_image
from synapse_email_gate.config.i18n import LANGUAGE_CODE, TranslationError, Translations
from synapse_email_gate.config.reader import Section, room, string_list, user_id
from synapse_email_gate.config.theme import ThemeConfig

T = TypeVar("T")

CLIENT_URL_FIELDS = frozenset({"homeserver_url", "server_name", "user_id", "localpart"})


@attrs.frozen
class ClientLink:
    """A "continue in this client" link; `url` may hold {homeserver_url} etc."""

    name: str
    url: str

    def render(self, **values: str) -> str:
        return self.url.format_map({k: values.get(k, "") for k in CLIENT_URL_FIELDS})


# Element Web opens its registration screen with the homeserver filled in.
DEFAULT_CLIENTS = (
    ClientLink("Element", "https://app.element.io/#/register?hs_url={homeserver_url}"),
)


@attrs.frozen
class LegalDocument:
    """A document the person is asked to read (and accept, with consent_required).

    `title` is a plain text or one per language; empty for the older keys
    (`rules_url`, ...), whose title is the translation `page.<key>`."""

    url: str
    title: Mapping[str, str] = attrs.field(factory=dict)
    key: str = "document"

    def title_in(self, lang: str, default_lang: str) -> tuple[str, str | None]:
        return text_in(self.title, lang, default_lang)


# The older spelling: three fixed keys, shown in this order before `legal_documents`.
LEGACY_LEGAL_KEYS = ("rules", "terms", "privacy")


@attrs.frozen
class BrandingConfig:
    """What the pages and mails show of the server."""

    display_name: str | None = None
    logo_url: str | None = None
    logo_alt: str | None = None
    # Served by the module itself; logo_file wins over logo_url.
    logo_file: ImageFile | None = None
    favicon_file: ImageFile | None = None
    # A plain text, or one per language: {"en": "...", "de": "..."}.
    intro: Mapping[str, str] = attrs.field(factory=dict)
    legal_documents: tuple[LegalDocument, ...] = ()
    consent_required: bool = False

    def intro_in(self, lang: str, default_lang: str) -> tuple[str, str | None]:
        """The intro for `lang` and the language it is written in (None: unknown)."""
        return text_in(self.intro, lang, default_lang)

    @staticmethod
    def from_section(section: Section) -> BrandingConfig:
        logo_url = section.convert("logo_url", None, _same_origin_path)
        documents = [
            LegalDocument(url=url, key=key)
            for key in LEGACY_LEGAL_KEYS
            if (url := section.convert(f"{key}_url", None, _link)) is not None
        ]
        documents += section.convert("legal_documents", [], _legal_documents)
        consent = section.boolean("consent_required", bool(documents))
        if consent and not documents:
            raise section.error(
                "consent_required",
                "needs at least one document: legal_documents (or rules_url, terms_url, "
                "privacy_url)",
            )
        config = BrandingConfig(
            display_name=section.convert("display_name", None, _one_line),
            logo_url=logo_url,
            logo_alt=section.convert("logo_alt", None, _one_line),
            logo_file=section.convert("logo_file", None, lambda v: read_image("logo", v)),
            favicon_file=section.convert("favicon_file", None, lambda v: read_image("favicon", v)),
            intro=section.convert("intro", dict[str, str](), _per_language_text),
            legal_documents=tuple(documents),
            consent_required=consent,
        )
        section.finish()
        return config


@attrs.frozen
class PasswordConfig:
    """The policy of the web registration form (Synapse's own policy applies too)."""

    min_length: int = 10
    # zxcvbn's estimate, 0 (guessed at once) to 4 (very unlikely to be guessed).
    min_score: int = 3

    @staticmethod
    def from_section(section: Section) -> PasswordConfig:
        config = PasswordConfig(
            min_length=section.integer("min_length", 10, minimum=1, maximum=512),
            min_score=section.integer("min_score", 3, minimum=0, maximum=4),
        )
        section.finish()
        return config


@attrs.frozen
class WelcomeConfig:
    sender: str
    message: Mapping[str, str]

    def message_in(self, lang: str, default_lang: str) -> str:
        return text_in(self.message, lang, default_lang)[0]


@attrs.frozen
class AfterRegistrationConfig:
    """What happens once an account made with one of our tokens exists."""

    join_rooms: tuple[str, ...] = ()
    welcome: WelcomeConfig | None = None

    @staticmethod
    def from_section(section: Section) -> AfterRegistrationConfig:
        no_rooms: tuple[str, ...] = ()
        rooms = section.convert("join_rooms", no_rooms, _rooms)
        welcome_section = section.section("welcome")
        welcome = None
        if welcome_section.has("message") or welcome_section.has("sender"):
            sender = welcome_section.convert("sender", None, user_id)
            no_message: dict[str, str] = {}
            message = welcome_section.convert("message", no_message, _per_language_text)
            if sender is None:
                raise welcome_section.error("sender", "required when a welcome message is set")
            if not message:
                raise welcome_section.error("message", "required when a sender is set")
            welcome = WelcomeConfig(sender=sender, message=message)
        welcome_section.finish()
        section.finish()
        return AfterRegistrationConfig(join_rooms=rooms, welcome=welcome)


@attrs.frozen
class WebRegistrationConfig:
    """The form on the token landing page that creates the account."""

    enabled: bool = True
    # Where the module reaches Synapse's client API; None: public_baseurl.
    client_api_url: str | None = None

    @staticmethod
    def from_section(section: Section) -> WebRegistrationConfig:
        url = section.convert("client_api_url", None, _base_url)
        config = WebRegistrationConfig(enabled=section.boolean("enabled", True), client_api_url=url)
        section.finish()
        return config


@attrs.frozen
class PagesConfig:
    branding: BrandingConfig = BrandingConfig()
    theme: ThemeConfig = ThemeConfig()
    # Where people reach the pages (a separate sign-up origin); None: below public_baseurl.
    public_url: str | None = None
    clients: tuple[ClientLink, ...] = DEFAULT_CLIENTS
    password: PasswordConfig = PasswordConfig()
    after_registration: AfterRegistrationConfig = AfterRegistrationConfig()
    web_registration: WebRegistrationConfig = WebRegistrationConfig()
    translations_dir: str | None = None
    default_language: str = "en"

    @staticmethod
    def from_section(section: Section) -> PagesConfig:
        translations_dir = section.convert("translations_dir", None, _directory)
        default_language = section.convert("default_language", "en", _language_code)
        try:
            Translations.load(translations_dir, default_language)
        except TranslationError as e:
            key = "translations_dir" if translations_dir else "default_language"
            raise section.error(key, str(e)) from e
        return PagesConfig(
            branding=BrandingConfig.from_section(section.section("branding")),
            theme=ThemeConfig.from_section(section.section("theme")),
            public_url=section.convert("public_url", None, _public_url),
            clients=section.convert("clients", DEFAULT_CLIENTS, _clients),
            password=PasswordConfig.from_section(section.section("password")),
            after_registration=AfterRegistrationConfig.from_section(
                section.section("after_registration")
            ),
            web_registration=WebRegistrationConfig.from_section(
                section.section("web_registration")
            ),
            translations_dir=translations_dir,
            default_language=default_language,
        )


def text_in(texts: Mapping[str, str], lang: str, default_lang: str) -> tuple[str, str | None]:
    """A per-language text (see `_per_language_text`) for `lang`: its own, its base
    language's (`pt` for `pt-BR`), the default language's, the one for all, or any;
    with the language it is written in (None: unknown)."""
    for key in (lang, lang.split("-", 1)[0], default_lang, "*"):
        if key in texts:
            return texts[key], None if key == "*" else key
    for key, text in texts.items():
        return text, None if key == "*" else key
    return "", None


# --- value checks (ValueError/TypeError name the key through Section.convert) --


def _one_line(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TypeError(f"expected a non-empty string, got {value!r}")
    if "\n" in value.strip() or "\r" in value:
        raise ValueError("must be one line")
    return value.strip()


def _same_origin_path(value: object) -> str:
    """Pages load images only from their own origin (CSP img-src 'self')."""
    if not isinstance(value, str):
        raise TypeError(f"expected a path like /static/logo.png, got {value!r}")
    if not value.startswith("/") or value.startswith("//") or any(c.isspace() for c in value):
        raise ValueError(
            "must be a path on this server, starting with '/' (like /static/logo.png): "
            f"the pages load no images from elsewhere; got {value!r}"
        )
    return value


def _link(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a URL, got {value!r}")
    parts = urlsplit(value)
    if value.startswith("/") and not value.startswith("//"):
        return value
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ValueError(f"expected an https:// URL or a path starting with '/', got {value!r}")
    return value


def _base_url(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a URL like http://127.0.0.1:8008/, got {value!r}")
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.query:
        raise ValueError(f"expected a URL like http://127.0.0.1:8008/, got {value!r}")
    return value if value.endswith("/") else value + "/"


def _public_url(value: object) -> str:
    url = _base_url(value)
    parts = urlsplit(url)
    if parts.fragment or parts.username or parts.password:
        raise ValueError(f"expected a URL like https://join.example.org/, got {value!r}")
    return url


def _legal_documents(value: object) -> list[LegalDocument]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list of {{title: ..., url: ...}}, got {type(value).__name__}")
    documents = []
    for index, item in enumerate(value):
        if not isinstance(item, Mapping) or set(item) != {"title", "url"}:
            raise TypeError(f"item {index}: expected {{title: ..., url: ...}}, got {item!r}")
        title = _item_field(index, "title", item["title"], _one_line_texts)
        url = _item_field(index, "url", item["url"], _link)
        documents.append(LegalDocument(url=url, title=title))
    return documents


def _item_field(index: int, name: str, value: object, convert: Callable[[object], T]) -> T:
    try:
        return convert(value)
    except (TypeError, ValueError) as e:
        raise type(e)(f"item {index}: {name}: {e}") from e


def _one_line_texts(value: object) -> dict[str, str]:
    texts = _per_language_text(value)
    if any("\n" in text or "\r" in text for text in texts.values()):
        raise ValueError("must be one line")
    return texts


def _language_code(value: object) -> str:
    if not isinstance(value, str) or not LANGUAGE_CODE.match(value):
        raise ValueError(f"expected a language code like en, de or pt-BR, got {value!r}")
    return value


def _per_language_text(value: object) -> dict[str, str]:
    """A text, or a mapping of language codes to texts."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("must not be empty")
        return {"*": value.strip()}
    if not isinstance(value, Mapping) or not value:
        raise TypeError(f"expected a text or a mapping like {{en: ..., de: ...}}, got {value!r}")
    texts = {}
    for lang, text in value.items():
        _language_code(lang)
        if not isinstance(text, str) or not text.strip():
            raise TypeError(f"{lang}: expected a non-empty text, got {text!r}")
        texts[str(lang)] = text.strip()
    return texts


def _directory(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a directory path, got {value!r}")
    if not os.path.isdir(value):
        raise ValueError(f"{value!r} is not a directory")
    return value


def _rooms(value: object) -> tuple[str, ...]:
    rooms = string_list(value)
    for entry in rooms:
        room(entry)
    return rooms


def _clients(value: object) -> tuple[ClientLink, ...]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list of {{name: ..., url: ...}}, got {type(value).__name__}")
    links = []
    for index, item in enumerate(value):
        if not isinstance(item, Mapping) or set(item) != {"name", "url"}:
            raise TypeError(f"item {index}: expected {{name: ..., url: ...}}, got {item!r}")
        name, url = item["name"], item["url"]
        if not isinstance(name, str) or not name.strip():
            raise TypeError(f"item {index}: name must be a non-empty string")
        if not isinstance(url, str):
            raise TypeError(f"item {index}: url must be a string")
        fields = set()
        try:
            for _, field, spec, conv in string.Formatter().parse(url):
                if field is not None:
                    if spec or conv:
                        raise ValueError("no format specs")
                    fields.add(field)
        except ValueError as e:
            raise ValueError(f"item {index}: url {url!r} is not a valid template: {e}") from e
        unknown = fields - CLIENT_URL_FIELDS
        if unknown:
            raise ValueError(
                f"item {index}: url uses {sorted(unknown)}; "
                f"known placeholders: {', '.join(sorted(CLIENT_URL_FIELDS))}"
            )
        scheme = urlsplit(url).scheme.lower()
        if not scheme or scheme in ("javascript", "data", "vbscript", "file"):
            raise ValueError(f"item {index}: url {url!r} must be an absolute https:// URL")
        links.append(ClientLink(name=name.strip(), url=url))
    return tuple(links)
