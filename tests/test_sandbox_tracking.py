"""The sandbox ESP's tracking webhook, and the shared contract every ESP's webhook runs."""

import json

import pytest

from sending.backends.sandbox import EmailBackend
from sending.message import AnymailMessage
from sending.models import Recipient, Suppression
from sending.signals import tracking
from tests.webhook_contract import EventSpec, TrackingWebhookContract
from tracking.models import Event, WebhookCall

pytestmark = pytest.mark.django_db


class TestSandboxWebhookContract(TrackingWebhookContract):
    esp = "sandbox"
    message_id = "<18f2a.0123456789abcdef@sandbox.mailhub>"

    def event_body(self, events: list[EventSpec]):
        body = {
            "events": [
                {
                    "id": spec.event_id,
                    "event": spec.event_type,
                    "timestamp": spec.timestamp.isoformat(),
                    "message_id": spec.message_id,
                    "recipient": spec.recipient,
                    "tags": [],
                    "metadata": {},
                }
                for spec in events
            ]
        }
        return json.dumps(body).encode(), "application/json"


def send(*to):
    message = AnymailMessage("Hi", "Body", "from@example.com", list(to), tags=["demo"])
    EmailBackend().send_messages([message])
    return message


def test_sandbox_send_produces_linked_events():
    message = send("plain@example.com")
    recipient = Recipient.objects.get(address="plain@example.com")
    assert recipient.status in ("delivered", "opened", "clicked")
    assert recipient.delivered_at is not None
    events = Event.objects.filter(recipient=recipient)
    assert events.exists()
    assert {e.message_id for e in events} == {message.anymail_status.message_id}
    assert all(e.tags == ["demo"] for e in events)
    assert WebhookCall.objects.get().esp == "sandbox"


def test_sandbox_bounce_suppresses_the_address():
    send("gone+bounce@example.com")
    recipient = Recipient.objects.get()
    assert (recipient.status, recipient.reject_reason) == ("bounced", "bounced")
    suppression = Suppression.objects.get()
    assert (suppression.address, suppression.reason, suppression.source) == (
        "gone+bounce@example.com",
        "bounced",
        "event",
    )


def test_sandbox_complaint_suppresses_and_counts_the_open():
    send("angry+complain@example.com")
    recipient = Recipient.objects.get()
    assert (recipient.status, recipient.open_count) == ("complained", 1)
    assert Suppression.objects.get().reason == "complained"


def test_sandbox_deferral_then_delivery_ends_delivered():
    send("slow+defer@example.com")
    assert Recipient.objects.get().status == "delivered"
    assert not Suppression.objects.exists()


def test_tracking_signal_is_sent_once_per_stored_event():
    seen = []

    def receiver(sender, event, esp_name, **kwargs):
        seen.append(
            (event.event_type, esp_name, Event.objects.filter(event_id=event.event_id).exists())
        )

    tracking.connect(receiver, weak=False)
    try:
        send("clicker+click@example.com")
    finally:
        tracking.disconnect(receiver)
    assert seen == [
        ("delivered", "Sandbox", True),
        ("opened", "Sandbox", True),
        ("clicked", "Sandbox", True),
    ]


def test_wrong_shape_is_400_with_message(client):
    response = client.post(
        "/anymail/sandbox/tracking/", json.dumps({"evts": []}), content_type="application/json"
    )
    assert response.status_code == 400
    assert '"events" list' in response.json()["error"]


def test_wrong_content_type_is_400(client):
    response = client.post("/anymail/sandbox/tracking/", {"events": "x"})
    assert response.status_code == 400
    assert "application/json" in response.json()["error"]


def test_get_is_not_allowed(client):
    assert client.get("/anymail/sandbox/tracking/").status_code == 405
