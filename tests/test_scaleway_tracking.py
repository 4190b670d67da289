"""The Scaleway TEM tracking webhook: SNS envelopes, TEM event types, signatures, bad input."""

import base64
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from sending.exceptions import (
    AnymailConfigurationError,
    AnymailInsecureWebhookWarning,
)
from sending.models import Suppression
from sending.signals import tracking
from tests.webhook_contract import (
    BASE_TIME,
    WEBHOOK_SECRET,
    EventSpec,
    TrackingWebhookContract,
    basic_auth,
)
from tracking.models import Event, WebhookCall, WebhookCallStatus
from tracking.webhooks import scaleway
from tracking.webhooks.scaleway import ScalewayTrackingWebhookView

pytestmark = pytest.mark.django_db

URL = "/anymail/scaleway/tracking/"
FIXTURES = Path(__file__).parent / "fixtures" / "scaleway"
EMAIL_ID = "d4fbec9d-eed9-44d5-af47-c1126467a5ca"  # the fixtures' email_id
PROJECT_ID = "8c8bfa06-9d5f-4a3e-a6a5-1a4a4f2f0b7e"
TOPIC_ARN = f"arn:scw:sns:fr-par:project-{PROJECT_ID}:tem-events"  # the fixtures' topic
CERT_URL = "https://messaging.s3.fr-par.scw.cloud/fr-par/sns/sns_certificate_2025.crt"

# Normalized event type -> the TEM event type that produces it (and its extra fields).
TEM_EVENTS = {
    "queued": ("email_queued", {"email_queued_at": "2026-11-20T11:59:59Z"}),
    "delivered": ("email_delivered", {"email_response_code": 250, "email_response_message": "OK"}),
    "deferred": (
        "email_deferred",
        {
            "email_response_code": 451,
            "email_response_message": "4.7.1 Try later",
            "email_try_count": 1,
        },
    ),
    "bounced": ("email_dropped", {"email_response_code": 554, "email_response_message": "No"}),
    "rejected": ("email_blocklisted", {"blocklist_type": "mailbox_full"}),
}


def tem_event(spec: EventSpec) -> dict:
    event_type, extra = TEM_EVENTS[spec.event_type]
    return {
        "id": spec.event_id,
        "type": event_type,
        "organization_id": "6d7fa23a-1c4f-44f4-9a1c-4a5b1f8b8f1a",
        "project_id": PROJECT_ID,
        "domain_id": "b6a2f0a4-9d4f-46e3-9f1a-0b6a2f0a49d4",
        "domain_name": "example.com",
        "created_at": spec.timestamp.isoformat().replace("+00:00", "Z"),
        "email_id": spec.message_id,
        "email_from": "sender@example.com",
        "email_to": spec.recipient,
        "email_headers": [{"key": "Subject", "value": "Hi"}],
        **extra,
    }


