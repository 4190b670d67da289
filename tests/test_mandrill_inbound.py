"""Mandrill inbound routes: raw_msg batches, the combined anymail/mandrill/ URL, signatures."""

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import pytest
from django.core.files.storage import default_storage
from django.db import DatabaseError

from inbound.message import AnymailInboundMessage
from inbound.models import InboundMessage
from sending.signals import inbound, tracking
from tests.inbound_contract import WEBHOOK_SECRET, InboundWebhookContract, basic_auth
from tracking.models import Event, WebhookCall, WebhookCallStatus
from tracking.services import webhook_call_reprocess
from tracking.webhooks.mandrill import MandrillTrackingWebhookView, same_webhook_at

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).parent / "fixtures" / "mandrill"
WEBHOOK_KEY = "inbound-route-key-0123456789abcdef"
URL = "/anymail/mandrill/inbound/"
COMBINED_URL = "/anymail/mandrill/"
TRACKING_URL = "/anymail/mandrill/tracking/"
FORM = "application/x-www-form-urlencoded"


def signature(body: bytes, url: str, key: str = WEBHOOK_KEY) -> str:
    """Mandrill's scheme: base64 HMAC-SHA1 of the URL and each sorted key + value."""
    signed = url + "".join(k + v for k, v in sorted(parse_qsl(body.decode(), True)))
    return base64.b64encode(hmac.new(key.encode(), signed.encode(), hashlib.sha1).digest()).decode()


def form_body(events) -> bytes:
    return urlencode({"mandrill_events": json.dumps(events)}).encode()


def fixture(name: str) -> list:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def inbound_event(raw: bytes, recipient: str = "support@inbound.example.com") -> dict:
    """A Mandrill inbound event for raw, with the fields Mandrill derives from it."""
    parsed = AnymailInboundMessage.parse_raw_mime_bytes(raw)
    sender = parsed.from_email
    return {
        "event": "inbound",
        "ts": 1795172402,
        "msg": {
            # 8-bit bytes that aren't UTF-8 travel as lone surrogate escapes (JSON \udcxx)
            "raw_msg": raw.decode("utf-8", errors="surrogateescape"),
            "headers": {name: str(value) for name, value in parsed.items()},
            "text": parsed.text,
            "html": parsed.html,
            "from_email": sender.addr_spec if sender else None,
            "from_name": sender.display_name if sender else None,
            "to": [[address.addr_spec, address.display_name or None] for address in parsed.to],
            "email": recipient,
            "subject": parsed.subject,
            "tags": [],
            "sender": None,
            "spf": {"result": "pass", "detail": "sender SPF authorized"},
            "dkim": {"signed": True, "valid": True},
            "spam_report": {"score": 0.4, "matched_rules": []},
        },
    }


def post(client, body: bytes, url: str = URL, content_type: str = FORM, sign=True, **extra):
    headers = {"HTTP_AUTHORIZATION": basic_auth()}
    if sign:
        headers["HTTP_X_MANDRILL_SIGNATURE"] = signature(body, f"http://testserver{url}")
    headers.update(extra)
    return client.generic("POST", url, body, content_type=content_type, **headers)


