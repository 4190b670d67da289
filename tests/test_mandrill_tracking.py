"""Mandrill's tracking webhook: form-encoded mandrill_events batches, X-Mandrill-Signature."""

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import pytest

from sending.exceptions import AnymailInsecureWebhookWarning
from sending.models import Suppression
from sending.signals import tracking
from tests.webhook_contract import WEBHOOK_SECRET, EventSpec, TrackingWebhookContract, basic_auth
from tracking.models import Event, WebhookCall, WebhookCallStatus

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).parent / "fixtures" / "mandrill"
WEBHOOK_KEY = "f7Tk0QmVyX3Z1bm55LWtleS1mb3ItdGVzdHM"
URL = "/anymail/mandrill/tracking/"
FORM = "application/x-www-form-urlencoded"

# Normalized event type -> Mandrill's event name, for the contract's events.
MANDRILL_EVENTS = {
    "sent": "send",
    "delivered": "delivered",
    "deferred": "deferral",
    "bounced": "hard_bounce",
    "opened": "open",
    "clicked": "click",
    "complained": "spam",
    "unsubscribed": "unsub",
    "rejected": "reject",
}


def signature(body: bytes, url: str = f"http://testserver{URL}", key: str = WEBHOOK_KEY) -> str:
    """Mandrill's documented scheme: HMAC-SHA1 over the URL and each sorted key+value."""
    signed = url + "".join(k + v for k, v in sorted(parse_qsl(body.decode(), True)))
    return base64.b64encode(hmac.new(key.encode(), signed.encode(), hashlib.sha1).digest()).decode()


def form_body(events) -> bytes:
    return urlencode({"mandrill_events": json.dumps(events)}).encode()


def fixture(name: str) -> list:
    return json.loads((FIXTURES / f"{name}.json").read_text())


@pytest.fixture(autouse=True)
def mandrill_settings(settings):
    settings.ANYMAIL = {
        **getattr(settings, "ANYMAIL", {}),
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "MANDRILL_WEBHOOK_KEY": WEBHOOK_KEY,
    }


@pytest.fixture
def received():
    """The events the tracking signal sends, in order."""
    events = []

    def receiver(sender, event, esp_name, **kwargs):
        events.append(event)

    tracking.connect(receiver, weak=False)
    yield events
    tracking.disconnect(receiver)


def post(client, body: bytes, url: str = URL, content_type: str = FORM, sign: bool = True, **extra):
    headers = {"HTTP_AUTHORIZATION": basic_auth()}
    if sign:
        headers["HTTP_X_MANDRILL_SIGNATURE"] = signature(body, f"http://testserver{url}")
    headers.update(extra)
    return client.generic("POST", url, body, content_type=content_type, **headers)


def post_fixture(client, name: str):
    response = post(client, form_body(fixture(name)))
    assert response.status_code == 200, response.content
    return response


class TestMandrillWebhookContract(TrackingWebhookContract):
    esp = "mandrill"
    message_id = "abc123abc123abc123abc123abc123ab"

    @pytest.fixture(autouse=True)
    def mandrill_key(self, settings):
        settings.ANYMAIL = {**getattr(settings, "ANYMAIL", {}), "MANDRILL_WEBHOOK_KEY": WEBHOOK_KEY}

    def event_body(self, events: list[EventSpec]):
        mandrill_events = []
        for spec in events:
            ts = int(spec.timestamp.timestamp())
            msg = {
                "ts": ts,
                "_id": spec.message_id,
                "email": spec.recipient,
                "sender": "from@example.com",
                "subject": "Contract",
                "state": "sent",
                "tags": [],
                "metadata": {},
            }
            event = {"event": MANDRILL_EVENTS[spec.event_type], "_id": spec.message_id, "ts": ts}
            mandrill_events.append({**event, "msg": msg})
        return form_body(mandrill_events), FORM

    def signature_headers(self, body, content_type):
        return {"HTTP_X_MANDRILL_SIGNATURE": signature(body, f"http://testserver{self.url}")}


# One test per documented event type


def test_send_event(client, received):
    post_fixture(client, "send")
    [event] = received
    assert event.event_type == "sent"
    assert event.timestamp == datetime(2013, 11, 20, 13, 26, 44, tzinfo=UTC)
    assert event.event_id is None  # Mandrill has no event id: events dedupe by content
    assert event.message_id == "exampleaaaaaaaaaaaaaaaaaaaaaaaaa"
    assert event.recipient == "example.webhook@mandrillapp.com"
    assert event.tags == ["webhook-example"]
    assert event.metadata == {"user_id": 111}
    assert event.reject_reason is None
    assert event.esp_event == fixture("send")[0]
    stored = Event.objects.get()
    assert (stored.esp, stored.event_type, stored.message_id, stored.recipient_address) == (
        "mandrill",
        "sent",
        "exampleaaaaaaaaaaaaaaaaaaaaaaaaa",
        "example.webhook@mandrillapp.com",
    )


