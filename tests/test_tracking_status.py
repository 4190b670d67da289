"""The precedence rule that advances a recipient's delivery state."""

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sending.models import Recipient
from tracking.status import apply_events

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@dataclass
class E:
    event_type: str
    minutes: int
    reject_reason: str | None = None

    @property
    def timestamp(self):
        return T0 + timedelta(minutes=self.minutes)


def state(*events):
    recipient = Recipient(address="r@example.com", esp="x")
    apply_events(recipient, events)
    return recipient


def test_late_deferred_never_overwrites_delivered():
    recipient = state(E("delivered", 5), E("deferred", 10))
    assert recipient.status == "delivered"


def test_bounce_after_deferrals_wins():
    recipient = state(E("deferred", 0), E("deferred", 30), E("bounced", 60, "timed_out"))
    assert (recipient.status, recipient.reject_reason) == ("bounced", "timed_out")
    assert recipient.bounced_at == T0 + timedelta(minutes=60)


def test_engagement_outranks_delivery_and_counts():
    recipient = state(E("delivered", 0), E("opened", 5), E("opened", 50), E("clicked", 7))
    assert recipient.status == "clicked"
    assert (recipient.open_count, recipient.click_count) == (2, 1)
    assert recipient.first_opened_at == T0 + timedelta(minutes=5)
    assert recipient.last_opened_at == T0 + timedelta(minutes=50)


def test_equal_rank_takes_the_later_event():
    recipient = state(E("rejected", 10, "blocked"), E("bounced", 5, "bounced"))
    assert (recipient.status, recipient.reject_reason) == ("rejected", "blocked")


def test_events_outside_the_order_do_not_change_status():
    recipient = state(E("delivered", 0), E("autoresponded", 5), E("unknown", 6))
    assert recipient.status == "delivered"


def test_any_order_gives_the_same_state():
    events = [
        E("queued", 0),
        E("deferred", 1),
        E("delivered", 2),
        E("opened", 3),
        E("clicked", 4),
        E("opened", 9),
    ]
    fields = (
        "status",
        "status_at",
        "delivered_at",
        "open_count",
        "click_count",
        "first_opened_at",
        "last_opened_at",
    )
    results = {
        tuple(getattr(state(*order), f) for f in fields) for order in itertools.permutations(events)
    }
    assert len(results) == 1


def test_apply_reports_the_fields_that_changed():
    recipient = state(E("delivered", 5))
    assert apply_events(recipient, [E("deferred", 1)]) == ()
    assert set(apply_events(recipient, [E("opened", 6)])) == {
        "status",
        "status_at",
        "open_count",
        "first_opened_at",
        "last_opened_at",
    }
