"""Postal HTTP endpoint deliveries: raw messages and hashes, JSON and form data, RSA-signed."""

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.core.files.storage import default_storage

from inbound.message import AnymailInboundMessage
from inbound.models import InboundMessage
from sending.exceptions import AnymailInsecureWebhookWarning
from sending.signals import inbound
from tests.inbound_contract import WEBHOOK_SECRET, InboundWebhookContract, basic_auth, sample_mime
from tracking.models import WebhookCall, WebhookCallStatus
from tracking.services import webhook_call_reprocess

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).parent / "fixtures" / "postal"
URL = "/anymail/postal/inbound/"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"

PRIVATE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_KEY = base64.b64encode(
    PRIVATE_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()


def signature_headers(body: bytes, key=PRIVATE_KEY) -> dict:
    """What Postal sends with every HTTP endpoint request (the same as its webhooks)."""

    def sign(algorithm):
        return base64.b64encode(key.sign(body, padding.PKCS1v15(), algorithm)).decode()

    return {
        "HTTP_X_POSTAL_SIGNATURE_256": sign(hashes.SHA256()),
        "HTTP_X_POSTAL_SIGNATURE": sign(hashes.SHA1()),
        "HTTP_X_POSTAL_SIGNATURE_KID": "b" * 64,
    }


def encode64(data: bytes) -> str:
    """Ruby's Base64.encode64, as Postal uses: 60 characters a line, each ending in \\n."""
    encoded = base64.b64encode(data).decode()
    return "".join(encoded[i : i + 60] + "\n" for i in range(0, len(encoded), 60))


def fixture(name: str):
    return json.loads((FIXTURES / f"{name}.json").read_text())


def as_body(payload) -> bytes:
    return json.dumps(payload).encode()


def post(client, body: bytes, content_type=JSON, signed=True, **extra):
    headers = {"HTTP_AUTHORIZATION": basic_auth()}
    if signed:
        headers.update(signature_headers(body))
    headers.update(extra)
    return client.generic("POST", URL, body, content_type=content_type, **headers)


@pytest.fixture(autouse=True)
def postal_settings(settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": WEBHOOK_SECRET, "POSTAL_WEBHOOK_KEY": PUBLIC_KEY}


@pytest.fixture
def received():
    events = []

    def receiver(sender, event, esp_name, **kwargs):
        events.append(event)

    inbound.connect(receiver, weak=False)
    yield events
    inbound.disconnect(receiver)


class TestPostalInboundContract(InboundWebhookContract):
    """The raw message format: Postal's complete copy of what it received."""

    esp = "postal"

    @pytest.fixture(autouse=True)
    def postal_key(self, settings):
        settings.ANYMAIL = {**settings.ANYMAIL, "POSTAL_WEBHOOK_KEY": PUBLIC_KEY}

    def inbound_body(self, raw, envelope_sender, envelope_recipient):
        payload = {
            "id": 1001,
            "rcpt_to": envelope_recipient,
            "mail_from": envelope_sender,
            "message": encode64(raw),
            "base64": True,
            "size": len(raw),
        }
        return as_body(payload), JSON

    def signature_headers(self, body, content_type):
        return signature_headers(body)


def hash_payload(raw: bytes, envelope_sender: str, envelope_recipient: str) -> dict:
    """Postal's "delivered as a hash" payload for raw, built the way Postal builds it."""
    parsed = AnymailInboundMessage.parse_raw_mime_bytes(raw)
    attachments = [
        part for part in parsed.walk() if part.is_attachment() or part.is_inline_attachment()
    ]
    return {
        "id": 1002,
        "rcpt_to": envelope_recipient,
        "mail_from": envelope_sender,
        "token": "rtmuzogUauKN",
        "subject": parsed.subject,
        "message_id": str(parsed["Message-ID"] or "").strip("<>") or None,
        "timestamp": 1795172402.5,
        "size": str(len(raw)),
        "spam_status": "NotChecked",
        "bounce": False,
        "received_with_ssl": True,
        "to": str(parsed["To"]) if parsed["To"] else None,
        "cc": str(parsed["Cc"]) if parsed["Cc"] else None,
        "from": str(parsed["From"]) if parsed["From"] else None,
        "date": str(parsed["Date"]) if parsed["Date"] else None,
        "in_reply_to": None,
        "references": None,
        "html_body": parsed.html,
        "attachment_quantity": len(attachments),
        "auto_submitted": None,
        "reply_to": None,
        "plain_body": parsed.text,
        "attachments": [
            {
                "filename": part.get_filename(),
                "content_type": part.get_content_type(),
                "size": len(part.get_content_bytes()),
                "data": encode64(part.get_content_bytes()),
            }
            for part in attachments
        ],
    }


class TestPostalHashContract(TestPostalInboundContract):
    """The hash format: parsed fields, rebuilt into a message."""

    delivers_raw_mime = False

    def inbound_body(self, raw, envelope_sender, envelope_recipient):
        return as_body(hash_payload(raw, envelope_sender, envelope_recipient)), JSON

    def test_inbound_contract_message_is_stored_with_attachments(self, client):
        # A hash has no Content-IDs or dispositions: the inline image arrives as an
        # attachment like any other (test_hash_message below checks everything else).
        response = self.post_raw(client, TestPostalHashContract.sample())
        assert response.status_code == 200
        stored = InboundMessage.objects.get()
        assert stored.subject == "Invoice question"
        assert 'src="cid:logo@example.com"' in stored.html
        by_name = {a.filename: a for a in stored.attachments.all()}
        assert set(by_name) == {"logo.png", "invoice.pdf"}
        assert not by_name["logo.png"].inline and by_name["logo.png"].content_id == ""
        with default_storage.open(by_name["invoice.pdf"].file.name) as file:
            assert file.read() == b"%PDF-1.4 fake"

    def test_inbound_contract_hostile_filename_never_becomes_a_path(self, client):
        # (Both attachments are plain ones here: the hostile one is found by its extension.)
        raw = sample_mime(attachment_name="../../etc/passwd\x07.pdf")
        assert self.post_raw(client, raw).status_code == 200
        attachment = InboundMessage.objects.get().attachments.get(filename__endswith=".pdf")
        assert "/" not in attachment.filename and ".." not in attachment.filename
        assert "\x07" not in attachment.filename
        assert attachment.file.name.startswith("mailhub/inbound/attachments/")

    @staticmethod
    def sample():
        return sample_mime()


# Real-shaped payloads: the raw message


def test_raw_message(client, received):
    payload = fixture("inbound_raw")
    response = post(client, as_body(payload))
    assert response.status_code == 200, response.content

    [event] = received
    assert (event.event_type, event.event_id, event.timestamp) == ("inbound", "48213", None)
    assert event.esp_event == payload
    message = event.message
    assert str(message.from_email) == "Ann Customer <ann@example.com>"
    assert [str(a) for a in message.to] == ["Support <support@inbound.example.com>"]
    assert [a.addr_spec for a in message.cc] == ["bob@example.com"]
    assert message.subject == "Where\u2019s my order?"
    assert message["Reply-To"] == "Orders Desk <orders@example.com>"
    assert "hasn\u2019t arrived" in message.text
    assert 'src="cid:logo.png@01DA5C"' in message.html
    assert (message.envelope_sender, message.envelope_recipient) == (
        "bounces+ann@example.com",
        "support@inbound.example.com",
    )
    assert (message.spam_detected, message.spam_score) == (False, 1.2)
    [attachment] = message.attachments
    assert attachment.get_filename() == "invoice-1234.pdf"
    assert attachment.get_content_bytes().startswith(b"%PDF-1.4")
    assert message.inline_attachments["logo.png@01DA5C"].get_content_type() == "image/png"

    stored = InboundMessage.objects.get()
    assert (stored.esp, stored.event_id, stored.spam_detected, stored.spam_score) == (
        "postal",
        "48213",
        False,
        1.2,
    )
    with default_storage.open(stored.raw_file.name) as file:
        assert file.read() == base64.b64decode(payload["message"])
    assert stored.size == payload["size"]
    assert stored.attachments.get(inline=True).content_id == "<logo.png@01DA5C>"


def test_raw_non_utf8_message_is_stored_exactly_and_decoded(client):
    payload = fixture("inbound_raw_latin1")
    assert post(client, as_body(payload)).status_code == 200
    stored = InboundMessage.objects.get()
    assert stored.subject == "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e"
    assert "un caf\u00e9 cr\u00e8me s'il vous pla\u00eet" in stored.text
    assert (stored.spam_detected, stored.spam_score) == (True, 6.4)
    with default_storage.open(stored.raw_file.name) as file:
        assert b"caf\xe9 cr\xe8me" in file.read()


def test_raw_message_as_form_data(client, received):
    payload = fixture("inbound_raw")
    body = urlencode({**payload, "base64": "true"}).encode()
    assert post(client, body, content_type=FORM).status_code == 200
    [event] = received
    assert event.message.subject == "Where\u2019s my order?"
    assert event.message.envelope_sender == "bounces+ann@example.com"
    assert event.raw_mime == base64.b64decode(payload["message"])


def test_raw_message_not_base64_flagged_is_taken_as_text(client):
    raw = "From: a@example.com\r\nSubject: plain\r\n\r\nHello\r\n"
    payload = {"id": 7, "rcpt_to": "s@example.com", "mail_from": "a@example.com", "message": raw}
    assert post(client, as_body({**payload, "base64": False})).status_code == 200
    assert InboundMessage.objects.get().subject == "plain"


# Real-shaped payloads: the hash


def test_hash_message(client, received):
    payload = fixture("inbound_hash")
    response = post(client, as_body(payload))
    assert response.status_code == 200, response.content

    [event] = received
    assert event.event_id == "48215"
    assert event.timestamp == datetime.fromtimestamp(1795172402.517304, tz=UTC)
    assert event.esp_event == payload
    assert not hasattr(event, "raw_mime")
    message = event.message
    assert str(message.from_email) == "Ann Customer <ann@example.com>"
    assert [str(a) for a in message.to] == ["Support <support@inbound.example.com>"]
    assert [a.addr_spec for a in message.cc] == ["bob@example.com"]
    assert message.subject == "Where\u2019s my order?"
    assert message.date == datetime(2026, 11, 20, 11, 0, tzinfo=UTC)
    assert message["Message-ID"] == "<CAF=order1234@mail.example.com>"
    assert message["In-Reply-To"] == message["References"] == "<confirm-1234@shop.example.com>"
    assert message["Reply-To"] == "Orders Desk <orders@example.com>"
    assert "Auto-Submitted" not in message
    assert message.text.rstrip() == payload["plain_body"]
    assert message.html.rstrip() == payload["html_body"]
    assert (message.envelope_sender, message.envelope_recipient) == (
        "bounces+ann@example.com",
        "support@inbound.example.com",
    )
    assert (message.spam_detected, message.spam_score, message.stripped_text) == (
        False,
        None,
        None,
    )
    assert [(a.get_filename(), a.get_content_type()) for a in message.attachments] == [
        ("logo.png", "image/png"),
        ("invoice-1234.pdf", "application/pdf"),
    ]
    for attachment, sent in zip(message.attachments, payload["attachments"], strict=True):
        assert attachment.get_content_bytes() == base64.b64decode(sent["data"])

    stored = InboundMessage.objects.get()
    assert stored.received_at == event.timestamp
    assert stored.message_id == "<CAF=order1234@mail.example.com>"
    assert stored.attachments.count() == 2


def test_hash_as_form_data(client, received):
    body = (FIXTURES / "inbound_hash_form.txt").read_bytes()
    response = post(client, body, content_type=FORM)
    assert response.status_code == 200, response.content
    [event] = received
    message = event.message
    assert message.subject == "Where\u2019s my order?"
    assert message["Reply-To"] == "Orders Desk <orders@example.com>"
    assert (message.spam_detected, message.envelope_recipient) == (
        False,
        "support@inbound.example.com",
    )
    # Form data gives each attachment's full Content-Type; only the type is kept.
    assert [(a.get_filename(), a.get_content_type()) for a in message.attachments] == [
        ("logo.png", "image/png"),
        ("invoice-1234.pdf", "application/pdf"),
    ]
    json_payload = fixture("inbound_hash")
    assert message.attachments[1].get_content_bytes() == base64.b64decode(
        json_payload["attachments"][1]["data"]
    )
    assert event.esp_event["auto_submitted"] is None
    assert event.esp_event["attachments"][0]["filename"] == "logo.png"


def test_hash_with_stripped_replies(client, received):
    payload = {
        **fixture("inbound_hash"),
        "plain_body": "Thanks, that works!",
        "replies_from_plain_body": "On Thu, Support wrote:\n> Try again?",
        "spam_status": "Spam",
    }
    assert post(client, as_body(payload)).status_code == 200
    [event] = received
    assert event.message.stripped_text == "Thanks, that works!"
    assert event.message.text.replace("\r\n", "\n") == (
        "Thanks, that works!\n\nOn Thu, Support wrote:\n> Try again?\n"
    )
    assert event.message.spam_detected is True
    assert InboundMessage.objects.get().stripped_text == "Thanks, that works!"


def test_hash_without_attachment_data(client):
    # "Include attachments" off: no attachments key at all.
    payload = {k: v for k, v in fixture("inbound_hash").items() if k != "attachments"}
    assert post(client, as_body(payload)).status_code == 200
    assert InboundMessage.objects.get().attachments.count() == 0


def test_hash_is_rebuilt_the_same_way_each_time(client):
    # The stored raw message is the rebuilt one: reprocessing mustn't make a "new" one.
    assert post(client, as_body(fixture("inbound_hash"))).status_code == 200
    call = WebhookCall.objects.get()
    assert webhook_call_reprocess(call=call) == 0
    assert InboundMessage.objects.count() == 1


def test_repeated_delivery_is_stored_once(client):
    body = as_body(fixture("inbound_raw"))
    assert post(client, body).status_code == 200
    assert post(client, body).status_code == 200
    assert InboundMessage.objects.count() == 1
    assert WebhookCall.objects.count() == 1


# Authentication


def test_missing_signature_is_refused(client):
    response = post(client, as_body(fixture("inbound_raw")), signed=False)
    assert response.status_code == 403
    assert "X-Postal-Signature-256" in response.json()["error"]
    assert not WebhookCall.objects.exists()


def test_signature_from_another_postal_is_refused(client):
    body = as_body(fixture("inbound_raw"))
    response = post(client, body, signed=False, **signature_headers(body, OTHER_KEY))
    assert response.status_code == 403
    assert "POSTAL_WEBHOOK_KEY" in response.json()["error"]


def test_tampered_body_is_refused(client):
    body = as_body(fixture("inbound_raw"))
    other = as_body(fixture("inbound_hash"))
    response = post(client, other, signed=False, **signature_headers(body))
    assert response.status_code == 403


def test_wrong_basic_auth_is_refused(client):
    body = as_body(fixture("inbound_raw"))
    assert post(client, body, HTTP_AUTHORIZATION=basic_auth("user:wrong")).status_code == 401


def test_replay_window_does_not_apply_to_incoming_messages(client, settings):
    # Postal retries an incoming message with its first body for about 31 hours.
    settings.ANYMAIL = {**settings.ANYMAIL, "POSTAL_WEBHOOK_TOLERANCE": 300}
    assert post(client, as_body(fixture("inbound_raw"))).status_code == 200
    assert post(client, as_body(fixture("inbound_hash"))).status_code == 200


def test_without_key_basic_auth_is_enough(client, settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": WEBHOOK_SECRET}
    assert post(client, as_body(fixture("inbound_raw")), signed=False).status_code == 200


def test_key_without_basic_auth_does_not_warn(client, settings, recwarn):
    settings.ANYMAIL = {"POSTAL_WEBHOOK_KEY": PUBLIC_KEY}
    body = as_body(fixture("inbound_raw"))
    response = client.generic("POST", URL, body, content_type=JSON, **signature_headers(body))
    assert response.status_code == 200
    assert not [w for w in recwarn if issubclass(w.category, AnymailInsecureWebhookWarning)]


# Bad payloads


def test_wrong_content_type_is_400(client):
    body = b"From: a@example.com\r\n\r\nhi"
    response = post(client, body, content_type="message/rfc822")
    assert response.status_code == 400
    assert "application/json or application/x-www-form-urlencoded" in response.json()["error"]


def test_empty_body_is_400(client):
    response = post(client, b"")
    assert response.status_code == 400
    assert "Empty Postal inbound body" in response.json()["error"]


def test_tracking_event_is_400(client):
    body = as_body(
        {"event": "MessageSent", "timestamp": 1.0, "uuid": "u", "payload": {"message": {}}}
    )
    response = post(client, body)
    assert response.status_code == 400
    assert "anymail/postal/tracking/" in response.json()["error"]
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED


def test_another_esps_payload_is_400(client):
    response = post(client, as_body({"items": [{"Uuid": ["x"], "Subject": "hi"}]}))
    assert response.status_code == 400
    assert "another ESP" in response.json()["error"]


def test_json_array_is_400(client):
    response = post(client, as_body([fixture("inbound_raw")]))
    assert response.status_code == 400
    assert "must be an object" in response.json()["error"]


@pytest.mark.parametrize("message", ["", "   ", None, "!!not base64!!"])
def test_bad_raw_message_is_400(client, message):
    payload = {**fixture("inbound_raw"), "message": message}
    response = post(client, as_body(payload))
    assert response.status_code == 400
    assert "raw message" in response.json()["error"]


def test_bad_attachment_base64_is_400(client):
    payload = fixture("inbound_hash")
    payload["attachments"][1]["data"] = "%PDF not base64"
    response = post(client, as_body(payload))
    assert response.status_code == 400
    assert "'invoice-1234.pdf' data is not valid base64" in response.json()["error"]
    assert not InboundMessage.objects.exists()


@pytest.mark.parametrize("attachments", ["logo.png", ["logo.png"]])
def test_malformed_attachments_are_400(client, attachments):
    payload = {**fixture("inbound_hash"), "attachments": attachments}
    assert post(client, as_body(payload)).status_code == 400
