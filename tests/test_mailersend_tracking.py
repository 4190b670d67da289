"""The MailerSend tracking webhook: 2.0 and 1.0 payloads, the Signature header and bad input."""

import hashlib
import hmac
import json
import warnings
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sending.exceptions import AnymailInsecureWebhookWarning
from sending.message import AnymailMessage
from sending.models import Recipient, Suppression
from sending.signals import tracking
from tests.webhook_contract import (
    WEBHOOK_SECRET,
    EventSpec,
    TrackingWebhookContract,
    basic_auth,
    tracking_fixture_names,
)
from tracking.models import Event, WebhookCall, WebhookCallStatus
from tracking.webhooks.mailersend import MailerSendTrackingWebhookView

pytestmark = pytest.mark.django_db

URL = "/anymail/mailersend/tracking/"
FIXTURES = Path(__file__).parent / "fixtures" / "mailersend"
SIGNING_SECRET = "Fn3kq8ZtV1mRw2yXc9PaL0sDg7HjKe4B"
# The public secret MailerSend signs its webhook.test URL check with.
TEST_PING_SECRET = "test_Am3L1GuOIc4blLUuHqAPxxwkZaJyEk8G"
# The fixtures' message: the send API's X-Message-Id, as the send backend records it.
MESSAGE_ID = "6902a1f4c1d2e3f4a5b6c7d8"
RECIPIENT = "recipient@example.com"


def sign(body: bytes, secret: str = SIGNING_SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# Normalized event type -> the MailerSend activity that produces it.
ACTIVITIES = {
    "sent": "sent",
    "delivered": "delivered",
    "deferred": "deferred",
    "bounced": "hard_bounced",
    "opened": "opened",
    "clicked": "clicked",
    "unsubscribed": "unsubscribed",
    "complained": "spam_complaint",
}


def mailersend_event(spec: EventSpec) -> dict:
    """A webhook 2.0 activity event."""
    activity = ACTIVITIES[spec.event_type]
    return {
        "type": f"activity.{activity}",
        "created_at": spec.timestamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "data": {
            "id": spec.event_id,
            "domain_id": "yv69oxl5kl785kw2",
            "message_id": spec.message_id,
            "email_id": "6902a1f5e78995a317577aa1",
            "type": activity,
            "subject": "Contract",
            "email": spec.recipient,
            "tags": [],
            "meta": [],
        },
    }


class TestMailerSendWebhookContract(TrackingWebhookContract):
    esp = "mailersend"
    message_id = "61487a14608b1d0b4d506633"
    one_event_per_call = True

    def event_body(self, events: list[EventSpec]):
        [spec] = events  # MailerSend posts one event per call
        return json.dumps(mailersend_event(spec)).encode(), "application/json"

    def signature_headers(self, body: bytes, content_type: str) -> dict[str, str]:
        return {"HTTP_SIGNATURE": sign(body)}


# Helpers


@pytest.fixture(autouse=True)
def mailersend_settings(settings):
    """Basic auth and MailerSend's signing secret (for the contract tests too)."""
    settings.ANYMAIL = {
        **settings.ANYMAIL,
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "MAILERSEND_SIGNING_SECRET": SIGNING_SECRET,
    }


@pytest.fixture
def received():
    """The events the tracking signal delivered, with the esp_name it gave."""
    events = []

    def receiver(sender, event, esp_name, **kwargs):
        events.append((event, esp_name))

    tracking.connect(receiver, weak=False)
    yield events
    tracking.disconnect(receiver)


def fixture_body(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def post(client, body, content_type="application/json", signature=None, **extra):
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    headers = {"HTTP_AUTHORIZATION": basic_auth()}
    if signature is not False:
        headers["HTTP_SIGNATURE"] = signature if signature is not None else sign(body)
    headers.update(extra)
    return client.generic("POST", URL, body, content_type=content_type, **headers)


def post_fixture(client, name: str):
    response = post(client, fixture_body(name))
    assert response.status_code == 200, response.content
    return response


# Each documented activity, from real-shaped fixtures (2.0, the default, and 1.0 "legacy")

# fixture -> (event_type, reject_reason, description, mta_response, click_url, tags)
V2_TAGS = ["shipping", "transactional"]
EXPECTED = {
    "sent": ("sent", None, None, None, None, V2_TAGS),
    "delivered": ("delivered", None, None, None, None, V2_TAGS),
    "deferred": ("deferred", None, None, None, None, V2_TAGS),
    "soft_bounced": ("bounced", "timed_out", None, None, None, V2_TAGS),
    "hard_bounced": ("bounced", "bounced", None, None, None, V2_TAGS),
    "opened": ("opened", None, None, None, None, V2_TAGS),
    "opened_unique": ("opened", None, None, None, None, V2_TAGS),
    "clicked": ("clicked", None, None, None, None, V2_TAGS),
    "clicked_unique": ("clicked", None, None, None, None, V2_TAGS),
    "unsubscribed": ("unsubscribed", None, None, None, None, V2_TAGS),
    "spam_complaint": ("complained", None, None, None, None, V2_TAGS),
    "survey_opened": ("unknown", None, None, None, None, V2_TAGS),
    "survey_submitted": ("unknown", None, None, None, None, V2_TAGS),
    "sent_v1": ("sent", None, None, None, None, ["shipping"]),
    "hard_bounced_v1": (
        "bounced",
        "bounced",
        "Host or domain name not found",
        "Host or domain name not found",
        None,
        ["shipping"],
    ),
    "soft_bounced_v1": (
        "bounced",
        "timed_out",
        "Mailbox full",
        "Mailbox full",
        None,
        ["shipping"],
    ),
    "opened_v1": ("opened", None, None, None, None, ["shipping"]),
    "clicked_v1": (
        "clicked",
        None,
        None,
        None,
        "https://shop.example.com/orders/1234",
        ["shipping"],
    ),
    "unsubscribed_v1": (
        "unsubscribed",
        None,
        "I no longer want to receive these emails",
        None,
        None,
        ["shipping"],
    ),
    "spam_complaint_v1": ("complained", None, None, None, None, ["shipping"]),
}
NOT_ACTIVITIES = {"webhook_test", "maintenance_start", "bulk_email_completed", "inbound"}


def test_every_fixture_has_expectations():
    fixtures = tracking_fixture_names(FIXTURES)
    assert fixtures - NOT_ACTIVITIES == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_event_is_normalized(client, received, name):
    raw = json.loads(fixture_body(name))
    post_fixture(client, name)

    event_type, reject_reason, description, mta_response, click_url, tags = EXPECTED[name]
    [(event, esp_name)] = received
    assert esp_name == "MailerSend"
    assert event.event_type == event_type
    # the activity's own time in 1.0 payloads; the (only) created_at in 2.0
    created_at = raw["data"].get("created_at") or raw["created_at"]
    assert event.timestamp == datetime.fromisoformat(created_at)
    assert event.timestamp.tzinfo is not None
    assert event.event_id == raw["data"]["id"]
    assert (event.message_id, event.recipient) == (MESSAGE_ID, RECIPIENT)
    assert event.reject_reason == reject_reason
    assert event.description == description
    assert event.mta_response == mta_response
    assert event.click_url == click_url
    assert event.user_agent is None
    assert event.tags == tags
    assert event.metadata == {}
    assert event.esp_event == raw

    stored = Event.objects.get()
    assert (stored.esp, stored.event_type, stored.event_id) == (
        "mailersend",
        event_type,
        raw["data"]["id"],
    )
    assert (stored.message_id, stored.recipient_address) == (MESSAGE_ID, RECIPIENT)
    assert (stored.tags, stored.esp_event) == (tags, raw)


def test_v1_timestamp_is_the_activity_time_not_the_webhook_time(client, received):
    post_fixture(client, "clicked_v1")
    assert received[0][0].timestamp == datetime(2026, 11, 20, 12, 6, 0, 831000, tzinfo=UTC)


def test_events_link_to_the_message_the_backend_sent(client, settings, use_backend, http):
    settings.ANYMAIL = {**settings.ANYMAIL, "MAILERSEND_API_TOKEN": "mlsn.test"}
    use_backend("sending.backends.mailersend.EmailBackend")
    http.post(
        "https://api.mailersend.com/v1/email",
        status=202,
        body="",
        headers={"X-Message-Id": MESSAGE_ID},
    )
    message = AnymailMessage("Shipped", "Body", "shop@example.com", [RECIPIENT])
    message.send()
    assert message.anymail_status.message_id == MESSAGE_ID

    post_fixture(client, "delivered")
    post_fixture(client, "opened_v1")
    recipient = Recipient.objects.get(address=RECIPIENT)
    assert (recipient.status, recipient.open_count) == ("opened", 1)
    assert recipient.delivered_at == datetime(2026, 11, 20, 12, 1, 0, 354000, tzinfo=UTC)
    assert Event.objects.filter(recipient=recipient).count() == 2


def test_events_for_a_bulk_send_stay_unlinked(client, settings, use_backend, http):
    # A bulk send is recorded as "bulk:<bulk_email_id>": its events carry the
    # real message id, known only once MailerSend has processed the batch.
    settings.ANYMAIL = {
        **settings.ANYMAIL,
        "MAILERSEND_API_TOKEN": "mlsn.test",
        "MAILERSEND_BATCH_SEND_MODE": "use-bulk-email",
    }
    use_backend("sending.backends.mailersend.EmailBackend")
    http.post(
        "https://api.mailersend.com/v1/bulk-email",
        status=202,
        json={"message": "The bulk email is being processed.", "bulk_email_id": "6902a1f4cf37"},
    )
    message = AnymailMessage("Hi", "Body", "shop@example.com", [RECIPIENT, "other@example.com"])
    message.merge_data = {RECIPIENT: {}, "other@example.com": {}}
    message.send()

    post_fixture(client, "delivered")
    assert Event.objects.get().recipient is None
    recipient = Recipient.objects.get(address=RECIPIENT)
    assert (recipient.esp_message_id, recipient.send_status) == ("bulk:6902a1f4cf37", "unknown")
    assert recipient.delivered_at is None


def test_hard_bounce_suppresses_the_address_but_soft_bounce_does_not(client):
    post_fixture(client, "soft_bounced")
    assert not Suppression.objects.exists()
    post_fixture(client, "hard_bounced")
    assert Suppression.objects.get().reason == "bounced"


def test_repeated_event_id_is_stored_once(client):
    raw = json.loads(fixture_body("delivered"))
    post_fixture(client, "delivered")
    # MailerSend's retry of the same activity (same data.id), re-serialized
    retry = json.dumps(raw, indent=4).encode()
    assert post(client, retry).status_code == 200
    assert Event.objects.count() == 1


# Other MailerSend webhook types


def test_url_check_ping_is_accepted_and_records_nothing(client):
    # MailerSend signs the ping with its public test secret, not the webhook's.
    body = fixture_body("webhook_test")
    response = post(client, body, signature=sign(body, TEST_PING_SECRET))
    assert response.status_code == 200
    assert response.json()["events"] == 0
    assert not Event.objects.exists()


def test_ping_signed_with_the_webhook_secret_is_accepted_too(client):
    assert post(client, fixture_body("webhook_test")).status_code == 200


def test_activity_signed_with_the_public_test_secret_is_refused(client):
    body = fixture_body("delivered")
    response = post(client, body, signature=sign(body, TEST_PING_SECRET))
    assert response.status_code == 403
    assert not WebhookCall.objects.exists()


@pytest.mark.parametrize("name", ["maintenance_start", "bulk_email_completed"])
def test_account_events_are_recorded_as_unknown(client, received, name):
    raw = json.loads(fixture_body(name))
    post_fixture(client, name)
    [(event, _)] = received
    assert (event.event_type, event.message_id, event.recipient) == ("unknown", None, None)
    assert event.description == raw["type"]
    # "2026-11-20 22:27:14": no zone on these, and MailerSend's times are UTC
    assert event.timestamp == datetime.fromisoformat(raw["created_at"]).replace(tzinfo=UTC)
    assert event.esp_event == raw


# Signature


def test_missing_signature_is_refused(client):
    response = post(client, fixture_body("delivered"), signature=False)
    assert response.status_code == 403
    assert "Signature" in response.json()["error"]
    assert not WebhookCall.objects.exists()


@pytest.mark.parametrize("signature", ["0" * 64, "not-hex", sign(b"another body")])
def test_bad_signature_is_refused(client, signature):
    response = post(client, fixture_body("delivered"), signature=signature)
    assert response.status_code == 403
    assert "MAILERSEND_SIGNING_SECRET" in response.json()["error"]
    assert not WebhookCall.objects.exists()


def test_signature_of_a_changed_body_is_refused(client):
    body = fixture_body("delivered")
    tampered = body.replace(RECIPIENT.encode(), b"victim@example.com")
    response = post(client, tampered, signature=sign(body))
    assert response.status_code == 403


def test_uppercase_hex_signature_is_accepted(client):
    body = fixture_body("delivered")
    assert post(client, body, signature=sign(body).upper()).status_code == 200


def test_without_signing_secret_the_signature_is_not_checked(client, settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": WEBHOOK_SECRET}
    assert post(client, fixture_body("delivered"), signature=False).status_code == 200


def test_signing_secret_alone_does_not_warn(settings):
    settings.ANYMAIL = {"MAILERSEND_SIGNING_SECRET": SIGNING_SECRET}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MailerSendTrackingWebhookView()


def test_no_auth_configured_warns(settings):
    settings.ANYMAIL = {}
    with pytest.warns(AnymailInsecureWebhookWarning):
        MailerSendTrackingWebhookView()


def test_basic_auth_is_still_required_when_configured(client):
    body = fixture_body("delivered")
    response = post(client, body, HTTP_AUTHORIZATION=basic_auth("username:wrong"))
    assert response.status_code == 401


# Bad input


def test_malformed_json_is_400_and_kept(client):
    response = post(client, b'{"type": "activity.sent", ')
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED


def test_empty_body_is_400(client):
    response = post(client, b"")
    assert response.status_code == 400
    assert "Empty MailerSend webhook body" in response.json()["error"]


def test_wrong_content_type_is_400(client):
    response = post(client, b"type=activity.sent", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert "application/json" in response.json()["error"]


def test_inbound_payload_is_400_pointing_at_the_inbound_url(client):
    response = post(client, fixture_body("inbound"))
    assert response.status_code == 400
    assert "anymail/mailersend/inbound/" in response.json()["error"]


@pytest.mark.parametrize(
    "payload",
    [
        # Brevo's transactional event
        {"event": "delivered", "email": RECIPIENT, "message-id": "<1@smtp-relay.mailin.fr>"},
        # SendGrid's event batch
        [{"event": "delivered", "email": RECIPIENT, "sg_event_id": "abc"}],
        # Resend's (Svix) event
        {"type": "email.delivered", "created_at": "2026-11-20T12:00:00Z", "data": {}},
    ],
)
def test_another_esps_payload_is_400_saying_so(client, payload):
    response = post(client, payload)
    assert response.status_code == 400
    assert "another ESP" in response.json()["error"]


def test_activity_without_data_is_400(client):
    response = post(client, {"type": "activity.sent", "created_at": "2026-11-20T12:00:00Z"})
    assert response.status_code == 400
    assert '"data"' in response.json()["error"]


def test_garbage_timestamp_is_400(client):
    raw = json.loads(fixture_body("delivered"))
    raw["created_at"] = "yesterday"
    response = post(client, raw)
    assert response.status_code == 400
    assert "Malformed MailerSend" in response.json()["error"]
