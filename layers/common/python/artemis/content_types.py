"""The Content-Type an uploaded file is stored with: the one the client declared, else one
from a fixed table by extension. Pure: stdlib only, no I/O, and deliberately not the platform's
`mimetypes` database, whose answers differ from host to host."""

from __future__ import annotations

CONTENT_TYPES: dict[str, str] = {
    # The formats of the web platform itself ...
    ".avif": "image/avif",
    ".css": "text/css; charset=utf-8",
    ".gif": "image/gif",
    ".htm": "text/html; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".jpeg": "image/jpeg",
    ".jpg": "image/jpeg",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".mjs": "text/javascript; charset=utf-8",
    ".pdf": "application/pdf",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".wasm": "application/wasm",
    ".webp": "image/webp",
    ".xml": "text/xml; charset=utf-8",
    # ... plus what a static site commonly ships, instead of a host MIME database.
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
    ".ico": "image/x-icon",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".mp3": "audio/mpeg",
}
DEFAULT_CONTENT_TYPE = "application/octet-stream"


def _extension(path: str) -> str:
    """The suffix from the last `.` of the last segment, `.` included (Go's `path.Ext`)."""
    name = path.rsplit("/", 1)[-1]
    dot = name.rfind(".")
    return name[dot:] if dot >= 0 else ""


def content_type_for(path: str, declared: str | None) -> str:
    """The declared Content-Type verbatim; else the table by extension (exact,
    then lower-cased); else application/octet-stream. Never the platform `mimetypes` module.

    A declared value of only spaces/tabs counts as absent (the wire would deliver it empty).
    """
    if declared and declared.strip(" \t"):
        return declared
    ext = _extension(path)
    if not ext:
        return DEFAULT_CONTENT_TYPE
    return CONTENT_TYPES.get(ext) or CONTENT_TYPES.get(ext.lower()) or DEFAULT_CONTENT_TYPE
