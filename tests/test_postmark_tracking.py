"""Postmark's tracking webhook: payload parsing, auth, and the shared contract."""

import json
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sending.exceptions import AnymailInsecureWebhookWarning
from sending.models import Suppression
from sending.signals import tracking
from tests.webhook_contract import WEBHOOK_SECRET, EventSpec, TrackingWebhookContract, basic_auth
from tracking.models import Event, WebhookCall, WebhookCallStatus
from tracking.webhooks.postmark import PostmarkTrackingWebhookView

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).parent / "fixtures" / "postmark"
URL = "/anymail/postmark/tracking/"
MESSAGE_ID = "883953f4-6105-42a2-a16a-77a8eac79483"
POSTMARK_TIME = datetime(2019, 11, 5, 16, 33, 54, 907025, tzinfo=UTC)


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def post(client, payload, content_type="application/json", auth=None):
    body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
    return client.generic(
        "POST", URL, body, content_type=content_type, HTTP_AUTHORIZATION=auth or basic_auth()
    )


def post_fixture(client, name):
    response = post(client, fixture(name))
    assert response.status_code == 200, response.content
    return Event.objects.get()


@pytest.fixture(autouse=True)
def postmark_settings(settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": WEBHOOK_SECRET}


@pytest.fixture
def tracked():
    """The events sent with the tracking signal during the test."""
    seen = []

    def receiver(sender, event, esp_name, **kwargs):
        seen.append((esp_name, event))

    tracking.connect(receiver, weak=False)
    yield seen
    tracking.disconnect(receiver)


# The contract


class TestPostmarkWebhookContract(TrackingWebhookContract):
    esp = "postmark"
    message_id = MESSAGE_ID
    one_event_per_call = True

    def event_body(self, events: list[EventSpec]):
        (spec,) = events
        when = spec.timestamp.isoformat().replace("+00:00", "Z")
        common = {"MessageStream": "outbound", "MessageID": spec.message_id, "Metadata": {}}
        if spec.event_type in ("bounced", "deferred"):
            bounce_type = "HardBounce" if spec.event_type == "bounced" else "Transient"
            record = {
                **common,
                "RecordType": "Bounce",
                # Postmark's bounce ids are numbers
                "ID": zlib.crc32(spec.event_id.encode()),
                "Type": bounce_type,
                "Email": spec.recipient,
                "BouncedAt": when,
            }
        else:
            record_type, field = {
                "delivered": ("Delivery", "DeliveredAt"),
                "opened": ("Open", "ReceivedAt"),
                "clicked": ("Click", "ReceivedAt"),
            }[spec.event_type]
            record = {**common, "RecordType": record_type, "Recipient": spec.recipient, field: when}
        return json.dumps(record).encode(), "application/json"


# One test per record type


def test_delivery(client, tracked):
    event = post_fixture(client, "delivery.json")
    assert (event.event_type, event.timestamp) == ("delivered", POSTMARK_TIME)
    assert event.event_id == ""  # Postmark gives deliveries no id; deduplicated by content
    assert (event.message_id, event.recipient_address) == (MESSAGE_ID, "john@example.com")
    assert event.mta_response.startswith("smtp;250 2.0.0 OK")
    assert event.tags == ["shipping"]
    assert event.metadata == {"order_id": "12345", "customer": "C-42"}
    ((esp_name, signalled),) = tracked
    assert esp_name == "Postmark"
    assert signalled.esp_event["ServerID"] == 23


def test_hard_bounce(client):
    event = post_fixture(client, "bounce_hard.json")
    assert (event.event_type, event.reject_reason) == ("bounced", "bounced")
    assert event.event_id == "4323372036854775807"
    assert event.recipient_address == "john@example.com"
    assert event.timestamp == POSTMARK_TIME
    assert event.description.startswith("The server was unable to deliver your message")
    assert event.mta_response == (
        "smtp;550 5.1.1 The email account that you tried to reach does not exist."
    )
    assert Suppression.objects.get().reason == "bounced"


def test_transient_bounce_is_deferred(client):
    event = post_fixture(client, "bounce_transient.json")
    assert (event.event_type, event.reject_reason) == ("deferred", "")
    assert not Suppression.objects.exists()


def test_soft_bounce_is_a_timed_out_bounce(client):
    event = post_fixture(client, "bounce_soft.json")
    assert (event.event_type, event.reject_reason) == ("bounced", "timed_out")
    assert not Suppression.objects.exists()


@pytest.mark.parametrize(
    ("bounce_type", "event_type", "reject_reason"),
    [
        ("SpamNotification", "bounced", "spam"),
        ("Blocked", "bounced", "blocked"),
        ("DMARCPolicy", "bounced", "blocked"),
        ("BadEmailAddress", "rejected", "invalid"),
        ("ManuallyDeactivated", "rejected", "blocked"),
        ("AutoResponder", "autoresponded", ""),
        ("ChallengeVerification", "autoresponded", ""),
        ("DnsError", "deferred", ""),
        ("SMTPApiError", "failed", ""),
        ("TemplateRenderingFailed", "failed", ""),
        ("Unsubscribe", "unsubscribed", ""),
        ("Subscribe", "subscribed", ""),
        ("Unknown", "unknown", ""),
        ("SomethingNew", "bounced", "other"),
    ],
)
def test_bounce_types(client, bounce_type, event_type, reject_reason):
    payload = fixture("bounce_hard.json")
    payload["Type"] = bounce_type
    assert post(client, payload).status_code == 200
    event = Event.objects.get()
    assert (event.event_type, event.reject_reason) == (event_type, reject_reason)


def test_spam_complaint(client):
    event = post_fixture(client, "spam_complaint.json")
    assert (event.event_type, event.event_id) == ("complained", "42")
    assert Suppression.objects.get().reason == "complained"


def test_open(client):
    event = post_fixture(client, "open.json")
    assert (event.event_type, event.timestamp) == ("opened", POSTMARK_TIME)
    assert event.user_agent.startswith("Mozilla/5.0 (Windows NT 10.0")
    assert event.click_url == ""


def test_click(client):
    event = post_fixture(client, "click.json")
    assert (event.event_type, event.click_url) == ("clicked", "https://example.com/orders/12345")
    assert event.timestamp == datetime(2019, 11, 5, 16, 34, 12, 123456, tzinfo=UTC)
    assert event.user_agent.startswith("Mozilla/5.0")


def test_subscription_change_unsubscribes(client):
    event = post_fixture(client, "subscription_change.json")
    assert (event.event_type, event.message_id) == ("unsubscribed", MESSAGE_ID)
    assert event.timestamp == datetime(2020, 2, 1, 10, 53, 34, 416071, tzinfo=UTC)
    assert event.description == "ManualSuppression, origin Recipient"
    assert Suppression.objects.get().reason == "unsubscribed"


def test_subscription_change_for_a_hard_bounce_is_a_bounce(client):
    payload = fixture("subscription_change.json")
    payload["SuppressionReason"] = "HardBounce"
    assert post(client, payload).status_code == 200
    event = Event.objects.get()
    assert (event.event_type, event.reject_reason) == ("bounced", "bounced")
    assert Suppression.objects.get().reason == "bounced"


def test_subscription_reactivation_is_subscribed(client):
    event = post_fixture(client, "subscription_reactivated.json")
    assert (event.event_type, event.message_id, event.tags) == ("subscribed", "", [])


def test_timestamp_with_offset_is_converted_to_utc(client):
    payload = fixture("delivery.json")
    payload["DeliveredAt"] = "2014-08-01T13:28:10.2735393-04:00"
    assert post(client, payload).status_code == 200
    assert Event.objects.get().timestamp == datetime(2014, 8, 1, 17, 28, 10, 273539, tzinfo=UTC)


def test_unknown_record_type_is_kept_as_unknown(client):
    payload = {
        "RecordType": "SomethingNew",
        "MessageID": MESSAGE_ID,
        "Recipient": "john@example.com",
        "HappenedAt": "2019-11-05T16:33:54Z",
    }
    assert post(client, payload).status_code == 200
    event = Event.objects.get()
    assert (event.event_type, event.timestamp) == ("unknown", POSTMARK_TIME.replace(microsecond=0))


# Auth: Postmark doesn't sign, so basic auth is all there is


def test_basic_auth_is_required(client):
    response = client.post(URL, fixture("delivery.json"), content_type="application/json")
    assert response.status_code == 401
    assert not WebhookCall.objects.exists()


def test_without_webhook_secret_it_warns(settings):
    settings.ANYMAIL = {}
    with pytest.warns(AnymailInsecureWebhookWarning):
        PostmarkTrackingWebhookView()


# Bad payloads


def test_malformed_json_is_400_and_kept(client):
    response = post(client, b'{"RecordType": "Delivery", ')
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED


def test_empty_body_is_400(client):
    response = post(client, b"")
    assert response.status_code == 400
    assert "Empty Postmark webhook body" in response.json()["error"]


def test_wrong_content_type_is_400(client):
    response = post(client, json.dumps(fixture("delivery.json")), content_type="text/plain")
    assert response.status_code == 400
    assert "application/json" in response.json()["error"]


def test_inbound_message_is_400_saying_so(client):
    inbound = {
        "FromName": "Postmarkapp Support",
        "From": "support@postmarkapp.com",
        "FromFull": {"Email": "support@postmarkapp.com", "Name": "Postmarkapp Support"},
        "To": "yourhash+SampleHash@inbound.postmarkapp.com",
        "MailboxHash": "SampleHash",
        "Subject": "Test subject",
        "MessageID": "73e6d360-66eb-11e1-8e72-a8904824019b",
        "TextBody": "This is a test text body.",
    }
    response = post(client, inbound)
    assert response.status_code == 400
    assert "inbound" in response.json()["error"]


def test_sendgrid_batch_is_400_saying_so(client):
    response = post(client, [{"event": "delivered", "email": "a@example.com"}])
    assert response.status_code == 400
    assert "not a JSON array" in response.json()["error"]


def test_mailgun_payload_is_400_saying_so(client):
    response = post(client, {"signature": {}, "event-data": {"event": "delivered"}})
    assert response.status_code == 400
    assert "Mailgun" in response.json()["error"]


def test_bad_timestamp_is_400(client):
    payload = fixture("delivery.json")
    payload["DeliveredAt"] = "yesterday"
    response = post(client, payload)
    assert response.status_code == 400
    assert "Malformed Postmark" in response.json()["error"]
