"""The Amazon SES inbound webhook: SES receiving notifications delivered by Amazon SNS.

Fixtures are SES "Received" notifications shaped like
https://docs.aws.amazon.com/ses/latest/dg/receiving-email-notifications-contents.html
and https://docs.aws.amazon.com/ses/latest/dg/receiving-email-notifications-examples.html
(inbound_sns_base64.json: SNS action with Base64 encoding, carrying
inbound_multipart.eml; inbound_sns_utf8.json: SNS action with UTF-8
encoding; inbound_s3.json: S3 action, tested in test_amazon_ses_inbound_s3.py),
wrapped in an SNS HTTP message (inbound_sns_envelope.json) shaped like
https://docs.aws.amazon.com/sns/latest/dg/sns-message-and-json-formats.html.
Signature tests sign with their own key, like the tracking webhook's tests.
"""

import base64
import hashlib
import json
from datetime import datetime
from pathlib import Path

import pytest
from django.core.files.storage import default_storage

from inbound.models import InboundMessage
from inbound.webhooks.amazon_ses import AmazonSESInboundWebhookView
from sending.exceptions import AnymailInsecureWebhookWarning
from sending.signals import inbound
from tests.inbound_contract import WEBHOOK_SECRET, InboundWebhookContract, basic_auth
from tests.test_amazon_ses_tracking import CERT_URL, SNSSigner
from tracking.models import WebhookCall, WebhookCallStatus
from tracking.webhooks import sns

pytestmark = pytest.mark.django_db

