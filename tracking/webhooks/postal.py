"""Tracking webhook for Postal (self-hosted).

Postal POSTs one event per request, as JSON:
``{"event": "MessageSent"|..., "timestamp": <unix float, when queued>,
"uuid": <same on every retry>, "payload": {...}}``. Message status events
(MessageSent, MessageDelayed, MessageDeliveryFailed, MessageHeld) carry
``{"status", "details", "output", "timestamp", "message": {...}}``;
MessageBounced carries ``{"original_message", "bounce"}``; MessageLinkClicked
and MessageLoaded carry ``{"url"?, "ip_address", "user_agent", "message"}``.
DomainDNSError, SendLimitApproaching and SendLimitExceeded concern the
server, not a message, and are reported as ``unknown`` events.

The message object's ``id`` is Postal's per-recipient message id, which
sending.backends.postal records (as a string); ``to`` is the envelope
recipient and ``tag`` the message's one tag. Postal has no metadata.

Signature: Postal signs the raw body with its RSA signing key (PKCS#1 v1.5)
and sends ``X-Postal-Signature-256`` (SHA-256) and, for older receivers,
``X-Postal-Signature`` (SHA-1). POSTAL_WEBHOOK_KEY is the public key: the
base64 DER shown in Postal (the ``p=`` value of ``postal default-dkim-record``),
a PEM block, or an RSA JWK from ``/.well-known/jwks.json`` (or a list of
them, for a key change). With a key set every call must be signed, so basic
auth is optional. The SHA-256 signature is checked when present, and SHA-1
only from Postal versions that send no SHA-256 one.

Postal's ``timestamp`` is when the event was queued, and the retries (2, 3,
6, 10 and 15 minutes apart) repeat it, so a five-minute replay window would
refuse Postal's own retries. A replayed call can only repeat an event that
is stored once (its uuid is the event id), so the age check is opt-in:
POSTAL_WEBHOOK_TOLERANCE (seconds).

References: https://docs.postalserver.io/developer/webhooks and
https://docs.postalserver.io/features/mail-server-settings#held-messages
(postalserver/docs content/4.developer/4.webhooks.md), Postal's lib/postal/http.rb.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.http import HttpRequest

from sending.exceptions import (
    AnymailConfigurationError,
    AnymailWebhookPayloadError,
    AnymailWebhookValidationFailure,
)
from sending.signals import AnymailTrackingEvent, EventType, RejectReason
from sending.utils import get_anymail_setting

from .base import AnymailBaseWebhookView, b64decode_or_none, check_timestamp

EVENT_TYPES = {
    "MessageSent": EventType.DELIVERED,  # status "Sent": accepted by the recipient's server
    "MessageDelayed": EventType.DEFERRED,  # "SoftFail": Postal will retry
    "MessageDeliveryFailed": EventType.FAILED,  # "HardFail": won't be retried (see below)
    "MessageHeld": EventType.QUEUED,  # kept in Postal's held queue until released
    "MessageBounced": EventType.BOUNCED,  # a bounce message came back later
    "MessageLinkClicked": EventType.CLICKED,
    "MessageLoaded": EventType.OPENED,
    "DomainDNSError": EventType.UNKNOWN,
    "SendLimitApproaching": EventType.UNKNOWN,
    "SendLimitExceeded": EventType.UNKNOWN,
}

# "250 2.0.0 OK", "550 5.1.1 The email account that you tried to reach does not exist"
SMTP_REPLY = re.compile(r"\s*(?P<code>[2-5]\d\d)(?:[ -](?P<enhanced>[2-5]\.\d{1,3}\.\d{1,3}))?")


class PostalTrackingWebhookView(AnymailBaseWebhookView):
    esp_name = "Postal"

    def __init__(self, **kwargs: Any) -> None:
        webhook_key = get_anymail_setting(
            "webhook_key", esp_name=self.esp_name, kwargs=kwargs, default=None
        )
        self.public_keys = load_public_keys(webhook_key) if webhook_key else []
        self.tolerance = get_anymail_setting(
            "webhook_tolerance", esp_name=self.esp_name, kwargs=kwargs, default=None
        )
        # A configured key authenticates every call; without it, insist on basic auth.
        self.warn_if_no_basic_auth = not self.public_keys
        super().__init__(**kwargs)

    def validate_request(self, request: HttpRequest) -> None:
        if self.public_keys:
            self.validate_signature(request)
        if self.tolerance is not None:
            try:
                timestamp = json.loads(request.body).get("timestamp")
            except (ValueError, AttributeError) as err:
                raise AnymailWebhookPayloadError(
                    f"Postal webhook body is not a JSON object: {err}"
                ) from err
            check_timestamp(timestamp, int(self.tolerance), self.esp_name)

    def validate_signature(self, request: HttpRequest) -> None:
        signature = request.META.get("HTTP_X_POSTAL_SIGNATURE_256")
        algorithm: hashes.HashAlgorithm = hashes.SHA256()
        if signature is None:
            signature = request.META.get("HTTP_X_POSTAL_SIGNATURE")
            algorithm = hashes.SHA1()
        if not signature:
            raise AnymailWebhookValidationFailure(
                "Postal webhook called without an X-Postal-Signature-256 header."
            )
        decoded = b64decode_or_none(signature)
        if decoded is None:
            raise AnymailWebhookValidationFailure("Postal webhook signature is not base64.")
        for public_key in self.public_keys:
            try:
                public_key.verify(decoded, request.body, padding.PKCS1v15(), algorithm)
            except InvalidSignature:
                continue
            return
        raise AnymailWebhookValidationFailure(
            "Postal webhook signature doesn't match: check POSTAL_WEBHOOK_KEY is the "
            "public signing key of the Postal installation calling this webhook."
        )

    def parse_events(self, request: HttpRequest) -> list[AnymailTrackingEvent]:
        self.require_content_type(request, "application/json")
        body = self.parse_json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("payload"), dict):
            if isinstance(body, dict) and {"rcpt_to", "mail_from"} <= body.keys():
                raise AnymailWebhookPayloadError(
                    "This is a Postal incoming message (HTTP endpoint) payload, posted to "
                    "the tracking webhook: point the route's endpoint at the inbound webhook."
                )
            raise AnymailWebhookPayloadError(
                'Postal webhook payload must be an object with "event" and "payload" keys: '
                "is this another ESP's webhook posted to the Postal URL?"
            )
        return [self.parse_event(body)]

    def parse_event(self, body: dict) -> AnymailTrackingEvent:
        esp_type = body["event"]
        payload = body["payload"]
        event_type = EVENT_TYPES.get(esp_type, EventType.UNKNOWN)
        bounce = payload.get("bounce") if esp_type == "MessageBounced" else None
        message = payload.get("original_message" if bounce is not None else "message") or {}
        details = payload.get("details")
        output = payload.get("output")
        reject_reason = None
        description = details

        if message.get("direction") == "incoming":
            # Status of an incoming message's delivery to a route endpoint, not of sent mail.
            is_failure = esp_type == "MessageDeliveryFailed"
            event_type = EventType.INBOUND_FAILED if is_failure else EventType.UNKNOWN
        elif esp_type == "MessageDeliveryFailed":
            # A permanent SMTP rejection is a bounce; anything else (no MX, TLS
            # failure, retries exhausted) is Postal failing to deliver.
            reject_reason = smtp_rejection_reason(output)
            if reject_reason is not None:
                event_type = EventType.BOUNCED
        elif esp_type == "MessageHeld" and "suppression list" in (details or "").lower():
            # "Recipient (...) is on the suppression list (reason: ...)": Postal
            # won't try unless someone releases the message.
            event_type = EventType.REJECTED
            reject_reason = RejectReason.BOUNCED
        elif bounce is not None:
            reject_reason = RejectReason.BOUNCED
            description = describe_bounce(bounce)
        elif event_type == EventType.UNKNOWN:
            description = describe_server_event(esp_type, payload)

        message_id = message.get("id")
        tag = message.get("tag")
        when = (bounce or {}).get("timestamp") or payload.get("timestamp") or body["timestamp"]
        return AnymailTrackingEvent(
            event_type=event_type,
            timestamp=datetime.fromtimestamp(float(when), tz=UTC),
            event_id=body.get("uuid"),
            message_id=str(message_id) if message_id is not None else None,
            recipient=message.get("to"),
            reject_reason=reject_reason,
            description=description,
            mta_response=output,
            tags=[tag] if tag else [],
            metadata={},
            click_url=payload.get("url"),
            user_agent=payload.get("user_agent"),
            esp_event=body,
        )


def smtp_rejection_reason(output: str | None) -> str | None:
    """The reject reason for a permanent (5xx) SMTP reply, or None for anything else."""
    match = SMTP_REPLY.match(output or "")
    if match is None or not match["code"].startswith("5"):
        return None
    enhanced = match["enhanced"] or ""
    if enhanced == "5.1.3":  # RFC 3463: bad destination mailbox address syntax
        return RejectReason.INVALID
    if enhanced.startswith("5.7."):  # RFC 3463: security or policy status
        return RejectReason.SPAM if "spam" in output.lower() else RejectReason.BLOCKED
    return RejectReason.BOUNCED


def describe_bounce(bounce: dict) -> str | None:
    subject, sender = bounce.get("subject"), bounce.get("from")
    if not (subject or sender):
        return None
    return f"Bounce message {subject or ''!r} from {sender or 'unknown sender'}"


def describe_server_event(esp_type: str, payload: dict) -> str:
    if esp_type == "DomainDNSError":
        checks = ("spf", "dkim", "mx", "return_path")
        problems = [
            f"{check.upper()} {payload.get(f'{check}_status')}"
            for check in checks
            if payload.get(f"{check}_status") not in (None, "OK")
        ]
        return f"DNS check failed for {payload.get('domain')}: {', '.join(problems) or 'unknown'}"
    if "volume" in payload and "limit" in payload:
        return f"{esp_type}: {payload['volume']} of {payload['limit']} messages this hour"
    return esp_type


def load_public_keys(setting: Any) -> list[rsa.RSAPublicKey]:
    """Postal public key(s) from POSTAL_WEBHOOK_KEY: base64 DER, PEM, or JWK."""
    values = setting if isinstance(setting, (list, tuple)) else [setting]
    return [load_public_key(value) for value in values]


def load_public_key(value: Any) -> rsa.RSAPublicKey:
    try:
        if isinstance(value, str) and value.lstrip().startswith("{"):
            value = json.loads(value)
        if isinstance(value, dict):  # a JWK: {"kty": "RSA", "n": ..., "e": ...}
            key = rsa.RSAPublicNumbers(b64url_int(value["e"]), b64url_int(value["n"])).public_key()
        else:
            text = value.decode("ascii") if isinstance(value, bytes) else str(value)
            if "-----BEGIN" in text:
                key = serialization.load_pem_public_key(text.encode("ascii"))
            else:
                der = base64.b64decode("".join(text.split()), validate=True)
                key = serialization.load_der_public_key(der)
    except (ValueError, KeyError, TypeError, binascii.Error, UnsupportedAlgorithm) as err:
        raise AnymailConfigurationError(
            "POSTAL_WEBHOOK_KEY must be the Postal signing public key: the base64 shown "
            f"in Postal (the DKIM record's p= value), a PEM block or an RSA JWK ({err})."
        ) from err
    if not isinstance(key, rsa.RSAPublicKey):
        raise AnymailConfigurationError("POSTAL_WEBHOOK_KEY must be an RSA public key.")
    return key


def b64url_int(value: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")
