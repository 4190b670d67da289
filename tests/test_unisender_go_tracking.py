"""The Unisender Go tracking webhook: status and spam-block events, the auth checksum, bad input."""

import gzip
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sending.exceptions import AnymailInsecureWebhookWarning
from sending.models import Suppression
from sending.signals import tracking
from tests.webhook_contract import WEBHOOK_SECRET, EventSpec, TrackingWebhookContract, basic_auth
from tracking.models import Event, WebhookCall, WebhookCallStatus
from tracking.webhooks.unisender_go import UnisenderGoTrackingWebhookView

pytestmark = pytest.mark.django_db

URL = "/anymail/unisender_go/tracking/"
FIXTURES = Path(__file__).parent / "fixtures" / "unisender_go"
API_KEY = "6k4tb7x8dwbq5r1pjz9yhe3ocmaaqs5tgu3nfiwx"  # the key the fixtures are signed with
JOB_ID = "1ZymBc-00041N-9X"  # email/send's job_id, every recipient's message id
RECIPIENT = "recipient@example.com"

# Normalized event type -> the Unisender Go status that produces it (and its delivery_info).
UNISENDER_STATUSES = {
    "sent": ("sent", None),
    "delivered": ("delivered", {"delivery_status": "ok_delivered"}),
    "deferred": (
        "soft_bounced",
        {"delivery_status": "err_will_retry", "destination_response": "451 4.7.1 Try later"},
    ),
    "bounced": (
        "hard_bounced",
        {"delivery_status": "err_user_inactive", "destination_response": "550 5.1.1 Gone"},
    ),
    "opened": ("opened", {"delivery_status": "ok_read", "user_agent": "Mozilla/5.0"}),
    "clicked": ("clicked", {"delivery_status": "ok_link_visited", "user_agent": "Mozilla/5.0"}),
    "unsubscribed": ("unsubscribed", {"delivery_status": "ok_unsubscribed"}),
    "complained": ("spam", {"delivery_status": "ok_fbl"}),
}


def signed(payload: dict, api_key: str = API_KEY) -> bytes:
    """payload as Unisender Go posts it: compact JSON whose "auth" is its checksum.

    The checksum is the MD5 of the body with the API key in place of the auth value.
    """
    body = json.dumps({**payload, "auth": api_key}, separators=(",", ":"), ensure_ascii=False)
    checksum = hashlib.md5(body.encode()).hexdigest()
    return body.replace(f'"auth":"{api_key}"', f'"auth":"{checksum}"', 1).encode()


def callback(*events: dict) -> dict:
    return {"events_by_user": [{"user_id": 456, "events": list(events)}]}


