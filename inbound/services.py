"""Writes for the inbound app: storing received mail safely, once."""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q

from sending.models import Message, Recipient
from sending.utils import (
    delete_unreferenced_files,
    normalize_address,
    parse_address_list,
    store_content_once,
)

from .message import AnymailInboundMessage
from .models import InboundAttachment, InboundMessage

MAX_FILENAME_LENGTH = 120
_UNSAFE_FILENAME_CHARS = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')
_MESSAGE_ID = re.compile(r"<([^<>\s]+)>")

# Python's parser reports problems as defects instead of failing; these are
# the parse errors recorded with the message.
PARSE_ERRORS = (ValueError, TypeError, LookupError, IndexError, UnicodeError, AttributeError)


def sanitize_filename(name: str | None, fallback: str = "attachment") -> str:
    """A filename safe to show and to offer as a download name: never a path.

    Drops any directory part (either slash), control and reserved characters,
    leading dots (no hidden files, no "..") and caps the length, keeping the
    extension.
    """
    name = unicodedata.normalize("NFC", str(name or ""))
    name = re.split(r"[/\\]", name)[-1]
    name = _UNSAFE_FILENAME_CHARS.sub("_", name).strip().lstrip(".").strip()
    if not name:
        return fallback
    if len(name) > MAX_FILENAME_LENGTH:
        stem, ext = os.path.splitext(name)
        ext = ext[:16]
        name = stem[: MAX_FILENAME_LENGTH - len(ext)] + ext
    return name


def inbound_message_store(
    *,
    esp: str,
    message: AnymailInboundMessage,
    raw: bytes | None = None,
    event_id: str | None = None,
    timestamp: datetime | None = None,
    webhook_call: Any = None,
) -> tuple[InboundMessage, bool]:
    """Store a received message, its raw MIME and attachments; return (row, created).

    The same raw message delivered again (an ESP retry) stores nothing new.
    Whatever can't be parsed is recorded in parse_error; the raw MIME is
    always kept, so nothing received is lost.
    """
    if raw is None:
        raw = message.as_bytes()
    sha256 = hashlib.sha256(raw).hexdigest()
    existing = InboundMessage.objects.filter(esp=esp, raw_sha256=sha256).first()
    if existing is not None:
        return existing, False

    errors: list[str] = []
    fields = _message_fields(message, errors)
    record = InboundMessage(
        esp=esp,
        webhook_call=webhook_call,
        event_id=str(event_id or "")[:255],
        envelope_sender=(message.envelope_sender or "")[:320],
        envelope_recipient=(message.envelope_recipient or "")[:320],
        spam_detected=message.spam_detected,
        spam_score=message.spam_score,
        stripped_text=message.stripped_text or "",
        stripped_html=message.stripped_html or "",
        size=len(raw),
        raw_sha256=sha256,
        **fields,
    )
    if timestamp is not None:
        record.received_at = timestamp
    record.raw_file.name = store_content_once("mailhub/inbound/raw", sha256, raw)
    attachments = _attachments(message, errors)
    defects = _defects(message)
    record.parse_error = "\n".join([*errors, *defects])[:10000]
    record.reply_to_message = _replied_message(record.in_reply_to, record.references)

    try:
        with transaction.atomic():
            record.save(force_insert=True)
            for attachment in attachments:
                attachment.message = record
            InboundAttachment.objects.bulk_create(attachments)
    except IntegrityError:
        # The same message arrived concurrently and the other request stored it.
        return InboundMessage.objects.get(esp=esp, raw_sha256=sha256), False
    return record, True


def _message_fields(message: AnymailInboundMessage, errors: list[str]) -> dict[str, Any]:
    """Read each field on its own, so one broken header doesn't lose the rest."""
    readers = {
        "from_email": lambda: str(message.get("From") or ""),
        "from_address": lambda: message.from_email.addr_spec if message.from_email else "",
        "to": lambda: [str(address) for address in message.to],
        "cc": lambda: [str(address) for address in message.cc],
        "subject": lambda: message.subject or "",
        "date": lambda: message.date,
        "message_id": lambda: str(message.get("Message-ID") or "")[:998],
        "in_reply_to": lambda: str(message.get("In-Reply-To") or ""),
        "references": lambda: str(message.get("References") or ""),
        "headers": lambda: [[name, str(value)] for name, value in message.items()],
        "text": lambda: message.text or "",
        "html": lambda: message.html or "",
    }
    empty = {"to": [], "cc": [], "headers": [], "date": None}
    fields: dict[str, Any] = {}
    for name, read in readers.items():
        try:
            fields[name] = read()
        except PARSE_ERRORS as err:
            errors.append(f"{name}: {type(err).__name__}: {err}")
            fields[name] = empty.get(name, "")
    fields["from_address"] = normalize_address(fields["from_address"])[:320]
    fields["from_email"] = fields["from_email"][:998]
    if fields["date"] is not None and fields["date"].tzinfo is None:
        fields["date"] = None  # a naive Date header: the sender's local time, unknown zone
    return fields


