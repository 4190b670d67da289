"""Tracking webhook for Mandrill (Mailchimp Transactional).

Mandrill POSTs ``application/x-www-form-urlencoded`` with one field,
``mandrill_events``: a JSON array of up to 1,000 events of three kinds:

* message events ``{"event": "send"|"deferral"|"hard_bounce"|"soft_bounce"|
  "delivered"|"open"|"click"|"spam"|"unsub"|"reject", "ts", "url"?,
  "user_agent"?, "ip"?, "msg": {"_id", "email", "tags", "metadata", "state",
  "bounce_description"?, "diag"?, "smtp_events"?, ...}}``;
* sync events ``{"type": "blacklist"|"whitelist" (newer docs: "denylist"|
  "allowlist"), "action": "add"|"remove"|"change", "ts", "reject": {"email",
  "reason", "detail", ...}}``, which say nothing about a sent message and are
  reported as ``unknown`` events for the address (as the documented API does);
* inbound events ``{"event": "inbound", "msg": {"raw_msg", ...}}`` from
  inbound routes, which this tracking view refuses (400, call kept).

``msg._id`` is the per-recipient id the send API returned, which is what
sending.backends.mandrill records. Mandrill gives no event id (the event's
own ``_id`` repeats the message id), so events are de-duplicated by content.

Signature: ``X-Mandrill-Signature`` is base64(HMAC-SHA1(webhook key, URL +
each POST key and value, sorted by key)), where URL is exactly the one
entered in Mandrill. The key is MANDRILL_WEBHOOK_KEY. MANDRILL_WEBHOOK_URL
(set when a proxy changes the scheme, host or path prefix Django sees) is the
URL entered in Mandrill for any one of the Mandrill URLs (tracking, inbound
or combined): a call to another of them is checked against the same URL with
that call's Mandrill path (``.../mandrill/tracking/`` for ``.../mandrill/``,
say), since Mandrill signs each URL as entered. When the key is set, every
call must carry a valid signature, so basic auth is optional (Mandrill
accepts credentials in the webhook URL too). Mandrill checks the URL with a
HEAD request when the webhook is added; the base view answers it.

References: https://mailchimp.com/developer/transactional/docs/webhooks/,
https://mailchimp.com/developer/transactional/guides/track-respond-activity-webhooks/,
Mandrill KB "Message Event Webhook Format", "Sync Event Webhook Format",
"How to Authenticate Webhook Requests".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.http import HttpRequest, QueryDict

from sending.exceptions import AnymailWebhookPayloadError, AnymailWebhookValidationFailure
from sending.signals import AnymailTrackingEvent, EventType, RejectReason
from sending.utils import get_anymail_setting

from .base import AnymailBaseWebhookView, constant_time_equal

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
MANDRILL_PATH = "/mandrill/"
INBOUND = "inbound"

EVENT_TYPES = {
    "send": EventType.SENT,
    "delivered": EventType.DELIVERED,
    "deferral": EventType.DEFERRED,
    "hard_bounce": EventType.BOUNCED,
    "soft_bounce": EventType.BOUNCED,
    "open": EventType.OPENED,
    "click": EventType.CLICKED,
    "spam": EventType.COMPLAINED,
    "unsub": EventType.UNSUBSCRIBED,
    "reject": EventType.REJECTED,
}

SYNC_EVENT_TYPES = frozenset({"blacklist", "whitelist", "denylist", "allowlist"})

# msg.bounce_description ("a short description of the bounce reason such as
# bad_mailbox or invalid_domain"). Mandrill stops trying after any bounce, so a
# soft bounce is a bounce that gave up on a temporary condition: timed_out.
BOUNCE_REASONS = {
    "bad_mailbox": RejectReason.BOUNCED,
    "invalid_domain": RejectReason.INVALID,
    "mailbox_full": RejectReason.TIMED_OUT,
    "spam_related": RejectReason.SPAM,
    "policy_related": RejectReason.BLOCKED,
}
DEFAULT_BOUNCE_REASON = {
    "hard_bounce": RejectReason.BOUNCED,
    "soft_bounce": RejectReason.TIMED_OUT,
    # Mandrill refused to send: the address is on the rejection denylist (after
    # a bounce, complaint or unsubscribe) or a sending rule forbids it.
    "reject": RejectReason.BLOCKED,
}


class MandrillTrackingWebhookView(AnymailBaseWebhookView):
    esp_name = "Mandrill"

    def __init__(self, **kwargs: Any) -> None:
        self.webhook_key = get_anymail_setting(
            "webhook_key", esp_name=self.esp_name, kwargs=kwargs, default=None
        )
        self.webhook_url = get_anymail_setting(
            "webhook_url", esp_name=self.esp_name, kwargs=kwargs, default=None
        )
        # A configured key authenticates every call; without it, insist on basic auth.
        self.warn_if_no_basic_auth = not self.webhook_key
        super().__init__(**kwargs)

    def validate_request(self, request: HttpRequest) -> None:
        if not self.webhook_key:
            return
        # Mailchimp's newer docs call the same header X-Mailchimp-Signature.
        signature = request.META.get("HTTP_X_MANDRILL_SIGNATURE") or request.META.get(
            "HTTP_X_MAILCHIMP_SIGNATURE"
        )
        if not signature:
            raise AnymailWebhookValidationFailure(
                "Mandrill webhook called without an X-Mandrill-Signature header."
            )
        if request.body:
            # The signature covers the form fields: another body type can't be checked.
            self.require_content_type(request, FORM_CONTENT_TYPE)
        if self.webhook_url:
            url = same_webhook_at(self.webhook_url, request.path)
        else:
            url = request.build_absolute_uri()
        expected = mandrill_signature(self.webhook_key, url, request.POST)
        if not constant_time_equal(signature, expected):
            raise AnymailWebhookValidationFailure(
                f"Mandrill webhook signature doesn't match for URL {url!r}: check "
                "MANDRILL_WEBHOOK_KEY, and set MANDRILL_WEBHOOK_URL to the exact URL "
                "entered in Mandrill if a proxy changes the scheme or host Django sees."
            )

    def parse_events(self, request: HttpRequest) -> list[AnymailTrackingEvent]:
        esp_events = mandrill_events(request)
        if any(esp_event.get("event") == INBOUND for esp_event in esp_events):
            raise AnymailWebhookPayloadError(
                "Mandrill inbound (route) events were posted to the tracking webhook; "
                "point the inbound route at the inbound webhook URL instead."
            )
        return [self.parse_event(esp_event) for esp_event in esp_events]

    def parse_event(self, esp_event: dict) -> AnymailTrackingEvent:
        timestamp = datetime.fromtimestamp(int(esp_event["ts"]), tz=UTC)
        if "event" not in esp_event:
            if esp_event.get("type") in SYNC_EVENT_TYPES:
                return self.parse_sync_event(esp_event, timestamp)
            raise AnymailWebhookPayloadError(
                "Mandrill event has neither an 'event' nor a sync event 'type': "
                f"{sorted(esp_event)}"
            )

        esp_type = esp_event["event"]
        msg = esp_event.get("msg") or {}
        bounce_description = msg.get("bounce_description")
        reject_reason = None
        if esp_type in DEFAULT_BOUNCE_REASON:
            reject_reason = BOUNCE_REASONS.get(bounce_description, DEFAULT_BOUNCE_REASON[esp_type])
        return AnymailTrackingEvent(
            event_type=EVENT_TYPES.get(esp_type, EventType.UNKNOWN),
            timestamp=timestamp,
            event_id=None,
            message_id=msg.get("_id"),
            recipient=msg.get("email"),
            reject_reason=reject_reason,
            description=bounce_description,
            mta_response=mta_response(msg),
            tags=msg.get("tags") or [],
            metadata=msg.get("metadata") or {},
            click_url=esp_event.get("url"),
            user_agent=esp_event.get("user_agent"),
            esp_event=esp_event,
        )

    def parse_sync_event(self, esp_event: dict, timestamp: datetime) -> AnymailTrackingEvent:
        entry = esp_event.get("reject") or {}
        description = f"{esp_event['type']} {esp_event.get('action', 'change')}"
        detail = entry.get("reason") or entry.get("detail")
        if detail:
            description += f": {detail}"
        return AnymailTrackingEvent(
            event_type=EventType.UNKNOWN,
            timestamp=timestamp,
            recipient=entry.get("email"),
            description=description,
            esp_event=esp_event,
        )


def mandrill_events(request: HttpRequest) -> list[dict]:
    """The mandrill_events form field as a list of event objects, or a payload error.

    Decoded once per request, then remembered on it: the combined URL reads
    the events both to choose the call's kind and to parse them.
    """
    decoded = getattr(request, "_mandrill_events", None)
    if decoded is not None:
        return decoded
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
    request._mandrill_events = esp_events
    return esp_events


def same_webhook_at(configured_url: str, request_path: str) -> str:
    """configured_url (one Mandrill webhook URL) with request_path's Mandrill path instead.

    "https://user:pass@example.com/hooks/anymail/mandrill/" called at
    "/anymail/mandrill/inbound/" gives
    "https://user:pass@example.com/hooks/anymail/mandrill/inbound/". A URL
    without a Mandrill path (a proxy's own) is used as it is.
    """
    parts = urlsplit(configured_url)
    prefix, found, _ = parts.path.rpartition(MANDRILL_PATH)
    _, called, suffix = request_path.rpartition(MANDRILL_PATH)
    if not (found and called):
        return configured_url
    return urlunsplit(parts._replace(path=f"{prefix}{MANDRILL_PATH}{suffix}"))


def mta_response(msg: dict) -> str | None:
    """The receiving server's reply: a bounce's diag, else the last SMTP event's."""
    if msg.get("diag"):
        return msg["diag"]
    smtp_events = msg.get("smtp_events") or []
    if smtp_events and isinstance(smtp_events[-1], dict):
        return smtp_events[-1].get("diag")
    return None


def mandrill_signature(key: str, url: str, params: QueryDict | dict) -> str:
    """Mandrill's X-Mandrill-Signature for a POST of params to url."""
    signed = url
    items = params.lists() if hasattr(params, "lists") else ((k, [v]) for k, v in params.items())
    for name, values in sorted(items):
        for value in values:
            signed += name + value
    digest = hmac.new(key.encode("utf-8"), signed.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")
