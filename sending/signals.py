"""Signals and the normalized event objects they carry.

One signal per direction of mail, each with one normalized event object:
``pre_send``/``post_send`` around every send, ``tracking`` once per stored
tracking event, ``inbound`` once per stored inbound message. Signals are
extension points for users; mailhub's own persistence never depends on them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import models
from django.dispatch import Signal

# sender: backend class; kwargs: message, esp_name
pre_send = Signal()
# sender: backend class; kwargs: message, status, esp_name
post_send = Signal()
# sender: webhook view class; kwargs: event, esp_name
tracking = Signal()
# sender: webhook view class; kwargs: event, esp_name
inbound = Signal()


class EventType(models.TextChoices):
    """The normalized event types (``AnymailTrackingEvent.event_type``)."""

    # Delivery (and non-delivery)
    QUEUED = "queued", "Queued"
    SENT = "sent", "Sent"
    REJECTED = "rejected", "Rejected"
    FAILED = "failed", "Failed"
    BOUNCED = "bounced", "Bounced"
    DEFERRED = "deferred", "Deferred"
    DELIVERED = "delivered", "Delivered"
    AUTORESPONDED = "autoresponded", "Autoresponded"
    # Engagement
    OPENED = "opened", "Opened"
    CLICKED = "clicked", "Clicked"
    COMPLAINED = "complained", "Complained"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
    SUBSCRIBED = "subscribed", "Subscribed"
    # Inbound
    INBOUND = "inbound", "Inbound"
    INBOUND_FAILED = "inbound_failed", "Inbound failed"
    # Other
    UNKNOWN = "unknown", "Unknown"


class RejectReason(models.TextChoices):
    """The normalized reasons for a bounce or rejection (``reject_reason``)."""

    INVALID = "invalid", "Invalid address"
    BOUNCED = "bounced", "Bounced"
    TIMED_OUT = "timed_out", "Timed out"
    BLOCKED = "blocked", "Blocked"
    SPAM = "spam", "Spam"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
    OTHER = "other", "Other"


class AnymailEvent:
    """Base for normalized webhook events."""

    def __init__(
        self,
        event_type: str,
        timestamp: datetime | None = None,
        event_id: str | None = None,
        esp_event: Any = None,
        **kwargs: Any,
    ) -> None:
        self.event_type = event_type
        self.timestamp = timestamp
        self.event_id = event_id
        self.esp_event = esp_event


class AnymailTrackingEvent(AnymailEvent):
    """A normalized ESP tracking event (the ``event`` of the tracking signal)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.click_url: str | None = kwargs.pop("click_url", None)
        self.description: str | None = kwargs.pop("description", None)
        self.message_id: str | None = kwargs.pop("message_id", None)
        self.metadata: dict = kwargs.pop("metadata", None) or {}
        self.mta_response: str | None = kwargs.pop("mta_response", None)
        self.recipient: str | None = kwargs.pop("recipient", None)
        self.reject_reason: str | None = kwargs.pop("reject_reason", None)
        self.tags: list = kwargs.pop("tags", None) or []
        self.user_agent: str | None = kwargs.pop("user_agent", None)

    def __repr__(self) -> str:
        return (
            f"AnymailTrackingEvent({self.event_type!r}, message_id={self.message_id!r}, "
            f"recipient={self.recipient!r}, timestamp={self.timestamp!r})"
        )


class AnymailInboundEvent(AnymailEvent):
    """A normalized inbound event (the ``event`` of the inbound signal)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.message = kwargs.pop("message", None)  # an AnymailInboundMessage
