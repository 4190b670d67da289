"""Postmark's inbound webhook: parsed JSON, RawEmail, wrong payloads, and the shared contract."""

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from django.core.files.storage import default_storage

from inbound.message import AnymailInboundMessage
from inbound.models import InboundMessage
from sending.signals import inbound
from tests.inbound_contract import (
    PNG,
    WEBHOOK_SECRET,
    InboundWebhookContract,
    basic_auth,
    broken_mime,
    sample_mime,
)
from tracking.models import WebhookCall, WebhookCallStatus
from tracking.services import webhook_call_reprocess

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).parent / "fixtures" / "postmark"
URL = "/anymail/postmark/inbound/"
# The headers Postmark lifts out of the message into fields of their own.
LIFTED_HEADERS = {"from", "to", "cc", "bcc", "subject", "date", "reply-to"}
STRUCTURAL_HEADERS = {"content-type", "content-transfer-encoding", "content-disposition"}


def fixture_body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture(name: str) -> dict:
    return json.loads(fixture_body(name))


def post(client, payload, content_type="application/json", auth=None):
    body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
    return client.generic(
        "POST", URL, body, content_type=content_type, HTTP_AUTHORIZATION=auth or basic_auth()
    )


def full(addresses) -> list[dict]:
    return [{"Email": a.addr_spec, "Name": a.display_name, "MailboxHash": ""} for a in addresses]


def postmark_payload(raw: bytes, envelope_sender: str, envelope_recipient: str) -> dict:
    """raw as Postmark's inbound webhook would post it (without RawEmail)."""
    message = AnymailInboundMessage.parse_raw_mime_bytes(raw)
    sender = message.from_email
    headers = [{"Name": "Return-Path", "Value": f"<{envelope_sender}>"}]
    headers += [
        {"Name": name, "Value": str(value)}
        for name, value in message.items()
        if name.lower() not in LIFTED_HEADERS | STRUCTURAL_HEADERS
    ]
    headers += [
        {"Name": "X-Spam-Status", "Value": "No"},
        {"Name": "X-Spam-Score", "Value": "0.3"},
    ]
    attachments = []
    for part in message.walk():
        if part.is_attachment() or part.is_inline_attachment():
            content = part.get_content_bytes()
            item = {
                "Name": part.get_filename(),
                "Content": base64.b64encode(content).decode(),
                "ContentType": part.get_content_type(),
                "ContentLength": len(content),
            }
            if part["Content-ID"]:
                item["ContentID"] = str(part["Content-ID"]).strip("<>")
            attachments.append(item)
    return {
        "FromName": sender.display_name if sender else "",
        "MessageStream": "inbound",
        "From": sender.addr_spec if sender else "",
        "FromFull": {
            "Email": sender.addr_spec if sender else "",
            "Name": sender.display_name if sender else "",
            "MailboxHash": "",
        },
        "To": str(message.get("To", "")),
        "ToFull": full(message.to),
        "Cc": str(message.get("Cc", "")),
        "CcFull": full(message.cc),
        "OriginalRecipient": envelope_recipient,
        "Subject": message.subject or "",
        "MessageID": str(uuid.uuid5(uuid.NAMESPACE_OID, raw.decode("latin-1"))),
        "ReplyTo": "",
        "MailboxHash": "",
        "Date": str(message.get("Date", "")),
        "TextBody": message.text or "",
        "HtmlBody": message.html or "",
        "StrippedTextReply": "",
        "Tag": "",
        "Headers": headers,
        "Attachments": attachments,
    }


