"""Inbound webhook for Amazon SES email receiving, delivered by an Amazon SNS HTTPS subscription.

An SES receipt rule hands each received message over in one of two ways
(https://docs.aws.amazon.com/ses/latest/dg/receiving-email-notifications-contents.html):

- the SNS action publishes a ``Received`` notification whose ``content`` is
  the raw message, as text ("UTF-8" encoding, the default) or as base64
  (https://docs.aws.amazon.com/ses/latest/dg/receiving-email-action-sns.html).
  Only base64 keeps 8-bit bytes that aren't UTF-8; SES bounces messages
  over 150 KB.
- the S3 action writes the raw message to ``action.bucketName`` /
  ``action.objectKey`` and publishes a notification without ``content``
  (https://docs.aws.amazon.com/ses/latest/dg/receiving-email-action-s3.html).
  This view reads the object with boto3 and leaves it there: expire old
  objects with a bucket lifecycle rule.

Signatures and subscription confirmation are the SNS base's (sns.py): this
view is AmazonSNSWebhookView's pipeline over AnymailInboundWebhookView's
storage. Listing the SNS view first in the bases puts its validate_request,
process and parse_events first; their super() calls then reach the inbound
process (attachment caps) and record (storage).

One message per notification: envelope_sender is ``mail.source`` (the
MAIL FROM), envelope_recipient the first of ``receipt.recipients`` (the RCPT
TO addresses the rule matched), spam_detected comes from
``receipt.spamVerdict``, event_id is ``mail.messageId`` (which is also the
S3 object key, after the rule's object key prefix) and timestamp is
``mail.timestamp``. esp_event is the whole SES notification.

Settings (besides the SNS ones): the S3 client is built like the sending
backend's, from AMAZON_SES_SESSION_PARAMS and AMAZON_SES_CLIENT_PARAMS, with
AMAZON_SES_S3_CLIENT_PARAMS (optional) merged over the client params, for
an S3-only region, endpoint_url or credentials. The credentials need
s3:GetObject on the bucket and prefix.

When the object can't be read (missing, access denied, S3 unreachable) the
answer is 503, since SNS retries only 5xx answers, and the call is kept,
marked failed with the reason: an SNS retry, or reprocessing the call after
fixing permissions, stores the message. An object bigger than
MAILHUB["INBOUND_MAX_BODY_BYTES"] is refused (413), as a posted body would
be. Objects stored with the receipt rule's "Encrypt message" option (by the
S3 encryption client, https://docs.aws.amazon.com/kms/latest/developerguide/services-ses.html)
are refused (400): this view can't decrypt them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from sending.exceptions import (
    AnymailConfigurationError,
    AnymailImproperlyInstalled,
    AnymailWebhookPayloadError,
    AnymailWebhookRetryLater,
)
from sending.signals import AnymailInboundEvent
from sending.utils import get_anymail_setting
from tracking.webhooks.amazon_ses import (
    EVENT_DESTINATION_TEST,
    SUBSCRIPTION_SUCCEEDED,
    parse_timestamp,
)
from tracking.webhooks.base import b64decode_or_none
from tracking.webhooks.sns import AmazonSNSWebhookView

from ..message import AnymailInboundMessage
from .base import AnymailInboundWebhookView, InboundTooLarge, inbound_event

logger = logging.getLogger(__name__)

RECEIVED = "Received"

# receipt.spamVerdict.status; GRAY ("unable to determine") and
# PROCESSING_FAILED leave spam_detected unknown
SPAM_VERDICTS = {"PASS": False, "FAIL": True}

# SES identity notifications; event publishing records have "eventType" instead
TRACKING_NOTIFICATION_TYPES = frozenset({"Bounce", "Complaint", "Delivery"})

# The S3 encryption client keeps the KMS-wrapped data key in the object's
# metadata, under one of these names (v1, v2 formats)
ENCRYPTION_METADATA = ("x-amz-key", "x-amz-key-v2")


class AmazonSESInboundWebhookView(AmazonSNSWebhookView, AnymailInboundWebhookView):
    esp_name = "Amazon SES"

    def __init__(self, **kwargs: Any) -> None:
        prefix = self.esp_setting_prefix
        self.session_params = dict(
            get_anymail_setting("session_params", esp_name=prefix, kwargs=kwargs, default={})
        )
        self.s3_client_params = {
            **get_anymail_setting("client_params", esp_name=prefix, kwargs=kwargs, default={}),
            **get_anymail_setting("s3_client_params", esp_name=prefix, kwargs=kwargs, default={}),
        }
        super().__init__(**kwargs)

    def parse_notification(self, message: dict) -> list[AnymailInboundEvent]:
        ses_event = self.receipt_notification(message)
        if ses_event is None:
            return []
        mail, receipt = ses_event["mail"], ses_event["receipt"]
        timestamp = parse_timestamp(mail.get("timestamp"))
        raw = self.raw_mime(ses_event, receipt["action"])
        inbound_message = AnymailInboundMessage.parse_raw_mime_bytes(raw)
        inbound_message.envelope_sender = mail.get("source") or None
        inbound_message.envelope_recipient = next(iter(receipt.get("recipients") or []), None)
        inbound_message.spam_detected = SPAM_VERDICTS.get(
            (receipt.get("spamVerdict") or {}).get("status")
        )
        return [
            inbound_event(
                message=inbound_message,
                esp_event=ses_event,
                raw=raw,
                event_id=mail.get("messageId"),
                timestamp=timestamp,
            )
        ]

    def receipt_notification(self, message: dict) -> dict | None:
        """The SES receiving notification in an SNS Notification (None for SES's set-up message)."""
        text = message["Message"]
        topic_arn = message["TopicArn"]
        if text.strip() == EVENT_DESTINATION_TEST:
            raise self.tracking_payload_error("an event publishing destination's test message")
        try:
            ses_event = json.loads(text)
        except ValueError:
            ses_event = None
        if not isinstance(ses_event, dict):
            raise AnymailWebhookPayloadError(
                f"The Amazon SNS Notification from topic {topic_arn} is not an Amazon SES "
                f"receiving notification: {text[:200]!r}"
            )
        notification_type = ses_event.get("notificationType")
        if notification_type == SUBSCRIPTION_SUCCEEDED:
            logger.info("Amazon SES notifications subscribed: %s", ses_event.get("message"))
            return None
        if "eventType" in ses_event or notification_type in TRACKING_NOTIFICATION_TYPES:
            kind = ses_event.get("eventType") or notification_type
            raise self.tracking_payload_error(f"a {kind} event")
        if notification_type != RECEIVED:
            raise AnymailWebhookPayloadError(
                f"The Amazon SNS Notification from topic {topic_arn} is not an Amazon SES "
                f"receiving notification (notificationType {notification_type!r}, "
                f"expected {RECEIVED!r})."
            )
        return ses_event

    def tracking_payload_error(self, what: str) -> AnymailWebhookPayloadError:
        return AnymailWebhookPayloadError(
            f"This is an Amazon SES sending notification ({what}), posted to the inbound "
            "webhook. Subscribe that SNS topic to the tracking URL, anymail/amazon_ses/tracking/, "
            "and the receipt rule's topic to this one."
        )

    # The raw message

    def raw_mime(self, ses_event: dict, action: dict) -> bytes:
        action_type = action.get("type")
        if action_type == "SNS":
            raw = self.sns_action_content(ses_event, action)
        elif action_type == "S3":
            raw = self.s3_object(action["bucketName"], action["objectKey"])
        else:
            # Bounce, Lambda, Stop, WorkMail... notify without the message
            raise AnymailWebhookPayloadError(
                f"Amazon SES receipt action {action_type!r} doesn't deliver the message: "
                "the inbound webhook needs a receipt rule with an SNS action, or an S3 action "
                "that notifies this URL's SNS topic."
            )
        if not raw.strip():
            raise AnymailWebhookPayloadError("Amazon SES delivered an empty message.")
        return raw

    def sns_action_content(self, ses_event: dict, action: dict) -> bytes:
        content = ses_event.get("content")
        if not isinstance(content, str):
            raise AnymailWebhookPayloadError(
                "Amazon SES SNS action notification has no content (the raw message)."
            )
        # Documented as "UTF-8" or "Base64" in receipt rules; normalize spellings
        encoding = str(action.get("encoding") or "UTF-8").upper().replace("-", "")
        if encoding == "BASE64":
            raw = b64decode_or_none("".join(content.split()))
            if raw is None:
                raise AnymailWebhookPayloadError(
                    "Amazon SES SNS action content is not valid base64, though the action's "
                    "encoding is BASE64."
                )
            return raw
        if encoding == "UTF8":
            # SES already decoded the message as UTF-8; what wasn't UTF-8 is
            # lost either way (BASE64 keeps it), so store what remains.
            return content.encode("utf-8", errors="replace")
        raise AnymailWebhookPayloadError(
            f"Unknown Amazon SES SNS action encoding {action.get('encoding')!r} "
            "(expected UTF-8 or BASE64)."
        )

    def s3_object(self, bucket: str, key: str) -> bytes:
        """The raw message SES's S3 action stored at bucket/key."""
        try:
            import boto3
            from botocore.exceptions import BotoCoreError, ClientError
        except ImportError as err:
            raise AnymailImproperlyInstalled(
                missing_package="boto3", install_extra="amazon_ses"
            ) from err

        location = f"s3://{bucket}/{key}"
        params = self.client_params_for_boto()
        try:
            client = boto3.session.Session(**self.session_params).client("s3", **params)
            try:
                response = client.get_object(Bucket=bucket, Key=key)
                with response["Body"] as body:
                    self.check_s3_object(response, location)
                    return body.read()
            finally:
                client.close()
        except (BotoCoreError, ClientError) as err:
            prefix = self.esp_setting_prefix
            raise AnymailWebhookRetryLater(
                f"Couldn't read the received message {location} from Amazon S3. Check that "
                f"the credentials from {prefix}_SESSION_PARAMS / {prefix}_CLIENT_PARAMS / "
                f"{prefix}_S3_CLIENT_PARAMS (or boto3's defaults) have s3:GetObject on it; "
                "Amazon SNS retries, or reprocess this webhook call once it's fixed."
            ) from err

    def check_s3_object(self, response: dict, location: str) -> None:
        size = response.get("ContentLength") or 0
        if size > self.max_body_bytes:
            raise InboundTooLarge(
                f"The received message {location} is {size} bytes, over the "
                f'{self.max_body_bytes} allowed (MAILHUB["{self.max_body_setting}"]).'
            )
        metadata = {name.lower() for name in response.get("Metadata") or {}}
        if metadata.intersection(ENCRYPTION_METADATA):
            raise AnymailWebhookPayloadError(
                f"The received message {location} was encrypted by the receipt rule's "
                "'Encrypt message' option, which this webhook can't decrypt: turn the option "
                "off (and use the bucket's server-side encryption instead)."
            )

    def client_params_for_boto(self) -> dict[str, Any]:
        params = dict(self.s3_client_params)
        config = params.get("config")
        if isinstance(config, Mapping):
            from botocore.config import Config

            try:
                params["config"] = Config(**config)
            except TypeError as err:
                prefix = self.esp_setting_prefix
                raise AnymailConfigurationError(
                    f"Invalid 'config' in {prefix}_CLIENT_PARAMS or {prefix}_S3_CLIENT_PARAMS: "
                    f"{err}"
                ) from err
        return params
