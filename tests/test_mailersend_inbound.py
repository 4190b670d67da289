"""The MailerSend inbound routing webhook: raw MIME, the fields-only fallback, the inbound
route's Signature, and bad input."""

import base64
import hashlib
import hmac
import json
import warnings
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.core.files.storage import default_storage

from inbound.models import InboundMessage
from inbound.webhooks.mailersend import MailerSendInboundWebhookView
from sending.exceptions import AnymailInsecureWebhookWarning
from sending.signals import inbound
from tests.inbound_contract import WEBHOOK_SECRET, InboundWebhookContract, basic_auth
from tracking import services as tracking_services
from tracking.models import WebhookCall, WebhookCallStatus

pytestmark = pytest.mark.django_db

URL = "/anymail/mailersend/inbound/"
FIXTURES = Path(__file__).parent / "fixtures" / "mailersend"
INBOUND_SECRET = "Zx8Kq3LmN4pR7tVw1yB6cD9fG2hJ5kS0"
SIGNING_SECRET = "Fn3kq8ZtV1mRw2yXc9PaL0sDg7HjKe4B"  # the tracking webhooks' secret
PHOTO = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(56))


def sign(body: bytes, secret: str = INBOUND_SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def post(client, payload, auth=None, signature=None, content_type="application/json", **extra):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"HTTP_AUTHORIZATION": auth or basic_auth(), **extra}
    headers["HTTP_SIGNATURE"] = sign(body) if signature is None else signature
    return client.generic("POST", URL, body, content_type=content_type, **headers)


@pytest.fixture(autouse=True)
def mailersend_settings(settings):
    settings.ANYMAIL = {
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "MAILERSEND_INBOUND_SECRET": INBOUND_SECRET,
        "MAILERSEND_SIGNING_SECRET": SIGNING_SECRET,
    }


@pytest.fixture
def received():
    events = []

    def receiver(sender, event, esp_name, **kwargs):
        events.append((event, esp_name))

    inbound.connect(receiver, weak=False)
    yield events
    inbound.disconnect(receiver)


class TestMailerSendInboundContract(InboundWebhookContract):
    """MailerSend delivers the raw MIME message, signed with the inbound route's secret."""

    esp = "mailersend"

    @pytest.fixture(autouse=True)
    def inbound_secret(self, settings):
        settings.ANYMAIL_MAILERSEND_INBOUND_SECRET = INBOUND_SECRET

    def inbound_body(self, raw, envelope_sender, envelope_recipient):
        payload = {
            "type": "inbound.message",
            "inbound_id": "q3enl6kx7wm42vwr",
            "url": "https://shop.example.com/anymail/mailersend/inbound/",
            "created_at": "2026-11-20T12:00:01.000000Z",
            "data": {
                "object": "message",
                "id": hashlib.sha256(raw).hexdigest()[:24],
                "recipients": {"rcptTo": [{"email": envelope_recipient}]},
                "sender": {"email": envelope_sender},
                # JSON carries text: bytes that aren't UTF-8 travel as escaped surrogates.
                "raw": raw.decode("utf-8", errors="surrogateescape"),
                "created_at": "2026-11-20T12:00:00.000000Z",
            },
        }
        return json.dumps(payload).encode(), "application/json"

    def signature_headers(self, body, content_type):
        return {"HTTP_SIGNATURE": sign(body)}


# Real-shaped payloads


