"""Resend's tracking webhook: one JSON event per call, signed by Svix."""

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sending.exceptions import AnymailConfigurationError, AnymailInsecureWebhookWarning
from sending.models import Suppression
from sending.signals import tracking
from tests.webhook_contract import WEBHOOK_SECRET, EventSpec, TrackingWebhookContract, basic_auth
from tracking.models import Event, WebhookCall, WebhookCallStatus
from tracking.webhooks.resend import ResendTrackingWebhookView

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).parent / "fixtures" / "resend"
URL = "/anymail/resend/tracking/"
SECRET_BYTES = b"resend-test-signing-secret-32byt"
SIGNING_SECRET = "whsec_" + base64.b64encode(SECRET_BYTES).decode()
SVIX_ID = "msg_2mOK4hpq7cPbE1PZ7zV9sSGuKLm"

# Normalized event type -> Resend's event type, for the contract's events.
RESEND_EVENTS = {
    "queued": "email.scheduled",
    "sent": "email.sent",
    "delivered": "email.delivered",
    "deferred": "email.delivery_delayed",
    "complained": "email.complained",
    "bounced": "email.bounced",
    "opened": "email.opened",
    "clicked": "email.clicked",
    "failed": "email.failed",
    "rejected": "email.suppressed",
}


def svix_headers(body: bytes, msg_id=SVIX_ID, timestamp=None, secret=SECRET_BYTES) -> dict:
    """The headers Svix sends: id, timestamp and v1 signature of "{id}.{timestamp}.{body}"."""
    timestamp = str(int(time.time()) if timestamp is None else timestamp)
    signed = f"{msg_id}.{timestamp}.".encode() + body
    signature = base64.b64encode(hmac.new(secret, signed, hashlib.sha256).digest()).decode()
    return {
        "HTTP_SVIX_ID": msg_id,
        "HTTP_SVIX_TIMESTAMP": timestamp,
        "HTTP_SVIX_SIGNATURE": f"v1,{signature}",
    }


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def as_body(payload) -> bytes:
    return json.dumps(payload).encode()


@pytest.fixture(autouse=True)
def resend_settings(settings):
    settings.ANYMAIL = {
        **getattr(settings, "ANYMAIL", {}),
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "RESEND_SIGNING_SECRET": SIGNING_SECRET,
    }


@pytest.fixture
def received():
    """The events the tracking signal sends, in order."""
    events = []

    def receiver(sender, event, esp_name, **kwargs):
        events.append(event)

    tracking.connect(receiver, weak=False)
    yield events
    tracking.disconnect(receiver)


def post(client, body: bytes, content_type="application/json", signed=True, **extra):
    headers = {"HTTP_AUTHORIZATION": basic_auth()}
    if signed:
        headers.update(svix_headers(body))
    headers.update(extra)
    return client.generic("POST", URL, body, content_type=content_type, **headers)


def post_fixture(client, name: str):
    response = post(client, as_body(fixture(name)))
    assert response.status_code == 200, response.content
    return response


class TestResendWebhookContract(TrackingWebhookContract):
    esp = "resend"
    message_id = "49a3999c-0ce1-4ea6-ab68-afcd6dc2e794"
    one_event_per_call = True

    @pytest.fixture(autouse=True)
    def resend_secret(self, settings):
        settings.ANYMAIL = {
            **getattr(settings, "ANYMAIL", {}),
            "RESEND_SIGNING_SECRET": SIGNING_SECRET,
        }

    def event_body(self, events: list[EventSpec]):
        [spec] = events
        body = {
            "type": RESEND_EVENTS[spec.event_type],
            "created_at": spec.timestamp.isoformat().replace("+00:00", "Z"),
            "data": {
                "created_at": "2026-11-20T11:59:00.000000+00:00",
                "email_id": spec.message_id,
                "from": "Acme <from@example.com>",
                "to": [spec.recipient],
                "subject": "Contract",
            },
        }
        return as_body(body), "application/json"

    def signature_headers(self, body, content_type):
        # Svix ids are per message (the same on every retry): derive one from the body.
        return svix_headers(body, msg_id="msg_" + hashlib.sha256(body).hexdigest()[:27])


# One test per documented event type


def test_email_sent(client, received):
    post_fixture(client, "email.sent")
    [event] = received
    assert event.event_type == "sent"
    assert event.timestamp == datetime(2024, 2, 22, 23, 41, 12, 126000, tzinfo=UTC)
    assert event.event_id == SVIX_ID
    assert event.message_id == "56761188-7520-42d8-8898-ff6fc54ce618"
    assert event.recipient == "delivered@resend.dev"
    assert event.tags == ["confirm_email"]  # the Resend tag named "tag"
    assert event.metadata == {"order_id": "1234"}  # every other Resend tag
    assert event.esp_event == fixture("email.sent")
    stored = Event.objects.get()
    assert (stored.esp, stored.event_id, stored.message_id, stored.tags, stored.metadata) == (
        "resend",
        SVIX_ID,
        "56761188-7520-42d8-8898-ff6fc54ce618",
        ["confirm_email"],
        {"order_id": "1234"},
    )


