"""The Mailjet Parse API inbound webhook: fields, Parts and attachments, auth and bad input."""

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.core.files.storage import default_storage

from inbound.message import AnymailInboundMessage
from inbound.models import InboundMessage
from sending.signals import inbound
from tests.inbound_contract import WEBHOOK_SECRET, InboundWebhookContract, basic_auth
from tracking import services as tracking_services
from tracking.models import WebhookCall, WebhookCallStatus

pytestmark = pytest.mark.django_db

URL = "/anymail/mailjet/inbound/"
FIXTURES = Path(__file__).parent / "fixtures" / "mailjet"
PHOTO = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(56))
RECEIPT = b"%PDF-1.4\n% receipt 1234\n"
# Headers Mailjet gives as single strings; every other header is a list of its lines.
SINGLE_VALUE_HEADERS = {
    "date",
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "message-id",
    "in-reply-to",
    "references",
    "subject",
}


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def post(client, payload, auth=None, content_type="application/json"):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.generic(
        "POST", URL, body, content_type=content_type, HTTP_AUTHORIZATION=auth or basic_auth()
    )


@pytest.fixture(autouse=True)
def mailjet_settings(settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": WEBHOOK_SECRET}


@pytest.fixture
def received():
    events = []

    def receiver(sender, event, esp_name, **kwargs):
        events.append((event, esp_name))

    inbound.connect(receiver, weak=False)
    yield events
    inbound.disconnect(receiver)


def mailjet_payload(raw: bytes, sender: str, recipient: str) -> dict:
    """raw as the Parse API posts it."""
    message = AnymailInboundMessage.parse_raw_mime_bytes(raw)
    headers: dict = {}
    for name, value in message.items():
        if name.lower() in SINGLE_VALUE_HEADERS:
            headers[name] = str(value)
        else:
            headers.setdefault(name, []).append(str(value))
    payload = {
        "Sender": sender,
        "Recipient": recipient,
        "Date": "20261120T120000",
        "From": str(message["From"] or ""),
        "Subject": message.subject or "",
        "Headers": headers,
        "Parts": [],
        "SpamAssassinScore": "0.602",
    }
    attachment_count = 0
    for part in message.walk():
        if part.is_multipart():
            continue
        part_headers = {name: str(value) for name, value in part.items()}
        if part.is_attachment() or part.is_inline_attachment():
            attachment_count += 1
            ref = f"Attachment{attachment_count}"
            payload[ref] = base64.b64encode(part.get_content_bytes()).decode()
        elif part.get_content_type() in ("text/plain", "text/html"):
            ref = "Text-part" if part.get_content_subtype() == "plain" else "Html-part"
            payload[ref] = part.get_content_text()
        else:
            continue
        payload["Parts"].append({"Headers": part_headers, "ContentRef": ref})
    return payload


class TestMailjetInboundContract(InboundWebhookContract):
    """Mailjet posts the message's parts as fields (attachments in base64)."""

    esp = "mailjet"
    delivers_raw_mime = False

    def inbound_body(self, raw, envelope_sender, envelope_recipient):
        payload = mailjet_payload(raw, envelope_sender, envelope_recipient)
        return json.dumps(payload).encode(), "application/json"


# Real-shaped payloads


def test_multipart_message_with_inline_image_and_attachment(client, received):
    payload = fixture("inbound_multipart")
    response = post(client, payload)
    assert response.status_code == 200, response.content

    [(event, esp_name)] = received
    assert esp_name == "Mailjet"
    assert event.event_type == "inbound"
    assert event.timestamp == datetime(2026, 11, 20, 12, 5, 43, tzinfo=UTC)
    assert event.event_id is None
    assert event.esp_event == payload
    assert (event.esp_event["CustomID"], event.esp_event["Payload"]) == (
        "order-1234",
        '{"order": 1234}',
    )

    message = event.message
    assert str(message.from_email) == "Ann Customer <ann@example.com>"
    assert [str(address) for address in message.to] == ["Support <support@parse.example.com>"]
    assert [str(address) for address in message.cc] == ["bob@example.com"]
    assert message.subject == "Re: Your order 1234"
    assert message.date == datetime(2026, 11, 20, 12, 5, 42, tzinfo=UTC)
    assert message["Message-ID"] == "<CAHk7Tq2x9Vn4=JpR8s@mail.gmail.com>"
    assert message["In-Reply-To"] == "<1234.order@shop.example.com>"
    assert message.get_all("Received") == payload["Headers"]["Received"]
    assert message.text == payload["Text-part"]
    assert message.html == payload["Html-part"]
    assert message.envelope_sender == "bounces+ann@example.com"
    assert message.envelope_recipient == "support@parse.example.com"
    assert (message.spam_score, message.spam_detected) == (1.271, None)
    assert (message.stripped_text, message.stripped_html) == (None, None)

    photo = message.inline_attachments["ii_m3k9x2a10"]
    assert (photo.get_filename(), photo.get_content_type()) == ("photo.png", "image/png")
    assert photo.get_content_bytes() == PHOTO
    [receipt] = message.attachments
    assert (receipt.get_filename(), receipt.get_content_type()) == (
        "receipt.pdf",
        "application/pdf",
    )
    assert receipt.get_content_bytes() == RECEIPT

    stored = InboundMessage.objects.get()
    assert stored.esp == "mailjet"
    assert stored.received_at == event.timestamp
    assert (stored.envelope_sender, stored.envelope_recipient) == (
        "bounces+ann@example.com",
        "support@parse.example.com",
    )
    assert stored.spam_score == 1.271
    assert stored.references == "<1234.order@shop.example.com>"
    by_name = {a.filename: a for a in stored.attachments.all()}
    assert list(by_name) == ["photo.png", "receipt.pdf"]
    assert by_name["photo.png"].inline and by_name["photo.png"].content_id == "<ii_m3k9x2a10>"
    with default_storage.open(by_name["receipt.pdf"].file.name) as file:
        assert file.read() == RECEIPT
    assert stored.parse_error == ""


def test_non_utf8_message_is_decoded(client, received):
    assert post(client, fixture("inbound_latin1")).status_code == 200
    [(event, _)] = received
    message = event.message
    assert message.subject == "Café crème"
    assert message.from_email.display_name == "René Dupré"
    assert message.text == "Un café, s'il vous plaît.\n"
    assert message.html is None
    assert message.spam_score == 0.1
    [note] = message.attachments
    assert (note.get_filename(), note.get_content_charset()) == ("note.txt", "iso-8859-1")
    assert note.get_content_text() == "Crème brûlée!"
    stored = InboundMessage.objects.get()
    assert (stored.subject, stored.from_email) == ("Café crème", "René Dupré <rene@example.fr>")


def test_lone_non_ascii_body(client, received):
    payload = {
        "Sender": "a@example.org",
        "Recipient": "b@parse.example.com",
        "Headers": {"Subject": "Grüße", "From": "a@example.org"},
        "Parts": [
            {"Headers": {"Content-Type": "text/html; charset=UTF-8"}, "ContentRef": "Html-part"}
        ],
        "Html-part": "<p>Schöne Grüße</p>",
    }
    assert post(client, payload).status_code == 200
    assert received[0][0].message.html == "<p>Schöne Grüße</p>\n"
    assert InboundMessage.objects.get().html == "<p>Schöne Grüße</p>\n"


def test_attachment_no_part_describes_is_kept(client, received):
    payload = fixture("inbound_multipart")
    payload["Attachment3"] = base64.b64encode(b"stray").decode()
    assert post(client, payload).status_code == 200
    attachments = received[0][0].message.attachments
    assert [a.get_filename() for a in attachments] == ["receipt.pdf", None]
    assert attachments[1].get_content_type() == "application/octet-stream"
    assert attachments[1].get_content_bytes() == b"stray"


def test_odd_date_gives_no_timestamp(client, received):
    payload = fixture("inbound_latin1")
    payload["Date"] = "Fri, 20 Nov 2026"
    assert post(client, payload).status_code == 200
    assert received[0][0].timestamp is None


def test_repeated_delivery_is_stored_once(client):
    payload = fixture("inbound_multipart")
    assert post(client, payload).status_code == 200
    assert post(client, payload).status_code == 200
    assert InboundMessage.objects.count() == 1


def test_reprocessing_a_processed_call_stores_nothing_new(client):
    assert post(client, fixture("inbound_multipart")).status_code == 200
    assert tracking_services.webhook_call_reprocess(call=WebhookCall.objects.get()) == 0
    assert InboundMessage.objects.count() == 1


# Auth: basic auth only (Mailjet doesn't sign Parse API calls)


def test_wrong_basic_auth_is_401(client):
    response = post(client, fixture("inbound_multipart"), auth=basic_auth("username:wrong"))
    assert response.status_code == 401
    assert not WebhookCall.objects.exists()


# Bad input


@pytest.mark.parametrize(
    "payload",
    [
        {"event": "sent", "time": 1763640000, "email": "a@example.com", "MessageID": 1},
        [{"event": "open", "time": 1763640000, "email": "a@example.com"}],
    ],
    ids=["event", "grouped events"],
)
def test_event_api_payload_is_400_pointing_at_the_tracking_url(client, payload):
    response = post(client, payload)
    assert response.status_code == 400
    assert "/anymail/mailjet/tracking/" in response.json()["error"]
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"items": [{"Subject": "x"}]}, "Not a Mailjet Parse API payload"),
        ("Parts", "Not a Mailjet Parse API payload"),
        ({"Parts": ["Text-part"]}, "Parts must be JSON objects"),
        ({"Parts": [], "Headers": {"To": ["a@b"]}, "SpamAssassinScore": "n/a"}, "Malformed"),
        ({"Parts": [{"ContentRef": "Attachment1"}]}, "has no Attachment1 content"),
        ({"Parts": [{"ContentRef": "Attachment1"}], "Attachment1": "%%%"}, "not valid base64"),
        ({"Parts": [], "Headers": "To: a@b"}, "Headers must be a JSON object"),
    ],
)
def test_malformed_payload_is_400_saying_why(client, payload, message):
    response = post(client, payload)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert not InboundMessage.objects.exists()


def test_invalid_json_is_400(client):
    response = post(client, b'{"Sender": "a@example.com", ')
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]


def test_wrong_content_type_is_400(client):
    response = post(client, fixture("inbound_multipart"), content_type="multipart/form-data")
    assert response.status_code == 400
    assert "application/json" in response.json()["error"]
