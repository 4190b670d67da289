"""The Mailtrap tracking webhook: JSON and JSON Lines batches, Mailtrap-Signature, bad input."""

import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import responses
from django.core import mail

from sending.exceptions import AnymailInsecureWebhookWarning
from sending.models import Recipient, Suppression
from sending.signals import tracking
from tests.webhook_contract import WEBHOOK_SECRET, EventSpec, TrackingWebhookContract, basic_auth
from tracking.models import Event, WebhookCall, WebhookCallStatus
from tracking.webhooks.mailtrap import MailtrapTrackingWebhookView

pytestmark = pytest.mark.django_db

URL = "/anymail/mailtrap/tracking/"
FIXTURES = Path(__file__).parent / "fixtures" / "mailtrap"
SIGNING_KEY = "0123456789abcdef0123456789abcdef"  # 32 hex characters, like Mailtrap's
MESSAGE_ID = "1df37d17-0286-4d8b-8edf-bc4ec5be86e6"
RECIPIENT = "receiver@example.com"

# Normalized event type -> the Mailtrap event that produces it (and its extra fields).
MAILTRAP_EVENTS = {
    "delivered": ("delivery", {}),
    "opened": ("open", {"ip": "127.0.0.1", "user_agent": "Mozilla/5.0"}),
    "clicked": ("click", {"url": "https://example.com", "user_agent": "Mozilla/5.0"}),
    "bounced": (
        "bounce",
        {"response": "5.1.1 No such user", "response_code": 550, "bounce_category": "badrecipient"},
    ),
    "deferred": (
        "soft bounce",
        {
            "response": "4.7.1 Try again later",
            "response_code": 451,
            "bounce_category": "greylisting",
        },
    ),
    "rejected": ("reject", {"reason": "Recipient in suppression list. Reason: hard bounce"}),
    "complained": ("spam", {}),
    "unsubscribed": ("unsubscribe", {}),
}


def sign(body: bytes, key: str = SIGNING_KEY) -> str:
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def mailtrap_event(spec: EventSpec) -> dict:
    event, extra = MAILTRAP_EVENTS[spec.event_type]
    return {
        "event": event,
        "timestamp": int(spec.timestamp.timestamp()),
        "sending_stream": "transactional",
        "message_id": spec.message_id,
        "email": spec.recipient,
        "event_id": spec.event_id,
        "sending_domain_name": "examplesender.com",
        **extra,
    }


class TestMailtrapWebhookContract(TrackingWebhookContract):
    esp = "mailtrap"
    message_id = MESSAGE_ID

    @pytest.fixture(autouse=True)
    def signing_key(self, webhook_settings, settings):
        settings.ANYMAIL = {**settings.ANYMAIL, "MAILTRAP_WEBHOOK_SIGNING_KEY": SIGNING_KEY}

    def event_body(self, events: list[EventSpec]):
        body = {"events": [mailtrap_event(spec) for spec in events]}
        return json.dumps(body).encode(), "application/json"

    def signature_headers(self, body: bytes, content_type: str):
        return {"HTTP_MAILTRAP_SIGNATURE": sign(body)}


@pytest.fixture(autouse=True)
def mailtrap_settings(settings):
    settings.ANYMAIL = {
        **settings.ANYMAIL,
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "MAILTRAP_WEBHOOK_SIGNING_KEY": SIGNING_KEY,
    }


@pytest.fixture
def received():
    """The events the tracking signal delivers, in order."""
    events = []

    def receiver(sender, event, esp_name, **kwargs):
        assert esp_name == "Mailtrap"
        events.append(event)

    tracking.connect(receiver, weak=False)
    yield events
    tracking.disconnect(receiver)


def post(client, body, content_type="application/json", auth=None, signature=None, **extra):
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    headers = {"HTTP_AUTHORIZATION": auth or basic_auth()}
    headers["HTTP_MAILTRAP_SIGNATURE"] = sign(body) if signature is None else signature
    headers.update(extra)
    return client.generic("POST", URL, body, content_type=content_type, **headers)


def post_fixture(client, name, content_type="application/json"):
    response = post(client, (FIXTURES / name).read_bytes(), content_type=content_type)
    assert response.status_code == 200, response.content
    return response


def fixture(name):
    return json.loads((FIXTURES / name).read_text())


