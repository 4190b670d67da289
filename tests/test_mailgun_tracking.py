"""Mailgun's tracking webhook: payload parsing, signature checks, and the shared contract."""

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sending.exceptions import AnymailInsecureWebhookWarning
from sending.models import Suppression
from sending.signals import tracking
from tests.webhook_contract import WEBHOOK_SECRET, EventSpec, TrackingWebhookContract, basic_auth
from tracking.models import Event, WebhookCall, WebhookCallStatus
from tracking.webhooks.mailgun import MailgunTrackingWebhookView

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).parent / "fixtures" / "mailgun"
URL = "/anymail/mailgun/tracking/"
SIGNING_KEY = "whsec-mailgun-test-signing-key"
MESSAGE_ID = "<20260203192638.000be97f99f8cea1@mg.example.com>"


def sign(payload: dict, key: str = SIGNING_KEY, timestamp: int | None = None) -> dict:
    """payload with a valid Mailgun signature block (keeping its token)."""
    timestamp = str(int(time.time()) if timestamp is None else timestamp)
    token = payload["signature"]["token"]
    digest = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {**payload, "signature": {"timestamp": timestamp, "token": token, "signature": digest}}


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def post(client, payload, content_type="application/json", auth=None):
    body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
    return client.generic(
        "POST", URL, body, content_type=content_type, HTTP_AUTHORIZATION=auth or basic_auth()
    )


@pytest.fixture(autouse=True)
def mailgun_settings(settings):
    settings.ANYMAIL = {
        **settings.ANYMAIL,
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY,
    }


@pytest.fixture
def tracked():
    """The events sent with the tracking signal during the test."""
    seen = []

    def receiver(sender, event, esp_name, **kwargs):
        seen.append(event)

    tracking.connect(receiver, weak=False)
    yield seen
    tracking.disconnect(receiver)


def post_fixture(client, name):
    response = post(client, sign(fixture(name)))
    assert response.status_code == 200, response.content
    return Event.objects.get()


# The contract


