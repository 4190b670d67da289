"""The Brevo inbound parsing webhook (and its SendinBlue alias): fields, attachment downloads,
auth and bad input."""

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
import responses
from django.core.files.storage import default_storage
from responses import matchers

from inbound.message import AnymailInboundMessage
from inbound.models import InboundMessage
from sending.exceptions import AnymailDeprecationWarning
from sending.signals import inbound
from tests.inbound_contract import PNG, WEBHOOK_SECRET, InboundWebhookContract, basic_auth
from tracking import services as tracking_services
from tracking.models import WebhookCall, WebhookCallStatus

pytestmark = pytest.mark.django_db

URL = "/anymail/brevo/inbound/"
SENDINBLUE_URL = "/anymail/sendinblue/inbound/"
FIXTURES = Path(__file__).parent / "fixtures" / "brevo"
API_KEY = "xkeysib-test-api-key"
DOWNLOAD_URL = "https://api.brevo.com/v3/inbound/attachments/"
PHOTO = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(56))
RECEIPT = b"%PDF-1.4\n% receipt 1234\n"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def post(client, payload, auth=None, url=URL, content_type="application/json"):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.generic(
        "POST", url, body, content_type=content_type, HTTP_AUTHORIZATION=auth or basic_auth()
    )


def add_download(http, token: str, body: bytes, content_type: str = "application/octet-stream"):
    http.add(
        responses.GET,
        DOWNLOAD_URL + token,
        body=body,
        content_type=content_type,
        match=[matchers.header_matcher({"api-key": API_KEY})],
    )


def mailbox(address) -> dict | None:
    return {"Name": address.display_name or None, "Address": address.addr_spec}