def one_event(name, **changes):
    """A fixture's event, changed, wrapped as a payload again."""
    event = {**fixture(name)["events"][0], **changes}
    return {"events": [event]}


# One test per documented event type


def test_delivery_event_is_delivered_with_id_tag_and_metadata(client, received):
    post_fixture(client, "delivery.json")
    [event] = received
    assert event.event_type == "delivered"
    assert event.timestamp == datetime(2025, 11, 20, 12, 0, tzinfo=UTC)
    assert event.event_id == "bede7236-2284-43d6-a953-1fdcafd0fdbc"
    assert event.message_id == MESSAGE_ID
    assert event.recipient == RECIPIENT
    assert event.tags == ["Password reset"]
    assert event.metadata == {"user_id": "123", "attempt": 2}
    assert event.reject_reason is None
    assert event.mta_response is None
    assert event.esp_event == fixture("delivery.json")["events"][0]
    stored = Event.objects.get()
    assert (stored.esp, stored.event_type, stored.event_id, stored.message_id) == (
        "mailtrap",
        "delivered",
        "bede7236-2284-43d6-a953-1fdcafd0fdbc",
        MESSAGE_ID,
    )
    assert stored.tags == ["Password reset"]
    assert stored.metadata == {"user_id": "123", "attempt": 2}


def test_open_event_is_opened_with_user_agent(client, received):
    post_fixture(client, "open.json")
    [event] = received
    assert event.event_type == "opened"
    assert event.timestamp == datetime(2025, 11, 20, 12, 5, tzinfo=UTC)
    assert event.user_agent == "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)"
    assert event.click_url is None


def test_click_event_is_clicked_with_url(client, received):
    post_fixture(client, "click.json")
    [event] = received
    assert event.event_type == "clicked"
    assert event.click_url == "https://mailtrap.io/email-api"
    assert event.user_agent == "Mozilla/5.0 (Windows NT x.y; Win64; x64)"
    assert Event.objects.get().click_url == "https://mailtrap.io/email-api"


def test_unsubscribe_event_is_unsubscribed_and_suppresses(client, received):
    post_fixture(client, "unsubscribe.json")
    [event] = received
    assert event.event_type == "unsubscribed"
    assert event.tags == ["Newsletter"]
    assert event.metadata == {}
    assert Suppression.objects.get().reason == "unsubscribed"


def test_spam_event_is_complained_and_suppresses(client, received):
    post_fixture(client, "spam.json")
    [event] = received
    assert event.event_type == "complained"
    assert Suppression.objects.get().reason == "complained"


def test_soft_bounce_is_deferred_with_smtp_response(client, received):
    post_fixture(client, "soft_bounce.json")
    [event] = received
    assert event.event_type == "deferred"
    assert event.reject_reason is None
    assert event.mta_response == "451 4.7.1 Temporary error, please retry"
    assert event.description == "bounce category: greylisting"
    assert not Suppression.objects.exists()


def test_soft_bounce_spelled_with_underscore_is_deferred_too(client, received):
    assert post(client, one_event("soft_bounce.json", event="soft_bounce")).status_code == 200
    assert received[0].event_type == "deferred"


def test_bounce_is_bounced_and_suppresses_the_address(client, received):
    post_fixture(client, "bounce.json")
    [event] = received
    assert event.event_type == "bounced"
    assert event.reject_reason == "bounced"
    assert event.mta_response == (
        "550 5.1.1 The email account that you tried to reach does not exist"
    )
    assert event.description == "bounce category: badrecipient"
    stored = Event.objects.get()
    assert (stored.reject_reason, stored.mta_response) == ("bounced", event.mta_response)
    assert Suppression.objects.get().address == RECIPIENT


@pytest.mark.parametrize(
    "category, reason",
    [
        ("spam", "spam"),
        ("spam_gmail", "spam"),
        ("block", "blocked"),
        ("serverpolicy", "blocked"),
        ("timeout", "timed_out"),
        ("overquota", "bounced"),
        ("dnsFail", "other"),
        ("a-new-category", "bounced"),
    ],
)
def test_bounce_categories_map_to_reject_reasons(client, received, category, reason):
    body = one_event("bounce.json", bounce_category=category)
    assert post(client, body).status_code == 200
    assert received[0].reject_reason == reason


def test_docs_bounce_sample_with_code_in_the_response_keeps_it_once(client, received):
    body = one_event("bounce.json", response="555 Message rejected", response_code=555)
    assert post(client, body).status_code == 200
    assert received[0].mta_response == "555 Message rejected"


