"""The SparkPost tracking webhook: msys event batches, bounce classes, the test batch, bad input."""

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sending.exceptions import AnymailInsecureWebhookWarning
from sending.models import Suppression
from sending.signals import tracking
from tests.webhook_contract import WEBHOOK_SECRET, EventSpec, TrackingWebhookContract, basic_auth
from tracking.models import Event, WebhookCall, WebhookCallStatus
from tracking.webhooks.sparkpost import SparkPostTrackingWebhookView

pytestmark = pytest.mark.django_db

URL = "/anymail/sparkpost/tracking/"
FIXTURES = Path(__file__).parent / "fixtures" / "sparkpost"
TRANSMISSION_ID = "65832150921904138"  # the fixtures' transmission_id
FIXTURE_TIME = datetime(2016, 4, 18, 14, 25, 7, tzinfo=UTC)  # their "timestamp": "1460989507"

# Normalized event type -> (SparkPost event class, type, extra fields) producing it.
SPARKPOST_EVENTS = {
    "queued": ("message_event", "injection", {}),
    "delivered": ("message_event", "delivery", {"queue_time": "12"}),
    "deferred": (
        "message_event",
        "delay",
        {"bounce_class": "22", "raw_reason": "452 4.2.2 Mailbox full", "num_retries": "1"},
    ),
    "bounced": (
        "message_event",
        "bounce",
        {"bounce_class": "10", "raw_reason": "550 5.1.1 User unknown", "error_code": "550"},
    ),
    "rejected": ("message_event", "policy_rejection", {"bounce_class": "25"}),
    "failed": ("gen_event", "generation_failure", {"raw_reason": "554 5.3.3 render error"}),
    "complained": ("message_event", "spam_complaint", {"fbtype": "abuse"}),
    "opened": ("track_event", "open", {"user_agent": "Mozilla/5.0"}),
    "clicked": (
        "track_event",
        "click",
        {"user_agent": "Mozilla/5.0", "target_link_url": "https://example.com/"},
    ),
    "unsubscribed": ("unsubscribe_event", "link_unsubscribe", {}),
}


def sparkpost_event(spec: EventSpec) -> dict:
    event_class, event_type, extra = SPARKPOST_EVENTS[spec.event_type]
    return {
        "msys": {
            event_class: {
                "type": event_type,
                "event_id": spec.event_id,
                "timestamp": str(int(spec.timestamp.timestamp())),
                "transmission_id": spec.message_id,
                "message_id": "000443ee14578172be22",
                "rcpt_to": spec.recipient,
                "raw_rcpt_to": spec.recipient,
                "customer_id": "1",
                "rcpt_meta": {},
                "rcpt_tags": [],
                **extra,
            }
        }
    }


class TestSparkPostWebhookContract(TrackingWebhookContract):
    esp = "sparkpost"
    message_id = "7012345678901234567"  # the send API's results.id (transmission id)

    def event_body(self, events: list[EventSpec]):
        return json.dumps([sparkpost_event(spec) for spec in events]).encode(), "application/json"


