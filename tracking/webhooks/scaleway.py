"""Tracking webhook for Scaleway Transactional Email (TEM).

TEM webhooks publish to a Scaleway Topics and Events topic (Scaleway's
SNS-compatible service); an HTTP(S) subscription to that topic then posts
each event to this view in an SNS envelope: ``{"Type": "Notification",
"MessageId", "TopicArn", "Subject"?, "Message", "Timestamp",
"SignatureVersion", "Signature", "SigningCertURL", "UnsubscribeURL"}``, one
event per call. (Scaleway doesn't support raw message delivery. A bare TEM
event, forwarded by your own code, is accepted too when signatures aren't
checked.)

``Message`` is the TEM event, as JSON: ``{"id", "type", "organization_id",
"project_id", "domain_id", "domain_name", "created_at", "email_id",
"email_from", "email_to", "email_headers", ...}`` plus, by type,
``email_queued_at``, ``email_sent_at``, ``email_response_code``,
``email_response_message``, ``email_next_try``, ``email_try_count``,
``email_error`` (deprecated), ``blocklist_id``, ``blocklist_type``,
``blocklist_reason``. ``email_id`` is the per-recipient email id the send
API returned (mailhub's message id); TEM has no tags or metadata.

Subscribing: an HTTP subscription first gets a ``SubscriptionConfirmation``
call. It's answered 200 and logged with its SubscribeURL (and the raw call
is kept), but not confirmed from here: paste the SubscribeURL in the Scaleway
console ("Confirm subscription"), as Scaleway documents.

Authentication. Put WEBHOOK_SECRET in the subscription's endpoint URL if
your subscription accepts credentials there. Scaleway also signs every call
(SNS signature version 1: SHA1 with RSA over the message's canonical form,
with a certificate at SigningCertURL that Scaleway's CA issued). Settings:

* ``SCALEWAY_WEBHOOK_TOPIC_ARN``: your topic's ARN (or a list of them). Calls
  from other topics are refused (403). Without it, any Scaleway customer's
  topic could post here.
* ``SCALEWAY_WEBHOOK_TRUST_CHAIN``: Scaleway's Topics and Events CA
  certificates (PEM text, or the path of a .pem file), from
  https://messaging.s3.fr-par.scw.cloud/fr-par/sns/sns-trust-chain.pem (or
  .../nl-ams/sns/...). When set, every call must be signed with a
  certificate that CA issued, fetched (once per URL) from
  ``https://messaging.s3.<region>.scw.cloud/`` only, and have a Timestamp
  within ``SCALEWAY_WEBHOOK_TOLERANCE`` seconds (default 300). The
  Timestamp is when Scaleway published the message, and retried deliveries
  keep it: raise the tolerance if your endpoint may be down for longer.

With both set, the signature authenticates every call, and WEBHOOK_SECRET is
optional.

References:
https://www.scaleway.com/en/docs/transactional-email/reference-content/webhook-events-payloads/,
https://www.scaleway.com/en/docs/transactional-email/api-cli/use-webhooks-with-sns-topics/,
https://www.scaleway.com/en/docs/topics-and-events/reference-content/verifying-webhooks/
"""

from __future__ import annotations

import functools
import json
import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from django.http import HttpRequest