def status_event(spec: EventSpec) -> dict:
    status, delivery_info = UNISENDER_STATUSES[spec.event_type]
    data = {
        "job_id": spec.message_id,
        "metadata": {},
        "email": spec.recipient,
        "status": status,
        "event_time": spec.timestamp.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if spec.event_type == "clicked":
        data["url"] = "https://example.com/"
    if delivery_info:
        data["delivery_info"] = delivery_info
    return {"event_name": "transactional_email_status", "event_data": data}


@pytest.fixture(autouse=True)
def unisender_settings(settings):
    settings.ANYMAIL = {
        **settings.ANYMAIL,
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "UNISENDER_GO_API_KEY": API_KEY,
    }


class TestUnisenderGoWebhookContract(TrackingWebhookContract):
    esp = "unisender_go"
    message_id = JOB_ID

    @pytest.fixture(autouse=True)
    def api_key(self, webhook_settings):
        # (runs after the contract's own fixture; both extend settings.ANYMAIL)
        self.settings.ANYMAIL = {**self.settings.ANYMAIL, "UNISENDER_GO_API_KEY": API_KEY}

    def event_body(self, events: list[EventSpec]):
        return signed(callback(*map(status_event, events))), "application/json"


@pytest.fixture
def received():
    """The events the tracking signal was sent with."""
    events = []

    def receiver(sender, event, esp_name, **kwargs):
        assert esp_name == "Unisender Go"
        events.append(event)

    tracking.connect(receiver, weak=False)
    yield events
    tracking.disconnect(receiver)


def post(client, body, content_type="application/json", auth=None):
    return client.generic(
        "POST", URL, body, content_type=content_type, HTTP_AUTHORIZATION=auth or basic_auth()
    )


def fixture_body(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def fixture_event(name: str) -> dict:
    return json.loads(fixture_body(name))["events_by_user"][0]["events"][0]


def post_fixture(client, name: str):
    response = post(client, fixture_body(name))
    assert response.status_code == 200, response.content
    return response


# One test per documented event type


@pytest.mark.parametrize(
    ("name", "event_type", "reject_reason"),
    [
        ("sent", "sent", None),
        ("delivered", "delivered", None),
        ("opened", "opened", None),
        ("clicked", "clicked", None),
        ("unsubscribed", "unsubscribed", None),
        ("subscribed", "subscribed", None),
        ("soft_bounced", "deferred", None),
        ("hard_bounced", "bounced", "invalid"),  # err_user_unknown: the address never existed
        ("spam", "complained", None),
    ],
)
def test_fixture_status_event_is_normalized(client, received, name, event_type, reject_reason):
    post_fixture(client, name)
    (event,) = received
    data = fixture_event(name)["event_data"]
    assert event.event_type == event_type
    assert event.reject_reason == reject_reason
    assert event.timestamp == datetime.fromisoformat(data["event_time"]).replace(tzinfo=UTC)
    assert event.event_id is None  # Unisender Go events have no id
    assert event.message_id == JOB_ID
    assert event.recipient == RECIPIENT
    assert event.metadata == {"order_id": "1234"}
    assert event.tags == []
    assert event.description == data.get("delivery_info", {}).get("delivery_status")
    assert event.esp_event == fixture_event(name)

    stored = Event.objects.get()
    assert (stored.esp, stored.event_type, stored.message_id, stored.recipient_address) == (
        "unisender_go",
        event_type,
        JOB_ID,
        RECIPIENT,
    )


def test_hard_bounce_keeps_the_smtp_response_and_suppresses(client, received):
    post_fixture(client, "hard_bounced")
    (event,) = received
    assert event.mta_response == (
        "550 5.1.1 The email account that you tried to reach does not exist"
    )
    assert event.description == "err_user_unknown"
    suppression = Suppression.objects.get()
    assert (suppression.address, suppression.reason) == (RECIPIENT, "invalid")


def test_hard_bounce_without_delivery_info_is_a_plain_bounce(client, received):
    post_fixture(client, "hard_bounced_without_delivery_info")
    (event,) = received
    assert (event.event_type, event.reject_reason) == ("bounced", "bounced")
    assert (event.description, event.mta_response) == (None, None)
    assert Suppression.objects.get().reason == "bounced"


def test_soft_bounce_is_deferred_and_suppresses_nothing(client, received):
    post_fixture(client, "soft_bounced")
    assert received[0].mta_response == "451 4.7.1 Greylisted, please try again later"
    assert not Suppression.objects.exists()


def test_click_has_url_and_user_agent(client, received):
    post_fixture(client, "clicked")
    (event,) = received
    assert event.click_url == "https://example.com/orders/1234"
    assert event.user_agent.startswith("Mozilla/5.0 (X11; Linux x86_64)")


def test_open_has_user_agent_but_no_click_url(client, received):
    post_fixture(client, "opened")
    (event,) = received
    assert event.user_agent.startswith("Mozilla/5.0")
    assert event.click_url is None


def test_spam_complaint_and_unsubscribe_suppress(client):
    post_fixture(client, "spam")
    assert Suppression.objects.get().reason == "complained"


def test_spam_block_is_recorded_as_an_unlinked_unknown_event(client, received):
    post_fixture(client, "spam_block")
    (event,) = received
    assert event.event_type == "unknown"
    assert event.timestamp == datetime(2025, 11, 30, 15, 20, tzinfo=UTC)
    assert (event.message_id, event.recipient) == (None, None)
    assert event.description == (
        "Spam block blocked for domain example.com (one_smtp, 8 SMTP servers)"
    )
    assert Event.objects.get().recipient is None


@pytest.mark.parametrize(
    ("delivery_status", "event_type", "reject_reason"),
    [
        ("err_user_unknown", "bounced", "invalid"),
        ("err_user_inactive", "bounced", "bounced"),
        ("err_mailbox_discarded", "bounced", "bounced"),
        ("err_unreachable", "bounced", "bounced"),
        ("err_domain_inactive", "bounced", "bounced"),
        ("err_spam_rejected", "bounced", "spam"),
        ("err_blacklisted", "bounced", "blocked"),
        ("err_unsubscribed", "bounced", "unsubscribed"),
        ("err_mailbox_full", "bounced", "other"),
        ("err_too_large", "bounced", "other"),
        ("err_giveup", "bounced", "timed_out"),
        ("err_delivery_failed", "bounced", "other"),
        ("err_something_new", "bounced", "bounced"),
        ("err_lost", "failed", None),  # Unisender Go lost it: not the recipient's doing
        ("err_internal", "failed", None),
    ],
)
def test_hard_bounce_reason_comes_from_delivery_status(
    client, received, delivery_status, event_type, reject_reason
):
    event = fixture_event("hard_bounced")
    event["event_data"]["delivery_info"]["delivery_status"] = delivery_status
    post(client, signed(callback(event)))
    assert (received[0].event_type, received[0].reject_reason) == (event_type, reject_reason)


def test_accepted_status_is_queued(client, received):
    event = fixture_event("sent")
    event["event_data"]["status"] = "accepted"
    post(client, signed(callback(event)))
    assert received[0].event_type == "queued"


def test_unknown_event_name_is_recorded_as_unknown(client, received):
    post(client, signed(callback({"event_name": "something_new", "event_data": {}})))
    assert received[0].event_type == "unknown"


def test_batch_gives_one_event_per_entry(client, received):
    post_fixture(client, "batch")
    assert [event.event_type for event in received] == [
        "sent",
        "delivered",
        "opened",
        "clicked",
        "unknown",
    ]
    assert Event.objects.count() == 5
    assert WebhookCall.objects.get().status == WebhookCallStatus.PROCESSED


def test_gzipped_body_is_accepted(client, received):
    # The webhook's "json_post_gzip" format.
    response = post(client, gzip.compress(fixture_body("batch")), content_type="application/gzip")
    assert response.status_code == 200, response.content
    assert len(received) == 5


def test_gzip_expanding_past_the_size_limit_is_400(client, settings):
    settings.MAILHUB = {**settings.MAILHUB, "WEBHOOK_MAX_BODY_BYTES": 1000}
    response = post(client, gzip.compress(b" " * 100_000), content_type="application/json")
    assert response.status_code == 400
    assert "decompressed" in response.json()["error"]


def test_replayed_call_stores_its_events_once(client):
    # The checksum has no timestamp to refuse a replay with; its events are duplicates.
    post_fixture(client, "delivered")
    post_fixture(client, "delivered")
    assert Event.objects.count() == 1


# Authentication: the "auth" checksum


def test_correct_checksum_is_accepted(client):
    assert post(client, signed(callback(fixture_event("delivered")))).status_code == 200


def test_checksum_of_another_api_key_is_refused(client):
    response = post(client, signed(callback(fixture_event("delivered")), api_key="other-key"))
    assert response.status_code == 403
    assert "UNISENDER_GO_API_KEY" in response.json()["error"]
    assert not WebhookCall.objects.exists()


def test_tampered_body_is_refused(client):
    body = fixture_body("delivered").replace(b"recipient@example.com", b"someone@example.com")
    assert post(client, body).status_code == 403


def test_missing_checksum_is_refused(client):
    body = json.dumps(callback(fixture_event("delivered"))).encode()
    response = post(client, body)
    assert response.status_code == 403
    assert "no 'auth'" in response.json()["error"]


def test_wrong_checksum_is_refused(client):
    body = fixture_body("delivered")
    auth = json.loads(body)["auth"]
    assert post(client, body.replace(auth.encode(), b"0" * 32)).status_code == 403


def test_without_api_key_calls_are_not_checked(client, settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": WEBHOOK_SECRET}
    body = json.dumps({"auth": "", **callback(fixture_event("delivered"))}).encode()
    assert post(client, body).status_code == 200


def test_api_key_makes_basic_auth_optional(settings):
    settings.ANYMAIL = {"UNISENDER_GO_API_KEY": API_KEY}
    UnisenderGoTrackingWebhookView()  # no warning (they'd be errors in tests)


def test_no_api_key_and_no_webhook_secret_warns(settings):
    settings.ANYMAIL = {}
    with pytest.warns(AnymailInsecureWebhookWarning):
        UnisenderGoTrackingWebhookView()


def test_basic_auth_is_still_checked_when_set(client):
    response = post(client, fixture_body("delivered"), auth=basic_auth("username:wrong"))
    assert response.status_code == 401


# Bad input


def test_malformed_json_is_400_and_kept(client):
    response = post(client, b'{"auth": "abc", "events_by_user": [')
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED


def test_empty_body_is_400(client):
    response = post(client, b"")
    assert response.status_code == 400
    assert "Empty" in response.json()["error"]


def test_wrong_content_type_is_400(client):
    response = post(client, b"auth=x", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert "application/json" in response.json()["error"]


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        ([{"msys": {"message_event": {"type": "delivery"}}}], "SparkPost"),
        ({"Type": "Notification", "TopicArn": "arn:scw:sns:fr-par:x:t", "Message": "{}"}, "SNS"),
        ({"signature": {}, "event-data": {"event": "delivered"}}, "Mailgun"),
    ],
)
def test_another_esps_payload_is_400_saying_so(client, payload, says):
    response = post(client, json.dumps(payload).encode())
    assert response.status_code == 400
    assert says in response.json()["error"]


def test_events_by_user_entry_without_events_is_400(client):
    response = post(client, signed({"events_by_user": [{"user_id": 456}]}))
    assert response.status_code == 400
    assert "'events' list" in response.json()["error"]


def test_bad_event_time_is_400(client):
    event = fixture_event("delivered")
    event["event_data"]["event_time"] = "30/11/2025"
    assert post(client, signed(callback(event))).status_code == 400