def test_suspension_is_deferred_with_reason(client, received):
    post_fixture(client, "suspension.json")
    [event] = received
    assert event.event_type == "deferred"
    assert event.description == "Your account has reached its daily sending limit."


def test_reject_is_rejected_with_reason_from_the_suppression_list(client, received):
    post_fixture(client, "reject.json")
    [event] = received
    assert event.event_type == "rejected"
    assert event.reject_reason == "unsubscribed"
    assert event.description == "Recipient in suppression list. Reason: unsubscription"


@pytest.mark.parametrize(
    "reason, normalized",
    [
        ("Recipient in suppression list. Reason: hard bounce", "bounced"),
        ("Recipient in suppression list. Reason: spam complaint", "spam"),
        ("Recipient in suppression list. Reason: manual import", "blocked"),
        ("Sending domain was not verified in time", "other"),
    ],
)
def test_reject_reasons_are_normalized(client, received, reason, normalized):
    assert post(client, one_event("reject.json", reason=reason)).status_code == 200
    assert received[0].reject_reason == normalized


def test_unknown_event_type_is_kept_as_unknown(client, received):
    assert post(client, one_event("delivery.json", event="something_new")).status_code == 200
    assert received[0].event_type == "unknown"


def test_audit_log_event_is_unknown_and_unlinked(client, received):
    post_fixture(client, "audit_log.json")
    [event] = received
    assert event.event_type == "unknown"
    assert (event.message_id, event.recipient) == (None, None)
    assert event.description == "updated the user profile"
    assert event.timestamp == datetime(2025, 1, 2, 15, 2, 18, tzinfo=UTC)


# Batches


def test_json_batch_gives_one_event_each(client, received):
    events = [fixture(name)["events"][0] for name in ("delivery.json", "open.json", "click.json")]
    response = post(client, {"events": events})
    assert response.json()["events"] == 3
    assert [e.event_type for e in received] == ["delivered", "opened", "clicked"]
    assert Event.objects.count() == 3


def test_json_lines_batch_gives_one_event_each(client, received):
    response = post_fixture(client, "mixed.jsonl", content_type="application/jsonl")
    assert response.json()["events"] == 3
    assert [(e.event_type, e.event_id) for e in received] == [
        ("delivered", "evt-1"),
        ("opened", "evt-2"),
        ("clicked", "evt-3"),
    ]
    assert received[2].click_url == "https://example.com"
    assert {e.message_id for e in received} == {"abc-123"}


def test_same_event_id_in_a_later_batch_is_stored_once(client):
    post_fixture(client, "delivery.json")
    events = [fixture("delivery.json")["events"][0], fixture("open.json")["events"][0]]
    assert post(client, {"events": events}).status_code == 200
    assert Event.objects.count() == 2


@pytest.fixture
def mailtrap_backend(settings, use_backend):
    settings.ANYMAIL = {**settings.ANYMAIL, "MAILTRAP_API_TOKEN": "token"}
    use_backend("sending.backends.mailtrap.EmailBackend")


def test_events_link_to_the_recipient_the_backend_recorded(client, http, mailtrap_backend):
    http.add(
        responses.POST,
        "https://send.api.mailtrap.io/api/send",
        json={"success": True, "message_ids": [MESSAGE_ID]},
    )
    mail.send_mail("Subject", "Body", "from@example.com", [RECIPIENT])

    post_fixture(client, "delivery.json")
    post_fixture(client, "click.json")

    recipient = Recipient.objects.get(address=RECIPIENT)
    assert recipient.esp_message_id == MESSAGE_ID
    assert (recipient.status, recipient.click_count) == ("clicked", 1)
    assert recipient.delivered_at == datetime(2025, 11, 20, 12, 0, tzinfo=UTC)
    assert set(Event.objects.values_list("recipient", flat=True)) == {recipient.pk}


# Mailtrap-Signature


def test_correct_signature_is_accepted(client):
    body = (FIXTURES / "delivery.json").read_bytes()
    assert post(client, body, signature=sign(body)).status_code == 200


def test_signature_in_uppercase_hex_is_accepted(client):
    body = (FIXTURES / "delivery.json").read_bytes()
    assert post(client, body, signature=sign(body).upper()).status_code == 200