@pytest.fixture(autouse=True)
def brevo_settings(settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": WEBHOOK_SECRET, "BREVO_API_KEY": API_KEY}


@pytest.fixture
def received():
    events = []

    def receiver(sender, event, esp_name, **kwargs):
        events.append((event, esp_name))

    inbound.connect(receiver, weak=False)
    yield events
    inbound.disconnect(receiver)


def multipart_downloads(http):
    item = fixture("inbound_multipart")["items"][0]
    photo, receipt = item["Attachments"]
    add_download(http, photo["DownloadToken"], PHOTO, "image/png")
    add_download(http, receipt["DownloadToken"], RECEIPT, "application/pdf")


class TestBrevoInboundContract(InboundWebhookContract):
    """Brevo posts parsed fields; attachment bytes come from its API by download token."""

    esp = "brevo"
    delivers_raw_mime = False

    @pytest.fixture(autouse=True)
    def brevo_api(self, settings):
        settings.ANYMAIL_BREVO_API_KEY = API_KEY
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
            self.downloads = mock
            yield

    def inbound_body(self, raw, envelope_sender, envelope_recipient):
        message = AnymailInboundMessage.parse_raw_mime_bytes(raw)
        headers: dict[str, list[str]] = {}
        for name, value in message.items():
            headers.setdefault(name, []).append(str(value))
        headers["Return-Path"] = [f"<{envelope_sender}>"]
        headers["Delivered-To"] = [envelope_recipient]
        attachments = []
        for index, part in enumerate(
            part for part in message.walk() if part.is_attachment() or part.is_inline_attachment()
        ):
            content = part.get_content_bytes()
            token = f"{hashlib.sha256(content).hexdigest()[:24]}-{index}"
            self.downloads.add(responses.GET, DOWNLOAD_URL + token, body=content, status=200)
            content_id = str(part["Content-ID"] or "").strip("<>") or None
            attachments.append(
                {
                    "Name": part.get_filename(),
                    "ContentType": part.get_content_type(),
                    "ContentLength": len(content),
                    "ContentID": content_id,
                    "DownloadToken": token,
                }
            )
        item = {
            "Uuid": [hashlib.sha256(raw).hexdigest()[:36]],
            "MessageId": str(message["Message-ID"] or "") or None,
            "InReplyTo": None,
            "From": mailbox(message.from_email) if message.from_email else None,
            "To": [mailbox(address) for address in message.to],
            "Cc": [mailbox(address) for address in message.cc] or None,
            "ReplyTo": None,
            "SentAtDate": str(message["Date"] or "") or None,
            "Subject": message.subject,
            "Attachments": attachments,
            "Headers": {
                name: values[0] if len(values) == 1 else values for name, values in headers.items()
            },
            "SpamScore": 0.4,
            "ExtractedMarkdownMessage": message.text,
            "ExtractedMarkdownSignature": None,
            "RawHtmlBody": message.html,
            "RawTextBody": message.text,
        }
        return json.dumps({"items": [item]}).encode(), "application/json"


# Real-shaped payloads


def test_multipart_message_with_inline_image_and_attachment(client, http, received):
    multipart_downloads(http)
    payload = fixture("inbound_multipart")
    response = post(client, payload)
    assert response.status_code == 200, response.content

    [(event, esp_name)] = received
    assert esp_name == "Brevo"
    assert event.event_type == "inbound"
    assert event.timestamp is None  # Brevo doesn't say when it received the message
    assert event.event_id == "3f6c2a9e-8d41-4b7a-9e0c-5d2f1b7a6c30"
    assert event.esp_event == payload["items"][0]

    message = event.message
    assert str(message.from_email) == "Ann Customer <ann@example.com>"
    assert [str(address) for address in message.to] == ["Support <support@reply.example.com>"]
    assert [str(address) for address in message.cc] == ["bob@example.com"]
    assert message.subject == "Re: Your order 1234"
    assert message.date == datetime(2026, 11, 20, 12, 5, 42, tzinfo=UTC)
    assert message["Message-ID"] == "<CAHk7Tq2x9Vn4=JpR8s@mail.gmail.com>"
    assert message["In-Reply-To"] == "<202611201159.12345678901@smtp-relay.mailin.fr>"
    assert message.get_all("Received") == payload["items"][0]["Headers"]["Received"]
    assert message["DKIM-Signature"].startswith("v=1; a=rsa-sha256;")
    assert message.text == (
        "Here is the photo of the damaged box, and the receipt.\n[image: photo.png]\nAnn\n\n"
        "> Your order 1234 has shipped.\n"
    )
    assert '<img src="cid:ii_m3k9x2a10" alt="photo.png">' in message.html
    assert message.envelope_sender == "ann@example.com"
    assert message.envelope_recipient == "support@reply.example.com"
    assert message.spam_score == 1.236
    assert message.spam_detected is None
    assert message.stripped_text == "Here is the photo of the damaged box, and the receipt.  \n"
    assert message.stripped_html is None

    [photo] = message.inline_attachments.values()
    assert list(message.inline_attachments) == ["ii_m3k9x2a10"]
    assert (photo.get_filename(), photo.get_content_type()) == ("photo.png", "image/png")
    assert photo.get_content_bytes() == PHOTO
    [receipt] = message.attachments
    assert (receipt.get_filename(), receipt.get_content_type()) == (
        "receipt.pdf",
        "application/pdf",
    )
    assert receipt.get_content_bytes() == RECEIPT

    stored = InboundMessage.objects.get()
    assert (stored.esp, stored.event_id) == ("brevo", "3f6c2a9e-8d41-4b7a-9e0c-5d2f1b7a6c30")
    assert stored.from_address == "ann@example.com"
    assert stored.message_id == "<CAHk7Tq2x9Vn4=JpR8s@mail.gmail.com>"
    assert stored.references == "<202611201159.12345678901@smtp-relay.mailin.fr>"
    assert (stored.envelope_sender, stored.envelope_recipient) == (
        "ann@example.com",
        "support@reply.example.com",
    )
    assert (stored.spam_score, stored.spam_detected) == (1.236, None)
    by_name = {a.filename: a for a in stored.attachments.all()}
    assert by_name["photo.png"].inline and by_name["photo.png"].content_id == "<ii_m3k9x2a10>"
    assert not by_name["receipt.pdf"].inline
    with default_storage.open(by_name["receipt.pdf"].file.name) as file:
        assert file.read() == RECEIPT
    assert stored.parse_error == ""


def test_attachments_are_downloaded_with_the_api_key_and_a_timeout(
    client, settings, http, monkeypatch
):
    settings.ANYMAIL = {**settings.ANYMAIL, "REQUESTS_TIMEOUT": 7}
    multipart_downloads(http)
    sent = []
    original = requests.Session.get

    def spy(session, url, **kwargs):
        sent.append(kwargs)
        return original(session, url, **kwargs)

    monkeypatch.setattr(requests.Session, "get", spy)
    assert post(client, fixture("inbound_multipart")).status_code == 200
    assert [kwargs["timeout"] for kwargs in sent] == [7, 7]
    assert all(call.request.headers["api-key"] == API_KEY for call in http.calls)


def test_non_utf8_message_is_decoded(client, http, received):
    note = "Crème brûlée!".encode("iso-8859-1") + b"   "
    item = fixture("inbound_latin1")["items"][0]
    add_download(
        http, item["Attachments"][0]["DownloadToken"], note, "text/plain; charset=iso-8859-1"
    )
    assert post(client, fixture("inbound_latin1")).status_code == 200

    [(event, _)] = received
    message = event.message
    assert message.subject == "Café crème"
    assert message.from_email.display_name == "René Dupré"
    assert message["Reply-To"] == "rene.dupre@example.fr"
    assert message.text == "Un café, s'il vous plaît.\n"
    assert message.html is None
    assert message.stripped_text == "Un café, s'il vous plaît."
    [attachment] = message.attachments
    assert attachment.get_content_charset() == "iso-8859-1"
    assert attachment.get_content_text() == "Crème brûlée!   "

    stored = InboundMessage.objects.get()
    assert stored.subject == "Café crème"
    assert stored.from_email == "René Dupré <rene@example.fr>"
    assert "Un café, s'il vous plaît." in stored.text


def test_batch_gives_one_message_and_one_signal_per_item(client, received):
    assert post(client, fixture("inbound_batch")).status_code == 200
    assert [event.message.subject for event, _ in received] == ["Quote request", "Password reset"]
    assert [event.message.spam_score for event, _ in received] == [0.3, 0.0]
    assert received[1][0].message.html == "<p>I can't log in.</p>\n"
    assert received[1][0].message.text is None
    assert InboundMessage.objects.count() == 2
    assert WebhookCall.objects.get().event_count == 2


def test_fields_stand_in_for_missing_headers(client, received):
    item = {
        "Uuid": ["only-fields"],
        "MessageId": "<fields@example.org>",
        "InReplyTo": "<earlier@example.com>",
        "From": {"Name": "Dora", "Address": "dora@example.org"},
        "To": [{"Name": None, "Address": "a@reply.example.com"}],
        "Cc": [{"Name": "Eve", "Address": "eve@example.org"}],
        "ReplyTo": {"Name": None, "Address": "replies@example.org"},
        "SentAtDate": "Sat, 21 Nov 2026 09:00:00 +0000",
        "Subject": "Only fields",
        "Attachments": [],
        "Headers": {},
        "RawTextBody": "Hi",
        "Recipients": ["a@reply.example.com"],
    }
    assert post(client, {"items": [item]}).status_code == 200
    [(event, _)] = received
    message = event.message
    assert str(message.from_email) == "Dora <dora@example.org>"
    assert [str(a) for a in message.to + message.cc] == [
        "a@reply.example.com",
        "Eve <eve@example.org>",
    ]
    assert message["Message-ID"] == "<fields@example.org>"
    assert message["In-Reply-To"] == "<earlier@example.com>"
    assert message["Reply-To"] == "replies@example.org"
    assert message.date == datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
    assert message.envelope_sender is None
    assert message.envelope_recipient == "a@reply.example.com"  # the one envelope recipient
    assert (message.spam_score, message.stripped_text) == (None, None)


def test_folded_header_values_are_unfolded(client, received):
    item = {
        "Uuid": ["folded"],
        "Subject": "Folded",
        "Headers": {"Received": ["from a.example\r\n by b.example;\r\n Fri, 20 Nov 2026"]},
        "RawTextBody": "x",
    }
    assert post(client, {"items": [item]}).status_code == 200
    [(event, _)] = received
    assert event.message["Received"] == "from a.example by b.example; Fri, 20 Nov 2026"


# Idempotency


def test_repeated_delivery_downloads_and_stores_once(client, http):
    multipart_downloads(http)
    payload = fixture("inbound_multipart")
    assert post(client, payload).status_code == 200
    assert post(client, payload).status_code == 200
    assert InboundMessage.objects.count() == 1
    assert len(http.calls) == 2  # the two attachments, once


def test_reprocessing_a_processed_call_stores_nothing_new(client, http):
    multipart_downloads(http)
    multipart_downloads(http)  # the downloads happen again when reprocessing
    assert post(client, fixture("inbound_multipart")).status_code == 200
    call = WebhookCall.objects.get()
    assert tracking_services.webhook_call_reprocess(call=call) == 0
    assert InboundMessage.objects.count() == 1


# Attachment downloads that fail: 503 so Brevo retries, and the call is kept


def test_brevo_api_error_is_503_and_the_call_is_kept_for_reprocessing(client, http, received):
    item = fixture("inbound_multipart")["items"][0]
    photo, receipt = item["Attachments"]
    add_download(http, photo["DownloadToken"], PHOTO, "image/png")
    http.add(
        responses.GET,
        DOWNLOAD_URL + receipt["DownloadToken"],
        status=502,
        body="Bad Gateway",
    )
    response = post(client, fixture("inbound_multipart"))
    assert response.status_code == 503
    assert "answered 502" in response.json()["error"] and "receipt.pdf" in response.json()["error"]
    call = WebhookCall.objects.get()
    assert call.status == WebhookCallStatus.FAILED
    assert not InboundMessage.objects.exists() and not received

    # Brevo's retry of the same call, once its API answers again, stores the message.
    http.replace(responses.GET, DOWNLOAD_URL + receipt["DownloadToken"], body=RECEIPT)
    assert post(client, fixture("inbound_multipart")).status_code == 200
    assert InboundMessage.objects.get().attachments.count() == 2
    assert WebhookCall.objects.get().status == WebhookCallStatus.PROCESSED


def test_connection_error_is_503(client, http):
    item = fixture("inbound_multipart")["items"][0]
    http.add(
        responses.GET,
        DOWNLOAD_URL + item["Attachments"][0]["DownloadToken"],
        body=requests.ConnectionError("connection refused"),
    )
    response = post(client, fixture("inbound_multipart"))
    assert response.status_code == 503
    assert "connection refused" in response.json()["error"]
    assert API_KEY not in response.json()["error"]


def test_missing_api_key_is_503_naming_the_setting(client, settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": WEBHOOK_SECRET}
    response = post(client, fixture("inbound_multipart"))
    assert response.status_code == 503
    assert "BREVO_API_KEY" in response.json()["error"]
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED


def test_message_without_attachments_needs_no_api_key(client, settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": WEBHOOK_SECRET}
    assert post(client, fixture("inbound_batch")).status_code == 200


def test_declared_oversized_attachment_is_413_without_downloading(client, settings):
    settings.MAILHUB = {**settings.MAILHUB, "INBOUND_MAX_ATTACHMENT_BYTES": 50}
    response = post(client, fixture("inbound_multipart"))  # photo.png declares 72 bytes
    assert response.status_code == 413
    assert "photo.png" in response.json()["error"]
    assert "INBOUND_MAX_ATTACHMENT_BYTES" in response.json()["error"]


def test_download_larger_than_allowed_is_413(client, settings, http):
    settings.MAILHUB = {**settings.MAILHUB, "INBOUND_MAX_ATTACHMENT_BYTES": 100}
    item = fixture("inbound_multipart")["items"][0]
    add_download(http, item["Attachments"][0]["DownloadToken"], b"x" * 500, "image/png")
    response = post(client, fixture("inbound_multipart"))
    assert response.status_code == 413
    assert not InboundMessage.objects.exists()


def test_download_token_is_quoted_into_the_path(client, http, received):
    http.add(responses.GET, DOWNLOAD_URL + "..%2F..%2Faccount%3Fx%3D1", body=b"data")
    attachment = {
        "Name": "a.bin",
        "ContentType": "application/octet-stream",
        "DownloadToken": "../../account?x=1",
    }
    item = {"Uuid": ["q"], "Subject": "Quoted", "RawTextBody": "x", "Attachments": [attachment]}
    assert post(client, {"items": [item]}).status_code == 200
    assert received[0][0].message.attachments[0].get_content_bytes() == b"data"


def test_api_url_setting_is_used(client, settings, http):
    settings.ANYMAIL = {**settings.ANYMAIL, "BREVO_API_URL": "https://brevo.test/v3"}
    http.add(responses.GET, "https://brevo.test/v3/inbound/attachments/t1", body=PNG)
    attachment = {"Name": "a.png", "ContentType": "image/png", "DownloadToken": "t1"}
    item = {"Uuid": ["u"], "Subject": "Url", "RawTextBody": "x", "Attachments": [attachment]}
    assert post(client, {"items": [item]}).status_code == 200


# Bad input


def test_tracking_event_is_400_pointing_at_the_tracking_url(client):
    event = {"event": "delivered", "email": "a@example.com", "id": 1, "message-id": "<x@y>"}
    for payload in (event, [event]):
        response = post(client, payload)
        assert response.status_code == 400
        assert "anymail/brevo/tracking/" in response.json()["error"]


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"items": []}, "empty list of items"),
        ({"type": "inbound.message", "data": {}}, "Not a Brevo inbound parsing payload"),
        ({"items": "nope"}, "Not a Brevo inbound parsing payload"),
        ("items", "Not a Brevo inbound parsing payload"),
        ({"items": ["not an object"]}, "must be JSON objects"),
        ({"items": [{"Subject": "x", "Headers": ["To: a@b"]}]}, "Headers must be a JSON object"),
        ({"items": [{"Subject": "x", "Attachments": [{"Name": "a.pdf"}]}]}, "no DownloadToken"),
        ({"items": [{"Subject": "x", "SpamScore": "high"}]}, "Malformed Brevo inbound"),
    ],
)
def test_malformed_payload_is_400_saying_why(client, payload, message):
    response = post(client, payload)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED


def test_invalid_json_is_400(client):
    response = post(client, b'{"items": [')
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]


def test_wrong_content_type_is_400(client):
    response = post(client, fixture("inbound_batch"), content_type="text/plain")
    assert response.status_code == 400
    assert "application/json" in response.json()["error"]


# Auth: basic auth (contract) or the tracking webhook's bearer token


@pytest.fixture
def bearer_token(settings):
    settings.ANYMAIL = {"BREVO_API_KEY": API_KEY, "BREVO_WEBHOOK_BEARER_TOKEN": "inbound-token"}


def test_bearer_token_is_accepted(client, bearer_token):
    response = post(client, fixture("inbound_batch"), auth="Bearer inbound-token")
    assert response.status_code == 200
    assert InboundMessage.objects.count() == 2


@pytest.mark.parametrize("auth", ["Bearer wrong-token", basic_auth()])
def test_wrong_bearer_token_is_403(client, bearer_token, auth):
    response = post(client, fixture("inbound_batch"), auth=auth)
    assert response.status_code == 403
    assert "BREVO_WEBHOOK_BEARER_TOKEN" in response.json()["error"]
    assert not WebhookCall.objects.exists()


def test_wrong_basic_auth_is_401(client):
    response = post(client, fixture("inbound_batch"), auth=basic_auth("username:wrong"))
    assert response.status_code == 401
    assert not WebhookCall.objects.exists()


