"""Base for inbound webhooks: the tracking pipeline, storing received mail instead of events.

Authentication, raw WebhookCall storage and the 4xx answers are the shared
ones (tracking.webhooks.base). ESP modules implement ``parse_events``
returning AnymailInboundEvents; set ``event.raw_mime`` (bytes) when the ESP
gave the message's raw MIME, so it is stored exactly as received.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.http import HttpRequest

from sending.exceptions import AnymailWebhookPayloadError
from sending.signals import AnymailInboundEvent, inbound
from sending.utils import get_mailhub_setting
from tracking.webhooks.base import AnymailBaseWebhookView

DEFAULT_INBOUND_MAX_BODY_BYTES = 40 * 1024 * 1024
DEFAULT_INBOUND_MAX_ATTACHMENT_BYTES = 25 * 1024 * 1024


class InboundTooLarge(AnymailWebhookPayloadError):
    """An inbound message or attachment over the configured size (answered 413)."""

    http_status = 413


class AnymailInboundWebhookView(AnymailBaseWebhookView):
    """Base for every ESP's inbound webhook view."""

    kind = "inbound"
    signal = inbound
    max_body_setting = "INBOUND_MAX_BODY_BYTES"
    default_max_body_bytes = DEFAULT_INBOUND_MAX_BODY_BYTES

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_attachment_bytes = get_mailhub_setting(
            "INBOUND_MAX_ATTACHMENT_BYTES", DEFAULT_INBOUND_MAX_ATTACHMENT_BYTES
        )

    def parse_events(self, request: HttpRequest) -> list[AnymailInboundEvent]:
        raise NotImplementedError(f"{self.__class__.__name__} must implement parse_events")

    def process(self, request: HttpRequest, call: Any) -> Any:
        events = self.parse_events_safely(request)
        for event in events:
            self.check_attachment_sizes(event)
        return self.record(events, call)

    def check_attachment_sizes(self, event: AnymailInboundEvent) -> None:
        for part in event.message.walk():
            if part.is_multipart():
                continue
            if part.is_attachment() or part.is_inline_attachment():
                size = len(part.get_payload(decode=True) or b"")
                if size > self.max_attachment_bytes:
                    name = part.get_filename() or "(unnamed)"
                    raise InboundTooLarge(
                        f"Attachment {name!r} is {size} bytes, over the "
                        f"{self.max_attachment_bytes} allowed "
                        '(MAILHUB["INBOUND_MAX_ATTACHMENT_BYTES"]).'
                    )

    def record(self, events: Sequence[AnymailInboundEvent], call: Any) -> list[AnymailInboundEvent]:
        """Store each message (when recording), mark the call processed, then signal each."""
        new_events = list(events)
        if call is not None:
            from tracking import services as tracking_services

            from .. import services

            new_events = []
            with transaction.atomic():
                for event in events:
                    stored, created = services.inbound_message_store(
                        esp=self.esp_key,
                        message=event.message,
                        raw=getattr(event, "raw_mime", None),
                        event_id=event.event_id,
                        timestamp=event.timestamp,
                        webhook_call=call,
                    )
                    event.stored_message = stored
                    if created:
                        new_events.append(event)
                tracking_services.webhook_call_mark_processed(
                    call=call, event_count=len(new_events)
                )
        for event in new_events:
            self.signal.send(sender=self.__class__, event=event, esp_name=self.esp_name)
        return new_events