def test_email_scheduled_is_queued(client, received):
    post_fixture(client, "email.scheduled")
    assert received[0].event_type == "queued"


def test_email_delivered(client, received):
    post_fixture(client, "email.delivered")
    [event] = received
    assert event.event_type == "delivered"
    assert event.timestamp == datetime(2024, 2, 22, 23, 41, 13, 508000, tzinfo=UTC)


def test_email_delivery_delayed_is_deferred(client, received):
    post_fixture(client, "email.delivery_delayed")
    assert (received[0].event_type, received[0].reject_reason) == ("deferred", None)


def test_email_complained(client, received):
    post_fixture(client, "email.complained")
    assert received[0].event_type == "complained"
    assert Suppression.objects.get().reason == "complained"


def test_email_bounced_permanent(client, received):
    post_fixture(client, "email.bounced")
    [event] = received
    assert (event.event_type, event.reject_reason) == ("bounced", "bounced")
    assert event.recipient == "bounced@resend.dev"
    assert event.description.startswith("The recipient's email address is on the suppression")
    assert Suppression.objects.get().address == "bounced@resend.dev"


def test_email_bounced_transient_is_timed_out_and_not_suppressed(client, received):
    post_fixture(client, "email.bounced_transient")
    [event] = received
    assert (event.event_type, event.reject_reason) == ("bounced", "timed_out")
    assert event.description == "The recipient's mailbox is full."
    assert not Suppression.objects.exists()


@pytest.mark.parametrize(
    "bounce_type, sub_type, reason",
    [
        ("Permanent", "NoEmail", "bounced"),
        ("Transient", "ContentRejected", "blocked"),
        ("Transient", "MessageTooLarge", "other"),
        ("Undetermined", "Undetermined", "other"),
    ],
)
def test_email_bounced_reasons(client, received, bounce_type, sub_type, reason):
    body = fixture("email.bounced")
    body["data"]["bounce"].update(type=bounce_type, subType=sub_type)
    assert post(client, as_body(body)).status_code == 200
    assert received[0].reject_reason == reason


def test_email_opened(client, received):
    post_fixture(client, "email.opened")
    assert received[0].event_type == "opened"


def test_email_clicked(client, received):
    post_fixture(client, "email.clicked")
    [event] = received
    assert (event.event_type, event.click_url) == ("clicked", "https://resend.com")
    assert event.user_agent.startswith("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)")
    assert Event.objects.get().click_url == "https://resend.com"


def test_email_failed(client, received):
    post_fixture(client, "email.failed")
    [event] = received
    assert (event.event_type, event.description) == ("failed", "reached_daily_quota")


def test_email_suppressed_is_rejected(client, received):
    post_fixture(client, "email.suppressed")
    [event] = received
    assert (event.event_type, event.reject_reason) == ("rejected", "bounced")
    assert event.recipient == "suppressed@resend.dev"
    assert "suppression list" in event.description


def test_contact_event_is_unknown(client, received):
    post_fixture(client, "contact.created")
    [event] = received
    assert (event.event_type, event.description) == ("unknown", "contact.created")
    assert (event.message_id, event.recipient) == (None, "steve.wozniak@gmail.com")


def test_several_recipients_give_one_event_each(client, received):
    # Before Resend's per-recipient events, one event listed every "to" address.
    body = fixture("email.delivered")
    body["data"]["to"] = ["a@example.com", "b@example.com"]
    assert post(client, as_body(body)).status_code == 200
    assert [(e.recipient, e.event_id) for e in received] == [
        ("a@example.com", f"{SVIX_ID}:a@example.com"),
        ("b@example.com", f"{SVIX_ID}:b@example.com"),
    ]
    assert Event.objects.count() == 2


def test_tags_as_name_value_list(client, received):
    body = fixture("email.sent")
    body["data"]["tags"] = [{"name": "tag", "value": "welcome"}, {"name": "user", "value": "42"}]
    assert post(client, as_body(body)).status_code == 200
    assert (received[0].tags, received[0].metadata) == (["welcome"], {"user": "42"})


def test_retried_call_is_stored_once(client, received):
    body = as_body(fixture("email.delivered"))
    assert post(client, body).status_code == 200
    # A retry is signed again with a new timestamp; the svix-id stays.
    assert (
        post(client, body, **svix_headers(body, timestamp=int(time.time()) + 1)).status_code == 200
    )
    assert Event.objects.count() == 1