def _attachments(message: AnymailInboundMessage, errors: list[str]) -> list[InboundAttachment]:
    rows = []
    position = 0
    for part in message.walk():
        try:
            inline = part.is_inline_attachment()
            if not (inline or part.is_attachment()):
                continue
            content = part.get_content_bytes()
            declared_name = part.get_filename() or ""
            content_type = part.get_content_type()
            content_id = str(part.get("Content-ID") or "").strip()
        except PARSE_ERRORS as err:
            errors.append(f"attachment {position + 1}: {type(err).__name__}: {err}")
            continue
        sha256 = hashlib.sha256(content).hexdigest()
        rows.append(
            InboundAttachment(
                position=position,
                filename=sanitize_filename(declared_name, fallback=f"attachment-{position + 1}"),
                declared_filename=declared_name[:1000],
                declared_content_type=content_type[:255],
                inline=inline,
                content_id=content_id[:998],
                size=len(content),
                sha256=sha256,
                file=store_content_once("mailhub/inbound/attachments", sha256, content),
            )
        )
        position += 1
    return rows


def _defects(message: AnymailInboundMessage) -> list[str]:
    found = []
    for part in message.walk():
        for defect in getattr(part, "defects", []):
            found.append(f"{part.get_content_type()}: {type(defect).__name__}")
    return found


def _replied_message(in_reply_to: str, references: str) -> Message | None:
    """The sent Message this replies to, found by the ids in In-Reply-To/References."""
    ids = _MESSAGE_ID.findall(f"{in_reply_to} {references}")
    if not ids:
        return None
    candidates = set(ids) | {f"<{message_id}>" for message_id in ids}
    recipient = (
        Recipient.objects.filter(esp_message_id__in=candidates).select_related("message").first()
    )
    if recipient is not None:
        return recipient.message
    return Message.objects.filter(esp_message_id__in=candidates).order_by("-id").first()


FORGOTTEN = "[forgotten]"


def inbound_forget(*, address: str) -> dict[str, int]:
    """Remove received mail from or to address (an erasure request); return counts.

    Messages whose sender, envelope or To/Cc include the address lose their
    content: addresses, subject, headers and bodies are replaced with
    "[forgotten]", and their raw MIME and attachment files are deleted once
    the transaction commits, unless another message still uses them.
    """
    from functools import partial

    normalized = normalize_address(address)
    if "@" not in normalized:
        raise ValueError(f"Not an email address: {address!r}")
    # to/cc are JSON lists of formatted addresses: a text match finds
    # candidates, then each is checked properly.
    candidates = InboundMessage.objects.filter(
        Q(from_address=normalized)
        | Q(envelope_sender__iexact=normalized)
        | Q(envelope_recipient__iexact=normalized)
        | Q(to__icontains=normalized)
        | Q(cc__icontains=normalized)
    )
    matched = [message for message in candidates if _involves(message, normalized)]
    files: set[str] = set()
    for message in matched:
        if message.raw_file:
            files.add(message.raw_file.name)
        files.update(name for name in message.attachments.values_list("file", flat=True) if name)
    ids = [message.pk for message in matched]
    attachments = InboundAttachment.objects.filter(message_id__in=ids).update(
        file="", filename=FORGOTTEN, declared_filename="", content_id=""
    )
    InboundMessage.objects.filter(pk__in=ids).update(
        envelope_sender=FORGOTTEN,
        envelope_recipient=FORGOTTEN,
        from_email=FORGOTTEN,
        from_address=FORGOTTEN,
        to=[],
        cc=[],
        subject=FORGOTTEN,
        message_id="",
        in_reply_to="",
        references="",
        headers=[],
        text=FORGOTTEN,
        html="",
        stripped_text="",
        stripped_html="",
        raw_file="",
        parse_error="",
    )
    transaction.on_commit(
        partial(
            delete_unreferenced_files,
            files,
            [(InboundMessage, "raw_file"), (InboundAttachment, "file")],
        )
    )
    return {"inbound_messages": len(ids), "inbound_attachments": attachments}


def _involves(message: InboundMessage, address: str) -> bool:
    if address in (
        message.from_address,
        normalize_address(message.envelope_sender),
        normalize_address(message.envelope_recipient),
    ):
        return True
    listed = [*message.to, *message.cc]
    try:
        return any(
            normalize_address(parsed.addr_spec) == address for parsed in parse_address_list(listed)
        )
    except ValueError:
        return any(address in normalize_address(entry) for entry in listed)