def test_delivered_event(client, received):
    post_fixture(client, "delivered")
    [event] = received
    assert event.event_type == "delivered"
    assert event.mta_response == "250 2.0.0 OK 1384954004 a1si2034219qaf.139 - gsmtp"


def test_deferral_event(client, received):
    post_fixture(client, "deferral")
    [event] = received
    assert (event.event_type, event.message_id) == ("deferred", "exampleaaaaaaaaaaaaaaaaaaaaaaaaa1")
    assert event.mta_response == "451 4.3.5 Temporarily unavailable, try again later."
    assert event.reject_reason is None


def test_hard_bounce_event_suppresses_the_address(client, received):
    post_fixture(client, "hard_bounce")
    [event] = received
    assert (event.event_type, event.reject_reason) == ("bounced", "bounced")
    assert event.description == "bad_mailbox"
    assert event.mta_response.startswith("smtp;550 5.1.1 The email account")
    assert Suppression.objects.get().address == "example.webhook@mandrillapp.com"


def test_soft_bounce_event_is_timed_out_and_not_suppressed(client, received):
    post_fixture(client, "soft_bounce")
    [event] = received
    assert (event.event_type, event.reject_reason) == ("bounced", "timed_out")
    assert (event.description, event.mta_response) == ("mailbox_full", "smtp;552 5.2.2 Over Quota")
    assert not Suppression.objects.exists()


def test_open_event(client, received):
    post_fixture(client, "open")
    [event] = received
    assert event.event_type == "opened"
    assert event.user_agent.startswith("Mozilla/5.0 (Macintosh; U; Intel Mac OS X 10.6")
    assert event.click_url is None


def test_click_event(client, received):
    post_fixture(client, "click")
    [event] = received
    assert (event.event_type, event.click_url) == ("clicked", "http://mandrill.com")
    assert event.user_agent.endswith("Postbox/1.1.3")
    assert Event.objects.get().click_url == "http://mandrill.com"


def test_spam_event(client, received):
    post_fixture(client, "spam")
    [event] = received
    assert event.event_type == "complained"
    assert Suppression.objects.get().reason == "complained"


def test_unsub_event(client, received):
    post_fixture(client, "unsub")
    [event] = received
    assert event.event_type == "unsubscribed"
    assert Suppression.objects.get().reason == "unsubscribed"


def test_reject_event(client, received):
    post_fixture(client, "reject")
    [event] = received
    assert (event.event_type, event.reject_reason) == ("rejected", "blocked")
    assert event.message_id == "exampleaaaaaaaaaaaaaaaaaaaaaaaaa8"


@pytest.mark.parametrize("name", ["blacklist", "whitelist"])
def test_sync_events_are_unknown_for_the_address(client, received, name):
    post_fixture(client, name)
    [event] = received
    assert event.event_type == "unknown"
    assert (event.message_id, event.recipient) == (None, "example.webhook@mandrillapp.com")
    assert event.description.startswith(f"{name} add")
    assert event.timestamp == datetime(2013, 11, 20, 13, 26, 44, tzinfo=UTC)


def test_blacklist_sync_event_says_why(client, received):
    post_fixture(client, "blacklist")
    assert received[0].description == "blacklist add: hard-bounce"


def test_batch_gives_one_event_each(client, received):
    names = ["send", "deferral", "hard_bounce", "open", "click", "blacklist"]
    batch = [event for name in names for event in fixture(name)]
    response = post(client, form_body(batch))
    assert response.status_code == 200
    assert response.json()["events"] == 6
    assert [event.event_type for event in received] == [
        "sent",
        "deferred",
        "bounced",
        "opened",
        "clicked",
        "unknown",
    ]
    assert Event.objects.count() == 6


def test_empty_batch_is_ok(client):
    response = post(client, form_body([]))
    assert (response.status_code, response.json()["events"]) == (200, 0)


# URLs


def test_combined_url_is_the_same_tracking_webhook(client, received):
    # The documented URL is anymail/mandrill/; anymail/mandrill/tracking/ is the older one.
    response = post(client, form_body(fixture("send")), url="/anymail/mandrill/")
    assert response.status_code == 200
    assert received[0].event_type == "sent"


def test_head_request_that_checks_the_url_needs_no_auth(client):
    assert client.head(URL).status_code == 200


# Signature


def test_missing_signature_is_refused(client):
    response = post(client, form_body(fixture("send")), sign=False)
    assert response.status_code == 403
    assert "X-Mandrill-Signature" in response.json()["error"]
    assert not WebhookCall.objects.exists()