@pytest.fixture(autouse=True)
def mandrill_settings(settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": WEBHOOK_SECRET, "MANDRILL_WEBHOOK_KEY": WEBHOOK_KEY}


@pytest.fixture
def received():
    """(signal name, event) for each inbound and tracking signal, in order."""
    events = []

    def on_inbound(sender, event, esp_name, **kwargs):
        events.append(("inbound", event, esp_name))

    def on_tracking(sender, event, esp_name, **kwargs):
        events.append(("tracking", event, esp_name))

    inbound.connect(on_inbound, weak=False)
    tracking.connect(on_tracking, weak=False)
    yield events
    inbound.disconnect(on_inbound)
    tracking.disconnect(on_tracking)


class TestMandrillInboundContract(InboundWebhookContract):
    esp = "mandrill"

    @pytest.fixture(autouse=True)
    def mandrill_key(self, settings):
        settings.ANYMAIL = {**settings.ANYMAIL, "MANDRILL_WEBHOOK_KEY": WEBHOOK_KEY}

    def inbound_body(self, raw, envelope_sender, envelope_recipient):
        return form_body([inbound_event(raw, envelope_recipient)]), FORM

    def signature_headers(self, body, content_type):
        return {"HTTP_X_MANDRILL_SIGNATURE": signature(body, f"http://testserver{self.url}")}


class TestMandrillCombinedUrlContract(TestMandrillInboundContract):
    """The documented anymail/mandrill/ URL keeps every inbound promise too."""

    @property
    def url(self):
        return COMBINED_URL


# Real-shaped payloads


def test_multipart_message_with_inline_image_and_attachment(client, received):
    esp_events = fixture("inbound_multipart")
    response = post(client, form_body(esp_events))
    assert response.status_code == 200, response.content
    assert response.json()["events"] == 1

    [(kind, event, esp_name)] = received
    assert (kind, esp_name, event.event_type) == ("inbound", "Mandrill", "inbound")
    assert event.timestamp == datetime(2026, 11, 20, 11, 0, 2, tzinfo=UTC)
    assert event.event_id is None
    assert event.esp_event == esp_events[0]
    message = event.message
    assert str(message.from_email) == "Ann Customer <ann@example.com>"
    assert [str(a) for a in message.to] == ["Support <support@inbound.example.com>"]
    assert [a.addr_spec for a in message.cc] == ["bob@example.com"]
    assert message.subject == "Where\u2019s my order?"
    assert message.date == datetime(2026, 11, 20, 11, 0, tzinfo=UTC)
    assert message["Message-ID"] == "<CAF=order1234@mail.example.com>"
    assert message.text == esp_events[0]["msg"]["text"].replace("\n", "\r\n")
    assert 'src="cid:logo.png@01DA5C"' in message.html
    assert message.envelope_recipient == "support@inbound.example.com"
    assert message.envelope_sender is None  # Mandrill doesn't say
    assert message.spam_score == 1.7
    assert message.spam_detected is None
    assert message["DKIM-Signature"].startswith("v=1; a=rsa-sha256")
    [attachment] = message.attachments
    assert (attachment.get_filename(), attachment.get_content_type()) == (
        "invoice-1234.pdf",
        "application/pdf",
    )
    msg = esp_events[0]["msg"]
    pdf = base64.b64decode(msg["attachments"]["invoice-1234.pdf"]["content"])
    assert attachment.get_content_bytes() == pdf
    logo = message.inline_attachments["logo.png@01DA5C"]
    assert logo.get_content_bytes() == base64.b64decode(msg["images"]["logo.png"]["content"])

    stored = InboundMessage.objects.get()
    assert (stored.esp, stored.envelope_recipient, stored.spam_score) == (
        "mandrill",
        "support@inbound.example.com",
        1.7,
    )
    assert stored.received_at == datetime(2026, 11, 20, 11, 0, 2, tzinfo=UTC)
    assert stored.in_reply_to == "<confirm-1234@shop.example.com>"
    with default_storage.open(stored.raw_file.name) as file:
        assert file.read() == esp_events[0]["msg"]["raw_msg"].encode()
    by_name = {a.filename: a for a in stored.attachments.all()}
    assert by_name["logo.png"].inline and by_name["logo.png"].content_id == "<logo.png@01DA5C>"
    assert not by_name["invoice-1234.pdf"].inline
    assert stored.webhook_call.kind == "inbound"


def test_non_utf8_message_is_decoded(client, received):
    response = post(client, form_body(fixture("inbound_latin1")))
    assert response.status_code == 200
    stored = InboundMessage.objects.get()
    assert stored.subject == "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e"
    assert stored.from_email == "Ren\u00e9 Dupr\u00e9 <rene@example.fr>"
    assert "un caf\u00e9 cr\u00e8me s'il vous pla\u00eet. \u00c0 bient\u00f4t" in stored.text
    assert stored.spam_score == 0


def test_batch_stores_each_message(client, received):
    batch = fixture("inbound_multipart") + fixture("inbound_latin1")
    response = post(client, form_body(batch))
    assert (response.status_code, response.json()["events"]) == (200, 2)
    assert [event.message["Message-ID"] for _, event, _ in received] == [
        "<CAF=order1234@mail.example.com>",
        "<latin1-5678@example.fr>",
    ]
    assert InboundMessage.objects.count() == 2


def test_same_message_in_another_batch_is_stored_once(client):
    assert post(client, form_body(fixture("inbound_multipart"))).status_code == 200
    batch = fixture("inbound_latin1") + fixture("inbound_multipart")
    assert post(client, form_body(batch)).status_code == 200
    assert InboundMessage.objects.count() == 2


def test_empty_batch_is_ok(client):
    # Mandrill posts an empty batch when checking a new route's URL.
    response = post(client, form_body([]))
    assert (response.status_code, response.json()["events"]) == (200, 0)


def test_reprocessing_the_call_stores_nothing_new(client):
    assert post(client, form_body(fixture("inbound_multipart"))).status_code == 200
    assert webhook_call_reprocess(call=WebhookCall.objects.get()) == 0
    assert InboundMessage.objects.count() == 1


# The combined URL


def test_combined_url_stores_inbound_messages(client, received):
    response = post(client, form_body(fixture("inbound_multipart")), url=COMBINED_URL)
    assert response.status_code == 200
    assert [kind for kind, _, _ in received] == ["inbound"]
    stored = InboundMessage.objects.get()
    assert (stored.webhook_call.kind, stored.webhook_call.status) == ("inbound", "processed")


def test_combined_url_records_tracking_events(client, received):
    response = post(client, form_body(fixture("send")), url=COMBINED_URL)
    assert response.status_code == 200
    [(kind, event, esp_name)] = received
    assert (kind, event.event_type, esp_name) == ("tracking", "sent", "Mandrill")
    assert Event.objects.get().message_id == "exampleaaaaaaaaaaaaaaaaaaaaaaaaa"
    assert WebhookCall.objects.get().kind == "tracking"
    assert not InboundMessage.objects.exists()


def test_combined_url_handles_a_mixed_batch(client, received):
    batch = fixture("send") + fixture("inbound_multipart") + fixture("hard_bounce")
    response = post(client, form_body(batch), url=COMBINED_URL)
    assert response.status_code == 200, response.content
    assert response.json()["events"] == 3
    assert sorted((kind, event.event_type) for kind, event, _ in received) == [
        ("inbound", "inbound"),
        ("tracking", "bounced"),
        ("tracking", "sent"),
    ]
    assert InboundMessage.objects.get().subject == "Where\u2019s my order?"
    assert sorted(Event.objects.values_list("event_type", flat=True)) == ["bounced", "sent"]
    call = WebhookCall.objects.get()
    assert (call.kind, call.status) == ("inbound", WebhookCallStatus.PROCESSED)
    assert InboundMessage.objects.get().webhook_call == call
    assert set(Event.objects.values_list("webhook_call", flat=True)) == {call.pk}


def test_mixed_batch_is_all_or_nothing(client, monkeypatch):
    def fail(self, events, call):
        raise DatabaseError("database went away")

    monkeypatch.setattr(MandrillTrackingWebhookView, "record", fail)
    batch = fixture("inbound_multipart") + fixture("send")
    assert post(client, form_body(batch), url=COMBINED_URL).status_code == 503
    # Nothing half-stored, and the call is kept failed: Mandrill's retry redoes it all.
    assert not InboundMessage.objects.exists()
    call = WebhookCall.objects.get()
    assert call.status == WebhookCallStatus.FAILED
    assert "database went away" in call.error

    monkeypatch.undo()
    assert post(client, form_body(batch), url=COMBINED_URL).status_code == 200
    assert (InboundMessage.objects.count(), Event.objects.count()) == (1, 1)


def test_mixed_batch_reprocessing_is_idempotent(client):
    batch = fixture("send") + fixture("inbound_multipart")
    assert post(client, form_body(batch), url=COMBINED_URL).status_code == 200
    assert webhook_call_reprocess(call=WebhookCall.objects.get()) == 0
    assert (InboundMessage.objects.count(), Event.objects.count()) == (1, 1)


def test_combined_url_keeps_its_name(client):
    from django.urls import reverse

    assert reverse("mandrill_webhook") == COMBINED_URL
    assert reverse("mandrill_inbound_webhook") == URL
    assert reverse("mandrill_tracking_webhook") == TRACKING_URL


def test_inbound_url_refuses_tracking_events(client):
    response = post(client, form_body(fixture("send") + fixture("blacklist")))
    assert response.status_code == 400
    error = response.json()["error"]
    assert "tracking events (blacklist, send)" in error and "anymail/mandrill/" in error
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED


def test_tracking_url_still_refuses_inbound_events(client):
    response = post(client, form_body(fixture("inbound_multipart")), url=TRACKING_URL)
    assert response.status_code == 400
    assert not InboundMessage.objects.exists()


# Signature


def test_missing_signature_is_refused(client):
    response = post(client, form_body(fixture("inbound_multipart")), sign=False)
    assert response.status_code == 403
    assert "X-Mandrill-Signature" in response.json()["error"]
    assert not WebhookCall.objects.exists()


def test_bad_signature_is_refused(client):
    body = form_body(fixture("inbound_multipart"))
    wrong = signature(body, f"http://testserver{URL}", key="another-key")
    assert post(client, body, HTTP_X_MANDRILL_SIGNATURE=wrong).status_code == 403


def test_signature_for_the_tracking_url_is_refused_at_the_inbound_url(client):
    body = form_body(fixture("inbound_multipart"))
    signed_elsewhere = signature(body, f"http://testserver{TRACKING_URL}")
    response = post(client, body, HTTP_X_MANDRILL_SIGNATURE=signed_elsewhere)
    assert response.status_code == 403
    assert not InboundMessage.objects.exists()


@pytest.mark.parametrize("configured_path", ["/anymail/mandrill/", "/anymail/mandrill/tracking/"])
@pytest.mark.parametrize("called_url", [URL, COMBINED_URL])
def test_webhook_url_setting_names_the_public_site_of_every_mandrill_url(
    client, settings, configured_path, called_url
):
    # Behind a proxy Django sees http://testserver; Mandrill signed the public URL,
    # with the path the route or webhook was entered at.
    settings.ANYMAIL = {
        **settings.ANYMAIL,
        "MANDRILL_WEBHOOK_URL": f"https://user:pass@example.com{configured_path}",
    }
    body = form_body(fixture("inbound_multipart"))
    public = f"https://user:pass@example.com{called_url}"
    response = post(client, body, url=called_url, HTTP_X_MANDRILL_SIGNATURE=signature(body, public))
    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    "configured, path, expected",
    [
        (
            "https://example.com/anymail/mandrill/",
            "/anymail/mandrill/inbound/",
            "https://example.com/anymail/mandrill/inbound/",
        ),
        (
            "https://u:p@example.com:8443/hooks/anymail/mandrill/tracking/?site=1",
            "/anymail/mandrill/",
            "https://u:p@example.com:8443/hooks/anymail/mandrill/?site=1",
        ),
        ("https://example.com/webhooks/mail/", URL, "https://example.com/webhooks/mail/"),
    ],
)
def test_same_webhook_at(configured, path, expected):
    assert same_webhook_at(configured, path) == expected


