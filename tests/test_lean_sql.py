"""sending.lean_sql's row helpers store and read values exactly as the ORM does."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from sending import lean_sql
from sending.models import Message, Recipient
from tracking.models import Event

pytestmark = pytest.mark.django_db

FIELDS = ("esp", "event_type", "timestamp", "dedupe_key", "tags", "esp_event", "created_at")
WHEN = datetime(2026, 11, 20, 12, 30, 15, 250000, tzinfo=UTC)


def row(key, **values):
    defaults = {
        "esp": "sandbox",
        "event_type": "delivered",
        "timestamp": WHEN,
        "dedupe_key": key,
        "tags": ["a"],
        "esp_event": {"id": key},
        "created_at": WHEN,
    }
    return tuple({**defaults, **values}[name] for name in FIELDS)


def insert(rows, **kwargs):
    # Event has more columns: those left out get no database default, so add them.
    extra = ("event_id", "message_id", "recipient_address", "reject_reason", "description")
    extra += ("mta_response", "user_agent", "click_url", "metadata")
    rows = [(*values, "", "", "", "", "", "", "", "", {}) for values in rows]
    return lean_sql.insert_values(Event, FIELDS + extra, rows, **kwargs)


@pytest.fixture
def recipient():
    message = Message.objects.create(esp="sandbox", backend="test")
    return Recipient.objects.create(message=message, esp="sandbox", address="r@example.com")


def test_insert_values_stores_what_the_orm_reads_back():
    offset = timezone(timedelta(hours=-5))
    insert([row("k1", timestamp=WHEN.astimezone(offset), esp_event=None)])
    event = Event.objects.get()
    assert event.timestamp == WHEN
    assert event.created_at == WHEN
    assert event.tags == ["a"]
    assert event.esp_event is None  # SQL NULL, not JSON null
    assert Event.objects.filter(esp_event__isnull=True).exists()


def test_insert_values_takes_json_already_serialized():
    insert([row("k1", esp_event=lean_sql.JSONText('{"b": [1, 2]}'))])
    assert Event.objects.get().esp_event == {"b": [1, 2]}


def test_insert_values_returns_only_the_rows_that_didnt_conflict():
    insert([row("k1")])
    returned = insert(
        [row("k1"), row("k2"), row("k3")], ignore_conflicts=True, returning="dedupe_key"
    )
    assert sorted(returned) == ["k2", "k3"]
    assert Event.objects.count() == 3


def test_insert_values_splits_long_lists_into_several_statements(django_assert_num_queries):
    rows = [row(f"k{i}") for i in range(lean_sql.MAX_ROWS_PER_INSERT + 2)]
    with django_assert_num_queries(2):
        returned = insert(rows, ignore_conflicts=True, returning="dedupe_key")
    assert len(returned) == len(rows)
    assert Event.objects.count() == len(rows)


def test_insert_values_refuses_rows_of_the_wrong_length():
    with pytest.raises(ValueError, match="Expected"):
        lean_sql.insert_values(Event, FIELDS, [("sandbox", "delivered")])


def test_update_values_writes_each_row(recipient, django_assert_num_queries):
    other = Recipient.objects.create(
        message=recipient.message, esp="sandbox", address="s@example.com"
    )
    with django_assert_num_queries(1):
        lean_sql.update_values(
            Recipient,
            ("status", "status_at", "open_count"),
            [("opened", WHEN, 2, recipient.pk), ("delivered", None, 0, other.pk)],
        )
    recipient.refresh_from_db()
    other.refresh_from_db()
    assert (recipient.status, recipient.status_at, recipient.open_count) == ("opened", WHEN, 2)
    assert (other.status, other.status_at) == ("delivered", None)


def test_update_many_matches_on_several_columns_and_takes_all_null_columns(recipient):
    message = recipient.message
    others = [
        Recipient.objects.create(message=message, esp="sandbox", address=f"o{n}@example.com")
        for n in range(3)
    ]
    second = Message.objects.create(esp="sandbox", backend="test", merge_data={"a": {}})
    lean_sql.update_many(
        Message,
        ("status", "sent_at", "merge_data"),
        ("id",),
        [("sent", None, None, message.pk), ("failed", None, None, second.pk)],
    )
    lean_sql.update_many(
        Recipient,
        ("send_status", "esp_message_id", "delivered_at"),
        ("message", "address"),
        [
            ("sent", "id-1", None, message.pk, "o0@example.com"),
            ("rejected", "", None, message.pk, "o2@example.com"),
        ],
    )
    message.refresh_from_db()
    second.refresh_from_db()
    assert (message.status, message.sent_at, message.merge_data) == ("sent", None, None)
    assert (second.status, second.merge_data) == ("failed", None)
    rows = {r.address: (r.send_status, r.esp_message_id) for r in Recipient.objects.all()}
    assert rows["o0@example.com"] == ("sent", "id-1")
    assert rows["o2@example.com"] == ("rejected", "")
    assert rows["o1@example.com"] == rows["r@example.com"] == ("pending", "")
    assert len(others) == 3


def test_select_values_converts_as_the_orm_does(recipient):
    Recipient.objects.filter(pk=recipient.pk).update(status_at=WHEN)
    rows = lean_sql.select_values(
        Recipient,
        ("id", "address", "status_at", "delivered_at"),
        where={"esp": "sandbox"},
        where_in=[("address", ["r@example.com", "nobody@example.com"])],
        for_update=True,
    )
    assert rows == [(recipient.pk, "r@example.com", WHEN, None)]
    assert rows[0][2].tzinfo is not None
