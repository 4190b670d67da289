"""Tracking webhook for Postmark.

Postmark posts one event per call, as a JSON object whose ``RecordType`` says
what it is:

- ``Delivery``: ``MessageID``, ``Recipient``, ``DeliveredAt``, ``Details``
  (the receiving server's reply), ``Tag``, ``Metadata``.
- ``Bounce`` and ``SpamComplaint``: ``ID``, ``Type``/``TypeCode`` (see
  BOUNCE_TYPES), ``MessageID``, ``Email``, ``BouncedAt``, ``Description``,
  ``Details``, ``Tag``, ``Metadata``.
- ``Open``: ``MessageID``, ``Recipient``, ``ReceivedAt``, ``UserAgent``,
  ``FirstOpen``, ``Tag``, ``Metadata``.
- ``Click``: as Open, plus ``OriginalLink``.
- ``SubscriptionChange``: ``MessageID`` (null for a suppression you or
  Postmark made by hand), ``Recipient``, ``ChangedAt``, ``SuppressSending``,
  ``SuppressionReason`` (HardBounce, SpamComplaint, ManualSuppression),
  ``Origin``.

``MessageID`` is the id Postmark's send API returned (what
sending.backends.postmark records), shared by all of a message's recipients.
Only bounce records have an id of their own (``ID``); other events are
deduplicated by their content.

Postmark doesn't sign its webhooks: secure them with basic auth
(WEBHOOK_SECRET, as credentials in the webhook URL).

Reference: https://postmarkapp.com/developer/webhooks/webhooks-overview and the
pages for each webhook (delivery-webhook, bounce-webhook, spam-complaint-webhook,
open-tracking-webhook, click-webhook, subscription-change-webhook);
bounce types: https://postmarkapp.com/developer/api/bounce-api#bounce-types
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest

from sending.exceptions import AnymailWebhookPayloadError
from sending.signals import AnymailTrackingEvent, EventType, RejectReason

from .base import AnymailBaseWebhookView

# Postmark's bounce types ("Type"), with what each one means in Postmark's table.
BOUNCE_TYPES = {
    # "The server was unable to deliver your message (ex: unknown user, mailbox not found)."
    "HardBounce": (EventType.BOUNCED, RejectReason.BOUNCED),
    # "Message delayed": "The server could not temporarily deliver your message."
    "Transient": (EventType.DEFERRED, None),
    "Unsubscribe": (EventType.UNSUBSCRIBED, None),
    "Subscribe": (EventType.SUBSCRIBED, None),
    # "Automatic email responder (ex: 'Out of Office' or 'On Vacation')."
    "AutoResponder": (EventType.AUTORESPONDED, None),
    "AddressChange": (EventType.AUTORESPONDED, None),
    # "A temporary DNS error."
    "DnsError": (EventType.DEFERRED, None),
    # "The message was delivered, but was either blocked by the user, or
    # classified as spam, bulk mail, or had rejected content."
    "SpamNotification": (EventType.BOUNCED, RejectReason.SPAM),
    # A test of whether the mail server is an open relay: not about delivery.
    "OpenRelayTest": (EventType.UNKNOWN, None),
    # "Unable to classify the NDR."
    "Unknown": (EventType.UNKNOWN, None),
    # "Soft bounce/Undeliverable": Postmark has "ceased attempting to send
    # that message" after retrying, and doesn't deactivate the address.
    "SoftBounce": (EventType.BOUNCED, RejectReason.TIMED_OUT),
    "VirusNotification": (EventType.BOUNCED, RejectReason.OTHER),
    # "A challenge asking for verification you actually sent the email."
    "ChallengeVerification": (EventType.AUTORESPONDED, None),
    "BadEmailAddress": (EventType.REJECTED, RejectReason.INVALID),
    "SpamComplaint": (EventType.COMPLAINED, None),
    "ManuallyDeactivated": (EventType.REJECTED, RejectReason.BLOCKED),
    # "The subscriber has not clicked on the confirmation link."
    "Unconfirmed": (EventType.REJECTED, RejectReason.OTHER),
    # "ISP block: Blocked from this ISP due to content or blacklisting."
    "Blocked": (EventType.BOUNCED, RejectReason.BLOCKED),
    "SMTPApiError": (EventType.FAILED, None),
    "InboundError": (EventType.INBOUND_FAILED, None),
    # "Email rejected due DMARC Policy."
    "DMARCPolicy": (EventType.BOUNCED, RejectReason.BLOCKED),
    "TemplateRenderingFailed": (EventType.FAILED, None),
}

# Why Postmark added an address to a stream's suppression list. The hard
# bounce or complaint also arrives as its own Bounce/SpamComplaint event.
SUPPRESSION_REASONS = {
    "HardBounce": (EventType.BOUNCED, RejectReason.BOUNCED),
    "SpamComplaint": (EventType.COMPLAINED, None),
    "ManualSuppression": (EventType.UNSUBSCRIBED, None),
}

SIMPLE_RECORD_TYPES = {
    "Delivery": (EventType.DELIVERED, "DeliveredAt"),
    "Open": (EventType.OPENED, "ReceivedAt"),
    "Click": (EventType.CLICKED, "ReceivedAt"),
}


class PostmarkTrackingWebhookView(AnymailBaseWebhookView):
    esp_name = "Postmark"

    def parse_events(self, request: HttpRequest) -> list[AnymailTrackingEvent]:
        if not request.body:
            raise AnymailWebhookPayloadError("Empty Postmark webhook body: expected JSON.")
        self.require_content_type(request, "application/json")
        payload = self.parse_json_body(request)
        if isinstance(payload, dict) and "RecordType" in payload:
            return [self.parse_event(payload)]
        if isinstance(payload, dict) and ("FromFull" in payload or "MailboxHash" in payload):
            raise AnymailWebhookPayloadError(
                "This looks like a Postmark inbound message: set the server's inbound "
                "webhook to the Postmark inbound URL, not the tracking URL."
            )
        if isinstance(payload, list):
            raise AnymailWebhookPayloadError(
                "Postmark posts one event per call (a JSON object with a RecordType), "
                "not a JSON array: is this another ESP's batch (SendGrid's?) posted to the "
                "Postmark tracking URL?"
            )
        if isinstance(payload, dict) and "event-data" in payload:
            raise AnymailWebhookPayloadError(
                "This looks like a Mailgun webhook posted to the Postmark tracking URL."
            )
        raise AnymailWebhookPayloadError(
            'Postmark webhook payload must be a JSON object with a "RecordType" '
            "(is this another ESP's webhook posted to the Postmark tracking URL?)."
        )

    def parse_event(self, record: dict) -> AnymailTrackingEvent:
        record_type = record["RecordType"]
        reject_reason = None
        event_id = None
        description = None
        mta_response = None
        if record_type in SIMPLE_RECORD_TYPES:
            event_type, timestamp_field = SIMPLE_RECORD_TYPES[record_type]
            if record_type == "Delivery":
                mta_response = record.get("Details") or None
        elif record_type in ("Bounce", "SpamComplaint"):
            # A bounce type Postmark adds later: a bounce, but not one to suppress the address for.
            default = (
                (EventType.COMPLAINED, None)
                if record_type == "SpamComplaint"
                else (EventType.BOUNCED, RejectReason.OTHER)
            )
            event_type, reject_reason = BOUNCE_TYPES.get(record.get("Type"), default)
            timestamp_field = "BouncedAt"
            event_id = record.get("ID")
            description = record.get("Description") or None
            mta_response = record.get("Details") or None
        elif record_type == "SubscriptionChange":
            timestamp_field = "ChangedAt"
            if record.get("SuppressSending"):
                event_type, reject_reason = SUPPRESSION_REASONS.get(
                    record.get("SuppressionReason"), (EventType.UNSUBSCRIBED, None)
                )
            else:
                event_type = EventType.SUBSCRIBED  # reactivated
            origin, reason = record.get("Origin"), record.get("SuppressionReason")
            description = ", ".join(filter(None, [reason, origin and f"origin {origin}"])) or None
        else:
            event_type = EventType.UNKNOWN
            timestamp_field = next(
                (field for field in record if field.endswith("At") and record[field]), None
            )

        tag = record.get("Tag")
        metadata = record.get("Metadata")
        return AnymailTrackingEvent(
            event_type=event_type,
            timestamp=parse_timestamp(record.get(timestamp_field) if timestamp_field else None),
            event_id=str(event_id) if event_id is not None else None,
            # Postmark's delivery webhook docs spell it "MessageID", some clients "MessageId".
            message_id=record.get("MessageID") or record.get("MessageId") or None,
            recipient=record.get("Recipient") or record.get("Email") or None,
            reject_reason=reject_reason,
            description=description,
            mta_response=mta_response,
            tags=[tag] if tag else [],
            metadata=metadata if isinstance(metadata, dict) else {},
            click_url=record.get("OriginalLink") if event_type == EventType.CLICKED else None,
            user_agent=record.get("UserAgent") or None,
            esp_event=record,
        )


def parse_timestamp(value: Any) -> datetime | None:
    """An aware UTC datetime from Postmark's ISO 8601 ("2014-08-01T13:28:10.2735393-04:00")."""
    if not value:
        return None
    when = datetime.fromisoformat(str(value))
    if when.tzinfo is None:  # Postmark's timestamps carry an offset; assume UTC if not
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)
