"""Tracking webhook for SendGrid (the Event Webhook).

SendGrid posts events in batches: a JSON array of objects, each with
``event``, ``email``, ``timestamp`` (Unix seconds), ``sg_event_id`` ("a unique
ID to this event that you can use for deduplication"), ``sg_message_id``,
``smtp-id``, ``category`` (a string or a list), and per type ``reason``,
``status``, ``response``, ``attempt``, ``type`` (bounce or blocked),
``bounce_classification``, ``useragent``, ``ip``, ``url``, ``asm_group_id``.
The message's custom args appear as extra top-level fields: they are the
event's metadata, except ``mailhub_id``, the id sending.backends.sendgrid
generates and records for each message (see MESSAGE_ID_CUSTOM_ARG there),
which is the event's message_id. Messages sent by django-anymail carry
``anymail_id`` instead; messages sent without a generated id fall back to
SendGrid's ``sg_message_id``.

Event types: processed, dropped, delivered, deferred, bounce, open, click,
spamreport, unsubscribe, group_unsubscribe, group_resubscribe; anything else
(account_status_change) is "unknown".

Signature (the Signed Event Webhook): SendGrid signs ``timestamp + body``
with ECDSA (P-256, SHA-256) and sends the base64 DER signature in
``X-Twilio-Email-Event-Webhook-Signature`` and the timestamp in
``X-Twilio-Email-Event-Webhook-Timestamp``. Set
SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY to the verification key SendGrid
shows (base64 DER, or PEM) to check it. A call whose timestamp is more than
SENDGRID_WEBHOOK_TOLERANCE seconds (default 300) from now is refused.
SendGrid retries an unanswered call for up to 24 hours; if its retries keep
their first timestamp, raise the tolerance to cover the outage you want to
survive (recording ignores an sg_event_id it has already stored).

Reference: https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event and
https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.http import HttpRequest
from django.http.multipartparser import MultiPartParserError

from sending.backends.sendgrid import MESSAGE_ID_CUSTOM_ARG
from sending.exceptions import (
    AnymailConfigurationError,
    AnymailWebhookPayloadError,
    AnymailWebhookValidationFailure,
)
from sending.signals import AnymailTrackingEvent, EventType, RejectReason
from sending.utils import get_anymail_setting

from .base import (
    AnymailBaseWebhookView,
    b64decode_or_none,
    check_timestamp,
    describe_wrong_payload,
)

DEFAULT_TOLERANCE = 300
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"

#: Custom args that carry the message id: mailhub's, then django-anymail's.
MESSAGE_ID_FIELDS = (MESSAGE_ID_CUSTOM_ARG, "anymail_id")

EVENT_TYPES = {
    "processed": EventType.QUEUED,
    "dropped": EventType.REJECTED,
    "delivered": EventType.DELIVERED,
    "deferred": EventType.DEFERRED,
    "bounce": EventType.BOUNCED,
    "open": EventType.OPENED,
    "click": EventType.CLICKED,
    "spamreport": EventType.COMPLAINED,
    "unsubscribe": EventType.UNSUBSCRIBED,
    "group_unsubscribe": EventType.UNSUBSCRIBED,
    "group_resubscribe": EventType.SUBSCRIBED,
}

# A dropped event's "reason". SendGrid's list: "Invalid SMTPAPI header, Spam
# Content (if Spam Checker app is enabled), Unsubscribed Address, Bounced
# Address, Spam Reporting Address, Invalid, Recipient List over Package Quota".
DROP_REASONS = {
    "bounced address": RejectReason.BOUNCED,
    "unsubscribed address": RejectReason.UNSUBSCRIBED,
    "spam reporting address": RejectReason.SPAM,
    "spam content": RejectReason.SPAM,
    "invalid": RejectReason.INVALID,
}

# A bounce's "bounce_classification" (type=bounce). Only a bad or unavailable
# mailbox says anything about the address; the rest are about the message or
# the sender, so they don't suppress it.
BOUNCE_CLASSIFICATIONS = {
    "invalid address": RejectReason.INVALID,
    "mailbox unavailable": RejectReason.BOUNCED,
    "content": RejectReason.SPAM,
    "reputation": RejectReason.BLOCKED,
    "frequency or volume too high": RejectReason.BLOCKED,
    "technical failure": RejectReason.OTHER,
    "technical": RejectReason.OTHER,
}

#: Fields SendGrid itself puts in events; any other field is a custom arg.
STANDARD_FIELDS = frozenset(
    {
        "email",
        "timestamp",
        "event",
        "smtp-id",
        "sg_event_id",
        "sg_message_id",
        "sg_template_id",
        "sg_template_name",
        "sg_machine_open",
        "sg_user_id",
        "sg_content_type",
        "category",
        "reason",
        "status",
        "response",
        "attempt",
        "type",
        "bounce_classification",
        "useragent",
        "ip",
        "url",
        "url_offset",
        "tls",
        "cert_err",
        "asm_group_id",
        "unique_args",
        "pool",
        "newsletter",
        "post_type",
        "marketing_campaign_id",
        "marketing_campaign_name",
        "marketing_campaign_version",
        "marketing_campaign_split_id",
        "mc_stats",
        "mc_pod_id",
        "phase_id",
        "send_at",
        "singlesend_id",
        "singlesend_name",
        "template_id",
        "template_version_id",
        "template_hash",
        *MESSAGE_ID_FIELDS,
    }
)


class SendGridTrackingWebhookView(AnymailBaseWebhookView):
    esp_name = "SendGrid"

    def __init__(self, **kwargs: Any) -> None:
        esp = self.esp_name
        key = get_anymail_setting(
            "tracking_webhook_verification_key", esp_name=esp, kwargs=kwargs, default=None
        )
        self.verification_key = load_verification_key(key) if key else None
        self.tolerance = int(
            get_anymail_setting(
                "webhook_tolerance", esp_name=esp, kwargs=kwargs, default=DEFAULT_TOLERANCE
            )
        )
        if self.verification_key is not None:
            # The signature covers the timestamp and the whole body, so every
            # call is authenticated without basic auth.
            self.warn_if_no_basic_auth = False
        super().__init__(**kwargs)

    # Authentication

    def validate_request(self, request: HttpRequest) -> None:
        if self.verification_key is None:
            return
        signature = request.headers.get(SIGNATURE_HEADER, "").strip()
        timestamp = request.headers.get(TIMESTAMP_HEADER, "").strip()
        if not signature or not timestamp:
            raise AnymailWebhookValidationFailure(
                f"SendGrid webhook call has no {SIGNATURE_HEADER} and {TIMESTAMP_HEADER} "
                "headers: turn on the Signed Event Webhook, or unset "
                "SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY."
            )
        der_signature = b64decode_or_none(signature)
        try:
            if der_signature is None:
                raise InvalidSignature
            self.verification_key.verify(
                der_signature, timestamp.encode() + request.body, ec.ECDSA(hashes.SHA256())
            )
        except InvalidSignature:
            raise AnymailWebhookValidationFailure(
                "SendGrid webhook signature doesn't verify: check "
                "SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY against the Event Webhook's "
                "verification key."
            ) from None
        check_timestamp(timestamp, self.tolerance, self.esp_name)

    # Parsing

    def parse_events(self, request: HttpRequest) -> list[AnymailTrackingEvent]:
        if not request.body:
            raise AnymailWebhookPayloadError("Empty SendGrid webhook body: expected JSON.")
        if request.content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
            self.refuse_form_post(request)
        self.require_content_type(request, "application/json")
        payload = self.parse_json_body(request)
        if not isinstance(payload, list):
            expected = "SendGrid's Event Webhook posts a JSON array of events"
            raise AnymailWebhookPayloadError(
                describe_wrong_payload(payload, expected, esp_name=self.esp_name)
                + " Is another ESP's webhook posted to the SendGrid tracking URL?"
            )
        return [self.parse_event(esp_event) for esp_event in payload]

    def refuse_form_post(self, request: HttpRequest) -> None:
        try:
            fields = request.POST
        except MultiPartParserError as err:
            raise AnymailWebhookPayloadError(
                f"SendGrid's Event Webhook posts JSON; this is malformed form data: {err}"
            ) from err
        if any(name in fields for name in ("envelope", "charsets", "email", "headers")):
            raise AnymailWebhookPayloadError(
                "This looks like a SendGrid Inbound Parse post: set its destination to the "
                "SendGrid inbound URL, not the tracking URL."
            )

    def parse_event(self, esp_event: Any) -> AnymailTrackingEvent:
        if not isinstance(esp_event, dict) or "event" not in esp_event:
            raise AnymailWebhookPayloadError(
                'SendGrid webhook events must be JSON objects with an "event" field.'
            )
        sendgrid_type = esp_event["event"]
        event_type = EVENT_TYPES.get(sendgrid_type, EventType.UNKNOWN)
        reject_reason = None
        description = None
        mta_response = esp_event.get("response") or None
        if event_type == EventType.REJECTED:
            reason = str(esp_event.get("reason") or "")
            reject_reason = DROP_REASONS.get(reason.strip().lower(), RejectReason.OTHER)
            description = reason or None
        elif event_type == EventType.BOUNCED:
            classification = str(esp_event.get("bounce_classification") or "")
            if esp_event.get("type") == "blocked":
                reject_reason = RejectReason.BLOCKED
            else:
                reject_reason = BOUNCE_CLASSIFICATIONS.get(
                    classification.lower(), RejectReason.BOUNCED
                )
            description = classification or None
            mta_response = esp_event.get("reason") or mta_response
        elif sendgrid_type in ("group_unsubscribe", "group_resubscribe"):
            description = f"unsubscribe group {esp_event.get('asm_group_id')}"
        elif event_type == EventType.UNKNOWN:
            description = esp_event.get("type") or None  # e.g. account_status_change

        category = esp_event.get("category")
        if isinstance(category, str):
            tags = [category]
        else:
            tags = [str(tag) for tag in category or []]
        return AnymailTrackingEvent(
            event_type=event_type,
            timestamp=datetime.fromtimestamp(int(float(esp_event["timestamp"])), tz=UTC),
            event_id=esp_event.get("sg_event_id") or None,
            message_id=message_id(esp_event),
            recipient=esp_event.get("email") or None,
            reject_reason=reject_reason,
            description=description,
            mta_response=mta_response,
            tags=tags,
            metadata={
                name: value for name, value in esp_event.items() if name not in STANDARD_FIELDS
            },
            click_url=esp_event.get("url") if event_type == EventType.CLICKED else None,
            user_agent=esp_event.get("useragent") or None,
            esp_event=esp_event,
        )


def message_id(esp_event: dict) -> str | None:
    """mailhub's id (or django-anymail's), else SendGrid's own message id."""
    for field in MESSAGE_ID_FIELDS:
        if esp_event.get(field):
            return str(esp_event[field])
    return esp_event.get("sg_message_id") or None


def load_verification_key(value: str) -> ec.EllipticCurvePublicKey:
    """The Event Webhook's public key, from the base64 DER SendGrid shows (or PEM)."""
    setting = "SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY"
    text = str(value).strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            der = b64decode_or_none("".join(text.split()))
            if der is None:
                raise ValueError("not base64")
            key = serialization.load_der_public_key(der)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise AnymailConfigurationError(
            f"{setting} must be the Event Webhook's verification key as SendGrid shows it "
            f"(a base64 public key) or in PEM form: {err}"
        ) from err
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise AnymailConfigurationError(
            f"{setting} must be an elliptic curve (ECDSA) public key, not {type(key).__name__}."
        )
    return key
