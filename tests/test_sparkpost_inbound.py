"""SparkPost relay webhooks: batches of raw messages, the relay webhook token, bad input."""

import base64
import json
from pathlib import Path

import pytest
from django.core.files.storage import default_storage

from inbound.models import InboundMessage
from sending.exceptions import AnymailInsecureWebhookWarning
from sending.signals import inbound
from tests.inbound_contract import WEBHOOK_SECRET, InboundWebhookContract, basic_auth
from tracking.models import WebhookCall, WebhookCallStatus
from tracking.services import webhook_call_reprocess

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).parent / "fixtures" / "sparkpost"
URL = "/anymail/sparkpost/inbound/"
TOKEN = "5ebe2294ecd0e0f08eab7690d2a6ee69"


def fixture(name: str):
    return json.loads((FIXTURES / f"{name}.json").read_text())


def as_body(payload) -> bytes:
    return json.dumps(payload).encode()


def post(client, body: bytes, content_type="application/json", token=TOKEN, **extra):
    headers = {"HTTP_AUTHORIZATION": basic_auth()}
    if token is not None:
        headers["HTTP_X_MESSAGESYSTEMS_WEBHOOK_TOKEN"] = token
    headers.update(extra)
    return client.generic("POST", URL, body, content_type=content_type, **headers)