# Signature


def test_missing_signature_headers_are_refused(client):
    response = post(client, as_body(fixture("email.sent")), signed=False)
    assert response.status_code == 403
    assert "svix-signature" in response.json()["error"]
    assert not WebhookCall.objects.exists()


def test_bad_signature_is_refused(client):
    body = as_body(fixture("email.sent"))
    response = post(client, body, **svix_headers(body, secret=b"another secret"))
    assert response.status_code == 403
    assert "RESEND_SIGNING_SECRET" in response.json()["error"]


def test_tampered_body_is_refused(client):
    body = as_body(fixture("email.sent"))
    headers = svix_headers(body)
    response = post(client, as_body(fixture("email.bounced")), signed=False, **headers)
    assert response.status_code == 403


def test_stale_timestamp_is_refused(client):
    body = as_body(fixture("email.sent"))
    response = post(client, body, **svix_headers(body, timestamp=int(time.time()) - 301))
    assert response.status_code == 403
    assert "300 seconds" in response.json()["error"]


def test_future_timestamp_is_refused(client):
    body = as_body(fixture("email.sent"))
    response = post(client, body, **svix_headers(body, timestamp=int(time.time()) + 600))
    assert response.status_code == 403


def test_tolerance_setting(client, settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "RESEND_WEBHOOK_TOLERANCE": 3600}
    body = as_body(fixture("email.sent"))
    response = post(client, body, **svix_headers(body, timestamp=int(time.time()) - 1800))
    assert response.status_code == 200


def test_any_of_several_signatures_is_accepted(client):
    # While a secret is rotated, Svix sends a signature for each secret.
    body = as_body(fixture("email.sent"))
    headers = svix_headers(body)
    old = svix_headers(body, secret=b"the old secret")["HTTP_SVIX_SIGNATURE"]
    headers["HTTP_SVIX_SIGNATURE"] = f"{old} v1a,ignored {headers['HTTP_SVIX_SIGNATURE']}"
    assert post(client, body, signed=False, **headers).status_code == 200


def test_several_secrets_are_accepted_while_rotating(client, settings):
    old_secret = "whsec_" + base64.b64encode(b"the old secret").decode()
    settings.ANYMAIL = {**settings.ANYMAIL, "RESEND_SIGNING_SECRET": [old_secret, SIGNING_SECRET]}
    assert post(client, as_body(fixture("email.sent"))).status_code == 200


def test_unbranded_webhook_headers_are_accepted(client):
    body = as_body(fixture("email.sent"))
    headers = {
        name.replace("HTTP_SVIX_", "HTTP_WEBHOOK_"): value
        for name, value in svix_headers(body).items()
    }
    assert post(client, body, signed=False, **headers).status_code == 200


def test_invalid_secret_setting_names_the_setting():
    with pytest.raises(AnymailConfigurationError, match="RESEND_SIGNING_SECRET"):
        ResendTrackingWebhookView(signing_secret="whsec_not base64!")


def test_without_secret_signature_is_not_checked(client, settings, received):
    settings.ANYMAIL = {"WEBHOOK_SECRET": WEBHOOK_SECRET}
    assert post(client, as_body(fixture("email.sent")), signed=False).status_code == 200
    assert received[0].event_id is None  # no svix-id: deduplicated by content


def test_without_secret_or_basic_auth_warns(client, settings):
    settings.ANYMAIL = {}
    with pytest.warns(AnymailInsecureWebhookWarning):
        response = client.post(URL, fixture("email.sent"), content_type="application/json")
    assert response.status_code == 200


def test_secret_without_basic_auth_does_not_warn(client, settings):
    settings.ANYMAIL = {"RESEND_SIGNING_SECRET": SIGNING_SECRET}
    body = as_body(fixture("email.sent"))
    response = client.generic(
        "POST", URL, body, content_type="application/json", **svix_headers(body)
    )
    assert response.status_code == 200


# Bad payloads


def test_malformed_json_is_400_and_kept(client):
    response = post(client, b'{"type": "email.sent", ')
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED


def test_empty_body_is_400(client):
    assert post(client, b"").status_code == 400


def test_wrong_content_type_is_400(client):
    response = post(client, b"type=email.sent", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert "application/json" in response.json()["error"]


def test_another_esps_payload_is_400(client):
    # A Postal event posted to the Resend URL.
    body = as_body({"event": "MessageSent", "timestamp": 1477945177.1, "uuid": "x", "payload": {}})
    response = post(client, body)
    assert response.status_code == 400
    assert "another ESP" in response.json()["error"]


def test_inbound_event_is_400(client):
    response = post(client, as_body(fixture("email.received")))
    assert response.status_code == 400
    assert "inbound" in response.json()["error"]
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED
