"""Mailgun's inbound (route forward()) webhook: parsed and raw MIME posts, signatures, contract."""

import hashlib
import hmac
import json
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.core.files.storage import default_storage

from inbound.message import AnymailInboundMessage
from inbound.models import InboundMessage
from inbound.webhooks.mailgun import MailgunInboundWebhookView
from sending.exceptions import AnymailInsecureWebhookWarning
from sending.signals import inbound
from tests.inbound_contract import WEBHOOK_SECRET, InboundWebhookContract, basic_auth, sample_mime
from tracking.models import WebhookCall, WebhookCallStatus
from tracking.services import webhook_call_reprocess

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).parent / "fixtures" / "mailgun"
URL = "/anymail/mailgun/inbound/"
MIME_URL = "/anymail/mailgun/inbound_mime/"
SIGNING_KEY = "whsec-mailgun-test-signing-key"
BOUNDARY = "b9f2c6d0e8a14f0b9c2e7d3a5f1c8e46"  # the parsed fixture's
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
FORM = "application/x-www-form-urlencoded"


def fixture_body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def form_data(fields, files=()) -> bytes:
    """A multipart/form-data body: fields are (name, str or bytes), files are
    (name, filename, content type, bytes)."""
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


def signature_fields(key: str = SIGNING_KEY, timestamp: int | None = None) -> list:
    """A fresh timestamp, token and signature, as Mailgun adds them to every post."""
    timestamp = str(int(time.time()) if timestamp is None else timestamp)
    token = secrets.token_hex(25)
    digest = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return [("timestamp", timestamp), ("token", token), ("signature", digest)]


def resign(fields: list, **kwargs) -> list:
    return [(n, v) for n, v in fields if n not in ("timestamp", "token", "signature")] + (
        signature_fields(**kwargs)
    )


def header_fields(message: AnymailInboundMessage) -> list:
    # "In addition to these parameters Mailgun will post all MIME headers."
    return [(name, str(value)) for name, value in message.items()]


def parsed_post(raw: bytes, envelope_sender: str, envelope_recipient: str) -> bytes:
    """raw as a forward() route posts it, fully parsed (text transcoded to UTF-8)."""
    message = AnymailInboundMessage.parse_raw_mime_bytes(raw)
    files, cid_map = [], {}
    for part in message.walk():
        if part.is_attachment() or part.is_inline_attachment():
            name = f"attachment-{len(files) + 1}"
            files.append(
                (name, part.get_filename() or "", part.get_content_type(), part.get_content_bytes())
            )
            if part["Content-ID"]:
                cid_map[str(part["Content-ID"])] = name
    fields = [
        *header_fields(message),
        ("recipient", envelope_recipient),
        ("sender", envelope_sender),
        ("from", str(message.get("From", ""))),
        ("subject", message.subject or ""),
        ("message-headers", json.dumps([[n, str(v)] for n, v in message.items()])),
        ("body-plain", message.text or ""),
        *([("body-html", message.html)] if message.html is not None else []),
        ("attachment-count", str(len(files))),
        ("content-id-map", json.dumps(cid_map)),
        *signature_fields(),
    ]
    return form_data(fields, files)


def mime_post(raw: bytes, envelope_sender: str, envelope_recipient: str) -> list:
    """The fields a route to a URL ending in "mime" posts."""
    message = AnymailInboundMessage.parse_raw_mime_bytes(raw)
    return [
        *header_fields(message),
        ("recipient", envelope_recipient),
        ("sender", envelope_sender),
        ("from", str(message.get("From", ""))),
        ("subject", message.subject or ""),
        ("body-mime", raw),
        *signature_fields(),
    ]


def post(client, body, content_type=CONTENT_TYPE, url=URL, auth=None):
    return client.generic(
        "POST", url, body, content_type=content_type, HTTP_AUTHORIZATION=auth or basic_auth()
    )


@pytest.fixture(autouse=True)
def mailgun_settings(settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": WEBHOOK_SECRET}
    return settings


@pytest.fixture
def signed(settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY}


@pytest.fixture
def received():
    """The inbound events signalled during the test."""
    seen = []

    def receiver(sender, event, esp_name, **kwargs):
        seen.append((esp_name, event))

    inbound.connect(receiver, weak=False)
    yield seen
    inbound.disconnect(receiver)


# The contract (signed, as Mailgun signs every route post)


class TestMailgunInboundContract(InboundWebhookContract):
    """Fully parsed posts (.../mailgun/inbound/)."""

    esp = "mailgun"
    delivers_raw_mime = False

    @pytest.fixture(autouse=True)
    def signing_key(self, webhook_settings, settings):
        settings.ANYMAIL = {**settings.ANYMAIL, "MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY}

    def inbound_body(self, raw, envelope_sender, envelope_recipient):
        return parsed_post(raw, envelope_sender, envelope_recipient), CONTENT_TYPE


class TestMailgunMimeInboundContract(InboundWebhookContract):
    """Raw MIME posts (.../mailgun/inbound_mime/), as multipart/form-data."""

    esp = "mailgun"

    @pytest.fixture(autouse=True)
    def signing_key(self, webhook_settings, settings):
        settings.ANYMAIL = {**settings.ANYMAIL, "MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY}

    @property
    def url(self):
        return MIME_URL

    def inbound_body(self, raw, envelope_sender, envelope_recipient):
        return form_data(mime_post(raw, envelope_sender, envelope_recipient)), CONTENT_TYPE


# Real-shaped posts


def test_parsed_post_is_normalized(client, received):
    response = post(client, fixture_body("inbound_parsed.txt"))
    assert response.status_code == 200, response.content

    ((esp_name, event),) = received
    assert esp_name == "Mailgun"
    assert event.event_type == "inbound"
    assert event.event_id == "5f2c8a1e9b7d4c3a0e6f1b2d8c9a7e5f3b1d0c2a4e6f8b9d1c"
    assert event.timestamp == datetime.fromtimestamp(1795176002, tz=UTC)
    assert event.esp_event.POST["X-Mailgun-Spf"] == "Pass"
    assert not hasattr(event, "raw_mime")

    message = event.message
    assert message.envelope_sender == "bounces+ann@example.com"
    assert message.envelope_recipient == "support@mg.example.com"
    assert message.from_email.display_name == "Ann Customer"
    assert message.from_email.addr_spec == "ann@example.com"
    assert [a.addr_spec for a in message.to] == ["support@mg.example.com"]
    assert [(a.display_name, a.addr_spec) for a in message.cc] == [
        ("Bob, Billing", "bob@example.com")
    ]
    assert message.subject == "Re: Rechnung #1234 — Grüße"
    assert message.date == datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    # Every header in message-headers is kept, in order.
    assert [name for name, _ in message.items()][:5] == [
        "X-Mailgun-Spf",
        "X-Mailgun-Dkim-Check-Result",
        "X-Mailgun-Sscore",
        "Received",
        "X-Envelope-From",
    ]
    assert message["Message-Id"] == "<CAFx7Q2fb1m@mail.example.com>"
    assert message["In-Reply-To"] == "<invoice-1234@mailhub.example.com>"
    assert message.text.startswith("Hallo, das Logo ist unten")
    assert "Viele Grüße" in message.text
    assert '<img src="cid:ii_logo01" alt="logo.png">' in message.html
    assert message.stripped_text == "Hallo, das Logo ist unten und die Rechnung anbei."
    assert "<blockquote>" not in message.stripped_html
    assert message.spam_score == 0.3
    assert message.spam_detected is False  # checked, and no X-Mailgun-Sflag

    (pdf,) = message.attachments
    assert pdf.get_filename() == "Rechnung-1234.pdf"
    assert pdf.get_content_type() == "application/pdf"
    assert pdf.get_content_bytes().startswith(b"%PDF-1.4")
    logo = message.inline_attachments["ii_logo01"]
    assert logo.get_filename() == "logo.png"
    assert logo.get_content_type() == "image/png"
    assert logo.get_content_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    stored = InboundMessage.objects.get()
    assert stored.esp == "mailgun"
    assert stored.event_id == event.event_id
    assert stored.received_at == event.timestamp
    assert stored.from_address == "ann@example.com"
    assert stored.envelope_sender == "bounces+ann@example.com"
    assert stored.message_id == "<CAFx7Q2fb1m@mail.example.com>"
    assert stored.stripped_text == "Hallo, das Logo ist unten und die Rechnung anbei."
    assert stored.stripped_html.startswith('<div dir="ltr">')
    assert stored.spam_detected is False and stored.spam_score == 0.3
    assert ["X-Mailgun-Dkim-Check-Result", "Pass"] in stored.headers
    attachments = {a.filename: a for a in stored.attachments.all()}
    assert attachments["logo.png"].inline
    assert attachments["logo.png"].content_id == "<ii_logo01>"
    assert not attachments["Rechnung-1234.pdf"].inline


def test_raw_mime_post_is_stored_exactly_as_received(client, received):
    # An 8-bit ISO-8859-1 message, urlencoded by Mailgun.
    response = post(client, fixture_body("inbound_mime.txt"), FORM, url=MIME_URL)
    assert response.status_code == 200, response.content
    raw = fixture_body("inbound_mime.eml")
    ((_, event),) = received
    assert event.raw_mime == raw
    assert event.event_id == "c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9"
    message = event.message
    assert message.subject == "Café crème"
    assert message.from_email.display_name == "René Dupont"
    assert message.text == "Un café, s'il vous plaît.\r\n"
    assert message.envelope_sender == "rene@example.fr"
    assert message.envelope_recipient == "support@mg.example.com"
    assert message.spam_detected is True
    assert message.spam_score == 7.9
    assert message.stripped_text is None

    stored = InboundMessage.objects.get()
    with default_storage.open(stored.raw_file.name) as file:
        assert file.read() == raw
    assert stored.text == "Un café, s'il vous plaît.\r\n"
    assert stored.spam_detected is True


def test_raw_mime_is_recognized_whatever_the_url(client, received):
    response = post(client, fixture_body("inbound_mime.txt"), FORM, url=URL)
    assert response.status_code == 200
    ((_, event),) = received
    assert event.raw_mime == fixture_body("inbound_mime.eml")


def test_parsed_post_without_spam_filtering_has_no_verdict(client, received):
    body = fixture_body("inbound_parsed.txt").replace(b'["X-Mailgun-Sscore", "0.3"], ', b"")
    assert post(client, body).status_code == 200
    ((_, event),) = received
    assert event.message.spam_detected is None
    assert event.message.spam_score is None


def test_parsed_post_with_a_single_text_body(client, received):
    fields = [
        ("message-headers", json.dumps([["From", "ann@example.com"], ["Subject", "Grüße"]])),
        ("recipient", "support@mg.example.com"),
        ("sender", "ann@example.com"),
        ("body-plain", "Viele Grüße\n"),
        ("stripped-text", "Viele Grüße"),
    ]
    assert post(client, urlencode(fields), FORM).status_code == 200
    ((_, event),) = received
    assert event.message.text == "Viele Grüße\n"
    assert event.message.html is None
    assert InboundMessage.objects.get().text == "Viele Grüße\n"


# Idempotency


def test_retried_post_with_a_new_signature_is_stored_once(client, signed):
    first = parsed_post(sample_mime(), "a@example.com", "support@mg.example.com")
    second = parsed_post(sample_mime(), "a@example.com", "support@mg.example.com")
    assert first != second  # each post has its own timestamp, token and signature
    assert post(client, first).status_code == 200
    assert post(client, second).status_code == 200
    assert WebhookCall.objects.count() == 2
    assert InboundMessage.objects.count() == 1


def test_reprocessing_a_call_stores_nothing_new(client):
    assert post(client, fixture_body("inbound_parsed.txt")).status_code == 200
    call = WebhookCall.objects.get()
    assert webhook_call_reprocess(call=call) == 0
    assert webhook_call_reprocess(call=call) == 0
    assert InboundMessage.objects.count() == 1


# Bad input


def test_tracking_payload_is_refused_with_a_pointer_to_the_tracking_url(client):
    response = post(client, fixture_body("delivered.json"), "application/json")
    assert response.status_code == 400
    assert "Mailgun tracking webhook" in response.json()["error"]
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED


def test_tracking_payload_is_400_even_when_signatures_are_checked(client, signed):
    response = post(client, fixture_body("delivered.json"), "application/json")
    assert response.status_code == 400
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED


def test_another_esps_json_is_refused(client):
    postmark = Path(__file__).parent / "fixtures" / "postmark" / "inbound_multipart.json"
    response = post(client, postmark.read_bytes(), "application/json")
    assert response.status_code == 400
    assert "Postmark inbound webhook" in response.json()["error"]


def test_store_notification_is_refused(client):
    fields = [
        ("recipient", "support@mg.example.com"),
        ("message-url", "https://storage.eu.mailgun.net/v3/domains/mg.example.com/messages/x"),
        ("body-plain", "hi"),
    ]
    response = post(client, urlencode(fields), FORM)
    assert response.status_code == 400
    assert "forward()" in response.json()["error"]


def test_post_without_a_body_field_is_refused(client):
    response = post(client, urlencode([("event", "delivered"), ("token", "x")]), FORM)
    assert response.status_code == 400
    assert "neither body-plain" in response.json()["error"]


def test_wrong_content_type_is_refused(client):
    response = post(client, b"hello", "text/plain")
    assert response.status_code == 400
    assert "multipart/form-data" in response.json()["error"]


def test_truncated_multipart_is_400(client):
    body = fixture_body("inbound_parsed.txt")
    response = post(client, body[: len(body) - 50])
    assert response.status_code == 400
    assert "closing boundary" in response.json()["error"]
    assert not InboundMessage.objects.exists()


def test_bad_message_headers_json_is_400_and_kept(client):
    body = fixture_body("inbound_parsed.txt").replace(b'[["X-Mailgun-Spf"', b'[[X-Mailgun-Spf"')
    response = post(client, body)
    assert response.status_code == 400
    assert "message-headers isn't JSON" in response.json()["error"]
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED


# Authentication


def test_signed_post_is_accepted(client, signed):
    fields = mime_post(
        fixture_body("inbound_mime.eml"), "rene@example.fr", "support@mg.example.com"
    )
    assert post(client, urlencode(fields), FORM, url=MIME_URL).status_code == 200


def test_unsigned_post_is_403_when_a_signing_key_is_set(client, signed):
    response = post(client, fixture_body("inbound_mime.txt"), FORM, url=MIME_URL)
    assert response.status_code == 403
    assert "MAILGUN_WEBHOOK_SIGNING_KEY" in response.json()["error"]
    assert not WebhookCall.objects.exists()


def test_post_signed_with_another_key_is_403(client, signed):
    fields = resign(
        mime_post(fixture_body("inbound_mime.eml"), "rene@example.fr", "support@mg.example.com"),
        key="another-key",
    )
    response = post(client, urlencode(fields), FORM, url=MIME_URL)
    assert response.status_code == 403


def test_stale_signature_is_403(client, signed):
    fields = resign(
        mime_post(fixture_body("inbound_mime.eml"), "rene@example.fr", "support@mg.example.com"),
        timestamp=int(time.time()) - 3600,
    )
    response = post(client, urlencode(fields), FORM, url=MIME_URL)
    assert response.status_code == 403
    assert "timestamp" in response.json()["error"]


def test_wrong_basic_auth_is_401(client):
    response = post(client, fixture_body("inbound_parsed.txt"), auth=basic_auth("a:b"))
    assert response.status_code == 401
    assert not WebhookCall.objects.exists()


def test_signing_key_alone_secures_the_webhook(settings):
    settings.ANYMAIL = {"MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY}  # no warning
    MailgunInboundWebhookView()


def test_without_basic_auth_or_signing_key_the_view_warns(settings):
    settings.ANYMAIL = {}
    with pytest.warns(AnymailInsecureWebhookWarning):
        MailgunInboundWebhookView()
