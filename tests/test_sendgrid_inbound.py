"""SendGrid's Inbound Parse webhook: parsed and raw posts, charsets, signatures, contract."""

import base64
import json
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.files.storage import default_storage

from inbound.message import AnymailInboundMessage
from inbound.models import InboundMessage
from inbound.webhooks.sendgrid import SendGridInboundWebhookView
from sending.exceptions import AnymailConfigurationError, AnymailInsecureWebhookWarning
from sending.signals import inbound
from tests.inbound_contract import WEBHOOK_SECRET, InboundWebhookContract, basic_auth
from tracking.models import WebhookCall, WebhookCallStatus
from tracking.services import webhook_call_reprocess

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).parent / "fixtures" / "sendgrid"
URL = "/anymail/sendgrid/inbound/"
BOUNDARY = "xYzZY"  # what SendGrid uses
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
KEY_SETTING = "SENDGRID_INBOUND_WEBHOOK_VERIFICATION_KEY"

PRIVATE_KEY = ec.generate_private_key(ec.SECP256R1())
# As the security policy's "public_key" shows it: base64 DER.
PUBLIC_KEY = base64.b64encode(
    PRIVATE_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()


def fixture_body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def form_data(fields, files=()) -> bytes:
    """A multipart/form-data body shaped like SendGrid's: fields are (name, bytes or str),
    files are (name, filename, content type, bytes)."""
    parts = []
    for name, value in fields:
        value = value.encode() if isinstance(value, str) else value
        parts.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value
            + b"\r\n"
        )
    for name, filename, content_type, content in files:
        parts.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'.encode()
            + content
            + b"\r\n"
        )
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def signature_headers(body: bytes, timestamp: int | None = None, key=PRIVATE_KEY) -> dict:
    timestamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE": base64.b64encode(signature).decode(),
        "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP": timestamp,
    }


def post(client, body, content_type=CONTENT_TYPE, auth=None, **extra):
    return client.generic(
        "POST",
        URL,
        body,
        content_type=content_type,
        HTTP_AUTHORIZATION=auth or basic_auth(),
        **extra,
    )


def common_fields(envelope_sender: str, envelope_recipient: str) -> list:
    envelope = {"to": [envelope_recipient], "from": envelope_sender}
    return [
        ("dkim", "{@example.com : pass}"),
        ("sender_ip", "192.0.2.25"),
        ("envelope", json.dumps(envelope)),
        ("spam_score", "0.1"),
        ("spam_report", "Content analysis details:   (0.1 points, 5.0 required)\n"),
        ("SPF", "pass"),
    ]


def parsed_post(raw: bytes, envelope_sender: str, envelope_recipient: str) -> bytes:
    """raw as Inbound Parse posts it by default: parsed fields, text in its own charset."""
    message = AnymailInboundMessage.parse_raw_mime_bytes(raw)
    header_block = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0] + b"\n"
    charsets = {"to": "UTF-8", "from": "UTF-8", "subject": "UTF-8"}
    fields = [
        ("headers", header_block),
        ("to", str(message.get("To", ""))),
        ("from", str(message.get("From", ""))),
        ("subject", message.subject or ""),
    ]
    for name, content_type in (("text", "text/plain"), ("html", "text/html")):
        for part in message.walk():
            if part.get_content_type() == content_type and not part.is_attachment():
                fields.append((name, part.get_content_bytes()))
                charsets[name] = part.get_content_charset() or "utf-8"
                break
    files, info, content_ids = [], {}, {}
    for part in message.walk():
        if part.is_attachment() or part.is_inline_attachment():
            name = f"attachment{len(files) + 1}"
            filename = part.get_filename() or ""
            files.append((name, filename, part.get_content_type(), part.get_content_bytes()))
            info[name] = {"filename": filename, "name": filename, "type": part.get_content_type()}
            if part["Content-ID"]:
                cid = str(part["Content-ID"]).strip("<>")
                info[name]["content-id"] = cid
                content_ids[cid] = name
    fields += [
        ("attachments", str(len(files))),
        ("attachment-info", json.dumps(info)),
        ("content-ids", json.dumps(content_ids)),
        ("charsets", json.dumps(charsets)),
        *common_fields(envelope_sender, envelope_recipient),
    ]
    return form_data(fields, files)