@pytest.fixture(autouse=True)
def sparkpost_settings(settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": WEBHOOK_SECRET, "SPARKPOST_RELAY_WEBHOOK_TOKEN": TOKEN}


@pytest.fixture
def received():
    events = []

    def receiver(sender, event, esp_name, **kwargs):
        events.append(event)

    inbound.connect(receiver, weak=False)
    yield events
    inbound.disconnect(receiver)


def relay_item(raw: bytes, envelope_sender: str, envelope_recipient: str) -> dict:
    """One relay_message for raw, encoded the way SparkPost documents."""
    try:
        content = {"email_rfc822": raw.decode("utf-8"), "email_rfc822_is_base64": False}
    except UnicodeDecodeError:  # "at least one non UTF-8 encoded character"
        content = {"email_rfc822": base64.b64encode(raw).decode(), "email_rfc822_is_base64": True}
    return {
        "msys": {
            "relay_message": {
                "content": {**content, "headers": [], "html": "", "text": "", "to": []},
                "customer_id": "1337",
                "friendly_from": envelope_sender,
                "msg_from": envelope_sender,
                "rcpt_to": envelope_recipient,
                "webhook_id": "4839201967643219",
            }
        }
    }


class TestSparkPostInboundContract(InboundWebhookContract):
    esp = "sparkpost"

    @pytest.fixture(autouse=True)
    def relay_token(self, settings):
        settings.ANYMAIL = {**settings.ANYMAIL, "SPARKPOST_RELAY_WEBHOOK_TOKEN": TOKEN}

    def inbound_body(self, raw, envelope_sender, envelope_recipient):
        return as_body([relay_item(raw, envelope_sender, envelope_recipient)]), "application/json"

    def signature_headers(self, body, content_type):
        return {"HTTP_X_MESSAGESYSTEMS_WEBHOOK_TOKEN": TOKEN}


# Real-shaped payloads


def test_relay_message(client, received):
    batch = fixture("inbound_relay_multipart")
    response = post(client, as_body(batch))
    assert response.status_code == 200, response.content
    assert response.json()["events"] == 1

    [event] = received
    assert (event.event_type, event.event_id, event.timestamp) == ("inbound", None, None)
    assert event.esp_event == batch[0]
    content = batch[0]["msys"]["relay_message"]["content"]
    assert event.raw_mime == content["email_rfc822"].encode()
    message = event.message
    assert str(message.from_email) == "Ann Customer <ann@example.com>"
    assert [str(a) for a in message.to] == ["Support <support@inbound.example.com>"]
    assert [a.addr_spec for a in message.cc] == ["bob@example.com"]
    assert message.subject == content["subject"]
    assert message.text == content["text"]
    assert message.html == content["html"]
    assert message["Return-Path"] == "<bounces+ann@example.com>"
    assert (message.envelope_sender, message.envelope_recipient) == (
        "bounces+ann@example.com",
        "support@inbound.example.com",
    )
    assert (message.spam_detected, message.spam_score) == (None, None)
    [attachment] = message.attachments
    assert (attachment.get_filename(), attachment.get_content_type()) == (
        "invoice-1234.pdf",
        "application/pdf",
    )
    assert attachment.get_content_bytes().startswith(b"%PDF-1.4")
    logo = message.inline_attachments["logo.png@01DA5C"]
    assert logo.get_content_bytes().startswith(b"\x89PNG")

    stored = InboundMessage.objects.get()
    assert (stored.esp, stored.envelope_sender, stored.envelope_recipient) == (
        "sparkpost",
        "bounces+ann@example.com",
        "support@inbound.example.com",
    )
    assert stored.in_reply_to == "<confirm-1234@shop.example.com>"
    with default_storage.open(stored.raw_file.name) as file:
        assert file.read() == content["email_rfc822"].encode()
    by_name = {a.filename: a for a in stored.attachments.all()}
    assert by_name["logo.png"].inline and by_name["logo.png"].content_id == "<logo.png@01DA5C>"


def test_base64_relay_message_is_stored_exactly_and_decoded(client, received):
    batch = fixture("inbound_relay_base64")
    assert post(client, as_body(batch)).status_code == 200
    [event] = received
    raw = base64.b64decode(batch[0]["msys"]["relay_message"]["content"]["email_rfc822"])
    assert event.raw_mime == raw
    stored = InboundMessage.objects.get()
    assert stored.subject == "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e"
    assert "un caf\u00e9 cr\u00e8me s'il vous pla\u00eet" in stored.text
    assert stored.envelope_sender == "rene@example.fr"
    with default_storage.open(stored.raw_file.name) as file:
        assert file.read() == raw


def test_batch_stores_each_message(client, received):
    batch = fixture("inbound_relay_multipart") + fixture("inbound_relay_base64")
    response = post(client, as_body(batch))
    assert (response.status_code, response.json()["events"]) == (200, 2)
    assert [event.message.subject for event in received] == [
        "Where\u2019s my order?",
        "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e",
    ]
    assert InboundMessage.objects.count() == 2


def test_test_batch_is_ok(client):
    # What SparkPost posts to check a webhook target.
    response = post(client, as_body([{"msys": {}}]))
    assert (response.status_code, response.json()["events"]) == (200, 0)
    assert not InboundMessage.objects.exists()


def test_same_message_in_another_batch_is_stored_once(client):
    assert post(client, as_body(fixture("inbound_relay_multipart"))).status_code == 200
    batch = fixture("inbound_relay_base64") + fixture("inbound_relay_multipart")
    assert post(client, as_body(batch)).status_code == 200
    assert InboundMessage.objects.count() == 2


def test_reprocessing_the_call_stores_nothing_new(client):
    assert post(client, as_body(fixture("inbound_relay_multipart"))).status_code == 200
    call = WebhookCall.objects.get()
    assert webhook_call_reprocess(call=call) == 0
    assert InboundMessage.objects.count() == 1


# Authentication


def test_token_is_not_stored(client):
    assert post(client, as_body(fixture("inbound_relay_multipart"))).status_code == 200
    headers = WebhookCall.objects.get().headers
    assert headers["X-Messagesystems-Webhook-Token"] == "********"


def test_missing_token_is_refused(client):
    response = post(client, as_body(fixture("inbound_relay_multipart")), token=None)
    assert response.status_code == 403
    assert "X-MessageSystems-Webhook-Token" in response.json()["error"]
    assert not WebhookCall.objects.exists()


def test_wrong_token_is_refused(client):
    response = post(client, as_body(fixture("inbound_relay_multipart")), token="guess")
    assert response.status_code == 403
    assert "SPARKPOST_RELAY_WEBHOOK_TOKEN" in response.json()["error"]


def test_any_listed_token_is_accepted(client, settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "SPARKPOST_RELAY_WEBHOOK_TOKEN": ["old-token", TOKEN]}
    assert post(client, as_body(fixture("inbound_relay_multipart"))).status_code == 200


def test_wrong_basic_auth_is_refused(client):
    body = as_body(fixture("inbound_relay_multipart"))
    assert post(client, body, HTTP_AUTHORIZATION=basic_auth("user:wrong")).status_code == 401


def test_without_token_basic_auth_is_enough(client, settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": WEBHOOK_SECRET}
    response = post(client, as_body(fixture("inbound_relay_multipart")), token=None)
    assert response.status_code == 200


def test_token_without_basic_auth_does_not_warn(client, settings, recwarn):
    settings.ANYMAIL = {"SPARKPOST_RELAY_WEBHOOK_TOKEN": TOKEN}
    body = as_body(fixture("inbound_relay_multipart"))
    response = client.generic(
        "POST",
        URL,
        body,
        content_type="application/json",
        HTTP_X_MESSAGESYSTEMS_WEBHOOK_TOKEN=TOKEN,
    )
    assert response.status_code == 200
    assert not [w for w in recwarn if issubclass(w.category, AnymailInsecureWebhookWarning)]


def test_neither_token_nor_basic_auth_warns(settings):
    from inbound.webhooks.sparkpost import SparkPostInboundWebhookView

    settings.ANYMAIL = {}
    with pytest.warns(AnymailInsecureWebhookWarning):
        SparkPostInboundWebhookView()


# Bad payloads


def test_event_webhook_batch_is_400(client):
    response = post(client, as_body(fixture("delivery")))
    assert response.status_code == 400
    error = response.json()["error"]
    assert "event webhook (message_event)" in error and "anymail/sparkpost/tracking/" in error
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED


def test_relay_event_is_400(client):
    # The status of relaying (relay_event), not a relayed message.
    response = post(client, as_body(fixture("relay_delivery")))
    assert response.status_code == 400
    assert "relay_event" in response.json()["error"]


@pytest.mark.parametrize("payload", [{"msys": {}}, {"events_by_user": []}, "text"])
def test_not_a_batch_is_400(client, payload):
    response = post(client, as_body(payload))
    assert response.status_code == 400
    assert "JSON array" in response.json()["error"]


@pytest.mark.parametrize("item", [["msys"], {"msys": "x"}, {"other": {}}])
def test_malformed_batch_element_is_400(client, item):
    response = post(client, as_body([item]))
    assert response.status_code == 400
    assert '{"msys": {...}}' in response.json()["error"]


@pytest.mark.parametrize("content", [None, {}, {"email_rfc822": ""}, {"email_rfc822": 42}])
def test_relay_message_without_raw_message_is_400(client, content):
    batch = fixture("inbound_relay_multipart")
    batch[0]["msys"]["relay_message"]["content"] = content
    response = post(client, as_body(batch))
    assert response.status_code == 400
    assert "email_rfc822" in response.json()["error"]


def test_bad_base64_is_400(client):
    batch = fixture("inbound_relay_base64")
    batch[0]["msys"]["relay_message"]["content"]["email_rfc822"] = "From: not base64!"
    response = post(client, as_body(batch))
    assert response.status_code == 400
    assert "isn't valid base64" in response.json()["error"]
    assert not InboundMessage.objects.exists()


def test_wrong_content_type_is_400(client):
    body = fixture("inbound_relay_multipart")[0]["msys"]["relay_message"]["content"]
    response = post(client, body["email_rfc822"].encode(), content_type="message/rfc822")
    assert response.status_code == 400
    assert "application/json" in response.json()["error"]


def test_empty_body_is_400(client):
    response = post(client, b"")
    assert response.status_code == 400
    assert "Empty SparkPost relay webhook body" in response.json()["error"]


def test_invalid_json_is_400_and_kept(client):
    response = post(client, b'[{"msys": {"relay_message": ')
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED
