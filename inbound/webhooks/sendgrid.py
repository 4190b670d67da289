"""Inbound webhook for SendGrid (the Inbound Parse Webhook).

SendGrid POSTs each received message as ``multipart/form-data``, in one of
two formats chosen by the host's "POST the raw, full MIME message" option:

- Parsed (the default): ``headers`` (the raw header block), ``from``, ``to``,
  ``cc``, ``subject``, ``text``, ``html``, ``attachments`` (how many), files
  ``attachment1`` .. ``attachmentN``, ``attachment-info`` (JSON, per file:
  ``filename``, ``name``, ``type``, ``content-id``) and ``content-ids`` (JSON
  ``{cid: "attachmentN"}``). The text fields arrive as the message had them,
  in whatever charset: ``charsets`` (JSON ``{field: charset}``) says which,
  and each field is decoded with its own. The message is rebuilt from these
  fields.
- Raw: ``email``, the whole message as received, parsed and stored as is.

Both carry ``envelope`` (JSON ``{"to": [recipient], "from": sender}``),
``dkim``, ``SPF``, ``sender_ip``, ``charsets``, and with "Check incoming
emails for spam" ``spam_score`` and ``spam_report``. SendGrid gives no
timestamp or id for a message.

Security: basic auth (WEBHOOK_SECRET in the destination URL), and/or an
Inbound Parse security policy with signature verification: SendGrid then
signs ``timestamp + body`` with ECDSA (P-256, SHA-256) in the same headers
as its Event Webhook. Set SENDGRID_INBOUND_WEBHOOK_VERIFICATION_KEY to the
policy's ``public_key`` to check it (SENDGRID_WEBHOOK_TOLERANCE, default 300
seconds, bounds the timestamp's age). An OAuth policy's bearer token isn't
checked here: it replaces the basic auth header, so use one or the other.

SendGrid retries a post answered with a 5xx for up to 3 days (its docs
disagree on whether a 4xx is retried); a payload error (400) keeps the raw
call either way, for reprocessing.

Reference: https://www.twilio.com/docs/sendgrid/for-developers/parsing-email/inbound-email,
https://www.twilio.com/docs/sendgrid/for-developers/parsing-email/setting-up-the-inbound-parse-webhook
and https://www.twilio.com/docs/sendgrid/for-developers/parsing-email/securing-your-parse-webhooks
"""

from __future__ import annotations

import json
import re
from io import BytesIO
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from django.http import HttpRequest, QueryDict
from django.http.multipartparser import MultiPartParser, MultiPartParserError
from django.utils.datastructures import MultiValueDict

from sending.exceptions import (
    AnymailConfigurationError,
    AnymailWebhookPayloadError,
    AnymailWebhookValidationFailure,
)
from sending.signals import AnymailInboundEvent
from sending.utils import get_anymail_setting
from tracking.webhooks.base import b64decode_or_none, check_timestamp
from tracking.webhooks.sendgrid import (
    DEFAULT_TOLERANCE,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    load_verification_key,
)

from ..message import AnymailInboundMessage
from .base import AnymailInboundWebhookView, inbound_event

KEY_SETTING = "SENDGRID_INBOUND_WEBHOOK_VERIFICATION_KEY"
ATTACHMENT_FIELD = re.compile(r"attachment(\d+)")


