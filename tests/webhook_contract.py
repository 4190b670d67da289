"""Contract tests every ESP's tracking webhook runs (subclass TrackingWebhookContract).

A subclass says how to build that ESP's real-shaped payload for a list of
events, and how to sign it; the contract then checks the promises the
shared pipeline makes: auth refused with 401, oversized bodies 413, bad
payloads 400 with the raw call kept, duplicates stored once, order not
mattering, events before their message linked later.

    class TestMailgunContract(TrackingWebhookContract):
        esp = "mailgun"
        def event_body(self, events): ...   # -> (body bytes, content type)
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.urls import reverse

from sending.message import AnymailRecipientStatus, AnymailStatus
from sending.models import Message, Recipient
from tracking.models import Event, WebhookCall, WebhookCallStatus

WEBHOOK_SECRET = "username:password"
BASE_TIME = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@dataclass
class EventSpec:
    """What one event says, for a subclass to render in its ESP's format."""

    event_type: str  # normalized: "delivered", "deferred", "bounced", "opened", ...
    message_id: str
    recipient: str
    timestamp: datetime
    event_id: str


def basic_auth(secret: str = WEBHOOK_SECRET) -> str:
    return "Basic " + base64.b64encode(secret.encode()).decode()


def tracking_fixture_names(folder: Path) -> set[str]:
    """The names of the .json fixtures in an ESP's folder, but its inbound_* ones.

    The inbound tests keep their payloads in the same folder, as inbound_*.json.
    """
    return {path.stem for path in folder.glob("*.json") if not path.stem.startswith("inbound_")}


