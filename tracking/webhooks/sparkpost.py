"""Tracking webhook for SparkPost (event webhooks).

SparkPost posts batches of events as a JSON array. Each element wraps one
event in its class: ``{"msys": {"<class>": {"type": ..., ...}}}``, where the
class is ``message_event`` (injection, delivery, bounce, delay,
policy_rejection, out_of_band, spam_complaint, sms_status), ``track_event``
(open, initial_open, amp_open, amp_initial_open, click, amp_click),
``gen_event`` (generation_failure, generation_rejection),
``unsubscribe_event`` (list_unsubscribe, link_unsubscribe), ``relay_event``
(relay_*), ``ab_test_event`` or ``ingest_event``. Numbers are strings:
``timestamp`` is Unix seconds, ``bounce_class`` a code from SparkPost's
bounce classification table.

The message id is the ``transmission_id`` (what the send API returned);
``campaign_id`` is the one tag the send backend can set, and ``rcpt_meta``
the metadata. Each event has a unique ``event_id``.

SparkPost doesn't sign webhooks. Choose "Basic Auth" when creating the
webhook and enter WEBHOOK_SECRET's two halves (SparkPost's OAuth 2.0 option
isn't supported). Creating or validating a webhook posts a test batch,
``[{"msys": {}}]``, which is answered 200 with no events.

References: https://developers.sparkpost.com/api/webhooks/,
https://support.sparkpost.com/docs/deliverability/bounce-classification-codes
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest

from sending.exceptions import AnymailWebhookPayloadError
from sending.signals import AnymailTrackingEvent, EventType, RejectReason

from .base import AnymailBaseWebhookView, describe_wrong_payload

logger = logging.getLogger(__name__)

EVENT_TYPES = {
    # message_event
    "injection": EventType.QUEUED,
    "delivery": EventType.DELIVERED,
    "bounce": EventType.BOUNCED,  # refined by bounce_class, below
    "out_of_band": EventType.BOUNCED,  # a bounce after the receiving MTA accepted it
    "delay": EventType.DEFERRED,
    "policy_rejection": EventType.REJECTED,
    "spam_complaint": EventType.COMPLAINED,
    # gen_event
    "generation_failure": EventType.FAILED,  # a template or substitution error
    "generation_rejection": EventType.REJECTED,
    # track_event: "initial_open" is the pixel at the top of the message,
    # "open" the one at the bottom; a client may load either or both.
    "open": EventType.OPENED,
    "initial_open": EventType.OPENED,
    "amp_open": EventType.OPENED,
    "amp_initial_open": EventType.OPENED,
    "click": EventType.CLICKED,
    "amp_click": EventType.CLICKED,
    # unsubscribe_event
    "list_unsubscribe": EventType.UNSUBSCRIBED,
    "link_unsubscribe": EventType.UNSUBSCRIBED,
    # Everything else (sms_status, ab_test_completed, ab_test_cancelled, the
    # ingest API's success and error) is recorded as "unknown".
}

# SparkPost's bounce classification codes: code -> (name, what it means for
# the event). Hard (10, 30, 90) and admin (25, 80) classes are final; soft,
# block and undetermined ones are "usually temporary", so they don't say the
# address is bad (and mailhub doesn't suppress it).
BOUNCE_CLASSES: dict[str, tuple[str, str, str | None]] = {
    "1": ("Undetermined", EventType.BOUNCED, RejectReason.OTHER),
    "10": ("Invalid Recipient", EventType.BOUNCED, RejectReason.INVALID),
    "20": ("Soft Bounce", EventType.BOUNCED, RejectReason.OTHER),
    "21": ("DNS Failure", EventType.BOUNCED, RejectReason.OTHER),
    "22": ("Mailbox Full", EventType.BOUNCED, RejectReason.OTHER),
    "23": ("Too Large", EventType.BOUNCED, RejectReason.OTHER),
    "24": ("Timeout", EventType.BOUNCED, RejectReason.TIMED_OUT),
    "25": ("Admin Failure", EventType.BOUNCED, RejectReason.BLOCKED),  # SparkPost's policy
    "26": ("Smart Send Suppression", EventType.BOUNCED, RejectReason.BLOCKED),
    "30": ("Generic Bounce: No RCPT", EventType.BOUNCED, RejectReason.BOUNCED),
    "40": ("Generic Bounce", EventType.BOUNCED, RejectReason.OTHER),
    "50": ("Mail Block", EventType.BOUNCED, RejectReason.BLOCKED),
    "51": ("Spam Block", EventType.BOUNCED, RejectReason.SPAM),
    "52": ("Spam Content", EventType.BOUNCED, RejectReason.SPAM),
    "53": ("Prohibited Attachment", EventType.BOUNCED, RejectReason.BLOCKED),
    "54": ("Relaying Denied", EventType.BOUNCED, RejectReason.BLOCKED),
    # Replies SparkPost classifies as bounces but that are something else:
    "60": ("Auto-Reply", EventType.AUTORESPONDED, None),
    "70": ("Transient Failure", EventType.DEFERRED, None),
    "80": ("Subscribe", EventType.SUBSCRIBED, None),
    "90": ("Unsubscribe", EventType.UNSUBSCRIBED, RejectReason.UNSUBSCRIBED),
    "100": ("Challenge-Response", EventType.AUTORESPONDED, None),
}

# Event classes that aren't about mail sent through the transmissions API:
# relay_event is the status of inbound relaying, which mailhub's inbound
# webhook doesn't track. They're skipped (the raw call is kept).
SKIPPED_CLASSES = frozenset({"relay_event"})


class SparkPostTrackingWebhookView(AnymailBaseWebhookView):
    esp_name = "SparkPost"

    def parse_events(self, request: HttpRequest) -> list[AnymailTrackingEvent]:
        if not request.body:
            raise AnymailWebhookPayloadError("Empty SparkPost webhook body: expected a JSON array.")
        self.require_content_type(request, "application/json")
        payload = self.parse_json_body(request)
        if not isinstance(payload, list):
            raise AnymailWebhookPayloadError(self.describe_wrong_payload(payload))
        events = []
        for item in payload:
            esp_event = self.unwrap(item)
            if esp_event is not None:
                events.append(self.parse_event(esp_event, item))
        return events

    def unwrap(self, item: Any) -> dict | None:
        """The event inside one batch element, or None for the test ping and skipped classes."""
        if not isinstance(item, dict) or not isinstance(item.get("msys"), dict):
            raise AnymailWebhookPayloadError(
                'SparkPost webhook batch elements must be {"msys": {...}} objects, '
                f"not {str(item)[:100]!r}."
            )
        msys = item["msys"]
        if not msys:
            return None  # the batch SparkPost posts to test a new webhook
        if "relay_message" in msys:
            raise AnymailWebhookPayloadError(
                "This is a SparkPost relay webhook (inbound mail) payload, posted to the "
                "tracking webhook: point the relay webhook at /anymail/sparkpost/inbound/."
            )
        event_class, esp_event = next(iter(msys.items()))
        if not isinstance(esp_event, dict):
            raise AnymailWebhookPayloadError(
                f"SparkPost {event_class} must be a JSON object, not {type(esp_event).__name__}."
            )
        if event_class in SKIPPED_CLASSES:
            logger.debug("Skipping SparkPost %s %r", event_class, esp_event.get("type"))
            return None
        return esp_event

    def parse_event(self, esp_event: dict, wrapped: dict) -> AnymailTrackingEvent:
        sparkpost_type = esp_event.get("type")
        event_type = EVENT_TYPES.get(sparkpost_type, EventType.UNKNOWN)
        reject_reason = None
        description = esp_event.get("reason") or None
        bounce_class = str(esp_event.get("bounce_class") or "")
        classified = BOUNCE_CLASSES.get(bounce_class)

        if sparkpost_type in ("bounce", "out_of_band"):
            if classified:
                name, event_type, reject_reason = classified
                description = self.describe_bounce_class(bounce_class, name, description)
            else:
                reject_reason = RejectReason.OTHER
        elif event_type == EventType.REJECTED:
            # SparkPost refused to send it: its policy (class 25), a
            # suppression list entry or a sending limit.
            reject_reason = classified[2] if classified and classified[2] else RejectReason.BLOCKED
        elif sparkpost_type == "spam_complaint":
            description = esp_event.get("fbtype") or description  # "abuse", ...

        campaign = esp_event.get("campaign_id")
        return AnymailTrackingEvent(
            event_type=event_type,
            timestamp=parse_timestamp(esp_event.get("timestamp")),
            event_id=esp_event.get("event_id"),
            message_id=esp_event.get("transmission_id"),
            recipient=esp_event.get("rcpt_to") or esp_event.get("raw_rcpt_to"),
            reject_reason=reject_reason,
            description=description,
            # raw_reason is the MTA's own words; "reason" has IP addresses redacted.
            mta_response=esp_event.get("raw_reason") or esp_event.get("reason") or None,
            tags=[campaign] if campaign else [],
            metadata=self.parse_metadata(esp_event),
            click_url=esp_event.get("target_link_url") if event_type == EventType.CLICKED else None,
            user_agent=esp_event.get("user_agent") or None,
            esp_event=wrapped,  # the documented esp_event: {"msys": {"<class>": {...}}}
        )

    @staticmethod
    def describe_bounce_class(code: str, name: str, reason: str | None) -> str:
        description = f"Bounce class {code} ({name})"
        return f"{description}: {reason}" if reason else description

    @staticmethod
    def parse_metadata(esp_event: dict) -> dict:
        # rcpt_meta holds the transmission's metadata merged with the
        # recipient's own (a batch send's merge_metadata).
        metadata = {}
        for field in ("metadata", "rcpt_meta"):
            value = esp_event.get(field)
            if isinstance(value, dict):
                metadata.update(value)
        return metadata

    def describe_wrong_payload(self, payload: Any) -> str:
        expected = 'SparkPost webhooks post a JSON array of {"msys": {...}} events'
        if isinstance(payload, dict) and "msys" in payload:
            return f"{expected}; this is a single event, not a batch."
        return describe_wrong_payload(payload, expected, esp_name=self.esp_name)


def parse_timestamp(value: Any) -> datetime | None:
    """SparkPost's webhook timestamp: Unix seconds as a string (or ISO 8601, as its Events API)."""
    if value in (None, ""):
        return None
    try:
        return datetime.fromtimestamp(float(value), tz=UTC)
    except (TypeError, ValueError):
        pass
    when = datetime.fromisoformat(str(value))  # ValueError -> 400
    return when if when.tzinfo else when.replace(tzinfo=UTC)