@pytest.fixture(autouse=True)
def webhook_secret(settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": WEBHOOK_SECRET}


@pytest.fixture
def received():
    """The events the tracking signal was sent with."""
    events = []

    def receiver(sender, event, esp_name, **kwargs):
        assert esp_name == "SparkPost"
        events.append(event)

    tracking.connect(receiver, weak=False)
    yield events
    tracking.disconnect(receiver)


def post(client, body, content_type="application/json", auth=None):
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    return client.generic(
        "POST", URL, body, content_type=content_type, HTTP_AUTHORIZATION=auth or basic_auth()
    )


def fixture(name: str) -> list:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def post_fixture(client, name: str, status: int = 200):
    response = post(client, (FIXTURES / f"{name}.json").read_bytes())
    assert response.status_code == status, response.content
    return response


# One test per documented event type


@pytest.mark.parametrize(
    ("name", "event_type", "reject_reason"),
    [
        ("injection", "queued", None),
        ("delivery", "delivered", None),
        ("bounce", "bounced", "invalid"),  # bounce class 10, Invalid Recipient
        ("delay", "deferred", None),
        ("policy_rejection", "rejected", "blocked"),  # bounce class 25, Admin Failure
        ("out_of_band", "bounced", "spam"),  # bounce class 52, Spam Content
        ("spam_complaint", "complained", None),
        ("open", "opened", None),
        ("initial_open", "opened", None),
        ("amp_open", "opened", None),
        ("amp_initial_open", "opened", None),
        ("click", "clicked", None),
        ("amp_click", "clicked", None),
        ("generation_failure", "failed", None),
        ("generation_rejection", "rejected", "blocked"),
        ("list_unsubscribe", "unsubscribed", None),
        ("link_unsubscribe", "unsubscribed", None),
    ],
)
def test_fixture_event_is_normalized(client, received, name, event_type, reject_reason):
    post_fixture(client, name)
    (event,) = received
    esp_event = fixture(name)[0]
    raw = next(iter(esp_event["msys"].values()))
    assert event.event_type == event_type
    assert event.reject_reason == reject_reason
    assert event.timestamp == FIXTURE_TIME
    assert event.event_id == raw["event_id"]
    assert event.message_id == TRANSMISSION_ID
    assert event.recipient == "recipient@example.com"
    assert event.tags == ["Example Campaign Name"]  # campaign_id, the send backend's one tag
    assert event.metadata == {"customKey": "customValue"}  # rcpt_meta
    assert event.esp_event == esp_event  # the documented wrapped form

    stored = Event.objects.get()
    assert (stored.esp, stored.event_type, stored.event_id) == (
        "sparkpost",
        event_type,
        raw["event_id"],
    )
    assert stored.reject_reason == (reject_reason or "")


def test_bounce_keeps_mta_response_and_describes_the_class(client, received):
    post_fixture(client, "bounce")
    (event,) = received
    assert event.mta_response == (
        "550 5.1.1 <recipient@example.com>: Recipient address rejected: User unknown"
    )
    assert event.description == (
        "Bounce class 10 (Invalid Recipient): "
        "550 5.1.1 ...@... Recipient address rejected: User unknown"
    )
    suppression = Suppression.objects.get()
    assert (suppression.address, suppression.reason) == ("recipient@example.com", "invalid")


def test_delay_is_deferred_and_suppresses_nothing(client, received):
    post_fixture(client, "delay")
    (event,) = received
    assert event.event_type == "deferred"
    assert event.mta_response.startswith("452 4.2.2")
    assert not Suppression.objects.exists()


def test_click_has_url_and_user_agent(client, received):
    post_fixture(client, "click")
    (event,) = received
    assert event.click_url == "http://example.com"
    assert event.user_agent.startswith("Mozilla/5.0 (Macintosh")
    assert Event.objects.get().click_url == "http://example.com"


def test_open_has_user_agent_but_no_click_url(client, received):
    post_fixture(client, "open")
    (event,) = received
    assert event.user_agent.startswith("Mozilla/5.0")
    assert event.click_url is None


def test_link_unsubscribe_suppresses_the_address(client, received):
    post_fixture(client, "link_unsubscribe")
    assert received[0].click_url is None  # the unsubscribe link isn't a click
    assert Suppression.objects.get().reason == "unsubscribed"


def test_spam_complaint_describes_the_feedback_type(client, received):
    post_fixture(client, "spam_complaint")
    assert received[0].description == "abuse"
    assert Suppression.objects.get().reason == "complained"


def test_generation_failure_quotes_the_reason(client, received):
    post_fixture(client, "generation_failure")
    (event,) = received
    assert event.event_type == "failed"
    assert "substitution value 'name' did not exist" in event.mta_response


@pytest.mark.parametrize(
    ("bounce_class", "event_type", "reject_reason"),
    [
        ("1", "bounced", "other"),  # Undetermined
        ("10", "bounced", "invalid"),  # Invalid Recipient (hard)
        ("20", "bounced", "other"),  # Soft Bounce
        ("21", "bounced", "other"),  # DNS Failure (soft)
        ("22", "bounced", "other"),  # Mailbox Full (soft)
        ("24", "bounced", "timed_out"),  # Timeout
        ("25", "bounced", "blocked"),  # Admin Failure: SparkPost's policy
        ("30", "bounced", "bounced"),  # Generic Bounce: No RCPT (hard)
        ("40", "bounced", "other"),  # Generic Bounce (soft)
        ("50", "bounced", "blocked"),  # Mail Block
        ("51", "bounced", "spam"),  # Spam Block
        ("52", "bounced", "spam"),  # Spam Content
        ("53", "bounced", "blocked"),  # Prohibited Attachment
        ("54", "bounced", "blocked"),  # Relaying Denied
        ("60", "autoresponded", None),  # Auto-Reply
        ("70", "deferred", None),  # Transient Failure
        ("80", "subscribed", None),  # Subscribe
        ("90", "unsubscribed", "unsubscribed"),  # Unsubscribe (hard)
        ("100", "autoresponded", None),  # Challenge-Response
        ("999", "bounced", "other"),  # not in the table
    ],
)
def test_bounce_class_decides_type_and_reason(
    client, received, bounce_class, event_type, reject_reason
):
    batch = fixture("bounce")
    batch[0]["msys"]["message_event"]["bounce_class"] = bounce_class
    post(client, batch)
    (event,) = received
    assert (event.event_type, event.reject_reason) == (event_type, reject_reason)


@pytest.mark.parametrize(
    ("bounce_class", "suppressed"), [("10", True), ("30", True), ("50", False)]
)
def test_only_hard_bounce_classes_suppress(client, bounce_class, suppressed):
    batch = fixture("bounce")
    batch[0]["msys"]["message_event"]["bounce_class"] = bounce_class
    post(client, batch)
    assert Suppression.objects.exists() is suppressed


def test_batch_gives_one_event_per_element_and_skips_relay_events(client, received):
    post_fixture(client, "batch")
    assert [event.event_type for event in received] == [
        "queued",
        "delivered",
        "opened",
        "clicked",
    ]
    assert Event.objects.count() == 4
    assert WebhookCall.objects.get().status == WebhookCallStatus.PROCESSED


def test_unknown_event_type_is_recorded_as_unknown(client, received):
    batch = [
        {
            "msys": {
                "ab_test_event": {
                    "type": "ab_test_completed",
                    "event_id": "1",
                    "timestamp": "1460989507",
                }
            }
        }
    ]
    post(client, batch)
    assert received[0].event_type == "unknown"
    assert received[0].recipient is None


def test_iso_timestamp_is_accepted(client, received):
    batch = fixture("delivery")
    batch[0]["msys"]["message_event"]["timestamp"] = "2016-04-18T14:25:07.000+00:00"
    post(client, batch)
    assert received[0].timestamp == FIXTURE_TIME


# The test batches SparkPost sends when a webhook is created or validated


def test_webhook_test_batch_is_answered_200_with_no_events(client):
    response = post_fixture(client, "test_batch")
    assert response.json() == {"status": "ok", "events": 0}
    assert not Event.objects.exists()


def test_empty_batch_is_answered_200(client):
    response = post(client, b"[]")
    assert response.status_code == 200
    assert response.json()["events"] == 0


def test_relay_events_alone_record_nothing(client):
    response = post_fixture(client, "relay_delivery")
    assert response.json()["events"] == 0


# Authentication: SparkPost doesn't sign webhooks, so basic auth is all there is


def test_sparkpost_has_no_signature_so_basic_auth_is_required(client):
    # The contract covers 401s; with no signature scheme, there's no 403 case.
    response = post(client, fixture("delivery"), auth=basic_auth("username:wrong"))
    assert response.status_code == 401


def test_missing_webhook_secret_warns(settings):
    settings.ANYMAIL = {}
    with pytest.warns(AnymailInsecureWebhookWarning):
        SparkPostTrackingWebhookView()


# Bad input


def test_malformed_json_is_400(client):
    response = post(client, b'[{"msys": {"message_event": ')
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]