def envelope(message: dict | str, *, message_type="Notification", timestamp=None, **fields):
    """An SNS-style notification, as Topics and Events posts it (unsigned)."""
    return {
        "Type": message_type,
        "MessageId": str(uuid.uuid5(uuid.NAMESPACE_URL, json.dumps(message))),
        "TopicArn": TOPIC_ARN,
        "Message": message if isinstance(message, str) else json.dumps(message),
        "Timestamp": (timestamp or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "SignatureVersion": "1",
        "Signature": "",
        "SigningCertURL": CERT_URL,
        "UnsubscribeURL": "https://sns.mnq.fr-par.scaleway.com/?Action=Unsubscribe",
        **fields,
    }


class TestScalewayWebhookContract(TrackingWebhookContract):
    esp = "scaleway"
    message_id = "0b9a7c4e-2d1f-4e8a-9c3b-5f6e7d8a9b0c"  # the per-recipient email "id"
    one_event_per_call = True  # each Topics and Events delivery is one message

    def event_body(self, events: list[EventSpec]):
        (spec,) = events
        body = envelope(tem_event(spec), timestamp=spec.timestamp)
        return json.dumps(body).encode(), "text/plain"

    def test_contract_duplicate_delivery_stores_nothing_twice(self, client):
        # TEM reports no opens or clicks: the same promise, with events TEM has.
        recipient = self.record_sent_message()
        specs = [self.spec("queued"), self.spec("delivered", minutes=5)]
        self.post_events(client, specs)
        self.post_events(client, specs)
        assert Event.objects.count() == 2
        recipient.refresh_from_db()
        assert recipient.status == "delivered"

    def test_contract_reverse_order_ends_in_same_state(self, client):
        # As the contract's, ending in "bounced" rather than "opened" (TEM has no opens).
        specs = [
            self.spec("queued", minutes=0),
            self.spec("deferred", minutes=10),
            self.spec("bounced", minutes=20),
        ]
        recipient = self.record_sent_message()
        self.post_events(client, list(reversed(specs)))
        recipient.refresh_from_db()
        assert (recipient.status, recipient.status_at) == (
            "bounced",
            BASE_TIME + timedelta(minutes=20),
        )
        assert recipient.bounced_at == BASE_TIME + timedelta(minutes=20)


@pytest.fixture(autouse=True)
def webhook_secret(settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": WEBHOOK_SECRET}


@pytest.fixture
def received():
    """The events the tracking signal was sent with."""
    events = []

    def receiver(sender, event, esp_name, **kwargs):
        assert esp_name == "Scaleway"
        events.append(event)

    tracking.connect(receiver, weak=False)
    yield events
    tracking.disconnect(receiver)


def post(client, body, content_type="text/plain", auth=None):
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    return client.generic(
        "POST", URL, body, content_type=content_type, HTTP_AUTHORIZATION=auth or basic_auth()
    )


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def post_fixture(client, name: str):
    response = post(client, (FIXTURES / f"{name}.json").read_bytes())
    assert response.status_code == 200, response.content
    return response


# One test per documented event type


@pytest.mark.parametrize(
    ("name", "event_type", "reject_reason", "mta_response"),
    [
        ("email_queued", "queued", None, None),
        ("email_delivered", "delivered", None, "250 2.0.0 OK 1768473120"),
        ("email_deferred", "deferred", None, "451 4.7.1 Greylisted, please try again later"),
        ("email_dropped", "bounced", "bounced", "554 5.7.1 Message rejected due to local policy"),
        ("email_mailbox_not_found", "bounced", "invalid", "550 5.1.1 The email account"),
        ("email_spam", "bounced", "spam", "550 5.7.350 Remote server returned message"),
        ("email_blocklisted", "rejected", "bounced", None),
    ],
)
def test_fixture_event_is_normalized(
    client, received, name, event_type, reject_reason, mta_response
):
    post_fixture(client, name)
    (event,) = received
    message = json.loads(fixture(name)["Message"])
    assert event.event_type == event_type
    assert event.reject_reason == reject_reason
    assert event.timestamp == datetime.fromisoformat(message["created_at"])
    assert event.timestamp.tzinfo is not None
    assert event.event_id == message["id"]  # the TEM event id
    assert event.message_id == EMAIL_ID
    assert event.recipient == "recipient@example.com"
    assert (event.tags, event.metadata) == ([], {})  # TEM has neither
    assert (event.mta_response or "").startswith(mta_response or "")
    assert event.esp_event == message

    stored = Event.objects.get()
    assert (stored.esp, stored.event_type, stored.message_id, stored.event_id) == (
        "scaleway",
        event_type,
        EMAIL_ID,
        message["id"],
    )


def test_deferred_describes_the_retry(client, received):
    post_fixture(client, "email_deferred")
    assert received[0].description == "Attempt 1; next try at 2026-01-15T10:37:00Z"
    assert not Suppression.objects.exists()


def test_dropped_suppresses_the_address(client):
    post_fixture(client, "email_dropped")
    assert Suppression.objects.get().reason == "bounced"


def test_mailbox_not_found_suppresses_as_invalid(client):
    post_fixture(client, "email_mailbox_not_found")
    assert Suppression.objects.get().reason == "invalid"


def test_spam_rejection_doesnt_suppress(client):
    post_fixture(client, "email_spam")
    assert not Suppression.objects.exists()


def test_blocklisted_describes_the_blocklist(client, received):
    post_fixture(client, "email_blocklisted")
    assert received[0].description == (
        "mailbox_not_found: 550 5.1.1 The email account that you tried to reach does not exist"
    )


def test_blocklist_of_unknown_kind_is_blocked(client, received):
    body = fixture("email_blocklisted")
    message = json.loads(body["Message"])
    message["blocklist_type"] = "manual"
    post(client, envelope(message))
    assert (received[0].event_type, received[0].reject_reason) == ("rejected", "blocked")


def test_blocklist_created_is_an_unknown_event_about_the_address(client, received):
    post_fixture(client, "blocklist_created")
    (event,) = received
    assert event.event_type == "unknown"
    assert (event.message_id, event.recipient) == (None, "recipient@example.com")
    assert event.description.startswith("mailbox_not_found: 550 5.1.1")


def test_unknown_type_is_recorded_as_unknown(client, received):
    post(client, envelope({"id": "e1", "type": "email_something_new", "email_id": EMAIL_ID}))
    assert received[0].event_type == "unknown"


def test_bare_tem_event_is_accepted_when_signatures_arent_checked(client, received):
    post(client, json.loads(fixture("email_delivered")["Message"]), "application/json")
    assert received[0].event_type == "delivered"


# Subscription confirmation


def test_subscription_confirmation_is_answered_200_and_logged(client, caplog):
    with caplog.at_level(logging.WARNING, logger="tracking.webhooks.scaleway"):
        response = post_fixture(client, "subscription_confirmation")
    assert response.json()["events"] == 0
    assert fixture("subscription_confirmation")["SubscribeURL"] in caplog.text
    # kept, so the SubscribeURL can be found in the admin too
    assert WebhookCall.objects.get().status == WebhookCallStatus.PROCESSED


def test_unsubscribe_confirmation_is_answered_200(client):
    body = {**fixture("subscription_confirmation"), "Type": "UnsubscribeConfirmation"}
    assert post(client, body).json()["events"] == 0


# Signatures: SNS signature version 1, with a certificate Scaleway's CA issued


def make_certificate(name, key, issuer_name=None, issuer_key=None, *, ca=False, days=(-1, 30)):
    now = datetime.now(UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name or subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + timedelta(days=days[0]))
        .not_valid_after(now + timedelta(days=days[1]))
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=1), True)
    return builder.sign(issuer_key or key, hashes.SHA256())