class SendGridInboundWebhookView(AnymailInboundWebhookView):
    esp_name = "SendGrid"

    def __init__(self, **kwargs: Any) -> None:
        esp = self.esp_name
        key = get_anymail_setting(
            "inbound_webhook_verification_key", esp_name=esp, kwargs=kwargs, default=None
        )
        try:
            self.verification_key = load_verification_key(key) if key else None
        except AnymailConfigurationError as err:
            # (its message names the tracking setting)
            raise AnymailConfigurationError(
                f"{KEY_SETTING} must be the public_key of the Inbound Parse security policy, "
                f"as SendGrid shows it (base64) or in PEM form: {err.__cause__ or err}"
            ) from err
        self.tolerance = int(
            get_anymail_setting(
                "webhook_tolerance", esp_name=esp, kwargs=kwargs, default=DEFAULT_TOLERANCE
            )
        )
        if self.verification_key is not None:
            self.warn_if_no_basic_auth = False
        super().__init__(**kwargs)

    # Authentication

    def validate_request(self, request: HttpRequest) -> None:
        # The Event Webhook's scheme (see tracking.webhooks.sendgrid), with the
        # inbound security policy's key.
        if self.verification_key is None:
            return
        signature = request.headers.get(SIGNATURE_HEADER, "").strip()
        timestamp = request.headers.get(TIMESTAMP_HEADER, "").strip()
        if not signature or not timestamp:
            raise AnymailWebhookValidationFailure(
                f"SendGrid inbound call has no {SIGNATURE_HEADER} and {TIMESTAMP_HEADER} headers: "
                f"attach a security policy with signature verification, or unset {KEY_SETTING}."
            )
        der_signature = b64decode_or_none(signature)
        try:
            if der_signature is None:
                raise InvalidSignature
            self.verification_key.verify(
                der_signature, timestamp.encode() + request.body, ec.ECDSA(hashes.SHA256())
            )
        except InvalidSignature:
            raise AnymailWebhookValidationFailure(
                f"SendGrid inbound signature doesn't verify: check {KEY_SETTING} against the "
                "public_key of the Inbound Parse security policy."
            ) from None
        check_timestamp(timestamp, self.tolerance, self.esp_name)

    # Parsing

    def load_form(self, request: HttpRequest) -> tuple[QueryDict, MultiValueDict]:
        """The posted fields and files, fields decoded as Latin-1 (see below)."""
        if not request.body:
            raise AnymailWebhookPayloadError(
                "Empty SendGrid inbound body: expected Inbound Parse's multipart/form-data."
            )
        if request.content_type == "application/json":
            payload = self.parse_json_body(request)
            if isinstance(payload, list):
                raise AnymailWebhookPayloadError(
                    "This is a batch from SendGrid's Event Webhook (tracking): point it at the "
                    "SendGrid tracking URL, not the inbound one."
                )
            raise AnymailWebhookPayloadError(
                "SendGrid Inbound Parse posts multipart/form-data, not JSON: is this another "
                "ESP's webhook posted to the SendGrid inbound URL?"
            )
        self.require_content_type(request, "multipart/form-data")
        self.require_complete_multipart(request)
        # Fields come in whatever charset the message used (see charsets), and
        # "email" is the raw message, 8-bit bytes and all. Decoded as Latin-1,
        # every byte is one character, so encoding a field back gives its
        # exact bytes. (request.POST stays Django's usual UTF-8 reading.)
        parser = MultiPartParser(
            request.META, BytesIO(request.body), request.upload_handlers, "latin-1"
        )
        try:
            fields, files = parser.parse()
        except MultiPartParserError as err:
            raise AnymailWebhookPayloadError(
                f"Malformed SendGrid inbound form data: {err}"
            ) from err
        if "email" not in fields and "email" not in files and "headers" not in fields:
            raise AnymailWebhookPayloadError(
                "SendGrid inbound post has neither email (raw MIME) nor headers (a parsed "
                "message): is this another webhook posted to the SendGrid inbound URL?"
            )
        return fields, files

    def parse_events(self, request: HttpRequest) -> list[AnymailInboundEvent]:
        fields, files = self.load_form(request)
        raw = None
        if "email" in files:
            raw = files["email"].read()
        elif "email" in fields:
            raw = fields["email"].encode("latin-1")
        if raw is not None:
            message = AnymailInboundMessage.parse_raw_mime_bytes(raw)
        else:
            message = self.construct_message(fields, files)

        envelope = json_field(fields, "envelope", {})
        recipients = envelope.get("to") or []
        if isinstance(recipients, str):
            recipients = [recipients]
        message.envelope_sender = envelope.get("from") or None
        message.envelope_recipient = recipients[0] if recipients else None
        spam_score = fields.get("spam_score")
        try:
            message.spam_score = float(spam_score) if spam_score else None
        except ValueError:
            message.spam_score = None

        return [
            inbound_event(
                message=message,
                esp_event=request,
                raw=raw,
                event_id=None,
                timestamp=None,
            )
        ]

    def construct_message(self, fields: QueryDict, files: MultiValueDict) -> AnymailInboundMessage:
        charsets = json_field(fields, "charsets", {})

        def text(name: str) -> str | None:
            value = fields.get(name)
            if value is None:
                return None
            return decode(value.encode("latin-1"), charsets.get(name) or "utf-8")

        info = json_field(fields, "attachment-info", {})
        content_ids = {field: cid for cid, field in json_field(fields, "content-ids", {}).items()}
        attachments = []
        names = [name for name in files if ATTACHMENT_FIELD.fullmatch(name)]
        for name in sorted(names, key=lambda name: int(name[len("attachment") :])):
            upload = files[name]
            details = info.get(name) or {}
            content_id = details.get("content-id") or content_ids.get(name)
            attachments.append(
                AnymailInboundMessage.construct_attachment(
                    details.get("type") or upload.content_type or "application/octet-stream",
                    upload.read(),
                    filename=details.get("filename") or details.get("name") or utf8(upload.name),
                    content_id=content_id,
                    inline=bool(content_id),
                )
            )
        return AnymailInboundMessage.construct(
            raw_headers=text("headers"),
            from_email=text("from"),
            to=text("to"),
            cc=text("cc"),
            subject=text("subject"),
            text=text("text"),
            html=text("html"),
            attachments=attachments,
        )


def decode(content: bytes, charset: str) -> str:
    try:
        return content.decode(charset, errors="replace")
    except LookupError:  # a charset Python doesn't know
        return content.decode("utf-8", errors="replace")


def utf8(latin1: str | None) -> str | None:
    """A file name Django decoded as Latin-1, decoded as the UTF-8 it usually is.

    Only a fallback: Django drops what decodes to control characters (some
    UTF-8 bytes do), while attachment-info has the name intact.
    """
    if latin1 is None:
        return None
    try:
        return latin1.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return latin1


def json_field(fields: QueryDict, name: str, default: Any) -> Any:
    """A field holding JSON (default when absent), or a payload error naming it."""
    value = fields.get(name)
    if not value:
        return default
    try:
        parsed = json.loads(value.encode("latin-1").decode("utf-8"))
    except ValueError as err:
        raise AnymailWebhookPayloadError(
            f"SendGrid inbound field {name} isn't JSON: {err}"
        ) from err
    if not isinstance(parsed, type(default)):
        raise AnymailWebhookPayloadError(
            f"SendGrid inbound field {name} should be a JSON {type(default).__name__}."
        )
    return parsed