@pytest.fixture(autouse=True)
def postmark_settings(settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": WEBHOOK_SECRET}


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


class TestPostmarkInboundContract(InboundWebhookContract):
    esp = "postmark"
    delivers_raw_mime = False

    def inbound_body(self, raw, envelope_sender, envelope_recipient):
        payload = postmark_payload(raw, envelope_sender, envelope_recipient)
        return json.dumps(payload).encode(), "application/json"


class TestPostmarkRawEmailInboundContract(InboundWebhookContract):
    """The stream's "include raw email content in JSON payload" option: RawEmail is stored."""

    esp = "postmark"

    def inbound_body(self, raw, envelope_sender, envelope_recipient):
        payload = postmark_payload(raw, envelope_sender, envelope_recipient)
        # JSON carries the message as text: 8-bit bytes that aren't UTF-8 can't travel.
        payload["RawEmail"] = raw.decode("utf-8", errors="replace")
        return json.dumps(payload).encode(), "application/json"

    # The contract's non-UTF-8 and broken messages hold 8-bit bytes that aren't
    # UTF-8, which a JSON string can't carry. These check the same promises
    # with messages that survive the trip.

    test_inbound_contract_non_utf8_message_is_decoded = None
    test_inbound_contract_broken_mime_is_stored_with_parse_error = None

    def test_non_utf8_raw_email_is_decoded(self, client):
        raw = (
            b"From: =?iso-8859-1?q?Ren=E9?= <rene@example.com>\r\n"
            b"To: support@inbound.example.com\r\n"
            b"Subject: =?iso-8859-1?q?Caf=E9_cr=E8me?=\r\n"
            b"Content-Type: text/plain; charset=iso-8859-1\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            b"Un caf=E9, s'il vous pla=EEt.\r\n"
        )
        assert self.post_raw(client, raw).status_code == 200
        stored = InboundMessage.objects.get()
        assert stored.subject == "Café crème"
        assert "Un café, s'il vous plaît." in stored.text
        with default_storage.open(stored.raw_file.name) as file:
            assert file.read() == raw

    def test_broken_raw_email_is_stored_with_parse_error(self, client):
        raw = broken_mime().replace(b"\xff", b"")
        assert self.post_raw(client, raw).status_code == 200
        stored = InboundMessage.objects.get()
        assert stored.subject == "broken"
        assert "Base64" in stored.parse_error
        with default_storage.open(stored.raw_file.name) as file:
            assert file.read() == raw


# Real-shaped payloads


def test_multipart_message_is_normalized(client, received):
    response = post(client, fixture_body("inbound_multipart.json"))
    assert response.status_code == 200, response.content

    ((esp_name, event),) = received
    assert esp_name == "Postmark"
    assert event.event_type == "inbound"
    assert event.event_id == "73e6d360-66eb-11e1-8e72-a8904824019b"
    assert event.timestamp is None  # Postmark doesn't say when it received the message
    assert event.esp_event == fixture("inbound_multipart.json")
    assert not hasattr(event, "raw_mime")

    message = event.message
    assert message.envelope_sender == "bounces+ann@example.com"
    assert message.envelope_recipient == "support+T-1234@inbound.example.com"
    assert str(message.from_email) == "Ann Customer <ann@example.com>"
    assert [str(a) for a in message.to] == ["Support Team <support+T-1234@inbound.example.com>"]
    assert [(a.display_name, a.addr_spec) for a in message.cc] == [
        ("Bob, Billing", "bob@example.com"),
        ("", "carol@example.com"),
    ]
    assert message.subject == "Re: Your invoice #1234"
    assert message.date == datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    assert message["Reply-To"] == "ann.replies@example.com"
    assert message["Message-ID"] == "<inbound-1@mail.example.com>"
    assert message["In-Reply-To"] == "<invoice-1234@mailhub.example.com>"
    assert message.get_all("Received") and message["X-Spam-Tests"].startswith("DKIM_SIGNED")
    assert "Bcc" not in message  # empty in the payload
    assert message.text.startswith("Hello, the logo is below")
    assert '<img src="cid:logo@example.com">' in message.html
    assert message.stripped_text == "Hello, the logo is below and the invoice attached."
    assert message.stripped_html is None
    assert message.spam_detected is False
    assert message.spam_score == -0.1

    (pdf,) = message.attachments
    assert pdf.get_filename() == "invoice-1234.pdf"
    assert pdf.get_content_type() == "application/pdf"
    assert pdf.get_content_bytes().startswith(b"%PDF-1.4")
    logo = message.inline_attachments["logo@example.com"]
    assert logo.get_filename() == "logo.png"
    assert logo.get_content_type() == "image/png"
    assert logo.get_content_bytes() == base64.b64decode(
        fixture("inbound_multipart.json")["Attachments"][0]["Content"]
    )

    stored = InboundMessage.objects.get()
    assert stored.esp == "postmark"
    assert stored.event_id == "73e6d360-66eb-11e1-8e72-a8904824019b"
    assert stored.from_address == "ann@example.com"
    assert stored.envelope_sender == "bounces+ann@example.com"
    assert stored.envelope_recipient == "support+T-1234@inbound.example.com"
    assert stored.message_id == "<inbound-1@mail.example.com>"
    assert stored.in_reply_to == "<invoice-1234@mailhub.example.com>"
    assert stored.stripped_text == "Hello, the logo is below and the invoice attached."
    assert stored.spam_detected is False and stored.spam_score == -0.1
    assert ["X-Spam-Score", "-0.1"] in stored.headers
    attachments = {a.filename: a for a in stored.attachments.all()}
    assert attachments["logo.png"].inline and attachments["logo.png"].content_id == (
        "<logo@example.com>"
    )
    assert not attachments["invoice-1234.pdf"].inline
    assert attachments["invoice-1234.pdf"].declared_content_type == "application/pdf"
    assert attachments["invoice-1234.pdf"].size == 73


def test_non_utf8_message_arrives_decoded(client, received):
    # Postmark decodes the message's iso-8859-15 text into the JSON (UTF-8) payload.
    response = post(client, fixture_body("inbound_latin1.json"))
    assert response.status_code == 200, response.content
    ((_, event),) = received
    message = event.message
    assert message.subject == "Café crème à 2 €"
    assert (message.from_email.display_name, message.from_email.addr_spec) == (
        "René Dupont",
        "rene@example.fr",
    )
    assert message.text == "Un café, s'il vous plaît. Ça coûte 2 € ?\n"
    assert message.html is None
    assert message.date == datetime(2026, 11, 21, 9, 30, tzinfo=timezone(timedelta(hours=1)))
    assert message.spam_detected is True  # "Yes, score=6.2 ..."
    assert message.spam_score == 6.2
    assert message.stripped_text is None
    stored = InboundMessage.objects.get()
    assert stored.subject == "Café crème à 2 €"
    assert stored.text == "Un café, s'il vous plaît. Ça coûte 2 € ?\n"
    assert stored.spam_detected is True


def test_raw_email_is_parsed_and_stored_as_received(client, received):
    payload = fixture("inbound_raw_email.json")
    response = post(client, fixture_body("inbound_raw_email.json"))
    assert response.status_code == 200, response.content
    ((_, event),) = received
    assert event.raw_mime == payload["RawEmail"].encode()
    message = event.message
    assert message.subject == "Résumé nocturne"
    assert message.from_email.display_name == "André Ops"
    assert message.text == "Tout va bien: 0 échec cette nuit."
    (report,) = message.attachments
    assert report.get_filename() == "report.csv"
    assert report.get_content_bytes() == b"job,status\r\nbackup,ok"
    # The envelope and spam verdict come from the JSON fields.
    assert message.envelope_sender == "ops@example.net"
    assert message.envelope_recipient == "alerts@inbound.example.com"
    assert message.spam_detected is False and message.spam_score == 0.4

    stored = InboundMessage.objects.get()
    with default_storage.open(stored.raw_file.name) as file:
        assert file.read() == payload["RawEmail"].encode()
    assert stored.event_id == "c5a3e1f0-8d2b-4b61-a0b9-1f2e3d4c5b6a"
    assert stored.parse_error == ""


def test_raw_email_with_null_return_path_has_no_envelope_sender(client, received):
    payload = fixture("inbound_raw_email.json")
    payload["Headers"][0]["Value"] = "<>"
    assert post(client, payload).status_code == 200
    ((_, event),) = received
    assert event.message.envelope_sender is None


def test_message_without_spam_headers_has_no_spam_verdict(client, received):
    payload = fixture("inbound_multipart.json")
    payload["Headers"] = [h for h in payload["Headers"] if not h["Name"].startswith("X-Spam")]
    assert post(client, payload).status_code == 200
    ((_, event),) = received
    assert event.message.spam_detected is None
    assert event.message.spam_score is None


def test_bcc_and_folded_header_values_are_kept(client, received):
    payload = fixture("inbound_multipart.json")
    payload["BccFull"] = [{"Email": "audit@example.com", "Name": "Audit", "MailboxHash": ""}]
    payload["Headers"].append({"Name": "X-Long", "Value": "first part\r\n\tsecond part"})
    assert post(client, payload).status_code == 200
    ((_, event),) = received
    assert event.message["Bcc"] == "Audit <audit@example.com>"
    assert event.message["X-Long"] == "first part\tsecond part"


# Idempotency


def test_repeated_delivery_is_stored_once(client):
    body = fixture_body("inbound_multipart.json")
    assert post(client, body).status_code == 200
    response = post(client, body)
    assert response.status_code == 200
    assert "duplicate" in response.json()["detail"]
    assert InboundMessage.objects.count() == 1
    assert WebhookCall.objects.count() == 1


def test_same_message_reserialized_is_stored_once(client):
    # A retry whose JSON differs only in layout rebuilds the same message bytes.
    payload = fixture("inbound_multipart.json")
    assert post(client, json.dumps(payload, indent=2)).status_code == 200
    assert post(client, json.dumps(payload, separators=(",", ":"))).status_code == 200
    assert WebhookCall.objects.count() == 2
    assert InboundMessage.objects.count() == 1


def test_reprocessing_a_call_stores_nothing_new(client):
    assert post(client, fixture_body("inbound_multipart.json")).status_code == 200
    call = WebhookCall.objects.get()
    assert webhook_call_reprocess(call=call) == 0
    assert webhook_call_reprocess(call=call) == 0
    assert InboundMessage.objects.count() == 1
    assert InboundMessage.objects.get().attachments.count() == 2


# Bad input


def test_tracking_payload_is_refused_with_a_pointer_to_the_tracking_url(client):
    response = post(client, fixture_body("delivery.json"))
    assert response.status_code == 400
    assert "Postmark Delivery tracking webhook" in response.json()["error"]
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED
    assert not InboundMessage.objects.exists()


def test_json_array_is_refused(client):
    response = post(client, [fixture("inbound_multipart.json")])
    assert response.status_code == 400
    assert "one JSON object per message" in response.json()["error"]


def test_object_that_isnt_an_inbound_message_is_refused(client):
    response = post(client, {"event": "inbound", "data": {}})
    assert response.status_code == 400
    assert "no From, FromFull or RawEmail" in response.json()["error"]


def test_form_post_is_refused(client):
    response = post(client, "from=ann%40example.com", "application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert "application/json" in response.json()["error"]


def test_bad_base64_attachment_is_400_and_kept(client):
    payload = fixture("inbound_multipart.json")
    payload["Attachments"][1]["Content"] = "not base64!"
    response = post(client, payload)
    assert response.status_code == 400
    assert "invoice-1234.pdf" in response.json()["error"]
    assert "base64" in response.json()["error"]
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED
    assert not InboundMessage.objects.exists()


def test_wrongly_shaped_field_is_400(client):
    payload = fixture("inbound_multipart.json")
    payload["Headers"] = [{"Value": "no name"}]
    response = post(client, payload)
    assert response.status_code == 400
    assert "Malformed Postmark inbound webhook payload" in response.json()["error"]


# Authentication: Postmark doesn't sign its webhooks, so basic auth is all there is.


def test_correct_basic_auth_is_accepted(client):
    assert post(client, fixture_body("inbound_multipart.json")).status_code == 200


def test_rotated_secret_is_accepted(client, settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": ["new:secret", WEBHOOK_SECRET]}
    assert post(client, fixture_body("inbound_multipart.json")).status_code == 200


def test_wrong_basic_auth_is_401(client):
    response = post(client, fixture_body("inbound_multipart.json"), auth=basic_auth("a:b"))
    assert response.status_code == 401
    assert not WebhookCall.objects.exists()


# Without recording


def test_without_recording_the_signal_still_fires(client, settings, received):
    settings.MAILHUB = {**settings.MAILHUB, "STORE": False}
    assert post(client, fixture_body("inbound_multipart.json")).status_code == 200
    ((_, event),) = received
    assert event.message.inline_attachments["logo@example.com"].get_content_bytes()[:4] == (PNG[:4])
    assert not WebhookCall.objects.exists()
    assert not InboundMessage.objects.exists()


def test_contract_sample_round_trips_through_the_payload(client, received):
    """The contract's rendering keeps what Postmark keeps (a check on the test helper)."""
    payload = postmark_payload(sample_mime(), "bounces@example.com", "support@example.com")
    assert post(client, payload).status_code == 200
    ((_, event),) = received
    assert event.message["Message-ID"] == "<inbound-1@mail.example.com>"
    assert event.message.envelope_sender == "bounces@example.com"
