"""Resend email.received: Svix-signed events completed from the Receiving API (mocked)."""

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
import responses
from django.core.files.storage import default_storage
from responses import matchers

from inbound.message import AnymailInboundMessage
from inbound.models import InboundMessage
from sending.signals import inbound
from tests.inbound_contract import WEBHOOK_SECRET, InboundWebhookContract, basic_auth
from tracking.models import WebhookCall, WebhookCallStatus
from tracking.services import webhook_call_reprocess

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).parent / "fixtures" / "resend"
URL = "/anymail/resend/inbound/"
API_KEY = "re_inbound_test_key"
SECRET_BYTES = b"resend-inbound-signing-secret-32"
SIGNING_SECRET = "whsec_" + base64.b64encode(SECRET_BYTES).decode()
EMAIL_ID = "4ef9a417-02e9-4d39-ad75-9611e0fcc33c"
API = "https://api.resend.com/emails/receiving/"
RETRIEVE_URL = API + EMAIL_ID


def svix_headers(body: bytes, msg_id="msg_2pTz8Q1nA7bXc3", timestamp=None, secret=SECRET_BYTES):
    timestamp = str(int(time.time()) if timestamp is None else timestamp)
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = base64.b64encode(hmac.new(secret, signed, hashlib.sha256).digest()).decode()
    return {
        "HTTP_SVIX_ID": msg_id,
        "HTTP_SVIX_TIMESTAMP": timestamp,
        "HTTP_SVIX_SIGNATURE": f"v1,{digest}",
    }


def fixture(name: str):
    return json.loads((FIXTURES / f"{name}.json").read_text())


def raw_fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.eml").read_bytes()


def as_body(payload) -> bytes:
    return json.dumps(payload).encode()


def post(client, body: bytes, content_type="application/json", signed=True, **extra):
    headers = {"HTTP_AUTHORIZATION": basic_auth()}
    if signed:
        headers.update(svix_headers(body))
    headers.update(extra)
    return client.generic("POST", URL, body, content_type=content_type, **headers)


def api_matchers(**params):
    return [
        matchers.header_matcher({"Authorization": f"Bearer {API_KEY}"}),
        matchers.query_param_matcher(params),
    ]


def add_retrieve(http, email=None, email_id=EMAIL_ID, status=200):
    email = fixture("inbound_retrieve") if email is None else email
    http.add(
        responses.GET,
        API + email_id,
        json=email,
        status=status,
        match=api_matchers(html_format="cid"),
    )
    return email


def add_download(http, url: str, body: bytes, status=200, content_type="message/rfc822"):
    def reply(request):
        # The signed URL is fetched without the API key.
        assert "Authorization" not in request.headers
        return status, {"Content-Type": content_type}, body

    http.add_callback(responses.GET, url.split("?")[0], callback=reply)


def add_raw_download(http, raw: bytes | None = None, email=None):
    email = email or fixture("inbound_retrieve")
    add_download(
        http, email["raw"]["download_url"], raw_fixture("inbound_raw") if raw is None else raw
    )


def raw_parts() -> dict[str, bytes]:
    """The attachment bytes in the raw fixture, by filename."""
    parsed = AnymailInboundMessage.parse_raw_mime_bytes(raw_fixture("inbound_raw"))
    return {
        part.get_filename(): part.get_content_bytes()
        for part in parsed.walk()
        if part.is_attachment() or part.is_inline_attachment()
    }


@pytest.fixture(autouse=True)
def resend_settings(settings):
    settings.ANYMAIL = {
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "RESEND_API_KEY": API_KEY,
        "RESEND_SIGNING_SECRET": SIGNING_SECRET,
    }


@pytest.fixture
def received():
    events = []

    def receiver(sender, event, esp_name, **kwargs):
        events.append(event)

    inbound.connect(receiver, weak=False)
    yield events
    inbound.disconnect(receiver)


