"""Tracking webhook for Mailtrap (Email API/SMTP "Email Sending" webhooks).

Mailtrap batches up to 500 events a call, in the payload format chosen for
the webhook: JSON (``Content-Type: application/json``, an object
``{"events": [...]}``) or JSON Lines (``application/jsonl``, one event
object per line). Each sending event has ``event`` (delivery, open, click,
unsubscribe, spam, soft bounce, bounce, suspension, reject), ``event_id``,
``message_id`` (one per recipient, as the send API returned it),
``email``, ``timestamp`` (Unix seconds), ``sending_stream``,
``sending_domain_name``, ``category``, ``custom_variables``, and per type
``reason``; ``response``, ``response_code``, ``bounce_category``; ``ip``,
``user_agent``; ``url``.

Signature: every call carries a ``Mailtrap-Signature`` header, the hex
HMAC-SHA256 of the raw body keyed with the webhook's signing secret. Set
MAILTRAP_WEBHOOK_SIGNING_KEY to that secret to check it. The scheme has no
timestamp, so it can't refuse a replayed call; recording is idempotent on
``event_id``, so a replay changes nothing.

Reference: https://docs.mailtrap.io/email-api-smtp/advanced/webhooks
(payloads and "Webhook Signature Verification"),
https://docs.mailtrap.io/email-api-smtp/analytics/statuses-and-events and
https://docs.mailtrap.io/email-api-smtp/bounce-categorization
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest

from sending.exceptions import AnymailWebhookPayloadError, AnymailWebhookValidationFailure
from sending.signals import AnymailTrackingEvent, EventType, RejectReason
from sending.utils import get_anymail_setting

from .base import AnymailBaseWebhookView, constant_time_equal

JSON_LINES = "application/jsonl"

EVENT_TYPES = {
    "delivery": EventType.DELIVERED,
    "open": EventType.OPENED,
    "click": EventType.CLICKED,
    "unsubscribe": EventType.UNSUBSCRIBED,
    "spam": EventType.COMPLAINED,
    # Mailtrap's docs spell it "soft bounce"; its bounce categorization page
    # (and some payloads) "soft_bounce".
    "soft bounce": EventType.DEFERRED,
    "soft_bounce": EventType.DEFERRED,
    "bounce": EventType.BOUNCED,
    # Held while the sending domain is unverified; ends in delivery or reject.
    "suspension": EventType.DEFERRED,
    "reject": EventType.REJECTED,
}

# Mailtrap's bounce_category for bounces. Only badrecipient, overquota and
# timeout add the address to Mailtrap's suppressions; the rest are the
# receiving server's policy, filtering or trouble.
BOUNCE_CATEGORIES = {
    "badrecipient": RejectReason.BOUNCED,
    "overquota": RejectReason.BOUNCED,
    "timeout": RejectReason.TIMED_OUT,
    "spam": RejectReason.SPAM,
    "spam_gmail": RejectReason.SPAM,
    "content": RejectReason.SPAM,
    "block": RejectReason.BLOCKED,
    "serverpolicy": RejectReason.BLOCKED,
    "badsender": RejectReason.BLOCKED,
    "transientfail": RejectReason.OTHER,
    "greylisting": RejectReason.OTHER,
    "dnsfail": RejectReason.OTHER,
    "generalfail": RejectReason.OTHER,
    "relayfail": RejectReason.OTHER,
    "serverfail": RejectReason.OTHER,
    "verifyfail": RejectReason.OTHER,
    "other": RejectReason.OTHER,
}


class MailtrapTrackingWebhookView(AnymailBaseWebhookView):
    esp_name = "Mailtrap"

    def __init__(self, **kwargs: Any) -> None:
        self.signing_key = get_anymail_setting(
            "webhook_signing_key", esp_name=self.esp_name, kwargs=kwargs, default=None
        )
        if self.signing_key:
            # The signature then authenticates every call, so basic auth is optional.
            self.warn_if_no_basic_auth = False
        super().__init__(**kwargs)

    def validate_request(self, request: HttpRequest) -> None:
        if not self.signing_key:
            return
        signature = request.headers.get("Mailtrap-Signature", "").strip().lower()
        if not signature:
            raise AnymailWebhookValidationFailure(
                "Mailtrap webhook call has no Mailtrap-Signature header "
                "(is MAILTRAP_WEBHOOK_SIGNING_KEY set for the right webhook?)."
            )
        expected = hmac.new(
            self.signing_key.encode("utf-8"), request.body, hashlib.sha256
        ).hexdigest()
        if not constant_time_equal(signature, expected):
            raise AnymailWebhookValidationFailure(
                "Mailtrap webhook call has a wrong Mailtrap-Signature: "
                "check MAILTRAP_WEBHOOK_SIGNING_KEY against the webhook's signing secret."
            )

    def parse_events(self, request: HttpRequest) -> list[AnymailTrackingEvent]:
        if not request.body.strip():
            # (checked first: an empty request often has no content type either)
            raise AnymailWebhookPayloadError(
                "Empty Mailtrap webhook body: expected JSON or JSON Lines."
            )
        self.require_content_type(request, "application/json", JSON_LINES)
        if request.content_type == JSON_LINES:
            esp_events = self.parse_json_lines(request)
        else:
            esp_events = self.parse_json_events(request)
        return [self.parse_event(esp_event) for esp_event in esp_events]

    def parse_json_events(self, request: HttpRequest) -> list[Any]:
        payload = self.parse_json_body(request)
        if isinstance(payload, dict) and isinstance(payload.get("events"), list):
            return payload["events"]
        if isinstance(payload, list):
            raise AnymailWebhookPayloadError(
                'Mailtrap webhooks post an object with an "events" list, not a bare JSON array: '
                "is this another ESP's payload (Mailjet's grouped events?) posted to the "
                "Mailtrap tracking URL?"
            )
        raise AnymailWebhookPayloadError(
            'Mailtrap webhook payload must be an object with an "events" list '
            "(is this another ESP's payload, or meant for an inbound webhook?)."
        )

    def parse_json_lines(self, request: HttpRequest) -> list[Any]:
        try:
            lines = request.body.decode("utf-8").splitlines()
        except UnicodeDecodeError as err:
            raise AnymailWebhookPayloadError(f"Mailtrap webhook body is not UTF-8: {err}") from err
        esp_events = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                esp_events.append(json.loads(line))
            except ValueError as err:
                raise AnymailWebhookPayloadError(
                    f"Mailtrap webhook JSON Lines body: line {number} is not valid JSON: {err}"
                ) from err
        return esp_events

    def parse_event(self, esp_event: Any) -> AnymailTrackingEvent:
        if not isinstance(esp_event, dict) or "event" not in esp_event:
            raise AnymailWebhookPayloadError(
                'Mailtrap webhook events must be JSON objects with an "event" field.'
            )
        mailtrap_type = str(esp_event["event"])
        timestamp = datetime.fromtimestamp(int(esp_event["timestamp"]), tz=UTC)
        if mailtrap_type.startswith("activity_log."):
            # An Audit Log webhook: account activity, not about a message.
            return AnymailTrackingEvent(
                event_type=EventType.UNKNOWN,
                timestamp=timestamp,
                description=esp_event.get("description"),
                esp_event=esp_event,
            )

        event_type = EVENT_TYPES.get(mailtrap_type.lower(), EventType.UNKNOWN)
        reject_reason = None
        description = esp_event.get("reason") or None
        if event_type == EventType.BOUNCED:
            category = esp_event.get("bounce_category") or ""
            reject_reason = BOUNCE_CATEGORIES.get(category.lower(), RejectReason.BOUNCED)
        elif event_type == EventType.REJECTED:
            reject_reason = self.reject_reason(description or "")
        if esp_event.get("bounce_category"):
            description = description or f"bounce category: {esp_event['bounce_category']}"

        category = esp_event.get("category")
        custom_variables = esp_event.get("custom_variables")
        return AnymailTrackingEvent(
            event_type=event_type,
            timestamp=timestamp,
            event_id=esp_event.get("event_id"),
            message_id=esp_event.get("message_id"),
            recipient=esp_event.get("email"),
            reject_reason=reject_reason,
            description=description,
            mta_response=self.mta_response(esp_event),
            tags=[category] if category else [],
            metadata=custom_variables if isinstance(custom_variables, dict) else {},
            click_url=esp_event.get("url") or None,
            user_agent=esp_event.get("user_agent") or None,
            esp_event=esp_event,
        )

    @staticmethod
    def reject_reason(reason: str) -> str:
        """Normalize a reject's reason ("Recipient in suppression list. Reason: unsubscription")."""
        reason = reason.lower()
        if "suppression" in reason:
            if "unsubscri" in reason:
                return RejectReason.UNSUBSCRIBED
            if "spam" in reason or "complain" in reason:
                return RejectReason.SPAM
            if "bounce" in reason:
                return RejectReason.BOUNCED
            return RejectReason.BLOCKED
        # e.g. the sending domain wasn't verified in time after a suspension
        return RejectReason.OTHER

    @staticmethod
    def mta_response(esp_event: dict) -> str | None:
        """The receiving server's reply, with its SMTP code, as one line."""
        response = esp_event.get("response") or ""
        code = esp_event.get("response_code")
        if code is not None and not response.startswith(str(code)):
            response = f"{code} {response}".strip()
        return response or None