def test_raw_multipart_message_is_parsed_and_stored_as_received(client, received):
    payload = fixture("inbound_multipart")
    response = post(client, payload)
    assert response.status_code == 200, response.content

    [(event, esp_name)] = received
    assert esp_name == "MailerSend"
    assert event.event_type == "inbound"
    assert event.timestamp == datetime(2026, 11, 20, 12, 5, 43, 525000, tzinfo=UTC)
    assert event.event_id == "673dcd58e6b0c1f7a90e2b14"
    assert event.esp_event == payload
    assert event.raw_mime == payload["data"]["raw"].encode()

    message = event.message
    assert str(message.from_email) == "Ann Customer <ann@example.com>"
    assert [str(address) for address in message.to] == ["Support <support@inbound.example.com>"]
    assert [str(address) for address in message.cc] == ["bob@example.com"]
    assert message.subject == "Re: Your order 1234 \N{PACKAGE}"
    assert message.date == datetime(2026, 11, 20, 12, 5, 42, tzinfo=UTC)
    assert message["Message-ID"] == "<CAHk7Tq2x9Vn4=JpR8s@mail.gmail.com>"
    assert message.get_all("Received") == [
        "from mail-ed1-f42.google.com (mail-ed1-f42.google.com [209.85.208.42]) by "
        "inbound.mailersend.net with ESMTPS id 4Wq8Zc1xYz; Fri, 20 Nov 2026 12:05:43 +0000 (UTC)",
        "by mail-ed1-f42.google.com with SMTP id 4fb4d7f45d1cf; "
        "Fri, 20 Nov 2026 04:05:42 -0800 (PST)",
    ]
    assert message.text == "Here is the photo of the damaged box.\r\n\r\n[image: photo.png]\r\n"
    assert '<img src="cid:ii_m3k9x2a10"' in message.html
    assert message.envelope_sender == "bounces+ann@example.com"
    assert message.envelope_recipient == "support@inbound.example.com"
    # MailerSend gives no spam verdict or stripped reply
    assert (message.spam_score, message.spam_detected) == (None, None)
    assert (message.stripped_text, message.stripped_html) == (None, None)

    photo = message.inline_attachments["ii_m3k9x2a10"]
    assert (photo.get_filename(), photo.get_content_type()) == ("photo.png", "image/png")
    assert photo.get_content_bytes() == PHOTO
    [prices] = message.attachments
    assert (prices.get_filename(), prices.get_content_type()) == ("prices.csv", "text/csv")
    assert prices.get_content_text() == "Product,Price\r\nWidget,33.20"

    stored = InboundMessage.objects.get()
    assert (stored.esp, stored.event_id) == ("mailersend", "673dcd58e6b0c1f7a90e2b14")
    assert stored.received_at == event.timestamp
    assert stored.in_reply_to == "<6902a1f4c1d2e3f4a5b6c7d8@mailersend.net>"
    with default_storage.open(stored.raw_file.name) as file:
        assert file.read() == payload["data"]["raw"].encode()
    by_name = {a.filename: a for a in stored.attachments.all()}
    assert by_name["photo.png"].inline and by_name["photo.png"].content_id == "<ii_m3k9x2a10>"
    assert not by_name["prices.csv"].inline
    assert stored.parse_error == ""


def test_non_utf8_message_is_decoded(client, received):
    assert post(client, fixture("inbound_latin1")).status_code == 200
    [(event, _)] = received
    assert event.message.subject == "Café crème"
    assert event.message.from_email.display_name == "René Dupré"
    assert event.message.text == "Un café, s'il vous plaît.\r\n"
    stored = InboundMessage.objects.get()
    assert (stored.subject, stored.from_address) == ("Café crème", "rene@example.fr")
    assert stored.text == "Un café, s'il vous plaît.\r\n"


def test_without_raw_the_message_is_rebuilt_from_the_fields(client, received):
    payload = fixture("inbound_fields_only")
    assert post(client, payload).status_code == 200
    [(event, _)] = received
    assert not hasattr(event, "raw_mime")
    message = event.message
    assert str(message.from_email) == "Ann Customer <ann@example.com>"
    assert [str(address) for address in message.to + message.cc] == [
        "Support <support@inbound.example.com>",
        "bob@example.com",
    ]
    assert message.subject == "Re: Your order 1234 \N{PACKAGE}"
    assert message.date == datetime(2026, 11, 20, 12, 5, 42, tzinfo=UTC)
    assert len(message.get_all("Received")) == 2
    assert message.text == "Here is the photo of the damaged box.\n\n[image: photo.png]\n"
    assert '<img src="cid:ii_m3k9x2a10"' in message.html
    assert message.envelope_sender == "bounces+ann@example.com"
    photo = message.inline_attachments["ii_m3k9x2a10"]
    assert photo.get_content_bytes() == PHOTO
    [prices] = message.attachments
    assert (prices.get_filename(), prices.get_content_type()) == ("prices.csv", "text/csv")
    assert prices.get_content_bytes() == b"Product,Price\r\nWidget,33.20\r\n"

    stored = InboundMessage.objects.get()
    assert stored.subject == "Re: Your order 1234 \N{PACKAGE}"
    assert {a.filename for a in stored.attachments.all()} == {"photo.png", "prices.csv"}


def test_rebuilt_message_is_stored_once_when_reprocessed(client):
    assert post(client, fixture("inbound_fields_only")).status_code == 200
    assert tracking_services.webhook_call_reprocess(call=WebhookCall.objects.get()) == 0
    assert InboundMessage.objects.count() == 1


def test_fields_only_message_with_a_lone_non_ascii_body(client, received):
    payload = {
        "type": "inbound.message",
        "data": {"id": "x1", "subject": "Grüße", "text": "Schöne Grüße\n", "raw": ""},
    }
    assert post(client, payload).status_code == 200
    assert received[0][0].message.text == "Schöne Grüße\n"
    assert InboundMessage.objects.get().text == "Schöne Grüße\n"