class TestResendInboundContract(InboundWebhookContract):
    esp = "resend"

    @pytest.fixture(autouse=True)
    def resend_api(self, settings):
        settings.ANYMAIL = {
            **settings.ANYMAIL,
            "RESEND_API_KEY": API_KEY,
            "RESEND_SIGNING_SECRET": SIGNING_SECRET,
        }
        with responses.RequestsMock(assert_all_requests_are_fired=False) as http:
            self.http = http
            yield

    def inbound_body(self, raw, envelope_sender, envelope_recipient):
        # One received email per raw message, retrievable from the (mocked) API.
        email_id = hashlib.sha256(raw).hexdigest()[:32]
        download_url = f"https://inbound-cdn.resend.com/{email_id}/raw"
        email = {
            "object": "email",
            "id": email_id,
            "raw": {"download_url": download_url, "expires_at": "2026-11-20T12:00:00Z"},
        }
        self.http.add(responses.GET, API + email_id, json=email)
        self.http.add(responses.GET, download_url, body=raw)
        parsed = AnymailInboundMessage.parse_raw_mime_bytes(raw)
        payload = {
            "type": "email.received",
            "created_at": "2026-11-20T12:00:01.000Z",
            "data": {
                "email_id": email_id,
                "created_at": "2026-11-20T12:00:00.500000+00:00",
                "from": str(parsed["From"]),
                "to": [str(address) for address in parsed.to],
                "bcc": [],
                "cc": [str(address) for address in parsed.cc],
                "received_for": [envelope_recipient],
                "message_id": str(parsed["Message-ID"]),
                "subject": parsed.subject,
                "attachments": [],
            },
        }
        return as_body(payload), "application/json"

    def signature_headers(self, body, content_type):
        return svix_headers(body)


# The raw file


def test_received_email_is_the_raw_file(client, http, received):
    webhook = fixture("inbound_received")
    add_retrieve(http)
    add_raw_download(http)
    response = post(client, as_body(webhook))
    assert response.status_code == 200, response.content

    [event] = received
    assert (event.event_type, event.event_id) == ("inbound", EMAIL_ID)
    assert event.timestamp == datetime(2026, 11, 20, 11, 0, 2, 894719, tzinfo=UTC)
    assert event.esp_event == webhook
    assert event.raw_mime == raw_fixture("inbound_raw")
    message = event.message
    assert str(message.from_email) == "Ann Customer <ann@example.com>"
    assert [str(a) for a in message.to] == ["Support <support@inbound.example.com>"]
    assert [a.addr_spec for a in message.cc] == ["bob@example.com"]
    assert message.subject == "Where\u2019s my order?"
    assert message.date == datetime(2026, 11, 20, 11, 0, tzinfo=UTC)
    assert "hasn\u2019t arrived" in message.text
    assert 'src="cid:logo.png@01DA5C"' in message.html
    assert message["Authentication-Results"].startswith("amazonses.com; spf=pass")
    assert message.envelope_recipient == "support@inbound.example.com"
    assert message.envelope_sender is None  # Resend doesn't say (beyond the Return-Path header)
    assert (message.spam_detected, message.spam_score) == (None, None)
    [attachment] = message.attachments
    assert attachment.get_filename() == "invoice-1234.pdf"
    assert message.inline_attachments["logo.png@01DA5C"].get_content_type() == "image/png"

    stored = InboundMessage.objects.get()
    assert (stored.esp, stored.event_id) == ("resend", EMAIL_ID)
    assert stored.received_at == event.timestamp
    with default_storage.open(stored.raw_file.name) as file:
        assert file.read() == raw_fixture("inbound_raw")
    by_name = {a.filename: a for a in stored.attachments.all()}
    assert by_name["logo.png"].inline and by_name["logo.png"].content_id == "<logo.png@01DA5C>"
    assert by_name["invoice-1234.pdf"].size == len(raw_parts()["invoice-1234.pdf"])


def test_non_utf8_raw_file_is_stored_exactly_and_decoded(client, http):
    email = {**fixture("inbound_retrieve"), "html": None, "attachments": []}
    add_retrieve(http, email)
    add_raw_download(http, raw_fixture("inbound_latin1"))
    assert post(client, as_body(fixture("inbound_received"))).status_code == 200
    stored = InboundMessage.objects.get()
    assert stored.subject == "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e"
    assert "un caf\u00e9 cr\u00e8me s'il vous pla\u00eet" in stored.text
    with default_storage.open(stored.raw_file.name) as file:
        assert file.read() == raw_fixture("inbound_latin1")