def test_empty_body_is_400(client):
    response = post(client, b"")
    assert response.status_code == 400
    assert "Empty" in response.json()["error"]


def test_wrong_content_type_is_400(client):
    response = post(client, "type=delivery", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert "application/json" in response.json()["error"]


def test_relay_webhook_payload_is_400_pointing_to_inbound(client):
    response = post_fixture(client, "relay_message", status=400)
    assert "/anymail/sparkpost/inbound/" in response.json()["error"]
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        ({"signature": {}, "event-data": {"event": "delivered"}}, "Mailgun"),
        ({"auth": "x", "events_by_user": []}, "Unisender Go"),
        ({"Type": "Notification", "TopicArn": "arn:scw:sns:fr-par:x:t"}, "SNS"),
        ({"msys": {"message_event": {"type": "delivery"}}}, "single event, not a batch"),
    ],
)
def test_another_esps_payload_is_400_saying_so(client, payload, says):
    response = post(client, payload)
    assert response.status_code == 400
    assert says in response.json()["error"]


def test_batch_element_without_msys_is_400(client):
    response = post(client, [{"event": "delivered"}])
    assert response.status_code == 400
    assert '{"msys": {...}}' in response.json()["error"]


def test_bad_timestamp_is_400(client):
    batch = fixture("delivery")
    batch[0]["msys"]["message_event"]["timestamp"] = "yesterday"
    response = post(client, batch)
    assert response.status_code == 400
