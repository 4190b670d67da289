"""Inbound webhook for raw MIME: the sandbox ESP's inbound, and any relay that posts .eml.

POST the message as the body with Content-Type message/rfc822; the
envelope, when known, goes in X-Envelope-Sender and X-Envelope-Recipient:

    curl -u user:pass --data-binary @mail.eml -H "Content-Type: message/rfc822" \\
        http://127.0.0.1:8000/anymail/sandbox/inbound/
"""

from __future__ import annotations

from django.http import HttpRequest
from django.utils import timezone

from sending.exceptions import AnymailWebhookPayloadError
from sending.signals import AnymailInboundEvent, EventType

from ..message import AnymailInboundMessage
from .base import AnymailInboundWebhookView


class SandboxInboundWebhookView(AnymailInboundWebhookView):
    esp_name = "Sandbox"

    def parse_events(self, request: HttpRequest) -> list[AnymailInboundEvent]:
        self.require_content_type(request, "message/rfc822")
        raw = request.body
        if not raw.strip():
            raise AnymailWebhookPayloadError("Empty inbound body: expected a raw MIME message.")
        message = AnymailInboundMessage.parse_raw_mime_bytes(raw)
        message.envelope_sender = request.headers.get("X-Envelope-Sender") or None
        message.envelope_recipient = request.headers.get("X-Envelope-Recipient") or None
        event = AnymailInboundEvent(
            event_type=EventType.INBOUND,
            timestamp=timezone.now(),
            event_id=None,
            esp_event=request,
            message=message,
        )
        event.raw_mime = raw
        return [event]
