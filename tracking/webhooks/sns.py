"""Amazon SNS HTTPS delivery, shared by the Amazon SES tracking and inbound webhooks.

SNS posts one JSON document per request (Content-Type ``text/plain;
charset=UTF-8`` unless the subscription's delivery policy sets
``headerContentType``), with an ``x-amz-sns-message-type`` header saying
which of three kinds it is:

- ``SubscriptionConfirmation``: sent once, when the topic is subscribed to
  this URL. Nothing arrives until it is confirmed, by visiting its
  ``SubscribeURL`` (or calling ConfirmSubscription with its ``Token``).
- ``Notification``: what was published to the topic, as the ``Message`` string.
- ``UnsubscribeConfirmation``: the subscription was deleted.

Every message is signed (SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA)
over a canonical string of some of its fields, with a certificate SNS
serves from ``SigningCertURL``.

Docs: https://docs.aws.amazon.com/sns/latest/dg/sns-message-and-json-formats.html,
https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html,
https://docs.aws.amazon.com/sns/latest/dg/sns-message-delivery-retries.html
(SNS retries 5xx answers and network errors, never 4xx).

Settings (with the view's ESP prefix, e.g. ``AMAZON_SES_``):

- ``VERIFY_SNS_SIGNATURES`` (default True): check every message's signature.
- ``AUTO_CONFIRM_SNS_SUBSCRIPTIONS`` (default True, as documented): True
  confirms a subscription to any topic, but only when WEBHOOK_SECRET is set
  (then the subscriber had to know the secret to put it in the endpoint
  URL); a list of topic ARNs confirms only those topics (with or without
  WEBHOOK_SECRET); False never confirms. A confirmation that isn't made is
  answered 400, logged as a warning and kept as a failed webhook call
  whose error gives the Token; reprocessing that call after changing the
  setting confirms it (tokens are valid for three days).

A replayed message needs no timestamp check: events carry the SNS
MessageId in their ids, so a replay is stored once.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.http import HttpRequest

from sending.exceptions import (
    AnymailConfigurationError,
    AnymailWebhookPayloadError,
    AnymailWebhookRetryLater,
    AnymailWebhookValidationFailure,
)
from sending.utils import get_anymail_setting

from .base import AnymailBaseWebhookView, b64decode_or_none

logger = logging.getLogger(__name__)

SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
NOTIFICATION = "Notification"
UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"
MESSAGE_TYPES = (SUBSCRIPTION_CONFIRMATION, NOTIFICATION, UNSUBSCRIBE_CONFIRMATION)

# The fields signed, in this order, as "Name\nvalue\n" each. Subject is
# signed only when present (only Notifications have one).
SIGNED_FIELDS = {
    NOTIFICATION: ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    SUBSCRIPTION_CONFIRMATION: (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
SIGNED_FIELDS[UNSUBSCRIBE_CONFIRMATION] = SIGNED_FIELDS[SUBSCRIPTION_CONFIRMATION]
OPTIONAL_SIGNED_FIELDS = frozenset({"Subject"})

SIGNATURE_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}

# SigningCertURL and SubscribeURL must point at SNS itself: https on
# sns.<region>.amazonaws.com (or .amazonaws.com.cn in the China regions).
SNS_HOST_RE = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")

# SNS gives an HTTPS endpoint 15 seconds for the whole request.
SNS_REQUEST_TIMEOUT = 5

# Parsed signing certificates by URL. SNS uses a handful of certificates
# (one per region, rotated rarely) and URLs are limited to SNS hosts, so
# this stays small; the cap is a backstop.
_certificates: dict[str, x509.Certificate] = {}
_certificates_lock = threading.Lock()
MAX_CACHED_CERTIFICATES = 64


def is_sns_url(url: Any, path_suffix: str = "", *, allow_query: bool = True) -> bool:
    """Whether url is https on an Amazon SNS host (and its path ends with path_suffix)."""
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme == "https"
        and parts.username is None
        and parts.password is None
        and port in (None, 443)
        and bool(SNS_HOST_RE.match(parts.hostname or ""))
        and parts.path.endswith(path_suffix)
        and (allow_query or not (parts.query or parts.fragment))
    )


def string_to_sign(message: dict) -> bytes:
    """The canonical string SNS signs for message, or AnymailWebhookValidationFailure."""
    fields = SIGNED_FIELDS.get(message.get("Type"))
    if fields is None:
        raise AnymailWebhookValidationFailure(
            f"Can't verify an Amazon SNS message of Type {message.get('Type')!r}."
        )
    lines = []
    for name in fields:
        value = message.get(name)
        if value is None:
            if name in OPTIONAL_SIGNED_FIELDS:
                continue
            raise AnymailWebhookValidationFailure(
                f"Amazon SNS message has no {name}, so its signature can't be verified."
            )
        lines.append(f"{name}\n{value}\n")
    return "".join(lines).encode("utf-8")


def verify_signature(message: dict, *, esp_name: str = "Amazon SNS") -> None:
    """Check message's SNS signature; raise AnymailWebhookValidationFailure if it's not valid.

    Raises AnymailWebhookRetryLater if the signing certificate can't be
    fetched right now (answered 503, the call kept, so SNS retries).
    """
    version = str(message.get("SignatureVersion"))
    hash_class = SIGNATURE_HASHES.get(version)
    if hash_class is None:
        raise AnymailWebhookValidationFailure(
            f"Unsupported Amazon SNS SignatureVersion {message.get('SignatureVersion')!r} "
            "(expected 1 or 2)."
        )
    signature = b64decode_or_none(message.get("Signature") or "")
    if not signature:
        raise AnymailWebhookValidationFailure("Amazon SNS message has no valid Signature.")
    url = message.get("SigningCertURL")
    # (A query string would let one certificate be cached under endless URLs)
    if not is_sns_url(url, path_suffix=".pem", allow_query=False):
        raise AnymailWebhookValidationFailure(
            f"Amazon SNS SigningCertURL {url!r} is not an https .pem URL on an "
            "sns.<region>.amazonaws.com host; refusing to trust it."
        )
    certificate = signing_certificate(url, esp_name=esp_name)
    now = datetime.now(UTC)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise AnymailWebhookValidationFailure(
            f"The Amazon SNS signing certificate {url} is not valid now "
            f"(valid {certificate.not_valid_before_utc} to {certificate.not_valid_after_utc})."
        )
    public_key = certificate.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise AnymailWebhookValidationFailure(
            f"The Amazon SNS signing certificate {url} doesn't hold an RSA key."
        )
    try:
        public_key.verify(signature, string_to_sign(message), padding.PKCS1v15(), hash_class())
    except InvalidSignature:
        raise AnymailWebhookValidationFailure(
            "Amazon SNS message signature is not valid for its contents."
        ) from None


def signing_certificate(url: str, *, esp_name: str = "Amazon SNS") -> x509.Certificate:
    """The X.509 certificate at an (already checked) SNS SigningCertURL, cached by URL."""
    with _certificates_lock:
        certificate = _certificates.get(url)
    if certificate is not None:
        return certificate
    try:
        # No redirects: the certificate must come from the SNS host itself
        response = requests.get(url, timeout=SNS_REQUEST_TIMEOUT, allow_redirects=False)
    except requests.RequestException as err:
        raise AnymailWebhookRetryLater(
            f"Couldn't fetch the Amazon SNS signing certificate {url}: {err}", esp_name=esp_name
        ) from err
    if response.status_code >= 500:
        raise AnymailWebhookRetryLater(
            f"Couldn't fetch the Amazon SNS signing certificate {url}: "
            f"SNS answered {response.status_code}.",
            esp_name=esp_name,
        )
    if response.status_code != 200:
        raise AnymailWebhookValidationFailure(
            f"Amazon SNS SigningCertURL {url} answered {response.status_code}, not a certificate."
        )
    try:
        certificate = x509.load_pem_x509_certificate(response.content)
    except ValueError as err:
        raise AnymailWebhookValidationFailure(
            f"Amazon SNS SigningCertURL {url} did not return a PEM X.509 certificate ({err})."
        ) from err
    with _certificates_lock:
        if len(_certificates) >= MAX_CACHED_CERTIFICATES:
            _certificates.clear()
        _certificates[url] = certificate
    return certificate


def clear_certificate_cache() -> None:
    with _certificates_lock:
        _certificates.clear()


class AmazonSNSWebhookView(AnymailBaseWebhookView):
    """Base for webhooks that Amazon SNS posts to: checks, signatures and subscriptions.

    Subclasses implement ``parse_notification(message)``: the events in one
    SNS Notification (``message["Message"]`` is the published string).
    """

    # SNS can't sign with our secret, but it does send basic auth from
    # credentials in the subscription's endpoint URL (https://user:pass@host/...),
    # and that is what makes auto-confirming subscriptions safe. So keep
    # warning when WEBHOOK_SECRET is missing.
    warn_if_no_basic_auth = True

    def __init__(self, **kwargs: Any) -> None:
        prefix = self.esp_setting_prefix
        self.verify_sns_signatures = bool(
            get_anymail_setting(
                "verify_sns_signatures", esp_name=prefix, kwargs=kwargs, default=True
            )
        )
        self.auto_confirm_sns_subscriptions = self._auto_confirm_setting(
            get_anymail_setting(
                "auto_confirm_sns_subscriptions", esp_name=prefix, kwargs=kwargs, default=True
            )
        )
        super().__init__(**kwargs)

    @property
    def esp_setting_prefix(self) -> str:
        return self.esp_name.upper().replace(" ", "_")

    def _auto_confirm_setting(self, value: Any) -> bool | frozenset[str]:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            return frozenset({value})
        if isinstance(value, Iterable) and all(isinstance(arn, str) for arn in value):
            return frozenset(value)
        raise AnymailConfigurationError(
            f"{self.esp_setting_prefix}_AUTO_CONFIRM_SNS_SUBSCRIPTIONS must be True, False "
            f"or a list of SNS topic ARNs, not {value!r}."
        )

    # The pipeline's hooks

    def validate_request(self, request: HttpRequest) -> None:
        message = self.sns_message(request)
        # The headers aren't signed, but they must agree with the signed body
        for header, field in (
            ("x-amz-sns-message-type", "Type"),
            ("x-amz-sns-topic-arn", "TopicArn"),
            ("x-amz-sns-message-id", "MessageId"),
        ):
            value = request.headers.get(header)
            if value is not None and value != message.get(field):
                raise AnymailWebhookValidationFailure(
                    f"Amazon SNS {header} header {value!r} doesn't match the message's "
                    f"{field} {message.get(field)!r}."
                )
        if self.verify_sns_signatures:
            verify_signature(message, esp_name=self.esp_name)

    def process(self, request: HttpRequest, call: Any) -> Any:
        message = self.sns_message(request)
        if message["Type"] == SUBSCRIPTION_CONFIRMATION:
            self.confirm_subscription(message)
            return self.record([], call)
        if message["Type"] == UNSUBSCRIBE_CONFIRMATION:
            logger.info(
                "%s webhook unsubscribed from Amazon SNS topic %s",
                self.esp_name,
                message["TopicArn"],
            )
            return self.record([], call)
        return super().process(request, call)

    def parse_events(self, request: HttpRequest) -> list:
        message = self.sns_message(request)
        if message["Type"] != NOTIFICATION:
            return []
        if not isinstance(message.get("Message"), str):
            raise AnymailWebhookPayloadError("Amazon SNS Notification has no Message string.")
        return self.parse_notification(message)

    def parse_notification(self, message: dict) -> list:
        raise NotImplementedError(f"{self.__class__.__name__} must implement parse_notification")

    # SNS messages

    def sns_message(self, request: HttpRequest) -> dict:
        """The request's SNS message, or AnymailWebhookPayloadError saying why it isn't one."""
        if request.body:  # (an empty body is reported as such, whatever its type)
            self.require_content_type(request, "text/plain", "application/json")
        message = self.parse_json_body(request)
        if not isinstance(message, dict) or "Type" not in message or "TopicArn" not in message:
            hint = "was it meant for another ESP's webhook?"
            if isinstance(message, dict) and (
                "eventType" in message or "notificationType" in message
            ):
                hint = (
                    "it looks like a bare Amazon SES event, but this URL expects SNS to deliver it"
                )
            raise AnymailWebhookPayloadError(
                f"This is not an Amazon SNS message (no Type and TopicArn): {hint}. "
                f"{self.esp_name} webhooks are posted by an Amazon SNS HTTPS subscription."
            )
        if message["Type"] not in MESSAGE_TYPES:
            raise AnymailWebhookPayloadError(
                f"Unknown Amazon SNS message Type {message['Type']!r} "
                f"(expected one of {', '.join(MESSAGE_TYPES)})."
            )
        return message

    # Subscriptions

    def confirm_subscription(self, message: dict) -> None:
        """Visit a SubscriptionConfirmation's SubscribeURL, if the settings allow it.

        Raises AnymailWebhookPayloadError (400, the call kept) if not, and
        AnymailWebhookRetryLater (503, the call kept, so SNS retries) if SNS
        can't be reached.
        """
        topic_arn = message["TopicArn"]
        url = message.get("SubscribeURL")
        refusal = self.auto_confirm_refusal(topic_arn)
        if refusal is None and not is_sns_url(url):
            refusal = f"its SubscribeURL {url!r} is not an https URL on an Amazon SNS host"
        if refusal is not None:
            error = (
                f"Not confirming the Amazon SNS subscription of this {self.esp_name} webhook to "
                f"topic {topic_arn}: {refusal}. To confirm it yourself, call SNS "
                f"ConfirmSubscription with Token {message.get('Token')!r}, or change the setting "
                "and reprocess this webhook call."
            )
            logger.warning(error)
            raise AnymailWebhookPayloadError(error)
        try:
            response = requests.get(url, timeout=SNS_REQUEST_TIMEOUT, allow_redirects=False)
            response.raise_for_status()
        except requests.RequestException as err:
            raise AnymailWebhookRetryLater(
                f"Couldn't confirm the Amazon SNS subscription to topic {topic_arn}: {err}",
                esp_name=self.esp_name,
            ) from err
        logger.info(
            "Confirmed the Amazon SNS subscription of the %s webhook to topic %s",
            self.esp_name,
            topic_arn,
        )

    def auto_confirm_refusal(self, topic_arn: str) -> str | None:
        """Why a subscription to topic_arn must not be confirmed automatically (None if it may)."""
        setting = f"{self.esp_setting_prefix}_AUTO_CONFIRM_SNS_SUBSCRIPTIONS"
        allowed = self.auto_confirm_sns_subscriptions
        if allowed is True:
            if not self.basic_auth:
                return (
                    "WEBHOOK_SECRET is not set, so any AWS account could have subscribed this "
                    f"URL (set WEBHOOK_SECRET and put it in the endpoint URL, or list the topic "
                    f"in {setting})"
                )
            return None
        if not allowed:
            return f"{setting} is off"
        if topic_arn not in allowed:
            return f"the topic is not listed in {setting}"
        return None
