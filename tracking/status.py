"""How tracking events advance a recipient's delivery state: the one precedence rule.

A recipient's ``status`` moves to an event's type only if that type ranks
higher than the current one, or ranks the same and happened later. So a
late ``deferred`` never overwrites ``delivered``, a duplicate changes
nothing, and applying a set of events in any order ends in the same state.
Counters and first/last timestamps are order-independent too (min/max).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from sending.signals import EventType

# Higher wins. Failures rank above "delivered" (a bounce can follow a
# delivery report for some ESPs) and below engagement, which proves delivery.
# Types missing here (autoresponded, subscribed, unknown, inbound) are
# recorded as events but don't change the status.
PRECEDENCE: dict[str, int] = {
    EventType.QUEUED: 10,
    EventType.SENT: 20,
    EventType.DEFERRED: 30,
    EventType.DELIVERED: 40,
    EventType.BOUNCED: 45,
    EventType.REJECTED: 45,
    EventType.FAILED: 45,
    EventType.OPENED: 50,
    EventType.CLICKED: 60,
    EventType.UNSUBSCRIBED: 70,
    EventType.COMPLAINED: 80,
}

STATE_FIELDS = (
    "status",
    "status_at",
    "delivered_at",
    "bounced_at",
    "first_opened_at",
    "last_opened_at",
    "first_clicked_at",
    "last_clicked_at",
    "open_count",
    "click_count",
    "reject_reason",
)


class EventLike(Protocol):
    event_type: str
    timestamp: datetime | None
    reject_reason: str | None


def _earliest(current: datetime | None, new: datetime | None) -> datetime | None:
    if current is None:
        return new
    if new is None:
        return current
    return min(current, new)


def _latest(current: datetime | None, new: datetime | None) -> datetime | None:
    if current is None:
        return new
    if new is None:
        return current
    return max(current, new)


def _outranks(event: EventLike, status: str, status_at: datetime | None) -> bool:
    new_rank = PRECEDENCE.get(event.event_type)
    if new_rank is None:
        return False
    current_rank = PRECEDENCE.get(status, 0)
    if new_rank != current_rank:
        return new_rank > current_rank
    if event.timestamp is None or status_at is None:
        return status_at is None and event.timestamp is not None
    return event.timestamp > status_at


def apply_events(recipient: object, events: Iterable[EventLike]) -> tuple[str, ...]:
    """Advance recipient (a Recipient, in memory) by events; return the fields that changed.

    Each event must be new (deduplicated before this is called): counters
    count every event they're given.
    """
    changed: dict[str, None] = {}  # ordered set

    def assign(field: str, value: object) -> None:
        if getattr(recipient, field) != value:
            setattr(recipient, field, value)
            changed[field] = None

    for event in events:
        event_type = event.event_type
        when = event.timestamp
        if _outranks(event, recipient.status, recipient.status_at):
            assign("status", event_type)
            assign("status_at", when)
            if event_type in (EventType.BOUNCED, EventType.REJECTED, EventType.FAILED):
                assign("reject_reason", event.reject_reason or "")
        if event_type == EventType.DELIVERED:
            assign("delivered_at", _earliest(recipient.delivered_at, when))
        elif event_type == EventType.BOUNCED:
            assign("bounced_at", _earliest(recipient.bounced_at, when))
        elif event_type == EventType.OPENED:
            assign("open_count", recipient.open_count + 1)
            assign("first_opened_at", _earliest(recipient.first_opened_at, when))
            assign("last_opened_at", _latest(recipient.last_opened_at, when))
        elif event_type == EventType.CLICKED:
            assign("click_count", recipient.click_count + 1)
            assign("first_clicked_at", _earliest(recipient.first_clicked_at, when))
            assign("last_clicked_at", _latest(recipient.last_clicked_at, when))
    return tuple(changed)