class TestMailgunWebhookContract(TrackingWebhookContract):
    esp = "mailgun"
    message_id = MESSAGE_ID
    one_event_per_call = True

    @pytest.fixture(autouse=True)
    def signing_key(self, webhook_settings, settings):
        settings.ANYMAIL = {**settings.ANYMAIL, "MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY}

    def event_body(self, events: list[EventSpec]):
        (spec,) = events
        event_data = {
            "id": spec.event_id,
            "timestamp": spec.timestamp.timestamp(),
            "recipient": spec.recipient,
            "message": {"headers": {"message-id": spec.message_id.strip("<>")}},
            "tags": [],
            "user-variables": {},
        }
        if spec.event_type == "deferred":
            event_data.update(event="failed", severity="temporary", reason="generic")
        elif spec.event_type == "bounced":
            event_data.update(event="failed", severity="permanent", reason="bounce")
        else:
            event_data["event"] = spec.event_type  # delivered, opened, clicked, ...
        # The token is the event id, so derive it from the spec's (50 characters, like Mailgun's).
        token = hashlib.sha256(spec.event_id.encode()).hexdigest()[:50]
        payload = sign({"signature": {"token": token}, "event-data": event_data})
        return json.dumps(payload).encode(), "application/json"


# One test per event type


def test_delivered(client, tracked):
    event = post_fixture(client, "delivered.json")
    assert (event.event_type, event.timestamp) == (
        "delivered",
        datetime(2026, 2, 12, 18, 26, 12, 908181, tzinfo=UTC),
    )
    assert event.event_id == "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"
    assert (event.message_id, event.recipient_address) == (MESSAGE_ID, "alice@example.com")
    assert event.mta_response == "250 OK"
    assert event.tags == ["shipping", "order"]
    assert event.metadata == {"order_id": "12345", "customer": "C-42"}
    (signalled,) = tracked
    assert signalled.esp_event["event-data"]["id"] == "CPgfbmQMTCKtHW6uIWtuVe"
    assert signalled.message_id == MESSAGE_ID


def test_accepted_is_queued(client):
    event = post_fixture(client, "accepted.json")
    assert (event.event_type, event.message_id) == ("queued", MESSAGE_ID)


def test_rejected(client):
    event = post_fixture(client, "rejected.json")
    assert (event.event_type, event.reject_reason) == ("rejected", "other")
    assert event.description.startswith("Sandbox subdomains are for test purposes only")


def test_temporary_failure_is_deferred(client):
    event = post_fixture(client, "failed_temporary.json")
    assert (event.event_type, event.reject_reason) == ("deferred", "")
    assert event.mta_response.startswith("452 4.2.2 The email account that you tried to reach")
    assert not Suppression.objects.exists()


def test_permanent_failure_is_a_bounce_and_suppresses(client):
    event = post_fixture(client, "failed_permanent.json")
    assert (event.event_type, event.reject_reason) == ("bounced", "bounced")
    assert event.mta_response.startswith("550 5.1.1 The email account that you tried to reach")
    assert Suppression.objects.get().address == "alice@example.com"


def test_suppressed_address_is_rejected(client):
    event = post_fixture(client, "failed_suppress_bounce.json")
    assert (event.event_type, event.reject_reason) == ("rejected", "bounced")
    assert event.description == "Not delivering to previously bounced address"
    assert event.mta_response == "605"


def test_retry_limit_reached_is_a_timed_out_bounce(client):
    event = post_fixture(client, "failed_old.json")
    assert (event.event_type, event.reject_reason) == ("bounced", "timed_out")
    assert not Suppression.objects.exists()


@pytest.mark.parametrize(
    ("reason", "event_type", "reject_reason"),
    [
        ("suppress-complaint", "rejected", "spam"),
        ("suppress-unsubscribe", "rejected", "unsubscribed"),
        ("espblock", "bounced", "blocked"),
        ("something-new", "bounced", "other"),
    ],
)
def test_permanent_failure_reasons(client, reason, event_type, reject_reason):
    payload = fixture("failed_permanent.json")
    payload["event-data"]["reason"] = reason
    assert post(client, sign(payload)).status_code == 200
    event = Event.objects.get()
    assert (event.event_type, event.reject_reason) == (event_type, reject_reason)


def test_opened(client):
    event = post_fixture(client, "opened.json")
    assert (event.event_type, event.message_id) == ("opened", MESSAGE_ID)
    assert event.user_agent.startswith("Mozilla/5.0 (Windows NT 10.0")
    assert event.click_url == ""


def test_clicked(client):
    event = post_fixture(client, "clicked.json")
    assert (event.event_type, event.click_url) == ("clicked", "https://example.com/orders/12345")
    assert event.user_agent.startswith("Mozilla/5.0")


def test_unsubscribed(client):
    event = post_fixture(client, "unsubscribed.json")
    assert event.event_type == "unsubscribed"
    assert Suppression.objects.get().reason == "unsubscribed"


def test_complained(client):
    event = post_fixture(client, "complained.json")
    assert event.event_type == "complained"
    assert Suppression.objects.get().reason == "complained"


def test_unknown_event_type_is_kept_as_unknown(client):
    payload = fixture("delivered.json")
    payload["event-data"]["event"] = "list_member_uploaded"
    assert post(client, sign(payload)).status_code == 200
    assert Event.objects.get().event_type == "unknown"


def test_message_id_already_in_brackets_is_unchanged(client):
    payload = fixture("delivered.json")
    payload["event-data"]["message"]["headers"]["message-id"] = MESSAGE_ID
    assert post(client, sign(payload)).status_code == 200
    assert Event.objects.get().message_id == MESSAGE_ID


# Signature


def test_valid_signature_is_accepted(client):
    assert post(client, sign(fixture("delivered.json"))).status_code == 200


def test_missing_signature_is_403(client):
    payload = fixture("delivered.json")
    del payload["signature"]
    response = post(client, payload)
    assert response.status_code == 403
    assert not WebhookCall.objects.exists()


def test_bad_signature_is_403_and_names_the_setting(client):
    response = post(client, sign(fixture("delivered.json"), key="some-other-key"))
    assert response.status_code == 403
    assert "MAILGUN_WEBHOOK_SIGNING_KEY" in response.json()["error"]
    assert not Event.objects.exists()


def test_stale_timestamp_is_403(client):
    payload = sign(fixture("delivered.json"), timestamp=int(time.time()) - 301)
    response = post(client, payload)
    assert response.status_code == 403
    assert "300 seconds" in response.json()["error"]


def test_replayed_token_cannot_carry_another_event(client):
    # Mailgun signs only timestamp + token; the token is the event id, so reusing
    # a captured signature block for forged event-data records nothing new.
    payload = sign(fixture("delivered.json"))
    assert post(client, payload).status_code == 200
    forged = {**payload, "event-data": {**payload["event-data"], "event": "complained"}}
    assert post(client, forged).status_code == 200
    assert list(Event.objects.values_list("event_type", flat=True)) == ["delivered"]
    assert not Suppression.objects.exists()


def test_tolerance_is_a_setting(client, settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "MAILGUN_WEBHOOK_TOLERANCE": 8 * 3600}
    payload = sign(fixture("delivered.json"), timestamp=int(time.time()) - 3600)
    assert post(client, payload).status_code == 200


def test_subaccount_parent_signature_is_accepted(client):
    # The configured key is the primary account's; the subaccount signs with its own.
    payload = sign(fixture("delivered.json"), key=SIGNING_KEY)
    by_subaccount = sign(payload, key="subaccount-signing-key")["signature"]["signature"]
    payload["signature"]["parent-signature"] = payload["signature"]["signature"]
    payload["signature"]["signature"] = by_subaccount
    assert post(client, payload).status_code == 200


def test_api_key_is_the_signing_key_when_no_signing_key_is_set(client, settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": WEBHOOK_SECRET, "MAILGUN_API_KEY": "key-legacy"}
    assert post(client, sign(fixture("delivered.json"), key="key-legacy")).status_code == 200
    response = post(client, sign(fixture("opened.json"), key=SIGNING_KEY))
    assert response.status_code == 403
    assert "MAILGUN_API_KEY" in response.json()["error"]


def test_without_any_key_signatures_are_not_checked(client, settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": WEBHOOK_SECRET}
    payload = fixture("delivered.json")  # its signature block doesn't verify
    assert post(client, payload).status_code == 200


def test_signing_key_makes_basic_auth_optional(settings):
    settings.ANYMAIL = {"MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY}
    MailgunTrackingWebhookView()  # no warning (warnings are errors in this suite)


def test_no_key_and_no_basic_auth_warns(settings):
    settings.ANYMAIL = {}
    with pytest.warns(AnymailInsecureWebhookWarning):
        MailgunTrackingWebhookView()


def test_stored_call_reprocesses_without_the_signing_key(client, settings):
    from tracking import services

    assert post(client, sign(fixture("delivered.json"))).status_code == 200
    Event.objects.all().delete()
    settings.ANYMAIL = {"WEBHOOK_SECRET": WEBHOOK_SECRET}  # the key was rotated since
    assert services.webhook_call_reprocess(call=WebhookCall.objects.get()) == 1
    assert Event.objects.get().event_type == "delivered"


# Bad payloads


def test_malformed_json_is_400_and_kept(client):
    response = post(client, b'{"signature": {"token": ')
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED


def test_empty_body_is_400(client):
    response = post(client, b"")
    assert response.status_code == 400
    assert "Empty" in response.json()["error"]


def test_wrong_content_type_is_400(client):
    response = post(client, json.dumps(sign(fixture("delivered.json"))), content_type="text/plain")
    assert response.status_code == 400
    assert "application/json" in response.json()["error"]


def test_legacy_form_webhook_is_400_saying_so(client):
    body = "event=delivered&token=abc&timestamp=1&signature=def&recipient=alice%40example.com"
    response = post(client, body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert "legacy webhook" in response.json()["error"]


def test_inbound_route_post_is_400_saying_so(client):
    body = "recipient=in%40mg.example.com&sender=a%40example.com&body-plain=Hi"
    response = post(client, body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert "inbound" in response.json()["error"]


def test_postmark_payload_is_400_saying_so(client):
    response = post(client, {"RecordType": "Delivery", "MessageID": "x"})
    assert response.status_code == 400
    assert "Postmark" in response.json()["error"]


def test_sendgrid_batch_is_400_saying_so(client):
    response = post(client, [{"event": "delivered", "email": "a@example.com"}])
    assert response.status_code == 400
    assert "batch" in response.json()["error"]


def test_event_data_without_timestamp_is_400(client):
    payload = fixture("delivered.json")
    del payload["event-data"]["timestamp"]
    response = post(client, sign(payload))
    assert response.status_code == 400
    assert "Malformed Mailgun" in response.json()["error"]
