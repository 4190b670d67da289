"""Inbound webhook for MailerSend inbound routing.

MailerSend posts one JSON object per received email:
``{"type": "inbound.message", "inbound_id", "url", "created_at", "data": {...}}``.
``data`` is the message: ``id``, ``created_at``, ``raw`` (the complete MIME
message, as text), ``sender`` (``{"email"}``: the envelope sender),
``recipients`` (``rcptTo``: the envelope recipients, and ``to``), ``from``,
``subject``, ``date``, ``headers`` (a header that appears more than once is
a list), ``text``, ``html``, ``attachments`` (``file_name``,
``content_type``, ``content_disposition``, ``content_id``, ``size``,
``content`` in base64), ``spf_check`` and ``dkim_check``.

``raw`` is what's parsed and stored, exactly as received. Should a payload
ever come without it, the message is rebuilt from the parsed fields
instead. MailerSend gives no spam score or stripped reply.

Each call carries a ``Signature`` header: the hex HMAC-SHA256 of the body
keyed with the inbound route's own secret (shown under the route's URL in
MailerSend's dashboard): set it as MAILERSEND_INBOUND_SECRET. It is not the
tracking webhooks' MAILERSEND_SIGNING_SECRET. WEBHOOK_SECRET basic auth in
the route URL is checked too when set.

Reference: https://developers.mailersend.com/api/v1/inbound.html,
https://www.mailersend.com/help/inbound-route and
https://developers.mailersend.com/api/v1/webhooks.html ("Security").
"""

from __future__ import annotations

import base64
import binascii
from email.utils import formataddr
from typing import Any

from django.http import HttpRequest

from sending.exceptions import AnymailWebhookPayloadError, AnymailWebhookValidationFailure
from sending.signals import AnymailInboundEvent
from sending.utils import get_anymail_setting
from tracking.webhooks.base import constant_time_equal
from tracking.webhooks.mailersend import INBOUND_TYPE, hmac_sha256_hex, parse_datetime

from ..message import AnymailInboundMessage
from .base import AnymailInboundWebhookView, inbound_event