def test_several_received_for_addresses_leave_the_envelope_recipient_unknown(client, http):
    webhook = fixture("inbound_received")
    webhook["data"]["received_for"] = ["support@inbound.example.com", "sales@inbound.example.com"]
    add_retrieve(http)
    add_raw_download(http)
    assert post(client, as_body(webhook)).status_code == 200
    assert InboundMessage.objects.get().envelope_recipient == ""


def test_repeated_delivery_fetches_and_stores_once(client, http):
    add_retrieve(http)
    add_raw_download(http)
    body = as_body(fixture("inbound_received"))
    assert post(client, body).status_code == 200
    assert post(client, body).status_code == 200  # a Svix retry: same body, new signature
    assert InboundMessage.objects.count() == 1
    assert len(http.calls) == 2  # the API and the download, once


# Without a raw file: rebuilt from the API's fields


def add_attachments(http, listing=None, **params):
    listing = listing or fixture("inbound_attachments")
    http.add(
        responses.GET,
        RETRIEVE_URL + "/attachments",
        json=listing,
        match=api_matchers(limit="100", **params),
    )
    parts = raw_parts()
    for attachment in listing["data"]:
        add_download(
            http, attachment["download_url"], parts[attachment["filename"]], content_type="x/y"
        )


def test_email_without_raw_file_is_rebuilt_from_its_fields(client, http, received):
    email = {**fixture("inbound_retrieve"), "raw": None}
    add_retrieve(http, email)
    add_attachments(http)
    response = post(client, as_body(fixture("inbound_received")))
    assert response.status_code == 200, response.content

    [event] = received
    assert not hasattr(event, "raw_mime")
    message = event.message
    assert str(message.from_email) == "Ann Customer <ann@example.com>"
    assert [str(a) for a in message.to] == ["Support <support@inbound.example.com>"]
    assert message.subject == "Where\u2019s my order?"
    assert message["Message-ID"] == "<CAF=order1234@mail.example.com>"
    assert message["In-Reply-To"] == "<confirm-1234@shop.example.com>"
    assert message["Received"].startswith("from mail-ed1-f41.example.com")
    assert message.date == datetime(2026, 11, 20, 11, 0, tzinfo=UTC)
    assert message.text.replace("\r\n", "\n") == email["text"]
    assert 'src="cid:logo.png@01DA5C"' in message.html  # html_format=cid keeps the references
    assert message.envelope_recipient == "support@inbound.example.com"
    parts = raw_parts()
    [attachment] = message.attachments
    assert (attachment.get_filename(), attachment.get_content_type()) == (
        "invoice-1234.pdf",
        "application/pdf",
    )
    assert attachment.get_content_bytes() == parts["invoice-1234.pdf"]
    logo = message.inline_attachments["logo.png@01DA5C"]
    assert (logo.get_filename(), logo.get_content_bytes()) == ("logo.png", parts["logo.png"])

    stored = InboundMessage.objects.get()
    assert stored.attachments.get(inline=True).content_id == "<logo.png@01DA5C>"
    # Rebuilt the same way on reprocessing: stored once.
    assert webhook_call_reprocess(call=WebhookCall.objects.get()) == 0
    assert InboundMessage.objects.count() == 1


def test_rebuilt_text_only_email(client, http):
    email = {
        **fixture("inbound_retrieve"),
        "raw": None,
        "html": None,
        "text": "Un caf\u00e9, s'il vous pla\u00eet.\n",
        "attachments": [],
        "headers": {"from": "ren\u00e9@example.fr", "subject": "Caf\u00e9"},
    }
    add_retrieve(http, email)  # no attachment listing: the email has none
    assert post(client, as_body(fixture("inbound_received"))).status_code == 200
    stored = InboundMessage.objects.get()
    assert (stored.subject, stored.text.strip()) == (
        "Caf\u00e9",
        "Un caf\u00e9, s'il vous pla\u00eet.",
    )