def test_repeated_delivery_is_stored_once(client):
    payload = fixture("inbound_multipart")
    assert post(client, payload).status_code == 200
    assert post(client, payload).status_code == 200
    assert InboundMessage.objects.count() == 1


# The inbound route's Signature


def test_missing_signature_is_403(client):
    body = json.dumps(fixture("inbound_multipart")).encode()
    response = client.generic(
        "POST", URL, body, content_type="application/json", HTTP_AUTHORIZATION=basic_auth()
    )
    assert response.status_code == 403
    assert "MAILERSEND_INBOUND_SECRET" in response.json()["error"]
    assert not WebhookCall.objects.exists()


@pytest.mark.parametrize(
    "signature",
    [sign(b"something else"), "not-hex", "0" * 64],
    ids=["other body", "garbage", "zeros"],
)
def test_wrong_signature_is_403(client, signature):
    response = post(client, fixture("inbound_multipart"), signature=signature)
    assert response.status_code == 403
    assert "MAILERSEND_INBOUND_SECRET" in response.json()["error"]
    assert not InboundMessage.objects.exists()


def test_signature_with_the_tracking_secret_is_403(client):
    body = json.dumps(fixture("inbound_multipart")).encode()
    response = post(client, body, signature=sign(body, SIGNING_SECRET))
    assert response.status_code == 403


def test_uppercase_hex_signature_is_accepted(client):
    body = json.dumps(fixture("inbound_multipart")).encode()
    assert post(client, body, signature=sign(body).upper()).status_code == 200


def test_signature_alone_authenticates_without_basic_auth(client, settings):
    settings.ANYMAIL = {"MAILERSEND_INBOUND_SECRET": INBOUND_SECRET}
    body = json.dumps(fixture("inbound_multipart")).encode()
    response = client.generic(
        "POST", URL, body, content_type="application/json", HTTP_SIGNATURE=sign(body)
    )
    assert response.status_code == 200


def test_basic_auth_is_still_checked_with_a_signature(client):
    response = post(client, fixture("inbound_multipart"), auth=basic_auth("username:wrong"))
    assert response.status_code == 401


def test_inbound_secret_alone_does_not_warn(settings):
    settings.ANYMAIL = {"MAILERSEND_INBOUND_SECRET": INBOUND_SECRET}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MailerSendInboundWebhookView()


def test_no_auth_configured_warns(settings):
    settings.ANYMAIL = {"MAILERSEND_SIGNING_SECRET": SIGNING_SECRET}
    with pytest.warns(AnymailInsecureWebhookWarning):
        MailerSendInboundWebhookView()


def test_inbound_secret_can_be_a_view_argument(settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": WEBHOOK_SECRET}
    view = MailerSendInboundWebhookView(inbound_secret="view-secret")
    assert view.inbound_secret == "view-secret"


# Bad input


def test_activity_event_is_400_pointing_at_the_tracking_url(client):
    event = json.loads((FIXTURES / "delivered.json").read_text())
    response = post(client, event)
    assert response.status_code == 400
    assert "anymail/mailersend/tracking/" in response.json()["error"]
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED


@pytest.mark.parametrize(
    "payload, message",
    [
        ([{"type": "inbound.message"}], "Not a MailerSend inbound payload"),
        ({"event": "delivered"}, "Not a MailerSend inbound payload"),
        ({"type": "inbound.message"}, 'no "data" object'),
        ({"type": "inbound.message", "data": "raw"}, 'no "data" object'),
        ({"type": "inbound.message", "data": {"raw": 42}}, '"raw" must be the message'),
        ({"type": "inbound.message", "data": {"headers": ["x"]}}, "headers must be a JSON object"),
    ],
)
def test_malformed_payload_is_400_saying_why(client, payload, message):
    response = post(client, payload)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_bad_base64_attachment_is_400(client):
    payload = fixture("inbound_fields_only")
    payload["data"]["attachments"][1]["content"] = "not*base64!"
    response = post(client, payload)
    assert response.status_code == 400
    assert "'prices.csv'" in response.json()["error"] and "base64" in response.json()["error"]
    assert not InboundMessage.objects.exists()


def test_raw_wins_over_bad_attachment_fields(client):
    # With raw present, the parsed attachments aren't used (nor decoded).
    payload = fixture("inbound_multipart")
    payload["data"]["attachments"][0]["content"] = "not*base64!"
    assert post(client, payload).status_code == 200


def test_invalid_json_is_400(client):
    response = post(client, b'{"type": "inbound.message", "data": {')
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]


def test_wrong_content_type_is_400(client):
    body = base64.b64encode(b"x")
    response = post(client, body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert "application/json" in response.json()["error"]
