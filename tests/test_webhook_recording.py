"""A webhook call is stored with its events in one transaction, and kept whatever fails."""

import json
from datetime import UTC, datetime

import pytest
from django.db import DataError, OperationalError

from sending.models import Message, Recipient, Suppression
from sending.signals import tracking
from tracking import services
from tracking.models import Event, WebhookCall, WebhookCallStatus
from tracking.services import webhook_call_reprocess

pytestmark = pytest.mark.django_db

URL = "/anymail/sandbox/tracking/"
MESSAGE_ID = "<m1@sandbox.mailhub>"


def event(event_id="evt_1", event_type="delivered", minutes=0, **extra):
    return {
        "id": event_id,
        "event": event_type,
        "timestamp": f"2026-11-20T12:{minutes:02d}:00+00:00",
        "message_id": MESSAGE_ID,
        "recipient": "r@example.com",
        **extra,
    }


def post(client, *events):
    return client.post(URL, json.dumps({"events": list(events)}), content_type="application/json")


@pytest.fixture
def recipient():
    message = Message.objects.create(esp="sandbox", backend="test", subject="Hi")
    return Recipient.objects.create(
        message=message, esp="sandbox", address="r@example.com", esp_message_id=MESSAGE_ID
    )


@pytest.fixture
def failing_recording(monkeypatch):
    """failing_recording(error): make recording events raise error, after its writes."""

    def install(error):
        original = services._advance

        def advance_then_fail(*args, **kwargs):
            original(*args, **kwargs)
            raise error

        monkeypatch.setattr(services, "_advance", advance_then_fail)

    return install


def test_call_and_events_are_stored_together_marked_processed(client, recipient):
    response = post(client, event("evt_1"), event("evt_2", "opened", minutes=5))
    assert response.status_code == 200
    assert response.json()["events"] == 2
    call = WebhookCall.objects.get()
    assert (call.status, call.event_count, call.attempts, call.error) == (
        WebhookCallStatus.PROCESSED,
        2,
        1,
        "",
    )
    assert call.processed_at is not None
    assert set(Event.objects.values_list("webhook_call", "recipient")) == {(call.pk, recipient.pk)}


def test_event_count_is_the_new_events_when_a_call_repeats_one(client, recipient):
    response = post(client, event("evt_1"), event("evt_1"), event("evt_2", "opened"))
    assert response.json()["events"] == 2
    assert WebhookCall.objects.get().event_count == 2
    assert Event.objects.count() == 2


def test_failure_while_recording_keeps_the_call_failed_and_nothing_else(
    client, recipient, failing_recording
):
    failing_recording(RuntimeError("recording bug"))
    with pytest.raises(RuntimeError, match="recording bug"):
        post(client, event("evt_1"))
    call = WebhookCall.objects.get()
    assert call.status == WebhookCallStatus.FAILED
    assert call.error == "RuntimeError: recording bug"
    assert call.attempts == 1
    assert json.loads(call.get_body())["events"][0]["id"] == "evt_1"
    assert not Event.objects.exists()
    recipient.refresh_from_db()
    assert recipient.status == ""


def test_call_kept_failed_is_reprocessed_once_recording_works(
    client, recipient, failing_recording, monkeypatch
):
    failing_recording(RuntimeError("recording bug"))
    with pytest.raises(RuntimeError):
        post(client, event("evt_1"))
    monkeypatch.undo()
    call = WebhookCall.objects.get()
    assert webhook_call_reprocess(call=call) == 1
    call.refresh_from_db()
    assert (call.status, call.event_count, call.attempts) == (WebhookCallStatus.PROCESSED, 1, 2)
    recipient.refresh_from_db()
    assert recipient.status == "delivered"


def test_database_error_while_recording_is_503_and_the_retry_completes_the_call(
    client, recipient, failing_recording, monkeypatch
):
    failing_recording(OperationalError("database is locked"))
    response = post(client, event("evt_1"))
    assert response.status_code == 503
    assert "retry" in response.json()["error"]
    call = WebhookCall.objects.get()
    assert call.status == WebhookCallStatus.FAILED
    assert "database is locked" in call.error
    assert not Event.objects.exists()

    monkeypatch.undo()
    assert post(client, event("evt_1")).status_code == 200
    call = WebhookCall.objects.get()
    assert (call.status, call.event_count, call.attempts) == (WebhookCallStatus.PROCESSED, 1, 2)
    assert Event.objects.get().webhook_call == call


def test_values_the_database_refuses_are_400_and_the_call_is_kept(
    client, recipient, failing_recording
):
    failing_recording(DataError("value too long for type character varying(20)"))
    response = post(client, event("evt_1"))
    assert response.status_code == 400
    assert "value too long" in response.json()["error"]
    call = WebhookCall.objects.get()
    assert call.status == WebhookCallStatus.FAILED
    assert not Event.objects.exists()