def test_attachment_list_is_followed_page_by_page(client, http):
    email = {**fixture("inbound_retrieve"), "raw": None}
    add_retrieve(http, email)
    listing = fixture("inbound_attachments")
    first, second = listing["data"]
    add_attachments(http, {**listing, "has_more": True, "data": [first]})
    add_attachments(http, {**listing, "data": [second]}, after=first["id"])
    assert post(client, as_body(fixture("inbound_received"))).status_code == 200
    assert InboundMessage.objects.get().attachments.count() == 2


# Fetch failures: 503 so Resend retries, the call kept


@pytest.mark.parametrize(
    "reply, error",
    [
        ({"status": 500, "json": {"name": "internal_server_error"}}, "answered 500"),
        ({"status": 404, "json": {"name": "not_found"}}, "answered 404"),
        ({"status": 401, "json": {"name": "missing_api_key"}}, "answered 401"),
        ({"body": requests.ConnectionError("connection refused")}, "connection refused"),
        ({"body": requests.Timeout("read timed out")}, "read timed out"),
        ({"body": "<html>gateway</html>"}, "is not JSON"),
    ],
)
def test_api_failure_is_503_and_retried(client, http, reply, error):
    http.add(responses.GET, RETRIEVE_URL, **reply)
    body = as_body(fixture("inbound_received"))
    response = post(client, body)
    assert response.status_code == 503
    assert error in response.json()["error"]
    call = WebhookCall.objects.get()
    assert call.status == WebhookCallStatus.FAILED and error in call.error
    assert not InboundMessage.objects.exists()

    # Resend's retry (the same body) succeeds once the API answers again.
    http.reset()
    add_retrieve(http)
    add_raw_download(http)
    assert post(client, body).status_code == 200
    assert InboundMessage.objects.count() == 1
    assert WebhookCall.objects.get().status == WebhookCallStatus.PROCESSED


def test_expired_download_is_503(client, http):
    add_retrieve(http)
    add_raw_download(http, b"<Error><Code>AccessDenied</Code></Error>")
    http.replace(
        responses.GET,
        fixture("inbound_retrieve")["raw"]["download_url"].split("?")[0],
        status=403,
    )
    response = post(client, as_body(fixture("inbound_received")))
    assert response.status_code == 503
    assert "answered 403 to the download of raw email" in response.json()["error"]


