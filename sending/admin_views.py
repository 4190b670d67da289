"""Responses that show stored, untrusted email content in the admin safely.

A message's HTML and attachments came from somewhere else: they may hold
scripts, tracking pixels, or files a browser would render as a page. The
HTML is served from its own URL under a Content-Security-Policy that
sandboxes it and blocks everything but inline styles and embedded images
(remote images only after the operator asks), for display in a sandboxed
iframe. Attachments are only ever downloaded, never displayed.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from django.http import FileResponse, HttpResponse

from .models import StoredAttachment

#: Types an attachment may be downloaded as; anything else is
#: application/octet-stream. None of these is rendered as a page, and
#: nosniff stops the browser from guessing otherwise.
SAFE_DOWNLOAD_TYPES = frozenset(
    {
        "application/pdf",
        "application/zip",
        "application/msword",
        "application/vnd.ms-excel",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "image/gif",
        "image/jpeg",
        "image/png",
        "image/webp",
        "text/calendar",
        "text/csv",
        "text/plain",
    }
)


def html_preview_csp(*, remote_images: bool) -> str:
    """The policy for a message's HTML: no scripts, no requests, no same origin.

    ``sandbox`` applies even if the URL is opened outside the iframe.
    Inline styles are allowed (email HTML is styled inline; CSS can't run
    code, and its url()s fall under img-src). cid: images are rewritten to
    data: URIs before serving.
    """
    images = "data: cid: https:" if remote_images else "data: cid:"
    return (
        "sandbox; default-src 'none'; "
        f"img-src {images}; style-src 'unsafe-inline'; frame-ancestors 'self'"
    )


def html_preview_response(html: str, *, remote_images: bool) -> HttpResponse:
    response = HttpResponse(html, content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = html_preview_csp(remote_images=remote_images)
    response["X-Content-Type-Options"] = "nosniff"
    # Remote images (once allowed) must not learn the admin's URLs.
    response["Referrer-Policy"] = "no-referrer"
    # Framed only by the admin's own message page.
    response["X-Frame-Options"] = "SAMEORIGIN"
    response["Cache-Control"] = "private, no-store"
    return response


def safe_download_name(filename: str, fallback: str) -> str:
    """filename reduced to letters, digits, spaces, dots, dashes and underscores.

    No directories, no control or quote characters, no leading dot, at most
    100 characters (the extension kept); fallback if nothing is left.
    """
    name = unicodedata.normalize("NFKD", filename or "").encode("ascii", "ignore").decode()
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r"[^A-Za-z0-9._ -]+", "_", name)
    name = re.sub(r"\s+", " ", name).strip(" ._")
    if not name:
        return fallback
    if len(name) > 100:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 10:
            name = f"{stem[: 99 - len(extension)]}.{extension}"
        else:
            name = name[:100]
    return name


def safe_content_type(mimetype: str) -> str:
    """mimetype if it's on the safe list, else application/octet-stream."""
    base = (mimetype or "").split(";", 1)[0].strip().lower()
    return base if base in SAFE_DOWNLOAD_TYPES else "application/octet-stream"


def attachment_download_response(attachment: StoredAttachment) -> FileResponse:
    return file_download_response(
        attachment.file,
        filename=attachment.filename,
        mimetype=attachment.mimetype,
        fallback=f"attachment-{attachment.position + 1}",
    )


def file_download_response(
    file: Any, *, filename: str, mimetype: str, fallback: str
) -> FileResponse:
    """A stored file as a download that no browser will render or sniff."""
    response = FileResponse(
        file.open("rb"),
        as_attachment=True,
        filename=safe_download_name(filename, fallback),
        content_type=safe_content_type(mimetype),
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "sandbox; default-src 'none'"
    response["Cache-Control"] = "private, no-store"
    return response