def pem(certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def pki():
    """A stand-in for Scaleway's CA, a signing certificate it issued, and impostors."""
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = make_certificate("Scaleway MnQ (test)", ca_key, ca=True)
    signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {
        "ca": ca,
        "key": signing_key,
        "cert": make_certificate("sns.scaleway.test", signing_key, ca.subject, ca_key),
        "expired_cert": make_certificate(
            "sns.scaleway.test", signing_key, ca.subject, ca_key, days=(-30, -1)
        ),
        "self_signed_cert": make_certificate("sns.scaleway.test", signing_key),
        "other_key": other_key,
    }


def sign(body: dict, key, version="1") -> dict:
    fields = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
    if body["Type"] != "Notification":
        fields = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
    text = "".join(f"{name}\n{body[name]}\n" for name in fields if name in body)
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(text.encode(), padding.PKCS1v15(), digest)
    return {**body, "SignatureVersion": version, "Signature": base64.b64encode(signature).decode()}


@pytest.fixture
def signed_settings(settings, pki):
    settings.ANYMAIL = {
        **settings.ANYMAIL,
        "SCALEWAY_WEBHOOK_TRUST_CHAIN": pem(pki["ca"]),
        "SCALEWAY_WEBHOOK_TOPIC_ARN": TOPIC_ARN,
    }
    scaleway._signing_certs.clear()
    yield settings
    scaleway._signing_certs.clear()


@pytest.fixture
def cert_server(http, pki):
    """Serve the signing certificate at CERT_URL (responses mock)."""

    def serve(certificate=None, status=200):
        http.get(CERT_URL, body=pem(certificate or pki["cert"]), status=status)

    return serve


def signed_delivery(pki, **fields) -> dict:
    return sign(envelope(json.loads(fixture("email_delivered")["Message"]), **fields), pki["key"])


@pytest.mark.usefixtures("signed_settings")
class TestSignatures:
    def test_correct_signature_is_accepted(self, client, pki, cert_server, received):
        cert_server()
        assert post(client, signed_delivery(pki)).status_code == 200
        assert received[0].event_type == "delivered"

    def test_signature_version_2_is_accepted(self, client, pki, cert_server):
        cert_server()
        body = sign(envelope(json.loads(fixture("email_queued")["Message"])), pki["key"], "2")
        assert post(client, body).status_code == 200

    def test_signed_subscription_confirmation_is_accepted(self, client, pki, cert_server):
        cert_server()
        body = {**fixture("subscription_confirmation")}
        body["Timestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        assert post(client, sign(body, pki["key"])).status_code == 200

    def test_certificate_is_fetched_once(self, client, pki, cert_server, http):
        cert_server()
        post(client, signed_delivery(pki))
        post(client, sign(envelope(json.loads(fixture("email_queued")["Message"])), pki["key"]))
        assert len(http.calls) == 1

    def test_missing_signature_is_refused(self, client, pki):
        body = signed_delivery(pki)
        del body["Signature"]
        response = post(client, body)
        assert response.status_code == 403
        assert not WebhookCall.objects.exists()

    def test_bad_signature_is_refused(self, client, pki, cert_server):
        cert_server()
        body = sign(envelope(json.loads(fixture("email_delivered")["Message"])), pki["other_key"])
        response = post(client, body)
        assert response.status_code == 403
        assert "signature doesn't match" in response.json()["error"]

    def test_altered_message_is_refused(self, client, pki, cert_server):
        cert_server()
        body = signed_delivery(pki)
        body["Message"] = body["Message"].replace("recipient@example.com", "x@example.com")
        assert post(client, body).status_code == 403

    def test_stale_timestamp_is_refused(self, client, pki):
        body = signed_delivery(pki, timestamp=datetime.now(UTC) - timedelta(minutes=10))
        response = post(client, body)
        assert response.status_code == 403
        assert "300 seconds" in response.json()["error"]

    def test_tolerance_is_a_setting(self, client, pki, cert_server, settings):
        settings.ANYMAIL = {**settings.ANYMAIL, "SCALEWAY_WEBHOOK_TOLERANCE": 3600}
        cert_server()
        body = signed_delivery(pki, timestamp=datetime.now(UTC) - timedelta(minutes=10))
        assert post(client, body).status_code == 200

    def test_another_topic_is_refused(self, client, pki):
        body = sign(
            {**signed_delivery(pki), "TopicArn": "arn:scw:sns:fr-par:project-x:t"}, pki["key"]
        )
        response = post(client, body)
        assert response.status_code == 403
        assert "SCALEWAY_WEBHOOK_TOPIC_ARN" in response.json()["error"]

    @pytest.mark.parametrize(
        "url",
        [
            "http://messaging.s3.fr-par.scw.cloud/fr-par/sns/cert.crt",
            "https://messaging.s3.fr-par.scw.cloud.example.com/cert.crt",
            "https://example.com/messaging.s3.fr-par.scw.cloud/cert.crt",
            "https://user@messaging.s3.fr-par.scw.cloud/cert.crt",
        ],
    )
    def test_certificate_from_elsewhere_is_refused(self, client, pki, url):
        response = post(client, signed_delivery(pki, SigningCertURL=url))
        assert response.status_code == 403
        assert "SigningCertURL" in response.json()["error"]

    @pytest.mark.parametrize("cert", ["self_signed_cert", "expired_cert"])
    def test_certificate_not_from_the_trusted_ca_is_refused(self, client, pki, cert_server, cert):
        cert_server(pki[cert])
        response = post(client, signed_delivery(pki))
        assert response.status_code == 403
        assert "SCALEWAY_WEBHOOK_TRUST_CHAIN" in response.json()["error"]

    def test_missing_certificate_is_refused(self, client, pki, cert_server):
        cert_server(status=404)
        assert post(client, signed_delivery(pki)).status_code == 403

    def test_unreachable_certificate_is_503_so_scaleway_retries(self, client, pki, cert_server):
        cert_server(status=503)
        response = post(client, signed_delivery(pki))
        assert response.status_code == 503
        assert "Couldn't fetch Scaleway signing certificate" in response.json()["error"]

    def test_bare_tem_event_is_refused(self, client):
        response = post(client, json.loads(fixture("email_delivered")["Message"]))
        assert response.status_code == 403

    def test_another_esps_payload_is_still_400_saying_so(self, client):
        response = post(client, {"auth": "x", "events_by_user": []}, "application/json")
        assert response.status_code == 400
        assert "Unisender Go" in response.json()["error"]

    def test_trust_chain_can_be_a_file(self, client, pki, cert_server, settings, tmp_path):
        path = tmp_path / "sns-trust-chain.pem"
        path.write_text(pem(pki["ca"]))
        settings.ANYMAIL = {**settings.ANYMAIL, "SCALEWAY_WEBHOOK_TRUST_CHAIN": str(path)}
        cert_server()
        assert post(client, signed_delivery(pki)).status_code == 200

    def test_signature_makes_basic_auth_optional(self, settings):
        settings.ANYMAIL = {
            key: value for key, value in settings.ANYMAIL.items() if key != "WEBHOOK_SECRET"
        }
        ScalewayTrackingWebhookView()  # no warning (they'd be errors in tests)


def test_topic_arn_alone_refuses_other_topics(client, settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "SCALEWAY_WEBHOOK_TOPIC_ARN": ["arn:scw:sns:x"]}
    assert post(client, fixture("email_delivered")).status_code == 403


def test_unreadable_trust_chain_is_a_configuration_error(settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "SCALEWAY_WEBHOOK_TRUST_CHAIN": "/no/such/file.pem"}
    with pytest.raises(AnymailConfigurationError, match="SCALEWAY_WEBHOOK_TRUST_CHAIN"):
        ScalewayTrackingWebhookView()


def test_no_secret_and_no_signature_check_warns(settings):
    settings.ANYMAIL = {}
    with pytest.warns(AnymailInsecureWebhookWarning):
        ScalewayTrackingWebhookView()


def test_basic_auth_is_checked(client):
    response = post(client, fixture("email_delivered"), auth=basic_auth("username:wrong"))
    assert response.status_code == 401


# Bad input


def test_malformed_json_is_400_and_kept(client):
    response = post(client, b'{"Type": "Notification", "Message": ')
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED


def test_empty_body_is_400(client):
    response = post(client, b"")
    assert response.status_code == 400
    assert "Empty" in response.json()["error"]


def test_wrong_content_type_is_400(client):
    response = post(client, b"Type=Notification", "application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert "application/json or text/plain" in response.json()["error"]


def test_application_json_is_accepted(client):
    response = post(client, fixture("email_delivered"), "application/json")
    assert response.status_code == 200


def test_message_that_isnt_json_is_400(client):
    response = post(client, envelope("Hello from the console"))
    assert response.status_code == 400
    assert "not a JSON TEM event" in response.json()["error"]


def test_amazon_ses_notification_is_400_saying_so(client):
    ses = {"notificationType": "Delivery", "mail": {"messageId": "x"}, "delivery": {}}
    response = post(client, envelope(ses))
    assert response.status_code == 400
    assert "Amazon SES" in response.json()["error"]


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        ({"auth": "x", "events_by_user": []}, "Unisender Go"),
        ([{"msys": {"message_event": {"type": "delivery"}}}], "SparkPost"),
        ({"signature": {}, "event-data": {"event": "delivered"}}, "Mailgun"),
    ],
)
def test_another_esps_payload_is_400_saying_so(client, payload, says):
    response = post(client, payload, "application/json")
    assert response.status_code == 400
    assert says in response.json()["error"]


def test_unknown_sns_type_is_400(client):
    response = post(client, envelope({}, message_type="Something"))
    assert response.status_code == 400


def test_bad_created_at_is_400(client):
    message = json.loads(fixture("email_delivered")["Message"])
    message["created_at"] = "yesterday"
    assert post(client, envelope(message)).status_code == 400