# Without recording, the signal still carries the messages


def test_without_recording_nothing_is_stored_but_the_signal_is_sent(client, no_store, received):
    assert post(client, fixture("inbound_batch")).status_code == 200
    assert len(received) == 2
    assert not InboundMessage.objects.exists() and not WebhookCall.objects.exists()


# The SendinBlue alias


def test_sendinblue_url_stores_under_sendinblue_and_warns(client, settings, received):
    settings.ANYMAIL = {"WEBHOOK_SECRET": WEBHOOK_SECRET}
    with pytest.warns(AnymailDeprecationWarning, match="anymail/brevo/inbound/"):
        response = post(client, fixture("inbound_batch"), url=SENDINBLUE_URL)
    assert response.status_code == 200
    assert {esp_name for _, esp_name in received} == {"SendinBlue"}
    assert set(InboundMessage.objects.values_list("esp", flat=True)) == {"sendinblue"}


@pytest.mark.filterwarnings("ignore::sending.exceptions.AnymailDeprecationWarning")
def test_sendinblue_downloads_with_the_sendinblue_api_key(client, settings, http):
    settings.ANYMAIL = {"WEBHOOK_SECRET": WEBHOOK_SECRET, "SENDINBLUE_API_KEY": "old-key"}
    item = fixture("inbound_latin1")["items"][0]
    http.add(
        responses.GET,
        DOWNLOAD_URL + item["Attachments"][0]["DownloadToken"],
        body=b"note",
        match=[matchers.header_matcher({"api-key": "old-key"})],
    )
    response = post(client, fixture("inbound_latin1"), url=SENDINBLUE_URL)
    assert response.status_code == 200
    assert InboundMessage.objects.get().esp == "sendinblue"
