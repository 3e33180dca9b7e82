"""The logo and favicon files the module serves itself (`branding.logo_file`,
`branding.favicon_file`): read and checked once, at start-up.

Each is served as `static/<kind>-<hash>.<ext>`: the name changes with the
content, so browsers may keep it for a year.
"""

from __future__ import annotations

import hashlib
import os

import attrs

MAX_IMAGE_BYTES = 512 * 1024

_TYPES_BY_EXTENSION = {
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
    ".webp": "image/webp",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".avif": "image/avif",
}
_EXTENSION_BY_TYPE = {
    "image/png": ".png",
    "image/svg+xml": ".svg",
    "image/x-icon": ".ico",
    "image/webp": ".webp",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/avif": ".avif",
}


@attrs.frozen
class ImageFile:
    """An image to serve: its bytes, its Content-Type, the name it is served under."""

    body: bytes = attrs.field(repr=False)
    content_type: str
    name: str


def read_image(kind: str, value: object) -> ImageFile:
    """The image at path `value`; ValueError/TypeError say what is wrong (the config
    reader names the key)."""
    if not isinstance(value, str) or not value.strip():
        raise TypeError(f"expected the path of an image file, got {value!r}")
    path = value
    if not os.path.isfile(path):
        raise ValueError(f"{path!r} is not a file")
    try:
        size = os.path.getsize(path)
        if size > MAX_IMAGE_BYTES:
            raise ValueError(
                f"{path!r} is {size} bytes; at most {MAX_IMAGE_BYTES} bytes (512 KiB) are served"
            )
        with open(path, "rb") as f:
            body = f.read(MAX_IMAGE_BYTES + 1)
    except OSError as e:
        raise ValueError(f"cannot read {path!r}: {e.strerror}") from e
    if not body:
        raise ValueError(f"{path!r} is empty")
    content_type = image_type(body, os.path.splitext(path)[1].lower())
    if content_type is None:
        raise ValueError(
            f"{path!r} is not an image of a known type "
            f"({', '.join(sorted(_TYPES_BY_EXTENSION))}, recognised by content or extension)"
        )
    digest = hashlib.sha256(body).hexdigest()[:12]
    return ImageFile(body, content_type, f"{kind}-{digest}{_EXTENSION_BY_TYPE[content_type]}")


def image_type(body: bytes, extension: str) -> str | None:
    """The Content-Type of an image: from its first bytes, else from its extension
    (only for the types that have no signature of their own, SVG and ICO)."""
    if body.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if body.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if body[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if body[:4] == b"RIFF" and body[8:12] == b"WEBP":
        return "image/webp"
    if body[4:12] in (b"ftypavif", b"ftypavis"):
        return "image/avif"
    if body[:4] == b"\x00\x00\x01\x00":
        return "image/x-icon"
    head = body[:1024].lstrip().lower()
    if b"<svg" in head and (head.startswith(b"<svg") or head.startswith(b"<?xml")):
        return "image/svg+xml"
    if extension in (".svg", ".ico") and _looks_like(body, extension):
        return _TYPES_BY_EXTENSION[extension]
    return None


def _looks_like(body: bytes, extension: str) -> bool:
    """An SVG with a comment or doctype before its root: text that has an <svg tag."""
    if extension == ".svg":
        return b"<svg" in body.lower()
    return False
