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
key. MANDRILL_WEBHOOK_URL (set when a proxy changes the scheme or host Django
sees) is the URL entered in Mandrill for any one of the Mandrill URLs: a call
to another of them is checked against the same URL with that call's Mandrill
path (``.../mandrill/inbound/`` for ``.../mandrill/``, say), since Mandrill
signs each URL as entered.

References: https://mailchimp.com/developer/transactional/docs/webhooks/,
Mandrill KB "What is the format of inbound email webhooks?"
(https://mandrill.zendesk.com/hc/en-us/articles/205583207) and "How to
Authenticate Webhook Requests"
(https://mandrill.zendesk.com/hc/en-us/articles/205583257).
"""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.db import transaction
from django.http import HttpRequest

from sending.exceptions import AnymailInsecureWebhookWarning, AnymailWebhookPayloadError
from sending.signals import AnymailEvent, AnymailInboundEvent, EventType
from tracking.webhooks.mandrill import FORM_CONTENT_TYPE, MandrillTrackingWebhookView

from ..message import AnymailInboundMessage
from .base import AnymailInboundWebhookView

INBOUND = "inbound"
MANDRILL_PATH = "/mandrill/"


class MandrillInboundWebhookView(AnymailInboundWebhookView, MandrillTrackingWebhookView):
    """Mandrill inbound routes (anymail/mandrill/inbound/): inbound events only.

    The Mandrill tracking view comes second for its signature check and
    settings; everything else is the inbound pipeline.
    """

    esp_name = "Mandrill"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.configured_webhook_url = self.webhook_url

    def validate_request(self, request: HttpRequest) -> None:
        if self.configured_webhook_url:
            # (a view instance serves one request, so this is this call's signed URL)
            self.webhook_url = same_webhook_at(self.configured_webhook_url, request.path)
        super().validate_request(request)

    def parse_events(self, request: HttpRequest) -> list[AnymailEvent]:
        esp_events = self.mandrill_events(request)
        others = sorted({str(e.get("event") or e.get("type")) for e in esp_events} - {INBOUND})
        if others:
            raise AnymailWebhookPayloadError(
                f"Mandrill tracking events ({', '.join(others)}) were posted to the inbound "
                "webhook: point Mandrill's webhook at anymail/mandrill/ (tracking and inbound) "
                "or anymail/mandrill/tracking/ instead."
            )
        return [self.parse_inbound_event(esp_event) for esp_event in esp_events]

    def mandrill_events(self, request: HttpRequest) -> list[dict]:
        """The decoded mandrill_events array (decoded once per request, then remembered)."""
        decoded = getattr(request, "_mandrill_events", None)
        if decoded is None:
            decoded = request._mandrill_events = load_mandrill_events(request)
        return decoded

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
        event = AnymailInboundEvent(
            event_type=EventType.INBOUND,
            timestamp=datetime.fromtimestamp(int(ts), tz=UTC) if ts is not None else None,
            event_id=None,
            esp_event=esp_event,
            message=message,
        )
        event.raw_mime = raw
        return event


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
        if any(esp_event.get("event") == INBOUND for esp_event in self.mandrill_events(request)):
            self.kind = "inbound"

    def parse_events(self, request: HttpRequest) -> list[AnymailEvent]:
        return [
            self.parse_inbound_event(esp_event)
            if esp_event.get("event") == INBOUND
            else self.parse_event(esp_event)  # the tracking view's
            for esp_event in self.mandrill_events(request)
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


def load_mandrill_events(request: HttpRequest) -> list[dict]:
    """The mandrill_events form field as a list of event objects, or a payload error."""
    if not request.body:
        raise AnymailWebhookPayloadError(
            "Empty Mandrill webhook body: expected a mandrill_events form field."
        )
    if request.content_type != FORM_CONTENT_TYPE:
        raise AnymailWebhookPayloadError(
            f"Mandrill webhooks are sent as {FORM_CONTENT_TYPE}, "
            f"not {request.content_type or 'no content type'}."
        )
    raw_events = request.POST.get("mandrill_events")
    if raw_events is None:
        raise AnymailWebhookPayloadError(
            "Mandrill webhook has no mandrill_events field: is this another ESP's "
            "webhook posted to the Mandrill URL?"
        )
    try:
        esp_events = json.loads(raw_events)
    except ValueError as err:
        raise AnymailWebhookPayloadError(
            f"Mandrill webhook mandrill_events is not valid JSON: {err}"
        ) from err
    if not isinstance(esp_events, list) or not all(isinstance(e, dict) for e in esp_events):
        raise AnymailWebhookPayloadError(
            "Mandrill webhook mandrill_events must be a JSON array of event objects."
        )
    return esp_events


def same_webhook_at(configured_url: str, request_path: str) -> str:
    """configured_url (one Mandrill webhook URL) with request_path's Mandrill path instead.

    "https://user:pass@example.com/hooks/anymail/mandrill/" called at
    "/anymail/mandrill/inbound/" gives
    "https://user:pass@example.com/hooks/anymail/mandrill/inbound/".
    """
    parts = urlsplit(configured_url)
    prefix, found, _ = parts.path.rpartition(MANDRILL_PATH)
    _, called, suffix = request_path.rpartition(MANDRILL_PATH)
    if not (found and called):
        return configured_url
    return urlunsplit(parts._replace(path=f"{prefix}{MANDRILL_PATH}{suffix}"))


def spam_score(spam_report: Any) -> float | None:
    """SpamAssassin's score from msg.spam_report, if it has a usable one."""
    if not isinstance(spam_report, dict):
        return None
    try:
        return float(spam_report["score"])
    except (KeyError, TypeError, ValueError):
        return None