def test_without_webhook_key_basic_auth_is_enough(client, settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": WEBHOOK_SECRET}
    response = post(client, form_body(fixture("inbound_multipart")), sign=False)
    assert response.status_code == 200


def test_webhook_key_without_basic_auth_is_accepted_without_warning(client, settings):
    settings.ANYMAIL = {"MANDRILL_WEBHOOK_KEY": WEBHOOK_KEY}
    body = form_body(fixture("inbound_multipart"))
    for url in (URL, COMBINED_URL):
        response = client.generic(
            "POST",
            url,
            body,
            content_type=FORM,
            HTTP_X_MANDRILL_SIGNATURE=signature(body, f"http://testserver{url}"),
        )
        assert response.status_code == 200
    assert InboundMessage.objects.count() == 1


def test_wrong_basic_auth_is_refused(client):
    response = post(
        client,
        form_body(fixture("inbound_multipart")),
        HTTP_AUTHORIZATION=basic_auth("user:wrong"),
    )
    assert response.status_code == 401


def test_head_request_that_checks_the_url_needs_no_auth(client):
    assert client.head(URL).status_code == 200
    assert client.head(COMBINED_URL).status_code == 200


# Bad payloads


def test_wrong_content_type_is_400(client, settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": WEBHOOK_SECRET}  # (signed requests must be forms)
    body = json.dumps(fixture("inbound_multipart")).encode()
    response = post(client, body, content_type="application/json", sign=False)
    assert response.status_code == 400
    assert FORM in response.json()["error"]


def test_missing_mandrill_events_is_400(client):
    response = post(client, urlencode({"recipient": "to@example.com", "token": "x"}).encode())
    assert response.status_code == 400
    assert "another ESP" in response.json()["error"]


def test_events_not_json_is_400(client):
    response = post(client, urlencode({"mandrill_events": "[{not json"}).encode())
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED


def test_events_not_a_list_is_400(client):
    response = post(client, urlencode({"mandrill_events": '{"event": "inbound"}'}).encode())
    assert response.status_code == 400
    assert "JSON array" in response.json()["error"]


@pytest.mark.parametrize("msg", [{}, {"raw_msg": ""}, {"raw_msg": None}, "not an object"])
def test_inbound_event_without_raw_msg_is_400(client, msg):
    response = post(client, form_body([{"event": "inbound", "ts": 1795172402, "msg": msg}]))
    assert response.status_code == 400
    assert "raw_msg" in response.json()["error"]


def test_malformed_batch_at_the_combined_url_is_400_and_kept(client):
    response = post(client, urlencode({"mandrill_events": "[{"}).encode(), url=COMBINED_URL)
    assert response.status_code == 400
    call = WebhookCall.objects.get()
    assert (call.kind, call.status) == ("tracking", WebhookCallStatus.FAILED)
