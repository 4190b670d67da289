"""Tracking webhook for Resend.

Resend sends its webhooks through Svix: one JSON event per request,
``{"type": "email.sent"|..., "created_at": <ISO 8601>, "data": {...}}``.
Email events' data is ``{"email_id", "created_at", "from", "to": [...],
"subject", "tags": {name: value}, "broadcast_id"?, "template_id"?}`` plus
``bounce``, ``click``, ``failed`` or ``suppressed`` details. Since late 2024
each email event concerns one "to" recipient (``to`` is kept as a one-item
list); an older multi-recipient event still gives one event per address.
Contact, domain, suppression and inbox events don't concern a sent message
and are reported as ``unknown``; ``email.received`` belongs to the inbound
webhook and is refused (400, call kept).

``data.email_id`` is the id Resend's send API returned, which
sending.backends.resend records. That backend sends metadata as Resend tags
and the message's tag as the Resend tag named ``tag``; this view reverses it.
The event id is the Svix message id (``svix-id``, the same on every retry),
with the recipient appended when one event names several.

Signature (Svix): ``svix-signature`` holds space-separated ``v1,<base64
HMAC-SHA256>`` signatures of ``"{svix-id}.{svix-timestamp}.{raw body}"``,
keyed with the base64 part of the ``whsec_...`` signing secret
(RESEND_SIGNING_SECRET; a list is accepted while rotating). A timestamp more
than RESEND_WEBHOOK_TOLERANCE seconds (default 300) from now is refused. With
a secret set every call must be signed, so basic auth is optional.

References: https://resend.com/docs/dashboard/webhooks/event-types,
https://resend.com/docs/webhooks/verify-webhooks-requests,
https://resend.com/changelog/webhook-event-visibility,
https://resend.com/docs/dashboard/emails/email-bounces,
https://docs.svix.com/receiving/verifying-payloads/how-manual
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest

from sending.exceptions import (
    AnymailConfigurationError,
    AnymailWebhookPayloadError,
    AnymailWebhookValidationFailure,
)
from sending.signals import AnymailTrackingEvent, EventType, RejectReason
from sending.utils import get_anymail_setting

from .base import AnymailBaseWebhookView, b64decode_or_none, check_timestamp, constant_time_equal

DEFAULT_TOLERANCE = 300
TAG_NAME = "tag"  # the Resend tag sending.backends.resend uses for the message's tag

EVENT_TYPES = {
    "email.scheduled": EventType.QUEUED,
    "email.sent": EventType.SENT,
    "email.delivered": EventType.DELIVERED,
    "email.delivery_delayed": EventType.DEFERRED,
    "email.complained": EventType.COMPLAINED,
    "email.bounced": EventType.BOUNCED,
    "email.opened": EventType.OPENED,
    "email.clicked": EventType.CLICKED,
    "email.failed": EventType.FAILED,
    "email.suppressed": EventType.REJECTED,
}

# bounce.subType of a "Transient" (soft) bounce. Every "Permanent" subtype
# (General, NoEmail, Suppressed, OnAccountSuppressionList) is a hard bounce.
TRANSIENT_BOUNCE_REASONS = {
    "General": RejectReason.TIMED_OUT,
    "MailboxFull": RejectReason.TIMED_OUT,
    "MessageTooLarge": RejectReason.OTHER,
    "ContentRejected": RejectReason.BLOCKED,
    "AttachmentRejected": RejectReason.BLOCKED,
}


class ResendTrackingWebhookView(AnymailBaseWebhookView):
    esp_name = "Resend"

    def __init__(self, **kwargs: Any) -> None:
        secrets = get_anymail_setting(
            "signing_secret", esp_name=self.esp_name, kwargs=kwargs, default=None
        )
        if isinstance(secrets, str):
            secrets = [secrets]
        self.signing_keys = [signing_key(secret) for secret in secrets or [] if secret]
        self.tolerance = int(
            get_anymail_setting(
                "webhook_tolerance",
                esp_name=self.esp_name,
                kwargs=kwargs,
                default=DEFAULT_TOLERANCE,
            )
        )
        # A configured secret authenticates every call; without it, insist on basic auth.
        self.warn_if_no_basic_auth = not self.signing_keys
        super().__init__(**kwargs)

    def validate_request(self, request: HttpRequest) -> None:
        if not self.signing_keys:
            return
        message_id = svix_header(request, "id")
        timestamp = svix_header(request, "timestamp")
        signatures = svix_header(request, "signature")
        if not (message_id and timestamp and signatures):
            raise AnymailWebhookValidationFailure(
                "Resend webhook called without svix-id, svix-timestamp and svix-signature headers."
            )
        check_timestamp(timestamp, self.tolerance, self.esp_name)
        signed = f"{message_id}.{timestamp}.".encode() + request.body
        expected = [
            base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
            for key in self.signing_keys
        ]
        for versioned in signatures.split():
            version, _, signature = versioned.partition(",")
            if version == "v1" and any(constant_time_equal(signature, e) for e in expected):
                return
        raise AnymailWebhookValidationFailure(
            "Resend webhook signature doesn't match: check RESEND_SIGNING_SECRET is this "
            "webhook's signing secret (whsec_...)."
        )

    def parse_events(self, request: HttpRequest) -> list[AnymailTrackingEvent]:
        self.require_content_type(request, "application/json")
        payload = self.parse_json_body(request)
        if (
            not isinstance(payload, dict)
            or not isinstance(payload.get("type"), str)
            or not isinstance(payload.get("data"), dict)
        ):
            raise AnymailWebhookPayloadError(
                'Resend webhook payload must be an object with "type" and "data" keys: '
                "is this another ESP's webhook posted to the Resend URL?"
            )
        esp_type = payload["type"]
        if esp_type == "email.received":
            raise AnymailWebhookPayloadError(
                "Resend email.received (inbound) events were posted to the tracking "
                "webhook; subscribe the inbound webhook URL to them instead."
            )
        timestamp = parse_datetime(payload["created_at"])
        svix_id = svix_header(request, "id") or None
        if esp_type not in EVENT_TYPES:
            return [self.parse_other_event(payload, timestamp, svix_id)]

        data = payload["data"]
        recipients = data.get("to") or [None]
        if isinstance(recipients, str):
            recipients = [recipients]
        tags, metadata = tags_and_metadata(data.get("tags"))
        event_type, reject_reason, description = EVENT_TYPES[esp_type], None, None
        if esp_type == "email.bounced":
            bounce = data.get("bounce") or {}
            reject_reason = bounce_reason(bounce)
            description = bounce.get("message")
        elif esp_type == "email.failed":
            description = (data.get("failed") or {}).get("reason")
        elif esp_type == "email.suppressed":
            suppressed = data.get("suppressed") or {}
            reject_reason = suppression_reason(suppressed)
            description = suppressed.get("message")
        click = data.get("click") or {}
        return [
            AnymailTrackingEvent(
                event_type=event_type,
                timestamp=timestamp,
                event_id=(f"{svix_id}:{recipient}" if svix_id and len(recipients) > 1 else svix_id),
                message_id=data.get("email_id"),
                recipient=recipient,
                reject_reason=reject_reason,
                description=description,
                tags=tags,
                metadata=metadata,
                click_url=click.get("link"),
                user_agent=click.get("userAgent"),
                esp_event=payload,
            )
            for recipient in recipients
        ]

    def parse_other_event(
        self, payload: dict, timestamp: datetime, svix_id: str | None
    ) -> AnymailTrackingEvent:
        """Contact, domain, suppression and inbox events: not about one sent message."""
        data = payload["data"]
        return AnymailTrackingEvent(
            event_type=EventType.UNKNOWN,
            timestamp=timestamp,
            event_id=svix_id,
            recipient=data.get("email"),
            description=payload["type"],
            esp_event=payload,
        )


def svix_header(request: HttpRequest, name: str) -> str:
    # Svix can also send these unbranded, as webhook-id etc. (Standard Webhooks).
    return request.META.get(f"HTTP_SVIX_{name.upper()}") or request.META.get(
        f"HTTP_WEBHOOK_{name.upper()}", ""
    )


def signing_key(secret: str) -> bytes:
    key = b64decode_or_none(secret.removeprefix("whsec_"))
    if not key:
        raise AnymailConfigurationError(
            "RESEND_SIGNING_SECRET must be the webhook's signing secret, "
            "'whsec_' followed by base64, as shown in Resend's webhook details."
        )
    return key


def parse_datetime(value: str) -> datetime:
    # "2024-11-22T23:41:12.126Z"; data.created_at is "2024-11-22T23:41:11.894719+00:00"
    when = datetime.fromisoformat(value)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def tags_and_metadata(resend_tags: Any) -> tuple[list[str], dict[str, str]]:
    """Reverse sending.backends.resend: the tag named "tag" is the tag, the rest metadata."""
    if isinstance(resend_tags, list):  # the older [{"name": ..., "value": ...}] form
        resend_tags = {item["name"]: item.get("value") for item in resend_tags}
    metadata = dict(resend_tags or {})
    tag = metadata.pop(TAG_NAME, None)
    return ([tag] if tag else []), metadata


def bounce_reason(bounce: dict) -> str:
    bounce_type, sub_type = bounce.get("type"), bounce.get("subType")
    if bounce_type == "Permanent":
        return RejectReason.BOUNCED
    if bounce_type == "Transient":
        return TRANSIENT_BOUNCE_REASONS.get(sub_type, RejectReason.TIMED_OUT)
    return RejectReason.OTHER  # "Undetermined": the bounce message didn't say


def suppression_reason(suppressed: dict) -> str:
    # Resend suppresses an address after a hard bounce or a complaint.
    text = f"{suppressed.get('type', '')} {suppressed.get('message', '')}".lower()
    return RejectReason.SPAM if "complain" in text else RejectReason.BOUNCED