class MailerSendInboundWebhookView(AnymailInboundWebhookView):
    esp_name = "MailerSend"

    def __init__(self, **kwargs: Any) -> None:
        setting_prefix = self.esp_name.upper().replace(" ", "_")
        self.inbound_secret: str | None = (
            get_anymail_setting(
                "inbound_secret", esp_name=setting_prefix, kwargs=kwargs, default=None
            )
            or None
        )
        if self.inbound_secret:
            # MailerSend signs every inbound call, so the signature alone
            # authenticates it; basic auth is still checked if WEBHOOK_SECRET is set.
            self.warn_if_no_basic_auth = False
        super().__init__(**kwargs)

    def validate_request(self, request: HttpRequest) -> None:
        if not self.inbound_secret:
            return
        signature = request.headers.get("Signature", "").strip().lower()
        if not signature:
            raise AnymailWebhookValidationFailure(
                "MailerSend inbound call has no Signature header "
                "(is MAILERSEND_INBOUND_SECRET meant for this inbound route?)."
            )
        if not constant_time_equal(signature, hmac_sha256_hex(self.inbound_secret, request.body)):
            raise AnymailWebhookValidationFailure(
                "MailerSend inbound signature doesn't match: check MAILERSEND_INBOUND_SECRET "
                "(the secret shown under the inbound route's URL, which changes when the "
                "route is edited; not the tracking webhooks' MAILERSEND_SIGNING_SECRET)."
            )

    def parse_events(self, request: HttpRequest) -> list[AnymailInboundEvent]:
        if not request.body:
            # (checked first: an empty request often has no content type either)
            raise AnymailWebhookPayloadError(
                "Empty MailerSend inbound webhook body: expected JSON."
            )
        self.require_content_type(request, "application/json")
        payload = self.parse_json_body(request)
        data = self.inbound_data(payload)

        raw = data.get("raw")
        if raw is not None and not isinstance(raw, str):
            raise AnymailWebhookPayloadError(
                f'MailerSend inbound "raw" must be the message as a string, '
                f"not {type(raw).__name__}."
            )
        if raw:
            raw_bytes = _mime_bytes(raw)
            message = AnymailInboundMessage.parse_raw_mime_bytes(raw_bytes)
        else:
            raw_bytes = None
            message = self.construct_message(data)

        message.envelope_sender = (data.get("sender") or {}).get("email") or None
        rcpt_to = (data.get("recipients") or {}).get("rcptTo") or []
        # The first envelope recipient; the rest (if any) stay in esp_event.
        message.envelope_recipient = (rcpt_to[0].get("email") or None) if rcpt_to else None
        return [
            inbound_event(
                message=message,
                esp_event=payload,
                raw=raw_bytes,
                event_id=data.get("id") or None,
                # when MailerSend received the message, else when it posted it
                timestamp=parse_datetime(data.get("created_at") or payload.get("created_at")),
            )
        ]

    def inbound_data(self, payload: Any) -> dict:
        """The payload's message object, or a payload error saying what was posted instead."""
        if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
            raise AnymailWebhookPayloadError(
                'Not a MailerSend inbound payload: expected a JSON object with "type": '
                f'"{INBOUND_TYPE}". Is this payload meant for another ESP\'s webhook?'
            )
        webhook_type = payload["type"]
        if webhook_type != INBOUND_TYPE:
            raise AnymailWebhookPayloadError(
                f"This is a MailerSend {webhook_type!r} webhook event, not an inbound message: "
                "set the webhook's endpoint URL to anymail/mailersend/tracking/ "
                "(this URL is for inbound routes)."
            )
        data = payload.get("data")
        if not isinstance(data, dict):
            raise AnymailWebhookPayloadError('MailerSend inbound payload has no "data" object.')
        return data

    def construct_message(self, data: dict) -> AnymailInboundMessage:
        """The message rebuilt from MailerSend's parsed fields (when there is no raw)."""
        sender = data.get("from") or {}
        to = (data.get("recipients") or {}).get("to") or {}
        attachments = [self.attachment_part(item) for item in data.get("attachments") or []]
        return AnymailInboundMessage.construct(
            headers=self.headers_object(data.get("headers"), field="headers"),
            from_email=sender.get("raw") or _format_address(sender),
            to=to.get("raw") or None,
            subject=data.get("subject"),
            date=data.get("date") or None,
            text=data.get("text"),
            html=data.get("html"),
            attachments=attachments,
        )

    def attachment_part(self, attachment: Any) -> AnymailInboundMessage:
        if not isinstance(attachment, dict):
            raise AnymailWebhookPayloadError(
                "MailerSend inbound attachments must be JSON objects, "
                f"not {type(attachment).__name__}."
            )
        name = attachment.get("file_name") or None
        try:
            content = base64.b64decode(attachment.get("content") or "", validate=True)
        except (binascii.Error, ValueError) as err:
            raise AnymailWebhookPayloadError(
                f"MailerSend inbound attachment {name!r} content is not valid base64: {err}"
            ) from err
        return AnymailInboundMessage.construct_attachment(
            attachment.get("content_type") or "application/octet-stream",
            content,
            filename=name,
            content_id=attachment.get("content_id") or None,
            inline=attachment.get("content_disposition") == "inline",
        )


def _mime_bytes(raw: str) -> bytes:
    """The raw message's bytes.

    JSON can only carry text; bytes that weren't UTF-8 (an 8bit Latin-1 body)
    arrive as lone surrogates if the sender escaped them, and go back to the
    original bytes here.
    """
    try:
        return raw.encode("utf-8", errors="surrogateescape")
    except UnicodeEncodeError:
        return raw.encode("utf-8", errors="replace")


def _format_address(address: dict) -> str | None:
    if not address.get("email"):
        return None
    return formataddr((address.get("name") or "", address["email"]))
