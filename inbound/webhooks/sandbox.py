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
from sending.signals import AnymailInboundEvent

from ..message import AnymailInboundMessage
from .base import AnymailInboundWebhookView, inbound_event


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
        return [
            inbound_event(
                message=message,
                esp_event=request,
                raw=raw,
                event_id=None,
                timestamp=timezone.now(),
            )
        ]
