"""Tracking webhook for Amazon SES, delivered by an Amazon SNS HTTPS subscription.

Amazon SNS handling (signatures, subscription confirmation) is in
``sns.py``; this module reads the SES event in a Notification's
``Message``. Two kinds of SES event reach it, nearly alike:

- event publishing through a configuration set's SNS event destination:
  ``eventType`` Send, Reject, Bounce, Complaint, Delivery, DeliveryDelay,
  Open, Click, Rendering Failure or Subscription
  (https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-contents.html);
- an identity's feedback notifications: ``notificationType`` Bounce,
  Complaint or Delivery
  (https://docs.aws.amazon.com/ses/latest/dg/notification-contents.html).

One SES event can be about several recipients (bounce.bouncedRecipients,
complaint.complainedRecipients, delivery.recipients,
deliveryDelay.delayedRecipients, else every address in mail.destination:
SES's open and click tracking can't tell recipients apart), so it becomes
one event per recipient, with event_id "<SNS MessageId>:<recipient>".

message_id is ``mail.messageId``: the MessageId SendEmail (or each
SendBulkEmail entry) returned, which the sending backend records. Tags and
metadata come from the X-Tag and X-Metadata headers the sending backend adds
(identity notifications include headers only with "Include original
headers" on), with the AMAZON_SES_MESSAGE_TAG_NAME message tag as a fallback
for tags when headers are missing.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.utils import parseaddr
from typing import Any

from django.utils.dateparse import parse_datetime

from sending.exceptions import AnymailWebhookPayloadError
from sending.signals import AnymailTrackingEvent, EventType, RejectReason
from sending.utils import get_anymail_setting

from .sns import AmazonSNSWebhookView

logger = logging.getLogger(__name__)

# What SES publishes to a new SNS event destination (plain text, not JSON)
EVENT_DESTINATION_TEST = "Successfully validated SNS topic for Amazon SES event publishing."
# What SES publishes when an identity's notification topic is set
SUBSCRIPTION_SUCCEEDED = "AmazonSnsSubscriptionSucceeded"

# (bounceType, bounceSubType) -> (event_type, reject_reason); (bounceType, None)
# covers subtypes SES may add. SES only publishes Transient bounces once it
# has stopped retrying, so they are final ("bounced"), not "deferred"
# (DeliveryDelay is); the suppression-list subtypes mean SES never tried.
BOUNCE_TYPES = {
    ("Permanent", "General"): (EventType.BOUNCED, RejectReason.BOUNCED),
    ("Permanent", "NoEmail"): (EventType.BOUNCED, RejectReason.BOUNCED),
    # On SES's global or the account's suppression list: "rejected" with
    # reject_reason "bounced" is the documented "prior-bounces suppression list"
    ("Permanent", "Suppressed"): (EventType.REJECTED, RejectReason.BOUNCED),
    ("Permanent", "OnAccountSuppressionList"): (EventType.REJECTED, RejectReason.BOUNCED),
    ("Permanent", None): (EventType.BOUNCED, RejectReason.BOUNCED),
    ("Transient", "General"): (EventType.BOUNCED, RejectReason.TIMED_OUT),
    ("Transient", "MailboxFull"): (EventType.BOUNCED, RejectReason.TIMED_OUT),
    ("Transient", "MessageTooLarge"): (EventType.BOUNCED, RejectReason.OTHER),
    ("Transient", "ContentRejected"): (EventType.BOUNCED, RejectReason.SPAM),
    ("Transient", "AttachmentRejected"): (EventType.BOUNCED, RejectReason.BLOCKED),
    ("Transient", None): (EventType.BOUNCED, RejectReason.TIMED_OUT),
    # "didn't contain enough information ... to determine the reason": not
    # a reason to suppress the address
    ("Undetermined", None): (EventType.BOUNCED, RejectReason.OTHER),
}

FOLDED_LINE_RE = re.compile(r"\r?\n(?=[ \t])")


class AmazonSESTrackingWebhookView(AmazonSNSWebhookView):
    esp_name = "Amazon SES"

    def __init__(self, **kwargs: Any) -> None:
        self.message_tag_name = get_anymail_setting(
            "message_tag_name", esp_name=self.esp_setting_prefix, kwargs=kwargs, default=None
        )
        super().__init__(**kwargs)

    def parse_notification(self, message: dict) -> list[AnymailTrackingEvent]:
        ses_event = self.ses_event(message)
        if ses_event is None:
            return []
        mail = ses_event.get("mail")
        if not isinstance(mail, dict):
            raise AnymailWebhookPayloadError("Amazon SES event has no mail object.")
        ses_type = ses_event.get("eventType") or ses_event.get("notificationType")
        common = {
            "message_id": mail.get("messageId"),
            "tags": self.tags(mail),
            "metadata": self.metadata(mail),
            "esp_event": ses_event,
        }
        # Send, Reject and Rendering Failure carry no time of their own
        default_time = mail.get("timestamp") or message.get("Timestamp")
        sns_id = message["MessageId"]
        events = []
        for recipient, fields in self.recipient_events(ses_type, ses_event, mail):
            timestamp = parse_timestamp(fields.pop("timestamp", None) or default_time)
            events.append(
                AnymailTrackingEvent(
                    timestamp=timestamp,
                    event_id=f"{sns_id}:{recipient}" if recipient else sns_id,
                    recipient=recipient,
                    **fields,
                    **common,
                )
            )
        return events

    def ses_event(self, message: dict) -> dict | None:
        """The SES event in an SNS Notification, or None for SES's set-up test messages."""
        text = message["Message"]
        if text.strip() == EVENT_DESTINATION_TEST:
            logger.info(
                "Amazon SES validated SNS topic %s for event publishing", message["TopicArn"]
            )
            return None
        try:
            ses_event = json.loads(text)
        except ValueError:
            ses_event = None
        if not isinstance(ses_event, dict) or not (
            ses_event.get("eventType") or ses_event.get("notificationType")
        ):
            raise AnymailWebhookPayloadError(
                f"The Amazon SNS Notification from topic {message['TopicArn']} is not an "
                f"Amazon SES event (no eventType or notificationType): {text[:200]!r}"
            )
        if ses_event.get("notificationType") == SUBSCRIPTION_SUCCEEDED:
            logger.info("Amazon SES notifications subscribed: %s", ses_event.get("message"))
            return None
        if ses_event.get("notificationType") == "Received" or "receipt" in ses_event:
            raise AnymailWebhookPayloadError(
                "This is an Amazon SES inbound (email receiving) notification, posted to the "
                "tracking webhook. Subscribe the receipt rule's SNS topic to the inbound URL, "
                "anymail/amazon_ses/inbound/, instead."
            )
        return ses_event

    # One (recipient, fields) per recipient an SES event is about

    def recipient_events(self, ses_type: str, ses_event: dict, mail: dict):
        if ses_type == "Bounce":
            return self.bounce_events(ses_event["bounce"])
        if ses_type == "Complaint":
            return self.complaint_events(ses_event["complaint"])
        if ses_type == "Delivery":
            delivery = ses_event["delivery"]
            return [
                (
                    address(recipient),
                    {
                        "event_type": EventType.DELIVERED,
                        "timestamp": delivery.get("timestamp"),
                        "mta_response": delivery.get("smtpResponse"),
                    },
                )
                for recipient in delivery["recipients"]
            ]
        if ses_type == "DeliveryDelay":
            delay = ses_event["deliveryDelay"]
            return [
                (
                    address(recipient["emailAddress"]),
                    {
                        "event_type": EventType.DEFERRED,
                        "timestamp": delay.get("timestamp"),
                        "description": delay.get("delayType"),
                        "mta_response": recipient.get("diagnosticCode"),
                    },
                )
                for recipient in delay["delayedRecipients"]
            ]
        fields = self.message_event_fields(ses_type, ses_event)
        destination = mail.get("destination") or [None]
        return [(address(recipient), dict(fields)) for recipient in destination]

    def bounce_events(self, bounce: dict):
        bounce_type, subtype = bounce.get("bounceType"), bounce.get("bounceSubType")
        event_type, reject_reason = BOUNCE_TYPES.get(
            (bounce_type, subtype),
            BOUNCE_TYPES.get((bounce_type, None), (EventType.BOUNCED, RejectReason.OTHER)),
        )
        description = f"{bounce_type} bounce ({subtype})" if subtype else f"{bounce_type} bounce"
        return [
            (
                address(recipient["emailAddress"]),
                {
                    "event_type": event_type,
                    "reject_reason": reject_reason,
                    "timestamp": bounce.get("timestamp"),
                    "description": description,
                    "mta_response": recipient.get("diagnosticCode"),
                },
            )
            for recipient in bounce["bouncedRecipients"]
        ]

    def complaint_events(self, complaint: dict):
        feedback_type = complaint.get("complaintFeedbackType")
        if complaint.get("complaintSubType") == "OnAccountSuppressionList":
            # SES didn't send: the address is on the account's suppression
            # list after an earlier complaint
            event_type, reject_reason = EventType.REJECTED, RejectReason.SPAM
            description = "On the account-level suppression list (complaint)"
        elif feedback_type == "not-spam":
            # A feedback report saying the message is *not* spam (RFC 5965)
            event_type, reject_reason = EventType.UNKNOWN, None
            description = "not-spam feedback report"
        else:
            event_type, reject_reason = EventType.COMPLAINED, None
            description = feedback_type
        return [
            (
                address(recipient["emailAddress"]),
                {
                    "event_type": event_type,
                    "reject_reason": reject_reason,
                    "timestamp": complaint.get("timestamp"),
                    "description": description,
                },
            )
            for recipient in complaint["complainedRecipients"]
        ]

    def message_event_fields(self, ses_type: str, ses_event: dict) -> dict:
        """Fields of an event about the whole message (every recipient in mail.destination)."""
        if ses_type == "Open":
            opened = ses_event["open"]
            return {
                "event_type": EventType.OPENED,
                "timestamp": opened.get("timestamp"),
                "user_agent": opened.get("userAgent"),
            }
        if ses_type == "Click":
            click = ses_event["click"]
            return {
                "event_type": EventType.CLICKED,
                "timestamp": click.get("timestamp"),
                "user_agent": click.get("userAgent"),
                "click_url": click.get("link"),
            }
        if ses_type == "Reject":
            # The only documented reason is "Bad content" (a virus)
            return {
                "event_type": EventType.REJECTED,
                "reject_reason": RejectReason.BLOCKED,
                "description": ses_event.get("reject", {}).get("reason"),
            }
        if ses_type == "Rendering Failure":
            failure = ses_event.get("failure", {})
            return {
                "event_type": EventType.FAILED,
                "description": failure.get("errorMessage"),
            }
        if ses_type == "Subscription":
            return subscription_fields(ses_event["subscription"])
        if ses_type == "Send":
            return {"event_type": EventType.SENT}
        return {"event_type": EventType.UNKNOWN}  # an event type SES added later

    # Tags and metadata, from the headers the sending backend adds

    def tags(self, mail: dict) -> list[str]:
        tags = header_values(mail, "X-Tag")
        if not tags and self.message_tag_name:
            # Event publishing includes SES message tags, as {name: [value]}
            tags = list((mail.get("tags") or {}).get(self.message_tag_name) or [])
        return list(dict.fromkeys(tags))

    def metadata(self, mail: dict) -> dict:
        for value in header_values(mail, "X-Metadata"):
            try:
                metadata = json.loads(value)
            except ValueError:
                metadata = None
            if isinstance(metadata, dict):
                return metadata
            logger.warning("Ignoring Amazon SES X-Metadata header that isn't a JSON object")
        return {}


