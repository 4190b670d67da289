"""Base for inbound webhooks: the tracking pipeline, storing received mail instead of events.

Authentication, raw WebhookCall storage and the 4xx answers are the shared
ones (tracking.webhooks.base). ESP modules implement ``parse_events``
returning AnymailInboundEvents, made by ``inbound_event()``: pass ``raw``
(bytes) when the ESP gave the message's raw MIME, so it is stored exactly as
received.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.http import HttpRequest

from sending.exceptions import AnymailWebhookPayloadError
from sending.signals import AnymailInboundEvent, EventType, inbound
from sending.utils import get_mailhub_setting
from tracking.webhooks.base import AnymailBaseWebhookView

from ..message import AnymailInboundMessage

if TYPE_CHECKING:
    import requests

DEFAULT_INBOUND_MAX_BODY_BYTES = 40 * 1024 * 1024
DEFAULT_INBOUND_MAX_ATTACHMENT_BYTES = 25 * 1024 * 1024
DOWNLOAD_CHUNK_BYTES = 64 * 1024


class InboundTooLarge(AnymailWebhookPayloadError):
    """An inbound message or attachment over the configured size (answered 413)."""

    http_status = 413


def read_capped(response: requests.Response, *, limit: int, what: str, setting: str) -> bytes:
    """A streamed download's bytes, refused (InboundTooLarge) as soon as they pass limit.

    what names the download in the error; setting is the MAILHUB setting
    that sets limit.
    """
    chunks, size = [], 0
    for chunk in response.iter_content(DOWNLOAD_CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            raise InboundTooLarge(
                f'{what} is over the {limit} bytes allowed (MAILHUB["{setting}"]).'
            )
        chunks.append(chunk)
    return b"".join(chunks)


def inbound_event(
    *,
    message: AnymailInboundMessage,
    esp_event: Any,
    event_id: str | None,
    timestamp: datetime | None,
    raw: bytes | None = None,
) -> AnymailInboundEvent:
    """The inbound event for a received message.

    raw is the message's MIME exactly as the ESP gave it, stored as is;
    None when the message was rebuilt from parsed fields (its own bytes are
    stored then).
    """
    event = AnymailInboundEvent(
        event_type=EventType.INBOUND,
        timestamp=timestamp,
        event_id=event_id,
        esp_event=esp_event,
        message=message,
    )
    if raw is not None:
        event.raw_mime = raw
    return event


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

    def headers_object(self, headers: Any, field: str = "Headers") -> dict[str, Any]:
        """A payload's headers object, {name: value or [values]} ({} when absent)."""
        if not headers:
            return {}
        if not isinstance(headers, dict):
            raise AnymailWebhookPayloadError(
                f"{self.esp_name} inbound {field} must be a JSON object, "
                f"not {type(headers).__name__}."
            )
        return headers

    def require_complete_multipart(self, request: HttpRequest) -> None:
        """Refuse a multipart body cut short: Django parses whatever parts arrived."""
        if request.content_type != "multipart/form-data":
            return
        boundary = request.content_params.get("boundary", "").encode("latin-1")
        if not boundary or not request.body.rstrip(b"\r\n").endswith(b"--" + boundary + b"--"):
            raise AnymailWebhookPayloadError(
                f"Malformed {self.esp_name} inbound form data: the multipart body doesn't end "
                "with its closing boundary (truncated?)."
            )

    def check_attachment_sizes(self, event: AnymailInboundEvent) -> None:
        for part in event.message.walk():
            if part.is_multipart():
                continue
            if part.is_attachment() or part.is_inline_attachment():
                size = len(part.get_payload(decode=True) or b"")
                if size > self.max_attachment_bytes:
                    raise self.attachment_too_large(part.get_filename(), size)

    def attachment_too_large(self, name: str | None, size: int) -> InboundTooLarge:
        return InboundTooLarge(
            f"Attachment {name or '(unnamed)'!r} is {size} bytes, over the "
            f"{self.max_attachment_bytes} allowed "
            '(MAILHUB["INBOUND_MAX_ATTACHMENT_BYTES"]).'
        )

    def record(self, events: Sequence[AnymailInboundEvent], call: Any) -> list[AnymailInboundEvent]:
        """Store the call with its messages (when recording), then signal each new one."""
        new_events = list(events)
        if call is not None:
            from tracking import services as tracking_services

            from .. import services

            def store(call: Any) -> list[AnymailInboundEvent]:
                stored_events = []
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
                        stored_events.append(event)
                return stored_events

            new_events = tracking_services.webhook_call_record(
                call=call, record=store, expected=len(events)
            )
        for event in new_events:
            self.signal.send(sender=self.__class__, event=event, esp_name=self.esp_name)
        return new_events