URL = "/anymail/amazon_ses/inbound/"
FIXTURES = Path(__file__).parent / "fixtures" / "amazon_ses"
CONTENT_TYPE = "text/plain; charset=UTF-8"  # what SNS sends by default


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def eml(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def sns_envelope(notification, *, message_id=None) -> dict:
    """An SNS Notification carrying notification (a dict, or the raw Message string)."""
    envelope = fixture("inbound_sns_envelope.json")
    if isinstance(notification, str):
        envelope["Message"] = notification
    else:
        envelope["Message"] = json.dumps(notification)
    if message_id is not None:
        envelope["MessageId"] = message_id
    return envelope


def sns_headers(envelope: dict) -> dict:
    """The x-amz-sns-* headers SNS sends with envelope (as Django META keys)."""
    headers = {
        "HTTP_X_AMZ_SNS_MESSAGE_TYPE": envelope["Type"],
        "HTTP_X_AMZ_SNS_MESSAGE_ID": envelope["MessageId"],
        "HTTP_X_AMZ_SNS_TOPIC_ARN": envelope["TopicArn"],
    }
    if envelope["Type"] == "Notification":
        headers["HTTP_X_AMZ_SNS_SUBSCRIPTION_ARN"] = f"{envelope['TopicArn']}:7d2b6a3e-94f1"
    return headers


def post_sns(client, envelope, *, content_type=CONTENT_TYPE, **extra):
    headers = {"HTTP_AUTHORIZATION": basic_auth(), **sns_headers(envelope), **extra}
    body = json.dumps(envelope).encode()
    return client.generic("POST", URL, body, content_type=content_type, **headers)


def post_notification(client, notification, **kwargs):
    return post_sns(client, sns_envelope(notification, **kwargs))


def sns_action_notification(
    raw: bytes,
    *,
    encoding: str | None = "BASE64",
    envelope_sender: str = "ann@example.net",
    envelope_recipient: str = "support@inbound.example.com",
) -> dict:
    """An SNS action notification (like inbound_sns_base64.json) carrying raw."""
    notification = fixture("inbound_sns_base64.json")
    # SES's message ids are opaque; derive one so the same raw gets the same id
    notification["mail"]["messageId"] = hashlib.sha1(raw).hexdigest()
    notification["mail"]["source"] = envelope_sender
    notification["receipt"]["recipients"] = [envelope_recipient]
    action = notification["receipt"]["action"]
    if encoding is None:
        del action["encoding"]
    else:
        action["encoding"] = encoding
    if encoding and encoding.upper() == "BASE64":
        notification["content"] = base64.b64encode(raw).decode()
    else:
        notification["content"] = raw.decode("utf-8")
    return notification


@pytest.fixture(autouse=True)
def ses_settings(settings):
    # Signatures have their own tests (TestSignatures), which sign for real
    settings.ANYMAIL = {
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "AMAZON_SES_VERIFY_SNS_SIGNATURES": False,
    }
    sns.clear_certificate_cache()
    yield settings
    sns.clear_certificate_cache()


@pytest.fixture
def received():
    """The events the inbound signal is sent with."""
    events = []

    def receiver(sender, event, esp_name, **kwargs):
        events.append((event, esp_name))

    inbound.connect(receiver, weak=False)
    yield events
    inbound.disconnect(receiver)


def stored_raw(stored: InboundMessage) -> bytes:
    with default_storage.open(stored.raw_file.name) as file:
        return file.read()


# ---------------------------------------------------------------------------
# The shared contract (SNS action, Base64 encoding)


class TestAmazonSESInboundContract(InboundWebhookContract):
    esp = "amazon_ses"

    @pytest.fixture(autouse=True)
    def no_sns_signatures(self, webhook_settings):
        self.settings.ANYMAIL = {
            **self.settings.ANYMAIL,
            "AMAZON_SES_VERIFY_SNS_SIGNATURES": False,
        }

    def inbound_body(self, raw, envelope_sender, envelope_recipient):
        notification = sns_action_notification(
            raw, envelope_sender=envelope_sender, envelope_recipient=envelope_recipient
        )
        return json.dumps(sns_envelope(notification)).encode(), CONTENT_TYPE

    def signature_headers(self, body, content_type):
        try:
            envelope = json.loads(body)
        except ValueError:
            return {}  # a deliberately broken body: SNS wouldn't have sent it
        return sns_headers(envelope)


# ---------------------------------------------------------------------------
# SNS action


def test_sns_action_base64_message_is_stored_exactly_with_every_field(client, received):
    notification = fixture("inbound_sns_base64.json")
    raw = eml("inbound_multipart.eml")
    assert base64.b64decode(notification["content"]) == raw  # the fixtures agree

    response = post_notification(client, notification)

    assert response.status_code == 200, response.content
    ((event, esp_name),) = received
    assert esp_name == "Amazon SES"
    assert event.event_type == "inbound"
    assert event.event_id == "7c9fq2nqjmbd6kvb1ds6i0rl5s2qv1ehn0kbl2o1"  # mail.messageId
    assert event.timestamp == at("2026-11-20T12:00:01.294+00:00")  # mail.timestamp
    assert event.esp_event == notification
    assert event.raw_mime == raw
    message = event.message
    assert message.envelope_sender == "ann@example.net"  # mail.source
    assert message.envelope_recipient == "support@inbound.example.com"  # receipt.recipients[0]
    assert message.spam_detected is False  # spamVerdict PASS
    assert message.spam_score is None
    assert message.stripped_text is None and message.stripped_html is None
    assert str(message.from_email) == "Ann Customer <ann@example.net>"
    assert [str(address) for address in message.to] == ["Support <support@inbound.example.com>"]
    assert [str(address) for address in message.cc] == ["Bob <bob@example.org>"]
    assert message.subject == "Invoice question"
    assert message["Message-ID"] == "<CAF=q2x7Yb1@mail.example.net>"
    assert message["X-SES-Spam-Verdict"] == "PASS"
    assert message.text == "Hello, where is my invoice?\r\n\r\n[logo]\r\n"
    assert 'src="cid:logo@example.net"' in message.html
    (attachment,) = message.attachments
    assert attachment.get_filename() == "invoice 2026-11.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content_bytes().startswith(b"%PDF-1.4")
    logo = message.inline_attachments["logo@example.net"]
    assert logo.get_content_type() == "image/png"
    assert logo.get_content_bytes().startswith(b"\x89PNG")

    stored = InboundMessage.objects.get()
    assert stored.esp == "amazon_ses"
    assert stored.event_id == "7c9fq2nqjmbd6kvb1ds6i0rl5s2qv1ehn0kbl2o1"
    assert stored.received_at == at("2026-11-20T12:00:01.294+00:00")
    assert (stored.envelope_sender, stored.envelope_recipient) == (
        "ann@example.net",
        "support@inbound.example.com",
    )
    assert (stored.spam_detected, stored.spam_score) == (False, None)
    assert stored.from_address == "ann@example.net"
    assert stored.parse_error == ""
    assert stored_raw(stored) == raw
    attachments = {a.filename: a for a in stored.attachments.all()}
    assert set(attachments) == {"logo.png", "invoice 2026-11.pdf"}
    assert attachments["logo.png"].inline
    assert attachments["logo.png"].content_id == "<logo@example.net>"
    assert attachments["invoice 2026-11.pdf"].declared_content_type == "application/pdf"
    call = WebhookCall.objects.get()
    assert (call.kind, call.status, call.event_count) == ("inbound", WebhookCallStatus.PROCESSED, 1)


def test_sns_action_utf8_message_is_decoded(client, received):
    notification = fixture("inbound_sns_utf8.json")
    assert post_notification(client, notification).status_code == 200
    ((event, _),) = received
    message = event.message
    assert event.raw_mime == notification["content"].encode("utf-8")
    assert event.event_id == "9a1kq3o5jv2r6mlc8e0dtb7fhn4s1ugpzw3y5xi2"
    assert message.subject == "Grüße aus München"
    assert (message.from_email.display_name, message.from_email.addr_spec) == (
        "Jürgen Müller",
        "jurgen@example.de",
    )
    assert message.text == "Viele Grüße aus München – bis bald! 👋"
    assert message.html == "<p>Viele Grüße aus <b>München</b> – bis bald! 👋</p>"
    assert (message.envelope_sender, message.envelope_recipient) == (
        "jurgen@example.de",
        "hello@inbound.example.com",
    )
    assert message.spam_detected is None  # spamVerdict GRAY: SES couldn't tell
    stored = InboundMessage.objects.get()
    assert stored.subject == "Grüße aus München"
    assert stored_raw(stored) == notification["content"].encode("utf-8")


def test_non_utf8_message_keeps_its_bytes_with_base64_encoding(client):
    raw = eml("inbound_latin1.eml")
    assert post_notification(client, sns_action_notification(raw)).status_code == 200
    stored = InboundMessage.objects.get()
    assert stored_raw(stored) == raw
    assert stored.subject == "Café crème à emporter"
    assert stored.from_email == "René Dupré <rene@example.fr>"
    assert stored.text == "Un café crème, s'il vous plaît. Merci d'avance !\r\n"


def test_action_without_encoding_is_utf8_as_in_the_ses_example(client, received):
    # SES's own SNS action example has no "encoding": UTF-8 is the default
    raw = b"From: sender@example.com\r\nTo: recipient@example.com\r\nSubject: Hi\r\n\r\nHello\r\n"
    assert post_notification(client, sns_action_notification(raw, encoding=None)).status_code == 200
    assert received[0][0].raw_mime == raw


@pytest.mark.parametrize("encoding", ["BASE64", "Base64", "base64"])
def test_base64_encoding_spellings_are_accepted(client, encoding):
    raw = eml("inbound_latin1.eml")
    notification = sns_action_notification(raw, encoding=encoding)
    assert post_notification(client, notification).status_code == 200
    assert stored_raw(InboundMessage.objects.get()) == raw


@pytest.mark.parametrize("encoding", ["UTF8", "UTF-8", "utf-8"])
def test_utf8_encoding_spellings_are_accepted(client, encoding):
    notification = fixture("inbound_sns_utf8.json")
    notification["receipt"]["action"]["encoding"] = encoding
    assert post_notification(client, notification).status_code == 200
    assert InboundMessage.objects.get().subject == "Grüße aus München"


def test_wrapped_base64_content_is_accepted(client):
    raw = eml("inbound_multipart.eml")
    notification = sns_action_notification(raw)
    content = notification["content"]
    notification["content"] = "\r\n".join(content[i : i + 76] for i in range(0, len(content), 76))
    assert post_notification(client, notification).status_code == 200
    assert stored_raw(InboundMessage.objects.get()) == raw


def test_invalid_base64_content_is_400_and_kept(client):
    notification = sns_action_notification(eml("inbound_multipart.eml"))
    notification["content"] = "not*valid*base64!!"
    response = post_notification(client, notification)
    assert response.status_code == 400
    assert "not valid base64" in response.json()["error"]
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED
    assert not InboundMessage.objects.exists()


def test_unknown_encoding_is_400(client):
    notification = fixture("inbound_sns_utf8.json")
    notification["receipt"]["action"]["encoding"] = "QUOTED-PRINTABLE"
    response = post_notification(client, notification)
    assert response.status_code == 400
    assert "QUOTED-PRINTABLE" in response.json()["error"]


def test_sns_action_without_content_is_400(client):
    notification = fixture("inbound_sns_base64.json")
    del notification["content"]
    response = post_notification(client, notification)
    assert response.status_code == 400
    assert "no content" in response.json()["error"]


def test_empty_content_is_400(client):
    notification = fixture("inbound_sns_utf8.json")
    notification["content"] = ""
    response = post_notification(client, notification)
    assert response.status_code == 400
    assert "empty message" in response.json()["error"]


@pytest.mark.parametrize(
    "action",
    [
        {"type": "Lambda", "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:f"},
        {"type": "Bounce", "smtpReplyCode": "550", "statusCode": "5.1.1", "message": "No"},
        {"type": "WorkMail", "organizationArn": "arn:aws:workmail:us-east-1:123456789012:m-1"},
    ],
)
def test_actions_that_dont_deliver_the_message_are_400(client, action):
    notification = fixture("inbound_s3.json")
    notification["receipt"]["action"] = {**action, "topicArn": "arn:aws:sns:us-east-1:1:t"}
    response = post_notification(client, notification)
    assert response.status_code == 400
    assert "SNS action" in response.json()["error"]
    assert repr(action["type"]) in response.json()["error"]


@pytest.mark.parametrize(
    ("verdict", "expected"),
    [("PASS", False), ("FAIL", True), ("GRAY", None), ("PROCESSING_FAILED", None), (None, None)],
)
def test_spam_verdict_sets_spam_detected(client, received, verdict, expected):
    notification = sns_action_notification(eml("inbound_multipart.eml"))
    if verdict is None:
        del notification["receipt"]["spamVerdict"]  # a rule without scanning
    else:
        notification["receipt"]["spamVerdict"] = {"status": verdict}
    assert post_notification(client, notification).status_code == 200
    assert received[0][0].message.spam_detected is expected
    assert InboundMessage.objects.get().spam_detected is expected


def test_envelope_recipient_is_the_first_recipient_the_rule_matched(client, received):
    notification = sns_action_notification(eml("inbound_multipart.eml"))
    notification["receipt"]["recipients"] = ["support@inbound.example.com", "sales@example.com"]
    post_notification(client, notification)
    ((event, _),) = received  # one message, one event
    assert event.message.envelope_recipient == "support@inbound.example.com"


def test_null_envelope_sender_is_none(client, received):
    # Bounces and other delivery reports have an empty MAIL FROM
    notification = sns_action_notification(eml("inbound_multipart.eml"), envelope_sender="")
    post_notification(client, notification)
    assert received[0][0].message.envelope_sender is None


def test_same_message_published_again_is_stored_once(client, received):
    notification = fixture("inbound_sns_base64.json")
    assert post_notification(client, notification).status_code == 200
    # A second SNS message (a new MessageId, so a new body) with the same mail
    response = post_notification(client, notification, message_id="a-second-sns-message")
    assert response.status_code == 200
    assert WebhookCall.objects.count() == 2
    assert InboundMessage.objects.count() == 1
    assert len(received) == 1


def test_the_receiving_example_the_tracking_webhook_refuses_is_stored_here(client):
    response = post_notification(client, fixture("inbound_received.json"))
    assert response.status_code == 200, response.content
    stored = InboundMessage.objects.get()
    assert (stored.subject, stored.envelope_sender) == ("Hello", "sender@example.net")


def test_ses_subscription_succeeded_message_is_accepted_without_messages(client):
    message = {
        "notificationType": "AmazonSnsSubscriptionSucceeded",
        "message": "You have successfully subscribed your Amazon SNS topic "
        "'arn:aws:sns:us-east-1:123456789012:SES_Inbound_Events' to receive "
        "notifications from Amazon SES.",
    }
    assert post_notification(client, message).status_code == 200
    assert not InboundMessage.objects.exists()
    assert WebhookCall.objects.get().status == WebhookCallStatus.PROCESSED


# ---------------------------------------------------------------------------
# Payloads meant for another URL, and bad input


@pytest.mark.parametrize(
    "ses_event",
    [
        "notification_bounce.json",
        "notification_delivery.json",
        "event_delivery.json",
        "event_open.json",
        "Successfully validated SNS topic for Amazon SES event publishing.",
    ],
)
def test_tracking_notification_is_400_pointing_to_the_tracking_url(client, ses_event):
    message = ses_event if ses_event.startswith("Successfully") else fixture(ses_event)
    response = post_notification(client, message)
    assert response.status_code == 400
    assert "anymail/amazon_ses/tracking/" in response.json()["error"]
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED
    assert not InboundMessage.objects.exists()


def test_notification_that_isnt_json_is_400(client):
    response = post_notification(client, "Hello from the SNS console")
    assert response.status_code == 400
    assert "not an Amazon SES receiving notification" in response.json()["error"]


def test_unknown_notification_type_is_400(client):
    notification = fixture("inbound_sns_utf8.json")
    notification["notificationType"] = "Surprise"
    response = post_notification(client, notification)
    assert response.status_code == 400
    assert "'Surprise'" in response.json()["error"]


@pytest.mark.parametrize("missing", ["mail", "receipt"])
def test_notification_missing_a_section_is_400(client, missing):
    notification = fixture("inbound_sns_utf8.json")
    del notification[missing]
    response = post_notification(client, notification)
    assert response.status_code == 400
    assert missing in response.json()["error"]


def test_invalid_timestamp_is_400(client):
    notification = fixture("inbound_sns_utf8.json")
    notification["mail"]["timestamp"] = "yesterday"
    response = post_notification(client, notification)
    assert response.status_code == 400
    assert "timestamp" in response.json()["error"]


def test_bare_receiving_notification_without_sns_envelope_is_400(client):
    response = client.post(
        URL,
        fixture("inbound_sns_utf8.json"),
        content_type="application/json",
        HTTP_AUTHORIZATION=basic_auth(),
    )
    assert response.status_code == 400
    assert "bare Amazon SES event" in response.json()["error"]


def test_payload_for_another_esp_is_400_saying_so(client):
    mailgun_body = {"signature": {"token": "x"}, "event-data": {"event": "delivered"}}
    response = client.post(
        URL, mailgun_body, content_type="application/json", HTTP_AUTHORIZATION=basic_auth()
    )
    assert response.status_code == 400
    assert "another ESP" in response.json()["error"]


def test_json_content_type_from_a_delivery_policy_is_accepted(client):
    envelope = sns_envelope(fixture("inbound_sns_utf8.json"))
    assert post_sns(client, envelope, content_type="application/json").status_code == 200
    assert InboundMessage.objects.count() == 1


def test_wrong_content_type_is_400(client):
    response = client.post(URL, {"Type": "Notification"}, HTTP_AUTHORIZATION=basic_auth())
    assert response.status_code == 400
    assert "text/plain" in response.json()["error"]


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("HTTP_X_AMZ_SNS_TOPIC_ARN", "arn:aws:sns:us-east-1:999999999999:Other"),
        ("HTTP_X_AMZ_SNS_MESSAGE_ID", "another-message"),
    ],
)
def test_sns_headers_that_disagree_with_the_message_are_refused(client, header, value):
    envelope = sns_envelope(fixture("inbound_sns_utf8.json"))
    response = post_sns(client, envelope, **{header: value})
    assert response.status_code == 403
    assert not WebhookCall.objects.exists()


