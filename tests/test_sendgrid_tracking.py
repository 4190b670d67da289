"""SendGrid's Event Webhook: payload parsing, the Signed Event Webhook, and the shared contract."""

import base64
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sending.exceptions import AnymailConfigurationError, AnymailInsecureWebhookWarning
from sending.models import Suppression
from sending.signals import tracking
from tests.webhook_contract import WEBHOOK_SECRET, EventSpec, TrackingWebhookContract, basic_auth
from tracking.models import Event, WebhookCall, WebhookCallStatus
from tracking.webhooks.sendgrid import SendGridTrackingWebhookView

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).parent / "fixtures" / "sendgrid"
URL = "/anymail/sendgrid/tracking/"
MESSAGE_ID = "0a8e8b1e-4c61-4d3b-9f2f-2a7d4c1e5b93"  # the mailhub_id custom arg
METADATA = {"order_id": "12345", "customer": "C-42"}

# The Signed Event Webhook's key pair; SendGrid shows the public half as base64 DER.
PRIVATE_KEY = ec.generate_private_key(ec.SECP256R1())
VERIFICATION_KEY = base64.b64encode(
    PRIVATE_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()


def signature_headers(body: bytes, timestamp: int | None = None, key=PRIVATE_KEY) -> dict:
    timestamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE": base64.b64encode(signature).decode(),
        "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP": timestamp,
    }


def fixture_body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def post(client, body, content_type="application/json", signed=True, **headers):
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    if signed:
        headers = {**signature_headers(body), **headers}
    return client.generic(
        "POST", URL, body, content_type=content_type, HTTP_AUTHORIZATION=basic_auth(), **headers
    )


def post_fixture(client, name):
    response = post(client, fixture_body(name))
    assert response.status_code == 200, response.content
    return Event.objects.get()