def test_missing_api_key_is_503_and_reprocessed_once_set(client, http, settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": WEBHOOK_SECRET, "RESEND_SIGNING_SECRET": SIGNING_SECRET}
    response = post(client, as_body(fixture("inbound_received")))
    assert response.status_code == 503
    assert "RESEND_API_KEY" in response.json()["error"]
    assert not http.calls

    settings.ANYMAIL = {**settings.ANYMAIL, "RESEND_API_KEY": API_KEY}
    add_retrieve(http)
    add_raw_download(http)
    assert webhook_call_reprocess(call=WebhookCall.objects.get()) == 1
    assert InboundMessage.objects.get().event_id == EMAIL_ID


def test_api_url_setting(client, http, settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "RESEND_API_URL": "https://resend.example.net/v1"}
    email = fixture("inbound_retrieve")
    http.add(
        responses.GET,
        f"https://resend.example.net/v1/emails/receiving/{EMAIL_ID}",
        json=email,
        match=api_matchers(html_format="cid"),
    )
    add_raw_download(http)
    assert post(client, as_body(fixture("inbound_received"))).status_code == 200


def test_oversized_raw_file_is_413(client, http, settings):
    body = as_body(fixture("inbound_received"))
    limit = len(body) + 10  # room for the webhook body, not the message
    assert len(raw_fixture("inbound_raw")) > limit
    settings.MAILHUB = {**settings.MAILHUB, "INBOUND_MAX_BODY_BYTES": limit}
    add_retrieve(http)
    add_raw_download(http)
    response = post(client, body)
    assert response.status_code == 413
    assert "INBOUND_MAX_BODY_BYTES" in response.json()["error"]
    assert not InboundMessage.objects.exists()


def test_oversized_attachment_download_is_413(client, http, settings):
    parts = raw_parts()
    assert len(parts["invoice-1234.pdf"]) > len(parts["logo.png"])
    # The logo (downloaded first) fits; the invoice doesn't.
    settings.MAILHUB = {**settings.MAILHUB, "INBOUND_MAX_ATTACHMENT_BYTES": len(parts["logo.png"])}
    add_retrieve(http, {**fixture("inbound_retrieve"), "raw": None})
    add_attachments(http)
    response = post(client, as_body(fixture("inbound_received")))
    assert response.status_code == 413
    assert "INBOUND_MAX_ATTACHMENT_BYTES" in response.json()["error"]


def test_attachment_without_download_url_is_503(client, http):
    add_retrieve(http, {**fixture("inbound_retrieve"), "raw": None})
    listing = fixture("inbound_attachments")
    del listing["data"][1]["download_url"]
    http.add(responses.GET, RETRIEVE_URL + "/attachments", json=listing)
    add_download(http, listing["data"][0]["download_url"], raw_parts()["logo.png"])
    response = post(client, as_body(fixture("inbound_received")))
    assert response.status_code == 503
    assert "no download_url for attachment 'invoice-1234.pdf'" in response.json()["error"]


# Authentication


def test_missing_signature_is_refused(client, http):
    response = post(client, as_body(fixture("inbound_received")), signed=False)
    assert response.status_code == 403
    assert "svix-id" in response.json()["error"]
    assert not WebhookCall.objects.exists() and not http.calls


def test_bad_signature_is_refused(client, http):
    body = as_body(fixture("inbound_received"))
    wrong = svix_headers(body, secret=b"another-endpoint-signing-secret!")
    assert post(client, body, signed=False, **wrong).status_code == 403
    assert not http.calls


def test_stale_timestamp_is_refused(client):
    body = as_body(fixture("inbound_received"))
    stale = svix_headers(body, timestamp=int(time.time()) - 3600)
    assert post(client, body, signed=False, **stale).status_code == 403


def test_either_endpoint_secret_is_accepted(client, http, settings):
    # Separate tracking and inbound endpoints have their own signing secrets.
    tracking_secret = "whsec_" + base64.b64encode(b"tracking-endpoint-secret-32bytes").decode()
    settings.ANYMAIL = {
        **settings.ANYMAIL,
        "RESEND_SIGNING_SECRET": [tracking_secret, SIGNING_SECRET],
    }
    add_retrieve(http)
    add_raw_download(http)
    assert post(client, as_body(fixture("inbound_received"))).status_code == 200


def test_wrong_basic_auth_is_refused(client):
    body = as_body(fixture("inbound_received"))
    assert post(client, body, HTTP_AUTHORIZATION=basic_auth("user:wrong")).status_code == 401


# Bad payloads


def test_tracking_event_is_400(client, http):
    response = post(client, as_body(fixture("email.delivered")))
    assert response.status_code == 400
    assert "email.delivered" in response.json()["error"]
    assert "anymail/resend/tracking/" in response.json()["error"]
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED
    assert not http.calls


@pytest.mark.parametrize("data", [{}, {"email_id": ""}, {"email_id": 42}])
def test_received_event_without_email_id_is_400(client, data):
    payload = {"type": "email.received", "created_at": "2026-11-20T11:00:03Z", "data": data}
    response = post(client, as_body(payload))
    assert response.status_code == 400
    assert "data.email_id" in response.json()["error"]


@pytest.mark.parametrize("payload", [[{"type": "email.received"}], {"items": []}, "text"])
def test_another_esps_payload_is_400(client, payload):
    response = post(client, as_body(payload))
    assert response.status_code == 400
    assert "another ESP" in response.json()["error"]


def test_wrong_content_type_is_400(client):
    body = b"email_id=4ef9a417"
    response = post(client, body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert "application/json" in response.json()["error"]


def test_empty_body_is_400(client):
    response = post(client, b"")
    assert response.status_code == 400
    assert "Empty Resend inbound" in response.json()["error"]
