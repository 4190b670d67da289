"""Inbound webhook for Mailgun: routes whose action is forward("https://.../inbound/").

A route's forward() POSTs form fields (``application/x-www-form-urlencoded``,
or ``multipart/form-data`` when there are files) in one of two formats,
chosen by the destination URL:

- Fully parsed (``.../mailgun/inbound/``): ``recipient`` and ``sender`` (the
  SMTP envelope), ``from``, ``subject``, ``message-headers`` (a JSON list of
  ``[name, value]``, in order), ``body-plain``, ``body-html``,
  ``stripped-text``, ``stripped-signature``, ``stripped-html``,
  ``attachment-count``, the files ``attachment-1`` .. ``attachment-N``, and
  ``content-id-map`` (JSON ``{"<cid>": "attachment-1"}``: the inline ones).
  Mailgun transcodes every text field to UTF-8. The message is rebuilt from
  these fields.
- Raw MIME (``.../mailgun/inbound_mime/``: "the destination URL must end with
  mime"): ``recipient``, ``sender``, ``from``, ``subject`` and ``body-mime``,
  the message exactly as received, which is parsed and stored as is.

Both also carry every MIME header as a field of its own, and ``timestamp``,
``token`` and ``signature``: the same HMAC-SHA256 signature as Mailgun's
tracking webhooks, checked here by MailgunTrackingWebhookView's own code
with the same settings (MAILGUN_WEBHOOK_SIGNING_KEY, MAILGUN_WEBHOOK_TOLERANCE).
The token, a 50-character nonce, is the event id.

Spam filtering, when the domain is set to "mark spam with MIME headers", adds
``X-Mailgun-Sflag`` ("Yes" for spam, absent otherwise) and ``X-Mailgun-Sscore``
("inserted for every message checked") to the message.

Mailgun retries anything but a 200 or 406 for 8 hours, so a payload error
(400) is retried too; the raw call is kept either way.

Reference: https://documentation.mailgun.com/docs/mailgun/user-manual/receive-forward-store/receive-http,
https://documentation.mailgun.com/docs/mailgun/user-manual/receive-forward-store/spam-filter and
https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/securing-webhooks
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from io import BytesIO
from typing import Any
from urllib.parse import parse_qsl

from django.http import HttpRequest, QueryDict
from django.http.multipartparser import MultiPartParser, MultiPartParserError

from sending.exceptions import AnymailWebhookPayloadError
from sending.signals import AnymailInboundEvent
from tracking.webhooks.base import describe_wrong_payload
from tracking.webhooks.mailgun import MailgunTrackingWebhookView

from ..message import AnymailInboundMessage
from .base import AnymailInboundWebhookView, inbound_event

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
ATTACHMENT_FIELD = re.compile(r"attachment-(\d+)")


class MailgunInboundWebhookView(MailgunTrackingWebhookView, AnymailInboundWebhookView):
    """Mailgun route posts, fully parsed or raw MIME.

    The signature check, its settings and its errors are the tracking view's.
    """

    # Authentication

    def load_payload(self, request: HttpRequest) -> dict:
        """The route's signature fields, shaped like a tracking payload's for the shared check."""
        fields = self.load_fields(request)
        return {
            "signature": {name: fields.get(name) for name in ("timestamp", "token", "signature")}
        }

    # Parsing

    def load_fields(self, request: HttpRequest) -> QueryDict:
        """The posted form fields, or AnymailWebhookPayloadError saying what was posted instead."""
        if not request.body:
            raise AnymailWebhookPayloadError(
                "Empty Mailgun inbound body: expected the form fields a route's forward() posts."
            )
        if request.content_type == "application/json":
            payload = self.parse_json_body(request)
            if isinstance(payload, dict) and "event-data" in payload:
                raise AnymailWebhookPayloadError(
                    "This is a Mailgun tracking webhook: point it at the Mailgun tracking URL, "
                    "not the inbound one."
                )
            raise AnymailWebhookPayloadError(
                describe_wrong_payload(
                    payload, "Mailgun routes post form fields, not JSON", esp_name=self.esp_name
                )
                + " Is another ESP's webhook posted to the Mailgun inbound URL?"
            )
        self.require_content_type(request, *FORM_TYPES)
        self.require_complete_multipart(request)
        try:
            fields = request.POST
        except MultiPartParserError as err:
            raise AnymailWebhookPayloadError(f"Malformed Mailgun inbound form data: {err}") from err
        if "message-url" in fields:
            raise AnymailWebhookPayloadError(
                "This is a Mailgun store(notify=...) notification, which links to the message "
                "instead of posting it: use a forward() route action to the inbound URL."
            )
        if not any(name in fields for name in ("body-plain", "body-mime")) and (
            "body-mime" not in request.FILES
        ):
            raise AnymailWebhookPayloadError(
                "Mailgun inbound post has neither body-plain (a fully parsed message) nor "
                "body-mime (raw MIME): is this another webhook posted to the inbound URL?"
            )
        return fields

    def parse_events(self, request: HttpRequest) -> list[AnymailInboundEvent]:
        fields = self.load_fields(request)
        raw = self.raw_mime(request)
        if raw is not None:
            message = AnymailInboundMessage.parse_raw_mime_bytes(raw)
        else:
            message = self.construct_message(request, fields)
        message.envelope_sender = fields.get("sender") or None
        message.envelope_recipient = fields.get("recipient") or None
        set_spam_fields(message)

        timestamp = fields.get("timestamp")
        return [
            inbound_event(
                message=message,
                esp_event=request,
                raw=raw,
                event_id=fields.get("token") or None,
                timestamp=datetime.fromtimestamp(int(timestamp), tz=UTC) if timestamp else None,
            )
        ]

    @staticmethod
    def raw_mime(request: HttpRequest) -> bytes | None:
        """body-mime's exact bytes, or None for a fully parsed post."""
        if "body-mime" in request.FILES:
            return request.FILES["body-mime"].read()
        if "body-mime" not in request.POST:
            return None
        # The raw message may hold 8-bit text in any charset, which Django
        # decoded as UTF-8 (with replacements). Read the body again as
        # Latin-1, where every byte is one character: encoding the field back
        # gives the bytes Mailgun sent.
        if request.content_type == "multipart/form-data":
            parser = MultiPartParser(
                request.META, BytesIO(request.body), request.upload_handlers, "latin-1"
            )
            fields, _files = parser.parse()
            return fields["body-mime"].encode("latin-1")
        fields = parse_qsl(
            request.body.decode("latin-1"), keep_blank_values=True, encoding="latin-1"
        )
        return next(value for name, value in fields if name == "body-mime").encode("latin-1")

    def construct_message(self, request: HttpRequest, fields: QueryDict) -> AnymailInboundMessage:
        headers = json_field(fields, "message-headers", [])
        cid_map = json_field(fields, "content-id-map", {})
        content_ids = {field: cid for cid, field in cid_map.items()}
        attachments = []
        names = [name for name in request.FILES if attachment_number(name) > 0]
        for name in sorted(names, key=attachment_number):
            upload = request.FILES[name]
            attachments.append(
                AnymailInboundMessage.construct_attachment(
                    upload.content_type or "application/octet-stream",
                    upload.read(),
                    filename=upload.name,
                    content_id=content_ids.get(name),
                    inline=name in content_ids,
                )
            )
        # "body-html" is documented as "an array of all text/html MIME parts";
        # the first is the message's HTML body.
        html = fields.getlist("body-html")
        message = AnymailInboundMessage.construct(
            headers=headers,
            from_email=fields.get("from"),
            subject=fields.get("subject"),
            text=fields.get("body-plain"),
            html=html[0] if html else None,
            attachments=attachments,
        )
        message.stripped_text = fields.get("stripped-text") or None
        message.stripped_html = fields.get("stripped-html") or None
        return message


def attachment_number(field_name: str) -> int:
    match = ATTACHMENT_FIELD.fullmatch(field_name)
    return int(match.group(1)) if match else -1


def set_spam_fields(message: AnymailInboundMessage) -> None:
    flag = message.get("X-Mailgun-Sflag")
    score = message.get("X-Mailgun-Sscore")
    try:
        message.spam_score = float(str(score)) if score is not None else None
    except ValueError:
        message.spam_score = None
    if flag is not None:
        message.spam_detected = str(flag).strip().lower() == "yes"
    elif score is not None:
        # Checked, and Sflag is only inserted for spam.
        message.spam_detected = False


def json_field(fields: QueryDict, name: str, default: Any) -> Any:
    """A form field holding JSON (default when absent), or a payload error naming it."""
    value = fields.get(name)
    if not value:
        return default
    try:
        parsed = json.loads(value)
    except ValueError as err:
        raise AnymailWebhookPayloadError(f"Mailgun inbound field {name} isn't JSON: {err}") from err
    if not isinstance(parsed, type(default)):
        raise AnymailWebhookPayloadError(
            f"Mailgun inbound field {name} should be a JSON {type(default).__name__}."
        )
    return parsed