@pytest.fixture(autouse=True)
def sendgrid_settings(settings):
    settings.ANYMAIL = {
        **settings.ANYMAIL,
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY": VERIFICATION_KEY,
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


# The contract


class TestSendGridWebhookContract(TrackingWebhookContract):
    esp = "sendgrid"
    message_id = MESSAGE_ID

    @pytest.fixture(autouse=True)
    def verification_key(self, webhook_settings, settings):
        settings.ANYMAIL = {
            **settings.ANYMAIL,
            "SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY": VERIFICATION_KEY,
        }

    def event_body(self, events: list[EventSpec]):
        sendgrid_events = {
            "delivered": "delivered",
            "deferred": "deferred",
            "bounced": "bounce",
            "opened": "open",
            "clicked": "click",
        }
        body = [
            {
                "email": spec.recipient,
                "timestamp": int(spec.timestamp.timestamp()),
                "event": sendgrid_events[spec.event_type],
                "sg_event_id": spec.event_id,
                "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
                "mailhub_id": spec.message_id,
            }
            for spec in events
        ]
        return json.dumps(body).encode(), "application/json"

    def signature_headers(self, body: bytes, content_type: str):
        return signature_headers(body)


# One test per event type


def test_processed_is_queued(client, tracked):
    event = post_fixture(client, "processed.json")
    assert (event.event_type, event.timestamp) == (
        "queued",
        datetime(2017, 12, 15, 0, 59, 29, tzinfo=UTC),
    )
    assert event.event_id == "rbtnWrG1DVDGGGFHFyun0A=="
    assert (event.message_id, event.recipient_address) == (MESSAGE_ID, "example@test.com")
    assert event.tags == ["shipping", "order"]
    assert event.metadata == METADATA
    (signalled,) = tracked
    assert signalled.esp_event["pool"] == {"name": "new_MY_test", "id": 210}


def test_dropped_is_rejected(client):
    event = post_fixture(client, "dropped.json")
    assert (event.event_type, event.reject_reason) == ("rejected", "bounced")
    assert event.description == "Bounced Address"
    assert not Suppression.objects.exists()


@pytest.mark.parametrize(
    ("reason", "reject_reason"),
    [
        ("Unsubscribed Address", "unsubscribed"),
        ("Spam Reporting Address", "spam"),
        ("Spam Content", "spam"),
        ("Invalid", "invalid"),
        ("Invalid SMTPAPI header", "other"),
        ("Recipient List over Package Quota", "other"),
    ],
)
def test_drop_reasons(client, reason, reject_reason):
    (esp_event,) = json.loads(fixture_body("dropped.json"))
    esp_event["reason"] = reason
    assert post(client, [esp_event]).status_code == 200
    assert Event.objects.get().reject_reason == reject_reason


def test_delivered(client):
    event = post_fixture(client, "delivered.json")
    assert (event.event_type, event.mta_response) == ("delivered", "250 OK")
    assert event.metadata == METADATA  # "tls" is SendGrid's, not a custom arg


def test_deferred(client):
    event = post_fixture(client, "deferred.json")
    assert (event.event_type, event.mta_response) == ("deferred", "400 try again later")
    assert event.metadata == METADATA


def test_bounce(client):
    event = post_fixture(client, "bounce.json")
    assert (event.event_type, event.reject_reason) == ("bounced", "invalid")
    assert event.description == "Invalid Address"
    assert event.mta_response.startswith("550 5.1.1 The email account")
    assert Suppression.objects.get().reason == "invalid"


def test_blocked(client):
    event = post_fixture(client, "blocked.json")
    assert (event.event_type, event.reject_reason) == ("bounced", "blocked")
    assert event.mta_response == "554 5.7.1 Message rejected due to sender reputation"
    assert not Suppression.objects.exists()


@pytest.mark.parametrize(
    ("classification", "reject_reason"),
    [
        ("Mailbox Unavailable", "bounced"),
        ("Content", "spam"),
        ("Reputation", "blocked"),
        ("Technical Failure", "other"),
        ("Unclassified", "bounced"),
    ],
)
def test_bounce_classifications(client, classification, reject_reason):
    (esp_event,) = json.loads(fixture_body("bounce.json"))
    esp_event["bounce_classification"] = classification
    assert post(client, [esp_event]).status_code == 200
    assert Event.objects.get().reject_reason == reject_reason


def test_open(client):
    event = post_fixture(client, "open.json")
    assert event.event_type == "opened"
    assert event.user_agent.startswith("Mozilla/5.0 (Macintosh")
    assert event.metadata == METADATA


def test_click(client):
    event = post_fixture(client, "click.json")
    assert (event.event_type, event.click_url) == ("clicked", "https://example.com/orders/12345")
    assert event.metadata == METADATA


def test_spamreport(client):
    event = post_fixture(client, "spamreport.json")
    assert event.event_type == "complained"
    assert Suppression.objects.get().reason == "complained"


def test_unsubscribe(client):
    event = post_fixture(client, "unsubscribe.json")
    assert event.event_type == "unsubscribed"
    assert Suppression.objects.get().reason == "unsubscribed"


def test_group_unsubscribe(client):
    event = post_fixture(client, "group_unsubscribe.json")
    assert (event.event_type, event.description) == ("unsubscribed", "unsubscribe group 10")
    assert event.click_url == ""
    assert event.metadata == METADATA


def test_group_resubscribe(client):
    event = post_fixture(client, "group_resubscribe.json")
    assert event.event_type == "subscribed"


def test_batch_gives_one_event_each(client, tracked):
    response = post(client, fixture_body("batch.json"))
    assert response.status_code == 200
    assert response.json()["events"] == 4
    assert [event.event_type for event in tracked] == ["queued", "delivered", "opened", "clicked"]
    assert Event.objects.count() == 4


def test_single_category_string_is_one_tag(client):
    (esp_event,) = json.loads(fixture_body("delivered.json"))
    esp_event["category"] = "cat facts"
    assert post(client, [esp_event]).status_code == 200
    assert Event.objects.get().tags == ["cat facts"]


def test_message_id_falls_back_to_anymail_id_then_sg_message_id(client):
    (esp_event,) = json.loads(fixture_body("delivered.json"))
    del esp_event["mailhub_id"]
    anymail_sent = {**esp_event, "anymail_id": "anymail-uuid", "sg_event_id": "a"}
    neither = {**esp_event, "sg_event_id": "b"}
    assert post(client, [anymail_sent, neither]).status_code == 200
    assert dict(Event.objects.values_list("event_id", "message_id")) == {
        "a": "anymail-uuid",
        "b": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
    }
    assert Event.objects.get(event_id="a").metadata == METADATA


def test_unknown_event_type_is_kept_as_unknown(client):
    account_event = {
        "event": "account_status_change",
        "type": "compliance_suspend",
        "timestamp": 1513299569,
        "sg_event_id": "YWNjb3VudA==",
    }
    assert post(client, [account_event]).status_code == 200
    event = Event.objects.get()
    assert (event.event_type, event.description) == ("unknown", "compliance_suspend")


# Signed Event Webhook


def test_valid_signature_is_accepted(client):
    assert post(client, fixture_body("delivered.json")).status_code == 200


def test_missing_signature_is_403(client):
    response = post(client, fixture_body("delivered.json"), signed=False)
    assert response.status_code == 403
    assert "X-Twilio-Email-Event-Webhook-Signature" in response.json()["error"]
    assert not WebhookCall.objects.exists()


def test_bad_signature_is_403(client):
    other_key = ec.generate_private_key(ec.SECP256R1())
    body = fixture_body("delivered.json")
    response = post(client, body, signed=False, **signature_headers(body, key=other_key))
    assert response.status_code == 403
    assert "SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY" in response.json()["error"]


def test_signature_over_another_body_is_403(client):
    headers = signature_headers(fixture_body("open.json"))
    response = post(client, fixture_body("spamreport.json"), signed=False, **headers)
    assert response.status_code == 403
    assert not Event.objects.exists()


def test_garbled_signature_is_403(client):
    headers = {
        "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE": "not base64!",
        "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP": str(int(time.time())),
    }
    response = post(client, fixture_body("delivered.json"), signed=False, **headers)
    assert response.status_code == 403


def test_stale_timestamp_is_403(client):
    body = fixture_body("delivered.json")
    headers = signature_headers(body, timestamp=int(time.time()) - 301)
    response = post(client, body, signed=False, **headers)
    assert response.status_code == 403
    assert "300 seconds" in response.json()["error"]


def test_tolerance_is_a_setting(client, settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "SENDGRID_WEBHOOK_TOLERANCE": 86400}
    body = fixture_body("delivered.json")
    headers = signature_headers(body, timestamp=int(time.time()) - 3600)
    assert post(client, body, signed=False, **headers).status_code == 200


def test_pem_verification_key_works(client, settings):
    pem = (
        PRIVATE_KEY.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    settings.ANYMAIL = {**settings.ANYMAIL, "SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY": pem}
    assert post(client, fixture_body("delivered.json")).status_code == 200


def test_without_verification_key_signatures_are_not_checked(client, settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": WEBHOOK_SECRET}
    assert post(client, fixture_body("delivered.json"), signed=False).status_code == 200


def test_verification_key_makes_basic_auth_optional(settings):
    settings.ANYMAIL = {"SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY": VERIFICATION_KEY}
    SendGridTrackingWebhookView()  # no warning (warnings are errors in this suite)


def test_no_key_and_no_basic_auth_warns(settings):
    settings.ANYMAIL = {}
    with pytest.warns(AnymailInsecureWebhookWarning):
        SendGridTrackingWebhookView()


@pytest.mark.parametrize(
    "key",
    [
        "not a key",
        base64.b64encode(b"not DER").decode(),
        base64.b64encode(
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            .public_key()
            .public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ).decode(),
    ],
)
def test_unusable_verification_key_is_a_configuration_error(settings, key):
    settings.ANYMAIL = {"SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY": key}
    with pytest.raises(AnymailConfigurationError, match="SENDGRID_TRACKING_WEBHOOK_VERIFICATION"):
        SendGridTrackingWebhookView()


# Bad payloads


def test_malformed_json_is_400_and_kept(client):
    response = post(client, b'[{"event": "delivered", ')
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED


def test_empty_body_is_400(client):
    response = post(client, b"")
    assert response.status_code == 400
    assert "Empty SendGrid webhook body" in response.json()["error"]


def test_wrong_content_type_is_400(client):
    response = post(client, fixture_body("delivered.json"), content_type="text/plain")
    assert response.status_code == 400
    assert "application/json" in response.json()["error"]


def test_inbound_parse_post_is_400_saying_so(client):
    body = "envelope=%7B%7D&charsets=%7B%7D&from=a%40example.com&text=Hi&headers=Subject%3A+x"
    response = post(client, body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert "Inbound Parse" in response.json()["error"]


def test_mailgun_payload_is_400_saying_so(client):
    response = post(client, {"signature": {}, "event-data": {"event": "delivered"}})
    assert response.status_code == 400
    assert "Mailgun" in response.json()["error"]


def test_postmark_payload_is_400_saying_so(client):
    response = post(client, {"RecordType": "Delivery", "MessageID": "x"})
    assert response.status_code == 400
    assert "Postmark" in response.json()["error"]


def test_event_that_is_not_an_object_is_400(client):
    response = post(client, ["delivered"])
    assert response.status_code == 400
    assert '"event" field' in response.json()["error"]


def test_event_without_timestamp_is_400(client):
    response = post(client, [{"event": "delivered", "email": "a@example.com"}])
    assert response.status_code == 400
    assert "Malformed SendGrid" in response.json()["error"]