def test_json_lines_body_is_signed_raw_too(client):
    body = (FIXTURES / "mixed.jsonl").read_bytes()
    response = post(client, body, content_type="application/jsonl", signature=sign(body))
    assert response.status_code == 200


def test_missing_signature_is_403_and_not_stored(client):
    body = (FIXTURES / "delivery.json").read_bytes()
    response = post(client, body, signature="")
    assert response.status_code == 403
    assert "Mailtrap-Signature" in response.json()["error"]
    assert not WebhookCall.objects.exists()


def test_wrong_signature_is_403(client):
    body = (FIXTURES / "delivery.json").read_bytes()
    response = post(client, body, signature=sign(body, key="f" * 32))
    assert response.status_code == 403
    assert "MAILTRAP_WEBHOOK_SIGNING_KEY" in response.json()["error"]
    assert not WebhookCall.objects.exists()


def test_signature_of_another_body_is_403(client):
    body = (FIXTURES / "delivery.json").read_bytes()
    tampered = body.replace(b"receiver@example.com", b"someone@example.com")
    assert post(client, tampered, signature=sign(body)).status_code == 403


def test_replayed_call_changes_nothing(client, received):
    # The signature has no timestamp to refuse a replay by; event ids make it a no-op.
    post_fixture(client, "bounce.json")
    response = post_fixture(client, "bounce.json")
    assert "already processed" in response.json()["detail"]
    assert len(received) == 1
    assert Event.objects.count() == 1


def test_signature_alone_authenticates_without_basic_auth(client, settings):
    settings.ANYMAIL = {"MAILTRAP_WEBHOOK_SIGNING_KEY": SIGNING_KEY}
    body = (FIXTURES / "delivery.json").read_bytes()
    response = client.generic(
        "POST", URL, body, content_type="application/json", HTTP_MAILTRAP_SIGNATURE=sign(body)
    )
    assert response.status_code == 200


def test_signing_key_set_means_no_insecure_warning(settings, recwarn):
    settings.ANYMAIL = {"MAILTRAP_WEBHOOK_SIGNING_KEY": SIGNING_KEY}
    MailtrapTrackingWebhookView()
    assert not [w for w in recwarn if issubclass(w.category, AnymailInsecureWebhookWarning)]


def test_neither_secret_nor_signing_key_warns_insecure(settings):
    settings.ANYMAIL = {}
    with pytest.warns(AnymailInsecureWebhookWarning):
        MailtrapTrackingWebhookView()


def test_without_signing_key_basic_auth_alone_is_enough(client, settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": WEBHOOK_SECRET}
    body = (FIXTURES / "delivery.json").read_bytes()
    assert post(client, body, signature="not-checked").status_code == 200


# Bad input


def test_malformed_json_is_400_and_kept(client):
    response = post(client, b'{"events": [{"event": "delivery"')
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED


def test_malformed_json_line_is_400_naming_the_line(client):
    body = (FIXTURES / "mixed.jsonl").read_bytes() + b'{"event": "open",\n'
    response = post(client, body, content_type="application/jsonl")
    assert response.status_code == 400
    assert "line 4" in response.json()["error"]


@pytest.mark.parametrize("content_type", ["application/json", "application/jsonl"])
def test_empty_body_is_400(client, content_type):
    response = post(client, b"", content_type=content_type)
    assert response.status_code == 400
    assert "Empty Mailtrap webhook body" in response.json()["error"]


def test_wrong_content_type_is_400(client):
    body = (FIXTURES / "delivery.json").read_bytes()
    response = post(client, body, content_type="text/plain")
    assert response.status_code == 400
    assert "application/json or application/jsonl" in response.json()["error"]


def test_another_esps_array_payload_is_400_saying_so(client):
    mailjet_group = (Path(__file__).parent / "fixtures" / "mailjet" / "grouped.json").read_bytes()
    response = post(client, mailjet_group)
    assert response.status_code == 400
    assert "another ESP" in response.json()["error"]


def test_object_without_events_list_is_400(client):
    mailjet_event = (Path(__file__).parent / "fixtures" / "mailjet" / "sent.json").read_bytes()
    response = post(client, mailjet_event)
    assert response.status_code == 400
    assert '"events" list' in response.json()["error"]


def test_event_without_event_field_is_400(client):
    response = post(client, {"events": [{"email": RECIPIENT}]})
    assert response.status_code == 400
    assert '"event" field' in response.json()["error"]
