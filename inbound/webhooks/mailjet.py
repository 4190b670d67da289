"""Inbound webhook for Mailjet's Parse API.

Mailjet posts one JSON object per received email: ``Sender`` and
``Recipient`` (the envelope), ``Date`` (when Mailjet received it, UTC, as
``20150410T160638``), ``From``, ``Subject``, ``Headers`` (most values are
lists of the header's lines; Date, From, Sender, Reply-To, To, Cc, Bcc,
Message-ID, In-Reply-To, References and Subject are single strings),
``Parts``, ``Text-part``, ``Html-part``, ``AttachmentN`` (base64),
``SpamAssassinScore`` (a string), and the ``CustomID`` and ``Payload`` of
the message being replied to, when it was sent with them.

``Parts`` lists the message's leaf parts in order, each with its MIME
``Headers`` and a ``ContentRef`` naming the payload field that holds its
content: "Text-part", "Html-part" or "AttachmentN". An attachment's name,
type, disposition and Content-ID come from its part's headers; its content
is always base64 (the part's Content-Transfer-Encoding is the original one).

There is no raw MIME: the message is rebuilt from these fields, with
multipart boundaries derived from its content (AnymailInboundMessage.construct())
so that rebuilding the same payload gives the same bytes (stored once).

Mailjet doesn't sign Parse API calls: put WEBHOOK_SECRET's credentials in
the parseroute Url (``https://user:pass@host/anymail/mailjet/inbound/``).

Reference: https://dev.mailjet.com/email/guides/parse-api/ (and the older
https://github.com/mailjet/api-documentation/blob/master/guides/_parse-api.md)
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest

from sending.exceptions import AnymailWebhookPayloadError
from sending.signals import AnymailInboundEvent

from ..message import AnymailInboundMessage, header_items
from .base import AnymailInboundWebhookView, inbound_event

TEXT_REF = "Text-part"
HTML_REF = "Html-part"
_ATTACHMENT_REF = re.compile(r"^Attachment\d+$")


class MailjetInboundWebhookView(AnymailInboundWebhookView):
    esp_name = "Mailjet"

    def parse_events(self, request: HttpRequest) -> list[AnymailInboundEvent]:
        if not request.body:
            # (checked first: an empty request often has no content type either)
            raise AnymailWebhookPayloadError("Empty Mailjet inbound webhook body: expected JSON.")
        self.require_content_type(request, "application/json")
        payload = self.parse_json_body(request)
        self.check_is_inbound(payload)

        attachments = self.attachment_parts(payload)
        message = AnymailInboundMessage.construct(
            headers=self.headers_object(payload.get("Headers")),
            from_email=payload.get("From") or None,
            subject=payload.get("Subject"),
            text=payload.get(TEXT_REF),
            html=payload.get(HTML_REF),
            attachments=attachments,
        )
        message.envelope_sender = payload.get("Sender") or None
        message.envelope_recipient = payload.get("Recipient") or None
        score = payload.get("SpamAssassinScore")
        message.spam_score = None if score in (None, "") else float(score)
        return [
            inbound_event(
                message=message,
                esp_event=payload,
                event_id=None,  # Mailjet gives inbound mail no id
                timestamp=parse_date(payload.get("Date")),
            )
        ]

    def check_is_inbound(self, payload: Any) -> None:
        """Refuse anything that isn't a Parse API payload, saying what it looks like."""
        if isinstance(payload, list) or (
            isinstance(payload, dict) and "event" in payload and "time" in payload
        ):
            raise AnymailWebhookPayloadError(
                "This is a Mailjet Event API (tracking) payload, posted to the inbound webhook: "
                "point the event trigger's Url at /anymail/mailjet/tracking/ instead."
            )
        if not isinstance(payload, dict) or not (
            isinstance(payload.get("Parts"), list) or isinstance(payload.get("Headers"), dict)
        ):
            fields = ", ".join(sorted(map(str, payload))[:8]) if isinstance(payload, dict) else ""
            raise AnymailWebhookPayloadError(
                'Not a Mailjet Parse API payload: it has no "Parts" or "Headers"'
                + (f" (fields: {fields})" if fields else "")
                + ". Is this payload meant for another ESP's webhook?"
            )

    def attachment_parts(self, payload: dict) -> list[AnymailInboundMessage]:
        """Every AttachmentN, described by its part in Parts (in message order)."""
        parts = payload.get("Parts") or []
        attachments = []
        referenced = set()
        for part in parts:
            if not isinstance(part, dict):
                raise AnymailWebhookPayloadError(
                    f"Mailjet inbound Parts must be JSON objects, not {type(part).__name__}."
                )
            ref = part.get("ContentRef")
            if isinstance(ref, str) and _ATTACHMENT_REF.match(ref):
                referenced.add(ref)
                attachments.append(self.attachment_part(payload, ref, part.get("Headers")))
        # An attachment no part describes is still kept, untyped.
        for ref in sorted(
            (key for key in payload if _ATTACHMENT_REF.match(key) and key not in referenced),
            key=lambda key: int(key.removeprefix("Attachment")),
        ):
            attachments.append(self.attachment_part(payload, ref, None))
        return attachments

    def attachment_part(self, payload: dict, ref: str, headers: Any) -> AnymailInboundMessage:
        encoded = payload.get(ref)
        if not isinstance(encoded, str):
            raise AnymailWebhookPayloadError(
                f"Mailjet inbound Parts refers to {ref!r}, but the payload has no {ref} content."
            )
        try:
            content = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as err:
            raise AnymailWebhookPayloadError(
                f"Mailjet inbound {ref} is not valid base64: {err}"
            ) from err
        # The part's own MIME headers, parsed the way a message's would be.
        described = AnymailInboundMessage()
        for name, value in header_items(self.headers_object(headers)):
            described[name] = value
        content_type = (
            described.get_content_type() if "Content-Type" in described else None
        ) or "application/octet-stream"
        content_id = str(described["Content-ID"]) if "Content-ID" in described else None
        disposition = described.get_content_disposition()
        part = AnymailInboundMessage.construct_attachment(
            content_type,
            content,
            filename=described.get_filename(),
            content_id=content_id,
            inline=disposition == "inline" or (disposition is None and content_id is not None),
        )
        charset = described.get_content_charset()
        if charset and part.get_content_maintype() == "text":
            part.set_param("charset", charset)
        return part


def parse_date(value: Any) -> datetime | None:
    """Mailjet's Date ("20150410T160638", UTC); None if missing or not in that form."""
    if not value or not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None
