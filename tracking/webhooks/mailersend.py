"""Tracking webhook for MailerSend (domain webhooks, "activity.*" events).

MailerSend posts one JSON object per event: ``{"type": "activity.delivered",
"created_at": ..., "data": {...}}``. Its webhooks come in two versions, and
both are parsed:

- 2.0 (the default for new webhooks): ``data`` is flat: ``id`` (the
  activity id), ``type`` ("delivered"), ``message_id``, ``email_id``,
  ``email`` (the recipient address), ``subject``, ``tags`` and ``meta``
  (event details: ``[]`` when there are none);
- 1.0 (legacy, "fat" payloads): ``data`` is the activity object (``id``,
  ``type``, ``created_at``) with the whole ``email`` object nested
  (``email.message.id``, ``email.recipient.email``, ``email.tags``) and the
  event details in ``morph`` (a bounce's ``reason``, a click's ``url``, an
  unsubscribe's ``reason``/``readable_reason``...).

The message id is the one the send API returned in ``X-Message-Id`` (and the
send backend recorded): ``data.message_id``, or ``data.email.message.id`` in
1.0 payloads. Messages sent with MAILERSEND_BATCH_SEND_MODE "use-bulk-email"
were recorded as ``"bulk:<bulk_email_id>"`` because their real message ids
don't exist until MailerSend processes the batch, so their events are kept
unlinked (MailerSend's bulk-email status API gives the real ids).

Every call carries a ``Signature`` header: the hex HMAC-SHA256 of the raw body
keyed with the webhook's signing secret (MAILERSEND_SIGNING_SECRET). There is
no timestamp to check, so a replayed call is caught only by its event id
(duplicates are stored once). When a webhook is saved, MailerSend checks the
URL with a ``webhook.test`` ping signed with a fixed, public test secret; the
ping is accepted with that signature, and never produces events.

Reference: https://developers.mailersend.com/api/v1/webhooks.html
(events, payloads, "Security") and https://www.mailersend.com/help/webhooks.
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

# MailerSend activity ("activity.<name>") -> (normalized type, reject reason)
ACTIVITY_TYPES: dict[str, tuple[str, str | None]] = {
    "sent": (EventType.SENT, None),
    "delivered": (EventType.DELIVERED, None),
    "hard_bounced": (EventType.BOUNCED, RejectReason.BOUNCED),
    # Not delivered for a temporary reason, after MailerSend's retries;
    # five within 30 days put the address "on hold" for 72 hours.
    "soft_bounced": (EventType.BOUNCED, RejectReason.TIMED_OUT),
    "deferred": (EventType.DEFERRED, None),  # paid plans only
    # "opened"/"clicked" fire every time, the "_unique" ones on the first
    # time too: enable one of each pair, or a first open counts twice.
    "opened": (EventType.OPENED, None),
    "opened_unique": (EventType.OPENED, None),
    "clicked": (EventType.CLICKED, None),
    "clicked_unique": (EventType.CLICKED, None),
    "unsubscribed": (EventType.UNSUBSCRIBED, None),
    "spam_complaint": (EventType.COMPLAINED, None),
    # Survey answers aren't delivery events.
    "survey_opened": (EventType.UNKNOWN, None),
    "survey_submitted": (EventType.UNKNOWN, None),
}

# Activities whose "reason" is the receiving server's answer.
MTA_REASON_ACTIVITIES = frozenset({"hard_bounced", "soft_bounced", "deferred"})

# MailerSend's account and platform webhook events (sender_identity.verified,
# maintenance.start, bulk_email.completed, ...): recorded as "unknown".
ACCOUNT_EVENT_PREFIXES = (
    "sender_identity.",
    "maintenance.",
    "inbound_forward.",
    "inbound_message.",
    "email_single.",
    "email_list.",
    "bulk_email.",
    "recipient.",
)

# The URL check MailerSend sends when a webhook is saved, signed with this
# secret (published in its webhook docs) instead of the webhook's own.
TEST_PING_TYPE = "webhook.test"
TEST_PING_SIGNING_SECRET = "test_Am3L1GuOIc4blLUuHqAPxxwkZaJyEk8G"

# What MailerSend's inbound routing posts (to the inbound URL, not this one).
INBOUND_TYPE = "inbound.message"


def hmac_sha256_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


class MailerSendTrackingWebhookView(AnymailBaseWebhookView):
    esp_name = "MailerSend"

    def __init__(self, **kwargs: Any) -> None:
        setting_prefix = self.esp_name.upper().replace(" ", "_")
        self.signing_secret: str | None = (
            get_anymail_setting(
                "signing_secret", esp_name=setting_prefix, kwargs=kwargs, default=None
            )
            or None
        )
        if self.signing_secret:
            # MailerSend signs every call, so the signature alone authenticates
            # it; basic auth is still checked if WEBHOOK_SECRET is set.
            self.warn_if_no_basic_auth = False
        super().__init__(**kwargs)

    def validate_request(self, request: HttpRequest) -> None:
        if not self.signing_secret:
            return
        signature = request.headers.get("Signature", "").strip().lower()
        if not signature:
            raise AnymailWebhookValidationFailure(
                "MailerSend webhook call has no Signature header "
                "(is MAILERSEND_SIGNING_SECRET meant for this webhook?)."
            )
        if constant_time_equal(signature, hmac_sha256_hex(self.signing_secret, request.body)):
            return
        if self.is_test_ping(request.body) and constant_time_equal(
            signature, hmac_sha256_hex(TEST_PING_SIGNING_SECRET, request.body)
        ):
            # The public test secret can authenticate only the ping, which
            # records nothing.
            return
        raise AnymailWebhookValidationFailure(
            "MailerSend webhook signature doesn't match: check MAILERSEND_SIGNING_SECRET "
            "(each webhook has its own signing secret, which changes when it's edited)."
        )

    @staticmethod
    def is_test_ping(body: bytes) -> bool:
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return False
        return isinstance(payload, dict) and payload.get("type") == TEST_PING_TYPE

    def parse_events(self, request: HttpRequest) -> list[AnymailTrackingEvent]:
        if not request.body:
            # (checked first: an empty request often has no content type either)
            raise AnymailWebhookPayloadError("Empty MailerSend webhook body: expected JSON.")
        self.require_content_type(request, "application/json")
        payload = self.parse_json_body(request)
        if isinstance(payload, list):
            raise AnymailWebhookPayloadError(
                "MailerSend posts one event object per call, not a list of events: "
                "is this payload meant for another ESP's webhook?"
            )
        if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
            raise AnymailWebhookPayloadError(
                'Not a MailerSend webhook event: expected a JSON object with a "type" '
                "field. Is this payload meant for another ESP's webhook?"
            )
        webhook_type = payload["type"]
        if webhook_type == TEST_PING_TYPE:
            return []
        if webhook_type == INBOUND_TYPE:
            raise AnymailWebhookPayloadError(
                "This is a MailerSend inbound routing payload (inbound.message), not a "
                "tracking event: set the inbound route's URL to anymail/mailersend/inbound/."
            )
        if webhook_type.startswith("activity."):
            return [self.parse_activity(payload)]
        if webhook_type.startswith(ACCOUNT_EVENT_PREFIXES):
            return [self.parse_account_event(payload)]
        raise AnymailWebhookPayloadError(
            f"Unknown MailerSend webhook event type {webhook_type!r}: is this payload "
            "meant for another ESP's webhook?"
        )

    def parse_activity(self, payload: dict) -> AnymailTrackingEvent:
        data = payload.get("data")
        if not isinstance(data, dict):
            raise AnymailWebhookPayloadError(
                f'MailerSend {payload["type"]} event has no "data" object.'
            )
        activity = payload["type"].removeprefix("activity.")
        event_type, reject_reason = ACTIVITY_TYPES.get(activity, (EventType.UNKNOWN, None))
        email = data.get("email")
        if isinstance(email, dict):
            # version 1.0: the whole email object, and details in "morph"
            message_id = (email.get("message") or {}).get("id")
            recipient = (email.get("recipient") or {}).get("email")
            tags = email.get("tags")
            details = data.get("morph")
        else:
            # version 2.0: flat, and details in "meta"
            message_id = data.get("message_id")
            recipient = email
            tags = data.get("tags")
            details = data.get("meta")
        if not isinstance(details, dict):
            details = {}  # null (1.0) or [] (2.0) when there are none
        reason = details.get("reason") or None
        return AnymailTrackingEvent(
            event_type=event_type,
            # the activity's own time (1.0), else when the webhook fired
            timestamp=parse_datetime(data.get("created_at") or payload.get("created_at")),
            event_id=data.get("id") or None,
            message_id=str(message_id) if message_id else None,
            recipient=recipient or None,
            reject_reason=reject_reason,
            description=details.get("readable_reason") or reason,
            mta_response=reason if activity in MTA_REASON_ACTIVITIES else None,
            tags=[str(tag) for tag in tags or []],
            metadata={},  # MailerSend has no custom metadata
            click_url=details.get("url") or None,
            user_agent=details.get("user_agent") or None,
            esp_event=payload,
        )

    def parse_account_event(self, payload: dict) -> AnymailTrackingEvent:
        data = payload.get("data")
        return AnymailTrackingEvent(
            event_type=EventType.UNKNOWN,
            timestamp=parse_datetime(payload.get("created_at")),
            event_id=(data.get("id") or None) if isinstance(data, dict) else None,
            description=payload["type"],
            esp_event=payload,
        )


def parse_datetime(value: Any) -> datetime | None:
    """MailerSend's timestamps: ISO 8601 in UTC, with "Z" or (account events) without a zone."""
    if not value:
        return None
    when = datetime.fromisoformat(str(value))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when
