"""Inbound webhook for Mandrill (Mailchimp Transactional) inbound routes, and its combined URL.

Mandrill posts inbound mail the way it posts tracking events: an
``application/x-www-form-urlencoded`` POST with one field, ``mandrill_events``,
a JSON array of up to 1,000 events. An inbound route's events are
``{"event": "inbound", "ts": <unix seconds>, "msg": {"raw_msg", "headers",
"text", "html", "from_email", "from_name", "to": [[address, name], ...],
"email", "subject", "tags", "sender", "spf", "dkim", "spam_report": {"score",
"matched_rules"}, "attachments"?, "images"?}}``. ``raw_msg`` is "the full
content of the received message, including headers and content": it is what
is parsed and stored. ``email`` ("the email address where Mandrill received
the message") is the envelope recipient and ``spam_report.score`` the
SpamAssassin score. Mandrill gives no envelope sender, no spam verdict and no
event id (messages are stored once by content).

``raw_msg`` is a JSON string, stored as its UTF-8 encoding. (Bytes that were
not UTF-8, if they come through as lone surrogate escapes, are restored
rather than refused.)

URLs. The documented URL, ``anymail/mandrill/``, serves tracking webhooks and
inbound routes alike: MandrillCombinedWebhookView stores a batch's inbound
messages and records its tracking events (parsed by the tracking webhook's
own code), both in one transaction. ``anymail/mandrill/inbound/`` takes
inbound events only and ``anymail/mandrill/tracking/`` tracking events only:
each refuses the other kind (400, the raw call kept).

Signature: the tracking webhook's check, inherited from it: X-Mandrill-Signature,
base64(HMAC-SHA1(MANDRILL_WEBHOOK_KEY, URL + each POST key and value)), where
URL is exactly the one entered in Mandrill. The key belongs to the webhook
entered in Mandrill; one combined URL for webhooks and routes keeps it to one
key. MANDRILL_WEBHOOK_URL means what it means for the tracking webhook: the
URL entered in Mandrill for any one of the Mandrill URLs, a call to another
of them being checked against that call's Mandrill path.

References: https://mailchimp.com/developer/transactional/docs/webhooks/,
Mandrill KB "What is the format of inbound email webhooks?"
(https://mandrill.zendesk.com/hc/en-us/articles/205583207) and "How to
Authenticate Webhook Requests"
(https://mandrill.zendesk.com/hc/en-us/articles/205583257).
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.http import HttpRequest

from sending.exceptions import AnymailInsecureWebhookWarning, AnymailWebhookPayloadError
from sending.signals import AnymailEvent, AnymailInboundEvent
from tracking.webhooks.mandrill import INBOUND, MandrillTrackingWebhookView, mandrill_events

from ..message import AnymailInboundMessage
from .base import AnymailInboundWebhookView, inbound_event


class MandrillInboundWebhookView(AnymailInboundWebhookView, MandrillTrackingWebhookView):
    """Mandrill inbound routes (anymail/mandrill/inbound/): inbound events only.

    The Mandrill tracking view comes second for its signature check and
    settings; everything else is the inbound pipeline.
    """

    esp_name = "Mandrill"

    def parse_events(self, request: HttpRequest) -> list[AnymailEvent]:
        esp_events = mandrill_events(request)
        others = sorted({str(e.get("event") or e.get("type")) for e in esp_events} - {INBOUND})
        if others:
            raise AnymailWebhookPayloadError(
                f"Mandrill tracking events ({', '.join(others)}) were posted to the inbound "
                "webhook: point Mandrill's webhook at anymail/mandrill/ (tracking and inbound) "
                "or anymail/mandrill/tracking/ instead."
            )
        return [self.parse_inbound_event(esp_event) for esp_event in esp_events]

    def parse_inbound_event(self, esp_event: dict) -> AnymailInboundEvent:
        msg = esp_event.get("msg")
        raw_msg = msg.get("raw_msg") if isinstance(msg, dict) else None
        if not isinstance(raw_msg, str) or not raw_msg.strip():
            raise AnymailWebhookPayloadError(
                "Mandrill inbound event has no msg.raw_msg (the received message)."
            )
        raw = raw_msg.encode("utf-8", errors="surrogateescape")
        message = AnymailInboundMessage.parse_raw_mime_bytes(raw)
        message.envelope_recipient = msg.get("email") or None
        message.spam_score = spam_score(msg.get("spam_report"))
        ts = esp_event.get("ts")
        return inbound_event(
            message=message,
            esp_event=esp_event,
            raw=raw,
            event_id=None,
            timestamp=datetime.fromtimestamp(int(ts), tz=UTC) if ts is not None else None,
        )


class MandrillCombinedWebhookView(MandrillInboundWebhookView):
    """Mandrill's documented URL (anymail/mandrill/): tracking webhooks and inbound routes.

    A webhook posts tracking events and a route inbound ones, so a batch
    normally holds one kind. A mixed batch is handled too: its messages are
    stored and its tracking events recorded in one transaction, so a failure
    in either leaves the call unprocessed for Mandrill's retry. The stored
    call's kind is "inbound" when the batch has inbound mail. (A mixed call's
    event_count then counts its tracking events only: each part's record()
    marks the call processed with its own count.)
    """

    kind = "tracking"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # It records (and signals) the tracking events; a missing secret was warned about above.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AnymailInsecureWebhookWarning)
            self.tracking_view = MandrillTrackingWebhookView()

    def validate_request(self, request: HttpRequest) -> None:
        super().validate_request(request)
        # Decided here, after the signature check and before the call is stored.
        if any(esp_event.get("event") == INBOUND for esp_event in mandrill_events(request)):
            self.kind = "inbound"

    def parse_events(self, request: HttpRequest) -> list[AnymailEvent]:
        return [
            self.parse_inbound_event(esp_event)
            if esp_event.get("event") == INBOUND
            else self.parse_event(esp_event)  # the tracking view's
            for esp_event in mandrill_events(request)
        ]

    def process(self, request: HttpRequest, call: Any) -> list[AnymailEvent]:
        events = self.parse_events_safely(request)
        inbound_events = [e for e in events if isinstance(e, AnymailInboundEvent)]
        tracking_events = [e for e in events if not isinstance(e, AnymailInboundEvent)]
        for event in inbound_events:
            self.check_attachment_sizes(event)
        with transaction.atomic():
            recorded: list[AnymailEvent] = []
            if inbound_events or not tracking_events:
                recorded += self.record(inbound_events, call)
            if tracking_events:
                recorded += self.tracking_view.record(tracking_events, call)
        return recorded


def spam_score(spam_report: Any) -> float | None:
    """SpamAssassin's score from msg.spam_report, if it has a usable one."""
    if not isinstance(spam_report, dict):
        return None
    try:
        return float(spam_report["score"])
    except (KeyError, TypeError, ValueError):
        return None