def subscription_fields(subscription: dict) -> dict:
    """A Subscription event: the recipient changed their list-management preferences."""
    new = subscription.get("newTopicPreferences") or {}
    old = subscription.get("oldTopicPreferences") or {}
    if new.get("unsubscribeAll"):
        event_type = EventType.UNSUBSCRIBED
    elif old.get("unsubscribeAll"):
        event_type = EventType.SUBSCRIBED
    else:
        # Opting in or out of single topics isn't (un)subscribing from all mail
        event_type = EventType.UNKNOWN
    topics = ", ".join(
        f"{topic.get('topicName')}: {topic.get('subscriptionStatus')}"
        for topic in new.get("topicSubscriptionStatus") or []
        if isinstance(topic, dict)
    )
    description = f"Contact list {subscription.get('contactList')} ({subscription.get('source')})"
    if topics:
        description += f"; topics {topics}"
    return {
        "event_type": event_type,
        "timestamp": subscription.get("timestamp"),
        "description": description,
    }


def header_values(mail: dict, name: str) -> list[str]:
    """Every value of header name in mail.headers, unfolded and RFC 2047-decoded."""
    values = []
    for header in mail.get("headers") or []:
        if str(header.get("name", "")).lower() != name.lower():
            continue
        value = FOLDED_LINE_RE.sub("", str(header.get("value", "")))
        if "=?" in value:
            try:
                value = str(make_header(decode_header(value)))
            except (LookupError, UnicodeDecodeError, ValueError):
                pass  # not valid encoded-words after all: keep it as it came
        values.append(value.strip())
    return values


def address(value: Any) -> str | None:
    """The addr-spec in a recipient, which SES may give with a display name."""
    if not value:
        return None
    return parseaddr(str(value))[1] or str(value)


def parse_timestamp(value: Any) -> datetime:
    """An aware datetime from SES's ISO 8601 timestamps ("...T00:41:02.669Z", "... +0000")."""
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is None:
        raise AnymailWebhookPayloadError(f"Amazon SES event has an invalid timestamp {value!r}.")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed
