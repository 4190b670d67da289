"""Postal's tracking webhook: one JSON event per call, signed with Postal's RSA key."""

import base64
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sending.exceptions import AnymailConfigurationError, AnymailInsecureWebhookWarning
from sending.models import Suppression
from sending.signals import tracking
from tests.webhook_contract import WEBHOOK_SECRET, EventSpec, TrackingWebhookContract, basic_auth
from tracking.models import Event, WebhookCall, WebhookCallStatus
from tracking.webhooks.postal import PostalTrackingWebhookView

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).parent / "fixtures" / "postal"
URL = "/anymail/postal/tracking/"

PRIVATE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_PRIVATE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
# As Postal shows it: base64 of the DER public key (the DKIM record's p= value).
PUBLIC_KEY = base64.b64encode(
    PRIVATE_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()

# Normalized event type -> Postal's event name and delivery status.
POSTAL_EVENTS = {
    "delivered": ("MessageSent", "Sent"),
    "deferred": ("MessageDelayed", "SoftFail"),
    "failed": ("MessageDeliveryFailed", "HardFail"),
    "queued": ("MessageHeld", "Held"),
}


def sign(body: bytes, key=PRIVATE_KEY, algorithm=None) -> str:
    signature = key.sign(body, padding.PKCS1v15(), algorithm or hashes.SHA256())
    return base64.b64encode(signature).decode()


def signature_headers(body: bytes, key=PRIVATE_KEY) -> dict:
    """The headers Postal sends: RSA-SHA256, legacy RSA-SHA1, and the key id."""
    return {
        "HTTP_X_POSTAL_SIGNATURE_256": sign(body, key),
        "HTTP_X_POSTAL_SIGNATURE": sign(body, key, hashes.SHA1()),
        "HTTP_X_POSTAL_SIGNATURE_KID": "a" * 64,
    }


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def as_body(payload) -> bytes:
    return json.dumps(payload).encode()


@pytest.fixture(autouse=True)
def postal_settings(settings):
    settings.ANYMAIL = {
        **getattr(settings, "ANYMAIL", {}),
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "POSTAL_WEBHOOK_KEY": PUBLIC_KEY,
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
        headers.update(signature_headers(body))
    headers.update(extra)
    return client.generic("POST", URL, body, content_type=content_type, **headers)


def post_fixture(client, name: str):
    response = post(client, as_body(fixture(name)))
    assert response.status_code == 200, response.content
    return response


class TestPostalWebhookContract(TrackingWebhookContract):
    esp = "postal"
    message_id = "48291"  # Postal's per-recipient message id, recorded as a string
    one_event_per_call = True

    @pytest.fixture(autouse=True)
    def postal_key(self, settings):
        settings.ANYMAIL = {**getattr(settings, "ANYMAIL", {}), "POSTAL_WEBHOOK_KEY": PUBLIC_KEY}

    def event_body(self, events: list[EventSpec]):
        [spec] = events
        message = {
            "id": int(spec.message_id),
            "token": "Xa2Lq9",
            "direction": "outgoing",
            "message_id": "contract@postal.example.com",
            "to": spec.recipient,
            "from": "from@example.com",
            "subject": "Contract",
            "timestamp": spec.timestamp.timestamp() - 60,
            "spam_status": "NotChecked",
            "tag": None,
        }
        if spec.event_type == "opened":
            esp_event, payload = "MessageLoaded", {"ip_address": "192.0.2.1", "user_agent": "UA"}
        else:
            esp_event, status = POSTAL_EVENTS[spec.event_type]
            payload = {"status": status, "details": "", "output": "", "time": 0.1}
            payload["timestamp"] = spec.timestamp.timestamp()
        body = {
            "event": esp_event,
            "timestamp": spec.timestamp.timestamp(),
            "uuid": spec.event_id,
            "payload": {**payload, "message": message},
        }
        return as_body(body), "application/json"

    def signature_headers(self, body, content_type):
        return signature_headers(body)


# One test per documented event type


def test_message_sent_is_delivered(client, received):
    post_fixture(client, "MessageSent")
    [event] = received
    assert event.event_type == "delivered"
    assert event.timestamp == datetime.fromtimestamp(1477945177.12994, tz=UTC)
    assert event.event_id == "820b47a4-4dfd-42e4-ae6a-1e5bed5a33fd"
    assert event.message_id == "12345"
    assert event.recipient == "test@example.com"
    assert event.tags == ["welcome"]
    assert event.metadata == {}
    assert event.mta_response == "250 2.0.0 OK 1477944899 ly2si31746747wjb.95 - gsmtp"
    assert event.description.startswith("Message sent by SMTP to aspmx.l.google.com")
    assert event.esp_event == fixture("MessageSent")
    stored = Event.objects.get()
    assert (stored.esp, stored.event_id, stored.message_id, stored.recipient_address) == (
        "postal",
        "820b47a4-4dfd-42e4-ae6a-1e5bed5a33fd",
        "12345",
        "test@example.com",
    )


def test_message_delayed_is_deferred(client, received):
    post_fixture(client, "MessageDelayed")
    [event] = received
    assert (event.event_type, event.reject_reason) == ("deferred", None)
    assert event.mta_response == "451 4.7.1 Greylisted, please try again later"
    assert event.timestamp == datetime.fromtimestamp(1477945180.5, tz=UTC)


def test_message_delivery_failed_with_5xx_is_a_bounce(client, received):
    post_fixture(client, "MessageDeliveryFailed")
    [event] = received
    assert (event.event_type, event.reject_reason) == ("bounced", "bounced")
    assert event.mta_response.startswith("550 5.1.1 The email account")
    assert Suppression.objects.get().address == "test@example.com"


def test_message_delivery_failed_without_smtp_rejection_is_failed(client, received):
    body = fixture("MessageDeliveryFailed")
    body["payload"].update(
        details="No SMTP servers were available for example.com. No hosts to try.", output=""
    )
    assert post(client, as_body(body)).status_code == 200
    [event] = received
    assert (event.event_type, event.reject_reason) == ("failed", None)
    assert event.description.startswith("No SMTP servers")
    assert not Suppression.objects.exists()


@pytest.mark.parametrize(
    "output, reason",
    [
        ("550 5.7.1 Message rejected as spam", "spam"),
        ("554 5.7.1 Blocked by policy", "blocked"),
        ("553 5.1.3 Invalid address syntax", "invalid"),
        ("550 Requested action not taken: mailbox unavailable", "bounced"),
    ],
)
def test_message_delivery_failed_reject_reasons(client, received, output, reason):
    body = fixture("MessageDeliveryFailed")
    body["payload"]["output"] = output
    assert post(client, as_body(body)).status_code == 200
    assert (received[0].event_type, received[0].reject_reason) == ("bounced", reason)


def test_message_held_for_suppression_list_is_rejected(client, received):
    post_fixture(client, "MessageHeld")
    [event] = received
    assert (event.event_type, event.reject_reason) == ("rejected", "bounced")
    assert "suppression list" in event.description


def test_message_held_for_other_reasons_is_queued(client, received):
    body = fixture("MessageHeld")
    body["payload"]["details"] = "Server is in development mode."
    assert post(client, as_body(body)).status_code == 200
    assert (received[0].event_type, received[0].reject_reason) == ("queued", None)


def test_message_bounced(client, received):
    post_fixture(client, "MessageBounced")
    [event] = received
    assert (event.event_type, event.reject_reason) == ("bounced", "bounced")
    assert (event.message_id, event.recipient) == ("12345", "test@example.com")
    assert event.description == "Bounce message 'Delivery Error' from postmaster@someserver.com"
    assert event.timestamp == datetime.fromtimestamp(1477945179.12994, tz=UTC)
    assert Suppression.objects.get().reason == "bounced"


def test_message_link_clicked(client, received):
    post_fixture(client, "MessageLinkClicked")
    [event] = received
    assert (event.event_type, event.click_url) == ("clicked", "https://atech.media")
    assert event.user_agent.startswith("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_6)")
    assert event.timestamp == datetime.fromtimestamp(1477945300.75, tz=UTC)
    assert Event.objects.get().click_url == "https://atech.media"


def test_message_loaded_is_opened(client, received):
    post_fixture(client, "MessageLoaded")
    [event] = received
    assert (event.event_type, event.message_id) == ("opened", "12345")
    assert event.user_agent.endswith("Safari/537.36")


def test_domain_dns_error_is_unknown(client, received):
    post_fixture(client, "DomainDNSError")
    [event] = received
    assert (event.event_type, event.message_id, event.recipient) == ("unknown", None, None)
    assert event.description == "DNS check failed for example.com: DKIM Invalid, MX Missing"


@pytest.mark.parametrize(
    "name, volume", [("SendLimitApproaching", 950), ("SendLimitExceeded", 1000)]
)
def test_send_limit_events_are_unknown(client, received, name, volume):
    post_fixture(client, name)
    [event] = received
    assert event.event_type == "unknown"
    assert event.description == f"{name}: {volume} of 1000 messages this hour"


def test_incoming_message_status_is_not_sent_mail_tracking(client, received):
    body = fixture("MessageDeliveryFailed")
    body["payload"]["message"]["direction"] = "incoming"
    assert post(client, as_body(body)).status_code == 200
    assert received[0].event_type == "inbound_failed"
    assert not Suppression.objects.exists()


def test_retried_call_is_stored_once(client, received):
    post_fixture(client, "MessageSent")
    post_fixture(client, "MessageSent")
    assert Event.objects.count() == 1
    assert len(received) == 1


# Signature


def test_missing_signature_is_refused(client):
    response = post(client, as_body(fixture("MessageSent")), signed=False)
    assert response.status_code == 403
    assert "X-Postal-Signature" in response.json()["error"]
    assert not WebhookCall.objects.exists()


def test_bad_signature_is_refused(client):
    body = as_body(fixture("MessageSent"))
    response = post(client, body, signed=False, **signature_headers(body, OTHER_PRIVATE_KEY))
    assert response.status_code == 403
    assert "POSTAL_WEBHOOK_KEY" in response.json()["error"]


def test_signature_not_base64_is_refused(client):
    response = post(client, as_body(fixture("MessageSent")), HTTP_X_POSTAL_SIGNATURE_256="!!")
    assert response.status_code == 403


def test_tampered_body_is_refused(client):
    body = as_body(fixture("MessageSent"))
    tampered = body.replace(b"test@example.com", b"else@example.com")
    response = post(client, tampered, signed=False, **signature_headers(body))
    assert response.status_code == 403


def test_legacy_sha1_signature_alone_is_accepted(client):
    # Postal before the SHA-256 header sent only X-Postal-Signature.
    body = as_body(fixture("MessageSent"))
    response = post(
        client, body, signed=False, HTTP_X_POSTAL_SIGNATURE=sign(body, algorithm=hashes.SHA1())
    )
    assert response.status_code == 200


def test_bad_sha256_signature_is_not_rescued_by_sha1(client):
    body = as_body(fixture("MessageSent"))
    headers = signature_headers(body)
    headers["HTTP_X_POSTAL_SIGNATURE_256"] = sign(body, OTHER_PRIVATE_KEY)
    assert post(client, body, signed=False, **headers).status_code == 403


def test_pem_public_key_is_accepted(client, settings):
    pem = PRIVATE_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    settings.ANYMAIL = {**settings.ANYMAIL, "POSTAL_WEBHOOK_KEY": pem.decode()}
    assert post(client, as_body(fixture("MessageSent"))).status_code == 200


def test_jwk_public_key_is_accepted(client, settings):
    # As published at https://postal.example.com/.well-known/jwks.json
    numbers = PRIVATE_KEY.public_key().public_numbers()

    def b64url(n):
        return base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).rstrip(b"=")

    jwk = {"kty": "RSA", "n": b64url(numbers.n).decode(), "e": b64url(numbers.e).decode()}
    settings.ANYMAIL = {**settings.ANYMAIL, "POSTAL_WEBHOOK_KEY": json.dumps(jwk)}
    assert post(client, as_body(fixture("MessageSent"))).status_code == 200


def test_several_keys_are_accepted_while_changing_keys(client, settings):
    other = OTHER_PRIVATE_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    settings.ANYMAIL = {
        **settings.ANYMAIL,
        "POSTAL_WEBHOOK_KEY": [base64.b64encode(other).decode(), PUBLIC_KEY],
    }
    assert post(client, as_body(fixture("MessageSent"))).status_code == 200


def test_invalid_key_setting_names_the_setting():
    with pytest.raises(AnymailConfigurationError, match="POSTAL_WEBHOOK_KEY"):
        PostalTrackingWebhookView(webhook_key="not a key")


def test_stale_timestamp_is_refused_when_tolerance_is_set(client, settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "POSTAL_WEBHOOK_TOLERANCE": 300}
    response = post(client, as_body(fixture("MessageSent")))  # queued in 2016
    assert response.status_code == 403
    assert "300 seconds" in response.json()["error"]


def test_recent_timestamp_is_accepted_when_tolerance_is_set(client, settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "POSTAL_WEBHOOK_TOLERANCE": 300}
    body = fixture("MessageSent")
    body["timestamp"] = time.time() - 60
    assert post(client, as_body(body)).status_code == 200


def test_old_timestamp_is_accepted_by_default(client):
    # Postal's retries (up to 36 minutes later) repeat the queued-at timestamp.
    assert post(client, as_body(fixture("MessageSent"))).status_code == 200


def test_without_key_signature_is_not_checked(client, settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": WEBHOOK_SECRET}
    assert post(client, as_body(fixture("MessageSent")), signed=False).status_code == 200


def test_without_key_or_basic_auth_warns(client, settings):
    settings.ANYMAIL = {}
    with pytest.warns(AnymailInsecureWebhookWarning):
        response = client.post(URL, fixture("MessageSent"), content_type="application/json")
    assert response.status_code == 200


def test_key_without_basic_auth_does_not_warn(client, settings):
    settings.ANYMAIL = {"POSTAL_WEBHOOK_KEY": PUBLIC_KEY}
    body = as_body(fixture("MessageSent"))
    response = client.generic(
        "POST", URL, body, content_type="application/json", **signature_headers(body)
    )
    assert response.status_code == 200


# Bad payloads


def test_malformed_json_is_400_and_kept(client):
    response = post(client, b'{"event": "MessageSent", ')
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED


def test_empty_body_is_400(client):
    assert post(client, b"").status_code == 400


def test_wrong_content_type_is_400(client):
    response = post(client, b"event=MessageSent", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert "application/json" in response.json()["error"]


def test_another_esps_payload_is_400(client):
    # A Resend event posted to the Postal URL.
    body = as_body({"type": "email.delivered", "created_at": "2024-02-22T23:41:12Z", "data": {}})
    response = post(client, body)
    assert response.status_code == 400
    assert "another ESP" in response.json()["error"]


def test_incoming_message_payload_is_400(client):
    response = post(client, as_body(fixture("incoming_http_endpoint")))
    assert response.status_code == 400
    assert "inbound webhook" in response.json()["error"]


def test_tolerance_with_malformed_body_is_400(client, settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "POSTAL_WEBHOOK_TOLERANCE": 300}
    response = post(client, b"[1, 2")
    assert response.status_code == 400
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED
