"""Tracking webhook for Unisender Go.

Unisender Go posts JSON (gzipped with the webhook's ``json_post_gzip``
format): ``{"auth": ..., "events_by_user": [{"user_id", "project_id"?,
"project_name"?, "events": [...]}]}``. Each event is one of:

* ``{"event_name": "transactional_email_status", "event_data": {"job_id",
  "metadata", "email", "status", "event_time", "url"?, "delivery_info"?}}``:
  a recipient's status changed. ``job_id`` is what email/send returned, the
  message id of every recipient of that call, so an event is linked by
  (job_id, email). ``delivery_info`` (``delivery_status``,
  ``destination_response``, ``user_agent``, ``ip``...) is there only when the
  webhook was set with ``delivery_info: 1``; set it, or bounces carry no reason.
* ``{"event_name": "transactional_spam_block", "event_data": {"block_time",
  "block_type", "domain", "SMTP_blocks_count", "domain_status"}}``: Unisender
  Go stopped (or resumed) sending to a domain from some of its servers. It's
  about no message, so it's recorded as an unlinked "unknown" event.

``event_time`` is UTC, "YYYY-MM-DD hh:mm:ss". Events have no id: duplicates
are recognised by their content.

Authentication: ``auth`` is the MD5 of the body in which the auth value is
replaced by the API key that registered the webhook. It's checked when
UNISENDER_GO_API_KEY is set (the send backend's setting, so always when the
backend is used): a missing or wrong checksum is refused (403). It covers
the whole body, but has no timestamp: a replayed call is a duplicate, and
its events are stored once. A webhook registered with a project API key
needs that key here. WEBHOOK_SECRET basic auth can be added in the URL
(``https://user:pass@host/anymail/unisender_go/tracking/``).

Reference: https://godocs.unisender.ru/web-api-ref#callback-format and
https://godocs.unisender.ru/email-statuses
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest

from sending.exceptions import AnymailWebhookPayloadError, AnymailWebhookValidationFailure
from sending.signals import AnymailTrackingEvent, EventType, RejectReason
from sending.utils import get_anymail_setting

from .base import AnymailBaseWebhookView, constant_time_equal, describe_wrong_payload

# transactional_email_status "status" -> event type
STATUSES = {
    "accepted": EventType.QUEUED,
    "sent": EventType.SENT,
    "delivered": EventType.DELIVERED,
    "opened": EventType.OPENED,
    "clicked": EventType.CLICKED,
    "unsubscribed": EventType.UNSUBSCRIBED,
    "subscribed": EventType.SUBSCRIBED,  # resubscribed after unsubscribing
    "soft_bounced": EventType.DEFERRED,  # Unisender Go keeps trying
    "hard_bounced": EventType.BOUNCED,
    "spam": EventType.COMPLAINED,  # the recipient's complaint, by feedback loop
}

# A hard bounce's delivery_info.delivery_status (Unisender Go's extended
# status) -> reject reason. Unisender Go says the list isn't exhaustive; a
# status not here is a plain "bounced", as is a bounce without delivery_info.
BOUNCE_REASONS = {
    # "Non-existent address": Unisender Go blocks it for months. One that
    # never existed is invalid; one that was deleted bounces.
    "err_user_unknown": RejectReason.INVALID,
    "err_user_inactive": RejectReason.BOUNCED,
    "err_mailbox_discarded": RejectReason.BOUNCED,
    "err_dest_invalid": RejectReason.INVALID,
    # "Long-term unreachable": many failed attempts.
    "err_unreachable": RejectReason.BOUNCED,
    "skip_dup_unreachable": RejectReason.BOUNCED,
    "err_domain_inactive": RejectReason.BOUNCED,
    "err_no_dns": RejectReason.BOUNCED,
    "err_no_smtp": RejectReason.BOUNCED,
    # "Rejected as spam": doesn't mean the next message will be.
    "err_spam_rejected": RejectReason.SPAM,
    "err_spam_skipped": RejectReason.SPAM,
    "err_spam_removed": RejectReason.SPAM,
    "err_blacklisted": RejectReason.BLOCKED,  # the sender's IP or domain is blacklisted
    "err_unsubscribed": RejectReason.UNSUBSCRIBED,
    "err_giveup": RejectReason.TIMED_OUT,
    # "Short-term unreachable": the address may work again in days.
    "err_mailbox_full": RejectReason.OTHER,
    "skip_dup_mailbox_full": RejectReason.OTHER,
    "err_too_large": RejectReason.OTHER,
    "err_skip_letter": RejectReason.OTHER,
    "skip_dup_temp_unreachable": RejectReason.OTHER,
    "err_destination_misconfigured": RejectReason.OTHER,
    "err_not_available": RejectReason.OTHER,
    "err_src_invalid": RejectReason.OTHER,
    "err_delivery_failed": RejectReason.OTHER,
}
# Extended statuses that mean Unisender Go lost or broke the message: it
# wasn't the recipient's server, so it's a failure to send, not a bounce.
SEND_FAILURES = frozenset({"err_lost", "err_internal", "err_resend"})

# The "auth" member, as it appears in the raw body (value filled in per call).
AUTH_MEMBER = rb'("auth"\s*:\s*")%s"'
GZIP_MAGIC = b"\x1f\x8b"
JSON_TYPES = ("application/json", "text/json")
GZIP_TYPES = ("application/gzip", "application/x-gzip", "application/octet-stream")


class UnisenderGoTrackingWebhookView(AnymailBaseWebhookView):
    esp_name = "Unisender Go"

    def __init__(self, **kwargs: Any) -> None:
        self.api_key = get_anymail_setting(
            "api_key", esp_name="UNISENDER_GO", kwargs=kwargs, default=None, allow_bare=True
        )
        # The auth checksum authenticates every call when the key is set, so
        # a missing WEBHOOK_SECRET is only worth a warning without it.
        self.warn_if_no_basic_auth = not self.api_key
        super().__init__(**kwargs)

    # Authentication

    def validate_request(self, request: HttpRequest) -> None:
        if not self.api_key:
            return
        body = self.decoded_body(request)
        payload = self.load_json(body)
        if not isinstance(payload, dict) or "events_by_user" not in payload:
            # Not Unisender Go's at all: say what it looks like (400, kept).
            raise AnymailWebhookPayloadError(self.describe_wrong_payload(payload))
        auth = payload.get("auth")
        if not isinstance(auth, str) or not auth:
            raise AnymailWebhookValidationFailure(
                "Unisender Go webhook has no 'auth' checksum (is it from Unisender Go?)."
            )
        member = re.compile(AUTH_MEMBER % re.escape(auth.encode()))
        signed, found = member.subn(
            lambda match: match.group(1) + self.api_key.encode() + b'"', body, count=1
        )
        expected = hashlib.md5(signed, usedforsecurity=False).hexdigest()
        if not found or not constant_time_equal(expected, auth.lower()):
            raise AnymailWebhookValidationFailure(
                "Unisender Go webhook 'auth' checksum doesn't match: check UNISENDER_GO_API_KEY "
                "is the key the webhook was set with (a project's webhook needs its project key)."
            )

    # Parsing

    def parse_events(self, request: HttpRequest) -> list[AnymailTrackingEvent]:
        payload = self.load_json(self.decoded_body(request))
        if not isinstance(payload, dict) or not isinstance(payload.get("events_by_user"), list):
            raise AnymailWebhookPayloadError(self.describe_wrong_payload(payload))
        events = []
        for user in payload["events_by_user"]:
            if not isinstance(user, dict) or not isinstance(user.get("events"), list):
                raise AnymailWebhookPayloadError(
                    "Unisender Go events_by_user entries must be objects with an 'events' list."
                )
            events.extend(self.parse_event(esp_event) for esp_event in user["events"])
        return events

    def parse_event(self, esp_event: Any) -> AnymailTrackingEvent:
        if not isinstance(esp_event, dict) or not isinstance(esp_event.get("event_data"), dict):
            raise AnymailWebhookPayloadError(
                "Unisender Go events must be objects with 'event_name' and an 'event_data' object."
            )
        if esp_event.get("event_name") == "transactional_email_status":
            return self.parse_status_event(esp_event)
        if esp_event.get("event_name") == "transactional_spam_block":
            return self.parse_spam_block(esp_event)
        return AnymailTrackingEvent(event_type=EventType.UNKNOWN, esp_event=esp_event)

    def parse_status_event(self, esp_event: dict) -> AnymailTrackingEvent:
        data = esp_event["event_data"]
        status = data.get("status")
        event_type = STATUSES.get(status, EventType.UNKNOWN)
        delivery_info = data.get("delivery_info")
        if not isinstance(delivery_info, dict):
            delivery_info = {}
        delivery_status = delivery_info.get("delivery_status") or None
        reject_reason = None
        if event_type == EventType.BOUNCED:
            if delivery_status in SEND_FAILURES:
                event_type = EventType.FAILED
            else:
                reject_reason = BOUNCE_REASONS.get(delivery_status, RejectReason.BOUNCED)
        metadata = data.get("metadata")
        return AnymailTrackingEvent(
            event_type=event_type,
            timestamp=parse_time(data.get("event_time")),
            event_id=None,  # Unisender Go events have no id: dedupe by content
            message_id=data.get("job_id"),
            recipient=data.get("email"),
            reject_reason=reject_reason,
            description=delivery_status,
            mta_response=delivery_info.get("destination_response") or None,
            tags=[],  # not in Unisender Go's events
            metadata=metadata if isinstance(metadata, dict) else {},
            click_url=(data.get("url") or None) if event_type == EventType.CLICKED else None,
            user_agent=delivery_info.get("user_agent") or None,
            esp_event=esp_event,
        )

    def parse_spam_block(self, esp_event: dict) -> AnymailTrackingEvent:
        data = esp_event["event_data"]
        description = (
            f"Spam block {data.get('domain_status', '?')} for domain {data.get('domain', '?')} "
            f"({data.get('block_type', '?')}, {data.get('SMTP_blocks_count', '?')} SMTP servers)"
        )
        return AnymailTrackingEvent(
            event_type=EventType.UNKNOWN,
            timestamp=parse_time(data.get("block_time")),
            description=description,
            esp_event=esp_event,
        )

    # Body helpers (shared by validation and parsing)

    def decoded_body(self, request: HttpRequest) -> bytes:
        """The request body, gunzipped when the webhook's format is json_post_gzip."""
        body = request.body
        if not body:
            raise AnymailWebhookPayloadError("Empty Unisender Go webhook body: expected JSON.")
        gzipped = body.startswith(GZIP_MAGIC)
        self.require_content_type(request, *(JSON_TYPES + GZIP_TYPES if gzipped else JSON_TYPES))
        if not gzipped:
            return body
        # A decompression limit, so a small gzip can't expand without bound.
        decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            body = decompressor.decompress(body, self.max_body_bytes)
        except zlib.error as err:
            raise AnymailWebhookPayloadError(
                f"Unisender Go webhook body isn't valid gzip: {err}"
            ) from err
        if decompressor.unconsumed_tail:
            raise AnymailWebhookPayloadError(
                f"Unisender Go webhook body is larger than {self.max_body_bytes} bytes "
                "once decompressed."
            )
        return body

    def load_json(self, body: bytes) -> Any:
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            raise AnymailWebhookPayloadError(
                f"Unisender Go webhook body is not valid JSON: {err}"
            ) from err

    def describe_wrong_payload(self, payload: Any) -> str:
        return describe_wrong_payload(
            payload,
            "Unisender Go webhooks post a JSON object with an 'events_by_user' list",
            esp_name=self.esp_name,
        )


def parse_time(value: Any) -> datetime | None:
    """Unisender Go's "YYYY-MM-DD hh:mm:ss" (UTC), or ISO 8601 with an offset."""
    if not value:
        return None
    when = datetime.fromisoformat(str(value))  # ValueError -> 400
    return when if when.tzinfo else when.replace(tzinfo=UTC)