@pytest.mark.django_db
class TrackingWebhookContract:
    #: The ESP key ("mailgun"); the URL name is "<esp>_tracking_webhook".
    esp: str = ""
    #: A message id in the format this ESP's send API returns (and events carry).
    message_id: str = "contract-message-id-1"
    recipient: str = "recipient@example.com"
    #: True if the ESP posts one event per call (each event is its own call).
    one_event_per_call: bool = False

    # Hooks for subclasses

    def event_body(self, events: list[EventSpec]) -> tuple[bytes, str]:
        """Render events as this ESP's webhook body; return (body, content type)."""
        raise NotImplementedError

    def signature_headers(self, body: bytes, content_type: str) -> dict[str, str]:
        """Extra request headers (Django META keys) that make the ESP signature valid."""
        return {}

    # Helpers

    @pytest.fixture(autouse=True)
    def webhook_settings(self, settings):
        settings.ANYMAIL = {**getattr(settings, "ANYMAIL", {}), "WEBHOOK_SECRET": WEBHOOK_SECRET}
        self.settings = settings

    @property
    def url(self) -> str:
        return reverse(f"{self.esp}_tracking_webhook")

    def post(self, client, body: bytes, content_type: str, auth: str | None = None, **extra):
        headers = {
            "HTTP_AUTHORIZATION": auth or basic_auth(),
            **self.signature_headers(body, content_type),
        }
        headers.update(extra)
        return client.generic("POST", self.url, body, content_type=content_type, **headers)

    def spec(self, event_type: str, minutes: int = 0, event_id: str | None = None) -> EventSpec:
        return EventSpec(
            event_type=event_type,
            message_id=self.message_id,
            recipient=self.recipient,
            timestamp=BASE_TIME + timedelta(minutes=minutes),
            event_id=event_id or f"evt-{event_type}-{minutes}",
        )

    def post_events(self, client, specs: list[EventSpec]) -> None:
        calls = [[spec] for spec in specs] if self.one_event_per_call else [specs]
        for events in calls:
            body, content_type = self.event_body(events)
            response = self.post(client, body, content_type)
            assert response.status_code == 200, response.content

    def record_sent_message(self) -> Recipient:
        """Record a sent message the way the send pipeline does, with this ESP's id."""
        from sending import services

        record = Message.objects.create(esp=self.esp, backend="contract", subject="Contract")
        Recipient.objects.create(message=record, address=self.recipient, esp=self.esp)
        status = AnymailStatus()
        status.set_recipient_status(
            {self.recipient: AnymailRecipientStatus(self.message_id, "queued")}
        )
        services.message_record_result(record=record, status=status)
        return Recipient.objects.get(message=record)

    # The contract

    def test_contract_valid_call_is_stored_and_applied(self, client):
        recipient = self.record_sent_message()
        self.post_events(client, [self.spec("delivered")])
        recipient.refresh_from_db()
        assert recipient.status == "delivered"
        assert recipient.delivered_at == BASE_TIME
        event = Event.objects.get()
        assert (event.esp, event.message_id, event.recipient_address) == (
            self.esp,
            self.message_id,
            self.recipient,
        )
        assert WebhookCall.objects.filter(status=WebhookCallStatus.PROCESSED).exists()

    def test_contract_missing_basic_auth_is_refused(self, client):
        body, content_type = self.event_body([self.spec("delivered")])
        headers = self.signature_headers(body, content_type)
        response = client.generic("POST", self.url, body, content_type=content_type, **headers)
        assert response.status_code == 401
        assert not WebhookCall.objects.exists()

    def test_contract_wrong_basic_auth_is_refused(self, client):
        body, content_type = self.event_body([self.spec("delivered")])
        response = self.post(client, body, content_type, auth=basic_auth("username:wrong"))
        assert response.status_code == 401
        assert not WebhookCall.objects.exists()

    def test_contract_rotated_secrets_are_all_accepted(self, client):
        self.settings.ANYMAIL = {
            **self.settings.ANYMAIL,
            "WEBHOOK_SECRET": ["old:one", WEBHOOK_SECRET],
        }
        body, content_type = self.event_body([self.spec("delivered")])
        assert self.post(client, body, content_type, auth=basic_auth("old:one")).status_code == 200

    def test_contract_oversized_body_is_413(self, client):
        self.settings.MAILHUB = {**self.settings.MAILHUB, "WEBHOOK_MAX_BODY_BYTES": 10}
        body, content_type = self.event_body([self.spec("delivered")])
        response = self.post(client, body, content_type)
        assert response.status_code == 413
        assert "WEBHOOK_MAX_BODY_BYTES" in response.json()["error"]

    def test_contract_duplicate_delivery_stores_nothing_twice(self, client):
        recipient = self.record_sent_message()
        specs = [self.spec("delivered"), self.spec("opened", minutes=5)]
        self.post_events(client, specs)
        self.post_events(client, specs)
        assert Event.objects.count() == 2
        recipient.refresh_from_db()
        assert recipient.open_count == 1

    def test_contract_reverse_order_ends_in_same_state(self, client):
        specs = [
            self.spec("deferred", minutes=0),
            self.spec("delivered", minutes=10),
            self.spec("opened", minutes=20),
        ]
        recipient = self.record_sent_message()
        self.post_events(client, list(reversed(specs)))
        recipient.refresh_from_db()
        assert (recipient.status, recipient.status_at) == (
            "opened",
            BASE_TIME + timedelta(minutes=20),
        )
        assert recipient.delivered_at == BASE_TIME + timedelta(minutes=10)
        assert recipient.open_count == 1

    def test_contract_event_before_message_is_linked_when_recorded(self, client):
        self.post_events(client, [self.spec("delivered")])
        assert Event.objects.get().recipient is None
        recipient = self.record_sent_message()
        assert Event.objects.get().recipient == recipient
        recipient.refresh_from_db()
        assert recipient.status == "delivered"

    def test_contract_malformed_body_is_400_and_kept(self, client):
        body, content_type = self.event_body([self.spec("delivered")])
        broken = body[: len(body) // 2]
        response = self.post(client, broken, content_type)
        assert response.status_code == 400
        assert response.json()["error"]
        call = WebhookCall.objects.get()
        assert call.status == WebhookCallStatus.FAILED
        assert call.get_body() == broken

    def test_contract_empty_body_is_400(self, client):
        _, content_type = self.event_body([self.spec("delivered")])
        response = self.post(client, b"", content_type)
        assert response.status_code == 400

    def test_contract_stored_headers_have_no_credentials(self, client):
        self.post_events(client, [self.spec("delivered")])
        headers = WebhookCall.objects.get().headers
        assert headers.get("Authorization") == "********"