def test_bad_signature_is_refused(client):
    body = form_body(fixture("send"))
    response = post(client, body, HTTP_X_MANDRILL_SIGNATURE=signature(body, key="another-key"))
    assert response.status_code == 403
    assert "MANDRILL_WEBHOOK_KEY" in response.json()["error"]


def test_tampered_body_is_refused(client):
    body = form_body(fixture("send"))
    good = signature(body)
    response = post(client, form_body(fixture("spam")), HTTP_X_MANDRILL_SIGNATURE=good)
    assert response.status_code == 403


def test_signature_for_another_url_is_refused(client):
    body = form_body(fixture("send"))
    signed_elsewhere = signature(body, url="https://example.com/anymail/mandrill/tracking/")
    response = post(client, body, HTTP_X_MANDRILL_SIGNATURE=signed_elsewhere)
    assert response.status_code == 403
    assert "MANDRILL_WEBHOOK_URL" in response.json()["error"]


def test_webhook_url_setting_is_the_signed_url(client, settings):
    # Behind a proxy Django sees http://testserver, Mandrill signed the public URL.
    public_url = "https://example.com/anymail/mandrill/tracking/"
    settings.ANYMAIL = {**settings.ANYMAIL, "MANDRILL_WEBHOOK_URL": public_url}
    body = form_body(fixture("send"))
    response = post(client, body, HTTP_X_MANDRILL_SIGNATURE=signature(body, url=public_url))
    assert response.status_code == 200


def test_webhook_url_setting_naming_another_mandrill_url_is_applied_to_the_called_path(
    client, settings
):
    # One setting for every Mandrill URL: Mandrill signed this call's own path.
    settings.ANYMAIL = {
        **settings.ANYMAIL,
        "MANDRILL_WEBHOOK_URL": "https://example.com/hooks/anymail/mandrill/",
    }
    body = form_body(fixture("send"))
    public_url = "https://example.com/hooks/anymail/mandrill/tracking/"
    response = post(client, body, HTTP_X_MANDRILL_SIGNATURE=signature(body, url=public_url))
    assert response.status_code == 200


def test_mailchimp_signature_header_name_is_accepted(client):
    body = form_body(fixture("send"))
    response = post(client, body, sign=False, HTTP_X_MAILCHIMP_SIGNATURE=signature(body))
    assert response.status_code == 200


def test_old_events_are_accepted(client):
    # Mandrill's signature has no timestamp (the fixtures are from 2013), and
    # Mandrill retries failed batches later: there is no replay window to apply.
    assert post(client, form_body(fixture("send"))).status_code == 200


def test_without_webhook_key_signature_is_not_checked(client, settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": WEBHOOK_SECRET}
    assert post(client, form_body(fixture("send")), sign=False).status_code == 200


def test_without_key_or_basic_auth_warns(client, settings):
    settings.ANYMAIL = {}
    with pytest.warns(AnymailInsecureWebhookWarning):
        response = client.post(URL, urlencode({"mandrill_events": "[]"}), content_type=FORM)
    assert response.status_code == 200


def test_webhook_key_without_basic_auth_does_not_warn(client, settings):
    settings.ANYMAIL = {"MANDRILL_WEBHOOK_KEY": WEBHOOK_KEY}
    body = form_body(fixture("send"))
    response = client.generic(
        "POST", URL, body, content_type=FORM, HTTP_X_MANDRILL_SIGNATURE=signature(body)
    )
    assert response.status_code == 200


# Bad payloads


def test_malformed_json_is_400(client):
    response = post(client, urlencode({"mandrill_events": "[{not json"}).encode())
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED


def test_events_not_a_list_is_400(client):
    response = post(client, urlencode({"mandrill_events": '{"event": "send"}'}).encode())
    assert response.status_code == 400
    assert "JSON array" in response.json()["error"]


def test_empty_body_is_400(client):
    response = post(client, b"")
    assert response.status_code == 400
    assert "Empty Mandrill webhook body" in response.json()["error"]


def test_wrong_content_type_is_400(client):
    body = json.dumps(fixture("send")).encode()
    response = post(client, body, content_type="application/json")
    assert response.status_code == 400
    assert "application/x-www-form-urlencoded" in response.json()["error"]


def test_another_esps_payload_is_400(client):
    # A Mailgun legacy (form-encoded) tracking webhook posted to the Mandrill URL.
    body = urlencode({"event": "delivered", "recipient": "to@example.com", "token": "x"}).encode()
    response = post(client, body)
    assert response.status_code == 400
    assert "another ESP" in response.json()["error"]


def test_inbound_events_are_400(client):
    response = post(client, form_body(fixture("inbound")))
    assert response.status_code == 400
    assert "inbound" in response.json()["error"]
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED


def test_event_without_type_is_400(client):
    response = post(client, form_body([{"ts": 1384954004, "msg": {}}]))
    assert response.status_code == 400
    assert "neither" in response.json()["error"]