def test_no_webhook_secret_warns(settings):
    settings.ANYMAIL = {}
    with pytest.warns(AnymailInsecureWebhookWarning):
        AmazonSESInboundWebhookView()


def test_recording_off_still_signals_and_stores_nothing(client, received, no_store):
    assert post_notification(client, fixture("inbound_sns_utf8.json")).status_code == 200
    assert received[0][0].message.subject == "Grüße aus München"
    assert not WebhookCall.objects.exists()
    assert not InboundMessage.objects.exists()


# ---------------------------------------------------------------------------
# SNS subscriptions (the SNS base's handling, on the inbound URL)


def test_subscription_to_the_inbound_url_is_confirmed(client, http):
    envelope = fixture("sns_subscription_confirmation.json")
    http.get(envelope["SubscribeURL"], body="<ConfirmSubscriptionResponse/>")
    response = post_sns(client, envelope)
    assert response.status_code == 200, response.content
    call = WebhookCall.objects.get()
    assert (call.kind, call.status, call.event_count) == ("inbound", WebhookCallStatus.PROCESSED, 0)
    assert not InboundMessage.objects.exists()


def test_unconfirmed_subscription_is_400_with_the_token(client, http, settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "AMAZON_SES_AUTO_CONFIRM_SNS_SUBSCRIPTIONS": False}
    envelope = fixture("sns_subscription_confirmation.json")
    response = post_sns(client, envelope)
    assert response.status_code == 400
    assert envelope["Token"] in response.json()["error"]
    assert len(http.calls) == 0