def test_call_that_cant_be_stored_at_all_is_503(client, recipient, failing_recording, monkeypatch):
    failing_recording(OperationalError("disk I/O error"))

    def refuse(**kwargs):
        raise OperationalError("disk I/O error")

    monkeypatch.setattr(services, "webhook_call_mark_failed", refuse)
    response = post(client, event("evt_1"))
    assert response.status_code == 503
    assert "could not be stored" in response.json()["error"]
    assert not WebhookCall.objects.exists()


def test_unparsable_call_is_stored_failed_in_its_own_write(client):
    response = client.post(URL, b"{not json", content_type="application/json")
    assert response.status_code == 400
    call = WebhookCall.objects.get()
    assert (call.status, call.attempts, call.event_count) == (WebhookCallStatus.FAILED, 1, 0)
    assert "not valid JSON" in call.error


def test_receiver_error_after_recording_leaves_the_call_processed(client, recipient):
    def receiver(sender, event, **kwargs):
        raise ValueError("receiver bug")

    tracking.connect(receiver, weak=False)
    try:
        with pytest.raises(ValueError, match="receiver bug"):
            post(client, event("evt_1"))
    finally:
        tracking.disconnect(receiver)
    call = WebhookCall.objects.get()
    assert (call.status, call.error) == (WebhookCallStatus.PROCESSED, "")
    assert Event.objects.count() == 1
    # The ESP's retry is a duplicate of a processed call
    assert "duplicate" in post(client, event("evt_1")).json()["detail"]


def test_signal_is_sent_after_the_event_is_committed_with_its_call(client, recipient):
    seen = []

    def receiver(sender, event, **kwargs):
        stored = Event.objects.select_related("webhook_call").get(event_id=event.event_id)
        seen.append((event.event_id, stored.webhook_call.status))

    tracking.connect(receiver, weak=False)
    try:
        post(client, event("evt_1"), event("evt_2", "opened", minutes=1))
    finally:
        tracking.disconnect(receiver)
    assert seen == [("evt_1", "processed"), ("evt_2", "processed")]


def test_recipient_state_and_suppressions_are_written_with_the_events(client, recipient):
    post(
        client,
        event("evt_1", "delivered", minutes=0),
        event("evt_2", "opened", minutes=1),
        event("evt_3", "opened", minutes=2),
        event("evt_4", "complained", minutes=3),
    )
    recipient.refresh_from_db()
    assert (recipient.status, recipient.open_count) == ("complained", 2)
    assert recipient.status_at == datetime(2026, 11, 20, 12, 3, tzinfo=UTC)
    assert recipient.delivered_at == datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    assert (recipient.first_opened_at, recipient.last_opened_at) == (
        datetime(2026, 11, 20, 12, 1, tzinfo=UTC),
        datetime(2026, 11, 20, 12, 2, tzinfo=UTC),
    )
    suppression = Suppression.objects.get()
    assert (suppression.address, suppression.reason, suppression.source) == (
        "r@example.com",
        "complained",
        "event",
    )
    assert "sandbox complained event" in suppression.note


def test_an_address_already_suppressed_keeps_its_suppression(client, recipient):
    Suppression.objects.create(address="r@example.com", reason="manual", note="by hand")
    post(client, event("evt_1", "complained"))
    suppression = Suppression.objects.get()
    assert (suppression.reason, suppression.note) == ("manual", "by hand")


def test_raw_events_that_arent_plain_json_are_stored_made_safe(recipient):
    from django.http import QueryDict

    from sending.signals import AnymailTrackingEvent

    raw = QueryDict("a=1&a=2&b=3")
    new = services.events_record(
        esp="sandbox",
        events=[
            AnymailTrackingEvent(
                event_type="delivered",
                timestamp=datetime(2026, 11, 20, 12, 0, tzinfo=UTC),
                event_id="evt_q",
                message_id=MESSAGE_ID,
                recipient="R@Example.com",
                esp_event=raw,
                metadata={"when": datetime(2026, 11, 20, tzinfo=UTC), "raw": b"bytes"},
            )
        ],
    )
    assert len(new) == 1
    stored = Event.objects.get()
    assert stored.esp_event == {"a": ["1", "2"], "b": "3"}
    assert stored.metadata == {"when": "2026-11-20T00:00:00+00:00", "raw": "bytes"}
    assert (stored.tags, stored.recipient_id, stored.recipient_address) == (
        [],
        recipient.pk,
        "r@example.com",
    )
