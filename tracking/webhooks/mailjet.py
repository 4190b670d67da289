"""Tracking webhook for Mailjet (the Event API, "event tracking triggers").

Mailjet posts JSON: one event object per call, or, when "group events" is
selected for the trigger (Event API version 2), a JSON array of events of
mixed types. Each event has ``event`` (sent, open, click, bounce, blocked,
spam, unsub), ``time`` (Unix seconds), ``email``, ``MessageID`` (an
integer: the id the Send API returned for this recipient), ``Message_GUID``,
``mj_campaign_id``, ``mj_contact_id``, ``customcampaign``, ``CustomID`` and
``Payload``, plus per-type fields (``smtp_reply``; ``url``, ``ip``, ``geo``,
``agent``; ``hard_bounce``, ``blocked``, ``error_related_to``, ``error``,
``comment``; ``source``; ``mj_list_id``).

Mailjet doesn't sign its calls: put WEBHOOK_SECRET's credentials in the
trigger URL (``https://user:pass@host/anymail/mailjet/tracking/``). Events
carry no event id either, so duplicates are recognised by their content.

Reference: https://dev.mailjet.com/email/guides/webhooks/ (and the older
https://github.com/mailjet/api-documentation/blob/master/guides/_event-api.md)
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest

from sending.exceptions import AnymailWebhookPayloadError
from sending.signals import AnymailTrackingEvent, EventType, RejectReason

from .base import AnymailBaseWebhookView

EVENT_TYPES = {
    # "sent" is Mailjet's delivery report: the receiving MTA accepted the message.
    "sent": EventType.DELIVERED,
    "open": EventType.OPENED,
    "click": EventType.CLICKED,
    "bounce": EventType.BOUNCED,  # a soft bounce (hard_bounce false) is "deferred"
    "blocked": EventType.REJECTED,  # Mailjet refused to send it
    "spam": EventType.COMPLAINED,
    "unsub": EventType.UNSUBSCRIBED,
}

# Mailjet's error table: (error_related_to, error) -> what it means.
REJECT_REASONS = {
    "user unknown": RejectReason.BOUNCED,
    "mailbox inactive": RejectReason.BOUNCED,
    "quota exceeded": RejectReason.BOUNCED,
    "blacklisted": RejectReason.BLOCKED,  # the account blocked this recipient
    "spam reporter": RejectReason.SPAM,  # the recipient complained before
    "invalid domain": RejectReason.BOUNCED,
    "no mail host": RejectReason.BOUNCED,
    "relay/access denied": RejectReason.BLOCKED,
    "greylisted": RejectReason.OTHER,
    "sender blocked": RejectReason.BLOCKED,
    "content blocked": RejectReason.SPAM,
    "policy issue": RejectReason.BLOCKED,
    "system issue": RejectReason.OTHER,
    "protocol issue": RejectReason.OTHER,
    "connection issue": RejectReason.OTHER,
    # "an address that recently (or repeatedly) bounced": Mailjet didn't try.
    "preblocked": RejectReason.BOUNCED,
    "duplicate in campaign": RejectReason.OTHER,
}
# For errors not in the table, by what Mailjet says the error is related to.
RELATED_TO_REASONS = {
    "recipient": RejectReason.BOUNCED,
    "domain": RejectReason.BOUNCED,
    "spam": RejectReason.SPAM,
    "content": RejectReason.OTHER,
    "system": RejectReason.OTHER,
    "mailjet": RejectReason.BLOCKED,
}

# Fields of a Mailjet Parse API (inbound) post, which has no "event".
INBOUND_FIELDS = frozenset({"Sender", "Recipient", "Parts", "Headers"})


class MailjetTrackingWebhookView(AnymailBaseWebhookView):
    esp_name = "Mailjet"

    def parse_events(self, request: HttpRequest) -> list[AnymailTrackingEvent]:
        if not request.body:
            # (checked first: an empty request often has no content type either)
            raise AnymailWebhookPayloadError("Empty Mailjet webhook body: expected JSON.")
        self.require_content_type(request, "application/json")
        payload = self.parse_json_body(request)
        # One event per call by default; a list when "group events" is on.
        esp_events = payload if isinstance(payload, list) else [payload]
        if not esp_events:
            raise AnymailWebhookPayloadError("Mailjet webhook payload is an empty list of events.")
        return [self.parse_event(esp_event) for esp_event in esp_events]

    def parse_event(self, esp_event: Any) -> AnymailTrackingEvent:
        self.check_is_event(esp_event)
        mailjet_type = esp_event["event"]
        event_type = EVENT_TYPES.get(mailjet_type, EventType.UNKNOWN)
        reject_reason = None
        description = None
        if mailjet_type in ("bounce", "blocked"):
            error = esp_event.get("error") or ""
            related_to = esp_event.get("error_related_to") or ""
            description = ": ".join(part for part in (related_to, error) if part) or None
            if mailjet_type == "bounce" and not esp_event.get("hard_bounce", True):
                # A temporary failure: Mailjet tries again.
                event_type = EventType.DEFERRED
            elif mailjet_type == "blocked" and related_to.lower() == "content":
                # A template error ("error in template language"): never sent.
                event_type = EventType.FAILED
                reject_reason = RejectReason.OTHER
            else:
                reject_reason = REJECT_REASONS.get(
                    error.lower(), RELATED_TO_REASONS.get(related_to.lower(), RejectReason.OTHER)
                )
        elif mailjet_type == "spam" and esp_event.get("source"):
            description = f"reported by feedback loop {esp_event['source']}"

        # MessageID is an integer; the send backend recorded it as a string.
        # Grouped samples in Mailjet's docs carry only the (deprecated)
        # string mj_message_id, so fall back to it.
        message_id = esp_event.get("MessageID") or esp_event.get("mj_message_id")
        campaign = esp_event.get("customcampaign")
        return AnymailTrackingEvent(
            event_type=event_type,
            timestamp=datetime.fromtimestamp(int(esp_event["time"]), tz=UTC),
            event_id=None,  # Mailjet events have no id: dedupe by content
            message_id=str(message_id) if message_id else None,
            recipient=esp_event.get("email"),
            reject_reason=reject_reason,
            description=description,
            # "comment" is Mailjet's detail on a bounce or block, often the MTA's words.
            mta_response=esp_event.get("smtp_reply") or esp_event.get("comment") or None,
            tags=[campaign] if campaign else [],
            metadata=self.parse_metadata(esp_event.get("Payload")),
            click_url=esp_event.get("url") or None,
            user_agent=esp_event.get("agent") or None,
            esp_event=esp_event,
        )

    def check_is_event(self, esp_event: Any) -> None:
        """Refuse anything that isn't a Mailjet event object, saying what it looks like."""
        if not isinstance(esp_event, dict):
            raise AnymailWebhookPayloadError(
                f"Mailjet webhook events must be JSON objects, not {type(esp_event).__name__}."
            )
        if "event" in esp_event and "time" in esp_event:
            return
        if INBOUND_FIELDS <= esp_event.keys():
            raise AnymailWebhookPayloadError(
                "This is a Mailjet Parse API (inbound) payload, posted to the tracking webhook: "
                "point the parseroute Url at /anymail/mailjet/inbound/ instead."
            )
        if "events" in esp_event or "event-data" in esp_event or "signature" in esp_event:
            raise AnymailWebhookPayloadError(
                "This doesn't look like a Mailjet event (it has no 'event' and 'time'): "
                "is it another ESP's webhook payload posted to the Mailjet tracking URL?"
            )
        raise AnymailWebhookPayloadError(
            "Mailjet webhook event has no 'event' and 'time' fields; "
            f"its fields are: {', '.join(sorted(map(str, esp_event))) or 'none'}."
        )

    @staticmethod
    def parse_metadata(payload: Any) -> dict:
        """The metadata the send backend put in EventPayload (JSON), or {}.

        Payload is whatever string the sender set; one that isn't a JSON
        object wasn't set by mailhub and stays only in esp_event.
        """
        if not payload or not isinstance(payload, str):
            return payload if isinstance(payload, dict) else {}
        try:
            metadata = json.loads(payload)
        except ValueError:
            return {}
        return metadata if isinstance(metadata, dict) else {}
