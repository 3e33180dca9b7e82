"""The pages' colours: a preset and single colours over it (docs/configuration.md, `theme`).

The theme becomes a small stylesheet the module serves next to its own
(`static/theme-<hash>.css`): the pages' CSP loads styles only from the module's
origin, so the colours cannot be an inline `<style>`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

import attrs

from synapse_email_gate.config.reader import Section

# The names admins write, and the CSS custom properties of static/email_gate.css.
COLOUR_PROPERTIES: Mapping[str, str] = {
    "background": "--bg",
    "card": "--card",
    "field": "--field",
    "text": "--fg",
    "muted": "--muted",
    "accent": "--accent",
    "on_accent": "--on-accent",
    "accent_soft": "--accent-soft",
    "error": "--error",
    "ok": "--ok",
    "border": "--border",
    "rule": "--rule",
    "code_background": "--code-bg",
}

_GRUVBOX_LIGHT = {
    "background": "#ebdbb2",
    "card": "#f9f5d7",
    "field": "#fbf1c7",
    "text": "#3c3836",
    "muted": "#665c54",
    "accent": "#076678",
    "on_accent": "#f9f5d7",
    "accent_soft": "#d5c4a1",
    "error": "#9d0006",
    "ok": "#427b58",
    "border": "#928374",
    "rule": "#d5c4a1",
    "code_background": "#ebdbb2",
}
_GRUVBOX_DARK = {
    "background": "#282828",
    "card": "#1d2021",
    "field": "#282828",
    "text": "#ebdbb2",
    "muted": "#bdae93",
    "accent": "#83a598",
    "on_accent": "#1d2021",
    "accent_soft": "#3c3836",
    "error": "#fc6a5a",
    "ok": "#b8bb26",
    "border": "#7c6f64",
    "rule": "#3c3836",
    "code_background": "#282828",
}


@attrs.frozen
class Preset:
    """`light` applies in a light colour scheme, `dark` in a dark one; a preset with
    one of them only fixes the scheme whatever the system prefers."""

    light: Mapping[str, str] | None
    dark: Mapping[str, str] | None


# `gruvbox` is the stylesheet's own palette (light or dark as the system prefers).
PRESETS: Mapping[str, Preset] = {
    "gruvbox": Preset(_GRUVBOX_LIGHT, _GRUVBOX_DARK),
    "gruvbox-dark": Preset(None, _GRUVBOX_DARK),
    "gruvbox-light": Preset(_GRUVBOX_LIGHT, None),
}
DEFAULT_PRESET = "gruvbox"

_HEX = re.compile(r"#(?:[0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})")


@attrs.frozen
class ThemeConfig:
    preset: str = DEFAULT_PRESET
    # Over the preset in every scheme, and (for a preset with both) in the dark one.
    colours: Mapping[str, str] = attrs.field(factory=dict)
    dark_colours: Mapping[str, str] = attrs.field(factory=dict)

    @staticmethod
    def from_section(section: Section) -> ThemeConfig:
        preset = section.choice("preset", DEFAULT_PRESET, PRESETS)
        colours = section.convert("colours", dict[str, str](), _colours)
        dark_colours = section.convert("dark_colours", dict[str, str](), _colours)
        if dark_colours and (PRESETS[preset].light is None or PRESETS[preset].dark is None):
            raise section.error(
                "dark_colours", f"only for a preset with a light and a dark scheme, not {preset}"
            )
        section.finish()
        return ThemeConfig(preset=preset, colours=colours, dark_colours=dark_colours)

    def stylesheet(self) -> str:
        """The CSS served after static/email_gate.css; empty for the default theme."""
        preset = PRESETS[self.preset]
        blocks = []
        if preset.light is None or preset.dark is None:
            scheme = "dark" if preset.light is None else "light"
            palette = preset.dark if preset.light is None else preset.light
            blocks.append(_rule(":root", {**(palette or {}), **self.colours}, scheme))
        else:
            if self.colours:
                blocks.append(_rule(":root", self.colours))
            if self.dark_colours or self.colours:
                dark = {**self.colours, **self.dark_colours}
                inner = _rule("  :root", dark).replace("\n", "\n  ").rstrip()
                blocks.append(f"@media (prefers-color-scheme: dark) {{\n{inner}\n}}\n")
        return "".join(blocks)

    def stylesheet_name(self) -> str:
        """A name that changes with the stylesheet, so browsers may cache it for long."""
        digest = hashlib.sha256(self.stylesheet().encode()).hexdigest()[:12]
        return f"theme-{digest}.css"


def _rule(selector: str, colours: Mapping[str, str], scheme: str | None = None) -> str:
    lines = [f"{selector} {{"]
    if scheme is not None:
        lines.append(f"  color-scheme: {scheme};")
    lines += [f"  {COLOUR_PROPERTIES[name]}: {value};" for name, value in colours.items()]
    return "\n".join(lines) + "\n}\n"


def _colours(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a mapping like {{background: '#282828'}}, got {value!r}")
    colours = {}
    for name, colour in value.items():
        if name not in COLOUR_PROPERTIES:
            raise ValueError(f"unknown colour {name!r}; known: {', '.join(COLOUR_PROPERTIES)}")
        if not isinstance(colour, str) or not _HEX.fullmatch(colour):
            raise ValueError(f"{name}: expected a hex colour like #282828, got {colour!r}")
        colours[str(name)] = colour.lower()
    return colours