def test_unsubscribe_confirmation_is_accepted_and_stores_nothing(client, http):
    response = post_sns(client, fixture("sns_unsubscribe_confirmation.json"))
    assert response.status_code == 200
    assert not InboundMessage.objects.exists()


# ---------------------------------------------------------------------------
# SNS signatures


@pytest.fixture(scope="module")
def signer():
    return SNSSigner()


class TestSignatures:
    @pytest.fixture(autouse=True)
    def verify_signatures(self, ses_settings):
        ses_settings.ANYMAIL = {**ses_settings.ANYMAIL, "AMAZON_SES_VERIFY_SNS_SIGNATURES": True}

    def envelope(self):
        return sns_envelope(fixture("inbound_sns_base64.json"))

    @pytest.mark.parametrize("version", ["1", "2"])
    def test_signed_notification_is_stored(self, client, http, signer, version):
        http.get(CERT_URL, body=signer.pem)
        response = post_sns(client, signer.sign(self.envelope(), version=version))
        assert response.status_code == 200, response.content
        assert InboundMessage.objects.get().subject == "Invoice question"

    def test_signatures_are_verified_by_default(self, client, http, signer, settings):
        settings.ANYMAIL = {"WEBHOOK_SECRET": WEBHOOK_SECRET}
        envelope = signer.sign(self.envelope())
        envelope["Message"] = envelope["Message"].replace("ann@example.net", "mallory@example.net")
        http.get(CERT_URL, body=signer.pem)
        assert post_sns(client, envelope).status_code == 403

    def test_tampered_message_content_is_refused_and_not_stored(self, client, http, signer):
        envelope = signer.sign(self.envelope())
        notification = json.loads(envelope["Message"])
        notification["content"] = base64.b64encode(eml("inbound_latin1.eml")).decode()
        envelope["Message"] = json.dumps(notification)
        http.get(CERT_URL, body=signer.pem)
        response = post_sns(client, envelope)
        assert response.status_code == 403
        assert "signature is not valid" in response.json()["error"]
        assert not WebhookCall.objects.exists()
        assert not InboundMessage.objects.exists()

    def test_signature_by_another_key_is_refused(self, client, http, signer):
        envelope = SNSSigner().sign(self.envelope())
        http.get(CERT_URL, body=signer.pem)
        assert post_sns(client, envelope).status_code == 403
