"""Inbound webhook for Postal (self-hosted): a route delivering to an HTTP endpoint.

Postal POSTs each incoming message on its own, in the format the endpoint
chooses: "sent in the body as JSON" (``application/json``, the default) or
"sent as form data" (``application/x-www-form-urlencoded``, the same keys as
form fields), "delivered as a hash" or "delivered as the raw message":

* Raw message: ``{"id", "rcpt_to", "mail_from", "message", "base64": true,
  "size"}``. ``message`` is the whole message as received, base64 with line
  breaks; it is parsed and stored as is.
* Hash (processed): ``{"id", "rcpt_to", "mail_from", "token", "subject",
  "message_id", "timestamp", "size", "spam_status", "bounce",
  "received_with_ssl", "to", "cc", "from", "date", "in_reply_to",
  "references", "reply_to": [...], "auto_submitted", "plain_body",
  "replies_from_plain_body"?, "html_body", "attachment_quantity",
  "attachments"?: [{"filename", "content_type", "size", "data"}]}``, header
  values being the header's last value (``reply_to``: all of them). The
  message is rebuilt from these fields, with boundaries derived from its
  content so a rebuild gives the same bytes. A hash has no other headers and
  no content ids (every attachment is a plain attachment), and no attachment
  data when the endpoint's "Include attachments" is off: choose the raw
  message for a complete copy. With "Strip replies" on, ``plain_body`` is the
  reply alone (stripped_text) and the text is it followed by
  ``replies_from_plain_body``.

Both: ``rcpt_to`` and ``mail_from`` are the SMTP envelope; ``id`` (Postal's
message id, the same on every retry) is the event id. Spam, when Postal
checks it: a hash's ``spam_status`` ("Spam", "NotSpam" or "NotChecked") is
spam_detected; Postal also adds ``X-Postal-Spam: yes|no`` and
``X-Postal-Spam-Score`` to the message, read for raw messages. Postal puts
them above the message's own headers, so the first one is read. (With spam
checking off Postal adds none, and a copy the sender wrote would be read:
treat these as hints, like everything inbound.)

Signature: as the tracking webhook's (``X-Postal-Signature-256``, RSA with
Postal's signing key, POSTAL_WEBHOOK_KEY), inherited from it. The replay
window (POSTAL_WEBHOOK_TOLERANCE) isn't applied: retries of an incoming
message repeat its first body for up to about 31 hours, and a raw message
has no timestamp to check.

Postal treats a 5xx answer as a soft failure and retries, but any other
error (a 400 for a payload it can't parse, a 413) as a hard failure: it
bounces the message back to its sender. The raw call is kept either way.

References: https://docs.postalserver.io/developer/http-payloads,
https://docs.postalserver.io/features/routing-incoming-email,
https://docs.postalserver.io/features/spam-and-virus-checking
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest, QueryDict

from sending.exceptions import AnymailWebhookPayloadError
from sending.signals import AnymailInboundEvent
from tracking.webhooks.base import b64decode_or_none
from tracking.webhooks.postal import PostalTrackingWebhookView

from ..message import AnymailInboundMessage
from .base import AnymailInboundWebhookView, inbound_event

JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"
# Form data flattens the attachments: attachments[0][filename], attachments[0][data]...
ATTACHMENT_FIELD = re.compile(r"^attachments\[(\d+)\]\[(\w+)\]$")

# (header, hash field) for the headers a hash carries, in the order they're rebuilt.
HASH_HEADERS = (
    ("From", "from"),
    ("To", "to"),
    ("Cc", "cc"),
    ("Subject", "subject"),
    ("Date", "date"),
    ("Message-ID", "message_id"),
    ("In-Reply-To", "in_reply_to"),
    ("References", "references"),
    ("Auto-Submitted", "auto_submitted"),
)
SPAM_STATUS = {"Spam": True, "NotSpam": False}  # "NotChecked": unknown


class PostalInboundWebhookView(AnymailInboundWebhookView, PostalTrackingWebhookView):
    """Postal HTTP endpoint deliveries, raw or as a hash, JSON or form data.

    The Postal tracking view comes second for its signature check and
    settings; everything else is the inbound pipeline.
    """

    esp_name = "Postal"

    def validate_request(self, request: HttpRequest) -> None:
        if self.public_keys:
            self.validate_signature(request)

    def parse_events(self, request: HttpRequest) -> list[AnymailInboundEvent]:
        payload = self.load_payload(request)
        if "message" in payload:
            raw = self.raw_message(payload)
            message = AnymailInboundMessage.parse_raw_mime_bytes(raw)
            spam_flag = str(message.get("X-Postal-Spam") or "").strip().lower()
            message.spam_detected = {"yes": True, "no": False}.get(spam_flag)
            message.spam_score = as_float(message.get("X-Postal-Spam-Score"))
        elif {"plain_body", "html_body", "token"} & payload.keys():
            raw = None
            message = self.rebuild_message(payload)
            message.spam_detected = SPAM_STATUS.get(payload.get("spam_status"))
        else:
            raise AnymailWebhookPayloadError(
                "Postal inbound payload has neither a raw message nor a message hash "
                f"(fields: {', '.join(sorted(payload)[:10]) or 'none'}): is this another "
                "ESP's webhook posted to the Postal URL?"
            )
        message.envelope_sender = payload.get("mail_from") or None
        message.envelope_recipient = payload.get("rcpt_to") or None
        timestamp = as_float(payload.get("timestamp"))
        return [
            inbound_event(
                message=message,
                esp_event=payload,
                raw=raw,
                event_id=str(payload["id"]) if payload.get("id") not in (None, "") else None,
                timestamp=datetime.fromtimestamp(timestamp, tz=UTC) if timestamp else None,
            )
        ]

    def load_payload(self, request: HttpRequest) -> dict[str, Any]:
        """The JSON or form payload as a dict, or a payload error saying what was posted."""
        if not request.body:
            raise AnymailWebhookPayloadError(
                "Empty Postal inbound body: expected an incoming message (JSON or form data)."
            )
        self.require_content_type(request, JSON_TYPE, FORM_TYPE)
        if request.content_type == FORM_TYPE:
            payload = form_payload(request.POST)
        else:
            payload = self.parse_json_body(request)
        if not isinstance(payload, dict):
            raise AnymailWebhookPayloadError(
                f"Postal inbound payload must be an object, not a JSON {type(payload).__name__}."
            )
        if {"event", "payload"} <= payload.keys():
            raise AnymailWebhookPayloadError(
                f"This is a Postal webhook event ({payload.get('event')}), posted to the "
                "inbound URL: point the server's webhook at anymail/postal/tracking/ instead."
            )
        return payload

    def raw_message(self, payload: dict[str, Any]) -> bytes:
        encoded = payload["message"]
        if not isinstance(encoded, str) or not encoded.strip():
            raise AnymailWebhookPayloadError("Postal inbound raw message is empty.")
        if payload.get("base64") in (False, "false"):
            # Postal documents base64 as always true; plain text is accepted anyway.
            return encoded.encode("utf-8", errors="surrogateescape")
        raw = b64decode_or_none("".join(encoded.split()))  # base64 with line breaks
        if raw is None:
            raise AnymailWebhookPayloadError("Postal inbound raw message is not valid base64.")
        return raw

    def rebuild_message(self, payload: dict[str, Any]) -> AnymailInboundMessage:
        headers = []
        for header, field in HASH_HEADERS:
            value = payload.get(field)
            if value in (None, ""):
                continue
            value = str(value)
            if header == "Message-ID" and not value.startswith("<"):
                value = f"<{value}>"  # Postal gives the id without its angle brackets
            headers.append((header, value))

        text = payload.get("plain_body")
        stripped_text = None
        if "replies_from_plain_body" in payload and text is not None:
            stripped_text = text
            replies = payload.get("replies_from_plain_body")
            if replies:
                text = f"{text.rstrip()}\n\n{replies}"
        attachments = payload.get("attachments") or []
        if not isinstance(attachments, list):
            raise AnymailWebhookPayloadError("Postal inbound attachments must be a list.")
        message = AnymailInboundMessage.construct(
            headers=headers,
            # A message may have one Reply-To header (RFC 5322): its values, joined.
            reply_to=payload.get("reply_to") or None,
            text=text,
            html=payload.get("html_body"),
            attachments=[self.attachment(attachment) for attachment in attachments],
        )
        message.stripped_text = stripped_text
        return message

    def attachment(self, attachment: Any) -> AnymailInboundMessage:
        if not isinstance(attachment, dict):
            raise AnymailWebhookPayloadError("Postal inbound attachments must be objects.")
        filename = attachment.get("filename") or None
        content = b64decode_or_none("".join(str(attachment.get("data") or "").split()))
        if content is None:
            raise AnymailWebhookPayloadError(
                f"Postal inbound attachment {filename!r} data is not valid base64."
            )
        # Form data sends the full Content-Type ("text/plain; charset=UTF-8"): the type alone.
        content_type = str(attachment.get("content_type") or "").split(";")[0].strip()
        if content_type.count("/") != 1:
            content_type = "application/octet-stream"
        return AnymailInboundMessage.construct_attachment(content_type, content, filename=filename)


def form_payload(fields: QueryDict) -> dict[str, Any]:
    """A form-data delivery as the JSON payload's shape (empty values are None)."""
    payload: dict[str, Any] = {}
    attachments: dict[int, dict[str, str]] = {}
    for name, values in fields.lists():
        match = ATTACHMENT_FIELD.match(name)
        if match:
            attachments.setdefault(int(match[1]), {})[match[2]] = values[-1]
        elif name == "reply_to":
            payload[name] = [value for value in values if value]
        else:
            payload[name] = values[-1] if values[-1] != "" else None
    if attachments:
        payload["attachments"] = [attachments[index] for index in sorted(attachments)]
    return payload


def as_float(value: Any) -> float | None:
    try:
        return float(str(value).strip()) if value not in (None, "") else None
    except ValueError:
        return None