from sending.exceptions import (
    AnymailConfigurationError,
    AnymailWebhookPayloadError,
    AnymailWebhookRetryLater,
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
from .sns import SIGNATURE_HASHES, SIGNED_FIELDS

logger = logging.getLogger(__name__)

# TEM event type -> (event type, reject reason)
EVENT_TYPES: dict[str, tuple[str, str | None]] = {
    "email_queued": (EventType.QUEUED, None),
    "email_delivered": (EventType.DELIVERED, None),
    "email_deferred": (EventType.DEFERRED, None),  # soft bounce: TEM will retry
    "email_dropped": (EventType.BOUNCED, RejectReason.BOUNCED),  # hard bounce
    # "definitively rejected with a 'mailbox not found' error"
    "email_mailbox_not_found": (EventType.BOUNCED, RejectReason.INVALID),
    # "identified as spam by Scaleway or the destination server": it wasn't delivered
    "email_spam": (EventType.BOUNCED, RejectReason.SPAM),
    # TEM didn't send it: the recipient is on a blocklist (made from its earlier bounces)
    "email_blocklisted": (EventType.REJECTED, RejectReason.BOUNCED),
    # A blocklist was created for an address: about no message in particular.
    "blocklist_created": (EventType.UNKNOWN, None),
    "unknown_type": (EventType.UNKNOWN, None),
}

# Scaleway serves its signing certificates from its messaging bucket.
SIGNING_CERT_HOST = re.compile(r"messaging\.s3\.[a-z]{2}-[a-z]{3}\.scw\.cloud")
CERT_FETCH_TIMEOUT = 10
DEFAULT_TOLERANCE = 300

# Signing certificates by URL. Each URL names one certificate (a rotation
# gets a new URL), so they can be kept for the life of the process.
_signing_certs: dict[str, x509.Certificate] = {}
MAX_CACHED_CERTS = 32


class ScalewayTrackingWebhookView(AnymailBaseWebhookView):
    esp_name = "Scaleway"

    def __init__(self, **kwargs: Any) -> None:
        topic_arns = get_anymail_setting(
            "webhook_topic_arn", esp_name="SCALEWAY", kwargs=kwargs, default=None
        )
        trust_chain = get_anymail_setting(
            "webhook_trust_chain", esp_name="SCALEWAY", kwargs=kwargs, default=None
        )
        self.tolerance = get_anymail_setting(
            "webhook_tolerance", esp_name="SCALEWAY", kwargs=kwargs, default=DEFAULT_TOLERANCE
        )
        if isinstance(topic_arns, str):
            topic_arns = [topic_arns]
        self.topic_arns: frozenset[str] | None = frozenset(topic_arns) if topic_arns else None
        self.trusted_cas = load_trust_chain(trust_chain) if trust_chain else None
        # A signature checked against Scaleway's CA, from your own topic,
        # authenticates every call: basic auth is then optional.
        self.warn_if_no_basic_auth = not (self.trusted_cas and self.topic_arns)
        super().__init__(**kwargs)

    # Authentication

    def validate_request(self, request: HttpRequest) -> None:
        if self.topic_arns is None and self.trusted_cas is None:
            return
        payload = self.load_payload(request)
        if not is_envelope(payload):
            if not is_tem_event(payload):
                # Not Scaleway's at all: say what it looks like (400, kept).
                raise AnymailWebhookPayloadError(self.describe_wrong_payload(payload))
            raise AnymailWebhookValidationFailure(
                "Scaleway webhook isn't a signed Topics and Events (SNS) message."
            )
        if self.topic_arns is not None and payload.get("TopicArn") not in self.topic_arns:
            raise AnymailWebhookValidationFailure(
                f"Scaleway webhook is from topic {payload.get('TopicArn')!r}, "
                "which isn't in SCALEWAY_WEBHOOK_TOPIC_ARN."
            )
        if self.trusted_cas is not None:
            try:
                published = parse_time(payload.get("Timestamp"))
            except ValueError:
                published = None  # refused by check_timestamp
            check_timestamp(published and published.timestamp(), self.tolerance, self.esp_name)
            self.verify_signature(payload)

    def verify_signature(self, envelope: dict) -> None:
        # Amazon SNS's scheme (Scaleway's Topics and Events is SNS-compatible),
        # with any absent field left out of the signed string.
        fields = SIGNED_FIELDS.get(envelope.get("Type"))
        hash_class = SIGNATURE_HASHES.get(str(envelope.get("SignatureVersion")))
        signature = b64decode_or_none(envelope.get("Signature") or "")
        if fields is None or hash_class is None or not signature:
            raise AnymailWebhookValidationFailure(
                "Scaleway webhook has no valid signature (Type, SignatureVersion or Signature)."
            )
        signed = "".join(
            f"{field}\n{envelope[field]}\n" for field in fields if envelope.get(field) is not None
        ).encode("utf-8")
        certificate = self.signing_certificate(envelope.get("SigningCertURL") or "")
        public_key = certificate.public_key()
        try:
            if isinstance(public_key, rsa.RSAPublicKey):
                public_key.verify(signature, signed, padding.PKCS1v15(), hash_class())
            elif isinstance(public_key, ec.EllipticCurvePublicKey):
                public_key.verify(signature, signed, ec.ECDSA(hash_class()))
            else:
                raise InvalidSignature(f"unsupported key type {type(public_key).__name__}")
        except InvalidSignature:
            raise AnymailWebhookValidationFailure(
                "Scaleway webhook signature doesn't match its content."
            ) from None

    def signing_certificate(self, url: str) -> x509.Certificate:
        """The certificate at url, once it's checked to come from Scaleway's CA."""
        parts = urlsplit(url)
        if (
            parts.scheme != "https"
            or not SIGNING_CERT_HOST.fullmatch(parts.hostname or "")
            or parts.port is not None
            or parts.username is not None
        ):
            raise AnymailWebhookValidationFailure(
                f"Scaleway webhook SigningCertURL {url!r} isn't Scaleway's certificate bucket."
            )
        certificate = _signing_certs.get(url)
        if certificate is None:
            certificate = fetch_certificate(url)
            if len(_signing_certs) >= MAX_CACHED_CERTS:
                _signing_certs.clear()
            _signing_certs[url] = certificate
        # Checked on every use: the CA and the validity period matter now, not when cached.
        if not issued_by_trusted_ca(certificate, self.trusted_cas or ()):
            raise AnymailWebhookValidationFailure(
                "Scaleway webhook's signing certificate wasn't issued by the CA in "
                "SCALEWAY_WEBHOOK_TRUST_CHAIN (or has expired)."
            )
        return certificate

    # Parsing

    def parse_events(self, request: HttpRequest) -> list[AnymailTrackingEvent]:
        payload = self.load_payload(request)
        if not is_envelope(payload):
            if is_tem_event(payload):
                return [self.parse_event(payload)]
            raise AnymailWebhookPayloadError(self.describe_wrong_payload(payload))

        message_type = payload["Type"]
        if message_type == "SubscriptionConfirmation":
            logger.warning(
                "Scaleway Topics and Events subscription to %s is waiting for confirmation: "
                "enter this SubscribeURL in the Scaleway console: %s",
                payload.get("TopicArn"),
                payload.get("SubscribeURL"),
            )
            return []
        if message_type == "UnsubscribeConfirmation":
            logger.info("Scaleway Topics and Events unsubscribed from %s", payload.get("TopicArn"))
            return []
        if message_type != "Notification":
            raise AnymailWebhookPayloadError(
                f"Unknown Scaleway Topics and Events message Type {message_type!r}."
            )
        try:
            message = json.loads(payload.get("Message") or "")
        except (TypeError, ValueError) as err:
            raise AnymailWebhookPayloadError(
                f"Scaleway notification's Message is not a JSON TEM event: {err}"
            ) from err
        if not is_tem_event(message):
            raise AnymailWebhookPayloadError(self.describe_wrong_message(message))
        return [self.parse_event(message, envelope=payload)]

    def parse_event(self, tem_event: dict, envelope: dict | None = None) -> AnymailTrackingEvent:
        event_type, reject_reason = EVENT_TYPES.get(tem_event["type"], (EventType.UNKNOWN, None))
        if tem_event["type"] == "email_blocklisted" and tem_event.get("blocklist_type") not in (
            "mailbox_full",
            "mailbox_not_found",
        ):
            reject_reason = RejectReason.BLOCKED  # a blocklist TEM didn't make from bounces
        event_id = tem_event.get("id") or (envelope or {}).get("MessageId")
        return AnymailTrackingEvent(
            event_type=event_type,
            timestamp=parse_time(tem_event.get("created_at")),
            event_id=event_id,
            message_id=tem_event.get("email_id"),
            recipient=tem_event.get("email_to"),
            reject_reason=reject_reason,
            description=self.describe_event(tem_event),
            mta_response=self.mta_response(tem_event),
            tags=[],  # TEM has no tags or metadata
            metadata={},
            # the TEM event; the SNS envelope is in the stored raw call
            esp_event=tem_event,
        )

    @staticmethod
    def describe_event(tem_event: dict) -> str | None:
        reason = tem_event.get("blocklist_reason")
        if reason:
            return f"{tem_event.get('blocklist_type') or 'blocklist'}: {reason}"
        if tem_event["type"] == "email_deferred" and tem_event.get("email_try_count"):
            next_try = tem_event.get("email_next_try")
            return f"Attempt {tem_event['email_try_count']}" + (
                f"; next try at {next_try}" if next_try else ""
            )
        return None

    @staticmethod
    def mta_response(tem_event: dict) -> str | None:
        code = tem_event.get("email_response_code")
        message = tem_event.get("email_response_message")
        if code or message:
            return " ".join(str(part) for part in (code, message) if part)
        return tem_event.get("email_error") or None

    # Body helpers (shared by validation and parsing)

    def load_payload(self, request: HttpRequest) -> Any:
        if not request.body:
            raise AnymailWebhookPayloadError("Empty Scaleway webhook body: expected JSON.")
        # SNS-style HTTP deliveries are JSON, often labelled text/plain.
        self.require_content_type(request, "application/json", "text/plain")
        return self.parse_json_body(request)

    def describe_wrong_payload(self, payload: Any) -> str:
        return describe_wrong_payload(
            payload,
            "Scaleway webhooks post a Topics and Events (SNS) message, or a TEM event, "
            "as a JSON object",
            esp_name=self.esp_name,
        )

    @staticmethod
    def describe_wrong_message(message: Any) -> str:
        expected = "Scaleway notification's Message isn't a TEM webhook event"
        if isinstance(message, dict) and ("notificationType" in message or "eventType" in message):
            return (
                f"{expected}; it looks like an Amazon SES notification: "
                "subscribe /anymail/amazon_ses/tracking/ to that topic instead."
            )
        return f"{expected} (it has no 'type')."


def is_envelope(payload: Any) -> bool:
    return isinstance(payload, dict) and "Type" in payload and "TopicArn" in payload


def is_tem_event(payload: Any) -> bool:
    return isinstance(payload, dict) and isinstance(payload.get("type"), str) and "id" in payload


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 time as an aware datetime (UTC if it has no offset); ValueError if malformed."""
    if not value:
        return None
    when = datetime.fromisoformat(str(value))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@functools.lru_cache(maxsize=4)
def load_trust_chain(setting: str) -> tuple[x509.Certificate, ...]:
    """The CA certificates in setting: PEM text, or the path of a PEM file."""
    if "-----BEGIN" in setting:
        pem = setting.encode()
    else:
        try:
            pem = Path(setting).read_bytes()
        except OSError as err:
            raise AnymailConfigurationError(
                f"Can't read SCALEWAY_WEBHOOK_TRUST_CHAIN file {setting!r}: {err}"
            ) from err
    try:
        return tuple(x509.load_pem_x509_certificates(pem))
    except ValueError as err:
        raise AnymailConfigurationError(
            f"SCALEWAY_WEBHOOK_TRUST_CHAIN isn't PEM certificates: {err}"
        ) from err


def fetch_certificate(url: str) -> x509.Certificate:
    try:
        response = requests.get(url, timeout=CERT_FETCH_TIMEOUT)
    except requests.RequestException as err:
        # Scaleway's bucket is out of reach: a 503 (the call kept), so Scaleway retries.
        raise AnymailWebhookRetryLater(
            f"Couldn't fetch Scaleway signing certificate {url}: {err}"
        ) from err
    if 400 <= response.status_code < 500:
        raise AnymailWebhookValidationFailure(
            f"Scaleway webhook SigningCertURL {url} doesn't exist ({response.status_code})."
        )
    if response.status_code != 200:
        raise AnymailWebhookRetryLater(
            f"Couldn't fetch Scaleway signing certificate {url}: HTTP {response.status_code}"
        )
    try:
        return x509.load_pem_x509_certificate(response.content)
    except ValueError:
        try:
            return x509.load_der_x509_certificate(response.content)
        except ValueError:
            raise AnymailWebhookValidationFailure(
                f"Scaleway webhook SigningCertURL {url} isn't a certificate."
            ) from None


def issued_by_trusted_ca(
    certificate: x509.Certificate, trusted: tuple[x509.Certificate, ...]
) -> bool:
    """Whether certificate is valid now and was signed by one of the trusted certificates."""
    now = datetime.now(UTC)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        return False
    for ca in trusted:
        if ca.subject != certificate.issuer:
            continue
        if not ca.not_valid_before_utc <= now <= ca.not_valid_after_utc:
            continue
        try:
            certificate.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False