def raw_post(raw: bytes, envelope_sender: str, envelope_recipient: str) -> bytes:
    """raw as Inbound Parse posts it with "POST the raw, full MIME message"."""
    message = AnymailInboundMessage.parse_raw_mime_bytes(raw)
    fields = [
        ("email", raw),
        ("to", str(message.get("To", ""))),
        ("from", str(message.get("From", ""))),
        ("subject", message.subject or ""),
        ("charsets", json.dumps({"to": "UTF-8", "from": "UTF-8", "subject": "UTF-8"})),
        *common_fields(envelope_sender, envelope_recipient),
    ]
    return form_data(fields)


@pytest.fixture(autouse=True)
def sendgrid_settings(settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": WEBHOOK_SECRET}
    return settings


@pytest.fixture
def signed(settings):
    settings.ANYMAIL = {**settings.ANYMAIL, KEY_SETTING: PUBLIC_KEY}


@pytest.fixture
def received():
    """The inbound events signalled during the test."""
    seen = []

    def receiver(sender, event, esp_name, **kwargs):
        seen.append((esp_name, event))

    inbound.connect(receiver, weak=False)
    yield seen
    inbound.disconnect(receiver)


# The contract


class TestSendGridInboundContract(InboundWebhookContract):
    """Parsed posts, from a host with a signature-verifying security policy."""

    esp = "sendgrid"
    delivers_raw_mime = False

    @pytest.fixture(autouse=True)
    def signing_key(self, webhook_settings, settings):
        settings.ANYMAIL = {**settings.ANYMAIL, KEY_SETTING: PUBLIC_KEY}

    def inbound_body(self, raw, envelope_sender, envelope_recipient):
        return parsed_post(raw, envelope_sender, envelope_recipient), CONTENT_TYPE

    def signature_headers(self, body, content_type):
        return signature_headers(body)


class TestSendGridRawInboundContract(InboundWebhookContract):
    """Raw posts ("POST the raw, full MIME message"), secured by basic auth alone."""

    esp = "sendgrid"

    def inbound_body(self, raw, envelope_sender, envelope_recipient):
        return raw_post(raw, envelope_sender, envelope_recipient), CONTENT_TYPE


# Real-shaped posts


def test_parsed_post_is_normalized(client, received):
    response = post(client, fixture_body("inbound_parsed.txt"))
    assert response.status_code == 200, response.content

    ((esp_name, event),) = received
    assert esp_name == "SendGrid"
    assert event.event_type == "inbound"
    assert event.event_id is None and event.timestamp is None  # SendGrid gives neither
    assert event.esp_event.POST["SPF"] == "pass"
    assert not hasattr(event, "raw_mime")

    message = event.message
    assert message.envelope_sender == "bounces+ann@example.com"
    assert message.envelope_recipient == "support@parse.example.com"
    assert message.from_email.addr_spec == "ann@example.com"
    assert message.from_email.display_name == "Ann Customer"
    assert [a.addr_spec for a in message.to] == ["support@parse.example.com"]
    assert [(a.display_name, a.addr_spec) for a in message.cc] == [
        ("Bob, Billing", "bob@example.com")
    ]
    assert message.subject == "Re: Rechnung #1234 — Grüße"
    assert message["Message-ID"] == "<CAFx7Q2fb1m@mail.example.com>"
    assert message["In-Reply-To"] == "<invoice-1234@mailhub.example.com>"
    assert len(message.get_all("Received")) == 2
    assert message["DKIM-Signature"].startswith("v=1; a=rsa-sha256")
    assert message.text == "Hallo, das Logo ist unten und die Rechnung anbei.\n\nViele Grüße\nAnn\n"
    assert '<img src="cid:ii_logo01" alt="logo.png">' in message.html
    assert "Viele Grüße" in message.html
    assert message.spam_score == 0.1
    assert message.spam_detected is None  # SendGrid only scores
    assert message.stripped_text is None

    (pdf,) = message.attachments
    assert pdf.get_filename() == "Rechnung-1234.pdf"
    assert pdf.get_content_type() == "application/pdf"
    assert pdf.get_content_bytes().startswith(b"%PDF-1.4")
    logo = message.inline_attachments["ii_logo01"]
    assert logo.get_filename() == "logo.png"
    assert logo.get_content_type() == "image/png"
    assert logo.get_content_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    stored = InboundMessage.objects.get()
    assert stored.esp == "sendgrid"
    assert stored.subject == "Re: Rechnung #1234 — Grüße"
    assert stored.from_address == "ann@example.com"
    assert stored.envelope_sender == "bounces+ann@example.com"
    assert stored.envelope_recipient == "support@parse.example.com"
    assert stored.spam_score == 0.1 and stored.spam_detected is None
    assert stored.text.startswith("Hallo, das Logo")
    attachments = {a.filename: a for a in stored.attachments.all()}
    assert set(attachments) == {"logo.png", "Rechnung-1234.pdf"}
    assert attachments["logo.png"].inline
    assert attachments["logo.png"].content_id == "<ii_logo01>"
    assert not attachments["Rechnung-1234.pdf"].inline


def test_parsed_fields_are_decoded_with_their_declared_charsets(client, received):
    # text, html, from and subject arrive as ISO-8859-1 bytes; charsets says so.
    response = post(client, fixture_body("inbound_latin1.txt"))
    assert response.status_code == 200, response.content
    ((_, event),) = received
    message = event.message
    assert message.subject == "Café crème"
    assert message.from_email.display_name == "René Dupont"
    assert message.text == "Un café, s'il vous plaît.\n"
    assert message.html == "<p>Un café, s'il vous plaît.</p>\n"
    assert message.attachments == [] and message.inline_attachments == {}
    assert message.spam_score is None  # spam checking off for this host
    stored = InboundMessage.objects.get()
    assert stored.text == "Un café, s'il vous plaît.\n"
    assert stored.html == "<p>Un café, s'il vous plaît.</p>\n"


def test_subject_field_is_used_when_the_headers_lack_one(client, received):
    body = fixture_body("inbound_latin1.txt").replace(
        b"Subject: =?ISO-8859-1?Q?Caf=E9_cr=E8me?=\n", b""
    )
    assert post(client, body).status_code == 200
    ((_, event),) = received
    assert event.message.subject == "Café crème"  # from the ISO-8859-1 subject field


def test_unknown_charset_falls_back_to_utf8(client, received):
    body = fixture_body("inbound_parsed.txt").replace(b'"text":"UTF-8"', b'"text":"x-unknown"')
    assert post(client, body).status_code == 200
    ((_, event),) = received
    assert "Viele Grüße" in event.message.text


def test_raw_post_is_stored_exactly_as_received(client, received):
    response = post(client, fixture_body("inbound_raw.txt"))
    assert response.status_code == 200, response.content
    raw = fixture_body("inbound_raw.eml")  # the "email" field, 8-bit ISO-8859-1 and all
    ((_, event),) = received
    assert event.raw_mime == raw
    message = event.message
    assert message.subject == "Bestellung für März"
    assert message.from_email.display_name == "Jürgen"
    assert message.text == "Bitte 3 Stück liefern. Grüße"
    (order,) = message.attachments
    assert order.get_filename() == "order.pdf"
    assert order.get_content_bytes().startswith(b"%PDF-1.4")
    assert message.envelope_sender == "juergen@example.org"
    assert message.envelope_recipient == "orders@parse.example.com"
    assert message.spam_score == 5.8

    stored = InboundMessage.objects.get()
    with default_storage.open(stored.raw_file.name) as file:
        assert file.read() == raw
    assert stored.message_id == "<order-77@example.org>"
    assert stored.parse_error == ""


def test_attachment_without_info_falls_back_to_the_uploaded_filename(client, received):
    body = form_data(
        [("headers", "From: ann@example.com\nSubject: files\n"), ("text", "see attached")],
        [("attachment1", "résumé.txt", "text/plain", b"hello")],
    )
    assert post(client, body).status_code == 200
    ((_, event),) = received
    (attachment,) = event.message.attachments
    assert attachment.get_filename() == "résumé.txt"
    assert attachment.get_content_type() == "text/plain"


# Idempotency


def test_repeated_delivery_is_stored_once(client):
    body = fixture_body("inbound_parsed.txt")
    assert post(client, body).status_code == 200
    response = post(client, body)
    assert response.status_code == 200 and "duplicate" in response.json()["detail"]
    assert InboundMessage.objects.count() == 1


def test_reprocessing_a_parsed_call_stores_nothing_new(client):
    assert post(client, fixture_body("inbound_parsed.txt")).status_code == 200
    call = WebhookCall.objects.get()
    assert webhook_call_reprocess(call=call) == 0
    assert InboundMessage.objects.count() == 1
    assert InboundMessage.objects.get().attachments.count() == 2


def test_reprocessing_a_raw_call_stores_nothing_new(client):
    assert post(client, fixture_body("inbound_raw.txt")).status_code == 200
    assert webhook_call_reprocess(call=WebhookCall.objects.get()) == 0
    assert InboundMessage.objects.count() == 1


# Bad input


def test_event_webhook_batch_is_refused_with_a_pointer_to_the_tracking_url(client):
    events = (Path(__file__).parent / "fixtures" / "sendgrid" / "batch.json").read_bytes()
    response = post(client, events, "application/json")
    assert response.status_code == 400
    assert "Event Webhook (tracking)" in response.json()["error"]
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED


def test_another_esps_json_is_refused(client):
    response = post(client, b'{"FromFull": {"Email": "a@example.com"}}', "application/json")
    assert response.status_code == 400
    assert "another ESP's webhook" in response.json()["error"]


def test_urlencoded_post_is_refused(client):
    response = post(client, b"to=a%40example.com", "application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert "multipart/form-data" in response.json()["error"]


def test_truncated_multipart_is_400(client):
    body = fixture_body("inbound_parsed.txt")
    response = post(client, body[: len(body) - 40])
    assert response.status_code == 400
    assert "closing boundary" in response.json()["error"]
    assert not InboundMessage.objects.exists()


def test_multipart_without_a_message_is_400(client):
    response = post(client, form_data([("event", "processed"), ("email_id", "1")]))
    assert response.status_code == 400
    assert "neither email" in response.json()["error"]


def test_bad_json_field_is_400_and_kept(client):
    body = fixture_body("inbound_parsed.txt").replace(
        b'{"to":["support@parse.example.com"]', b'{"to":[support@parse.example.com]'
    )
    response = post(client, body)
    assert response.status_code == 400
    assert "envelope isn't JSON" in response.json()["error"]
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED


# Authentication


def test_signed_post_is_accepted(client, signed):
    body = fixture_body("inbound_parsed.txt")
    assert post(client, body, **signature_headers(body)).status_code == 200


def test_unsigned_post_is_403_when_a_key_is_set(client, signed):
    response = post(client, fixture_body("inbound_parsed.txt"))
    assert response.status_code == 403
    assert KEY_SETTING in response.json()["error"]
    assert not WebhookCall.objects.exists()


def test_signature_by_another_key_is_403(client, signed):
    body = fixture_body("inbound_parsed.txt")
    other = ec.generate_private_key(ec.SECP256R1())
    response = post(client, body, **signature_headers(body, key=other))
    assert response.status_code == 403
    assert "doesn't verify" in response.json()["error"]


def test_tampered_body_is_403(client, signed):
    body = fixture_body("inbound_parsed.txt")
    headers = signature_headers(body)
    response = post(client, body.replace(b"0.1", b"0.0"), **headers)
    assert response.status_code == 403


def test_stale_signature_timestamp_is_403(client, signed):
    body = fixture_body("inbound_parsed.txt")
    response = post(client, body, **signature_headers(body, timestamp=int(time.time()) - 3600))
    assert response.status_code == 403
    assert "timestamp" in response.json()["error"]


def test_signature_replaces_basic_auth_warning(settings):
    settings.ANYMAIL = {KEY_SETTING: PUBLIC_KEY}  # no WEBHOOK_SECRET, and no warning
    SendGridInboundWebhookView()


def test_without_basic_auth_or_signature_the_view_warns(settings):
    settings.ANYMAIL = {}
    with pytest.warns(AnymailInsecureWebhookWarning):
        SendGridInboundWebhookView()


def test_unusable_key_names_the_setting(settings):
    settings.ANYMAIL = {**settings.ANYMAIL, KEY_SETTING: "not a key"}
    with pytest.raises(AnymailConfigurationError, match=KEY_SETTING):
        SendGridInboundWebhookView()


def test_wrong_basic_auth_is_401(client):
    response = post(client, fixture_body("inbound_parsed.txt"), auth=basic_auth("a:b"))
    assert response.status_code == 401
    assert not WebhookCall.objects.exists()
