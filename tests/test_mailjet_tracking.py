"""The Mailjet tracking webhook: Event API payloads (single and grouped), auth and bad input."""

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
from tracking.webhooks.mailjet import MailjetTrackingWebhookView

pytestmark = pytest.mark.django_db

URL = "/anymail/mailjet/tracking/"
FIXTURES = Path(__file__).parent / "fixtures" / "mailjet"
MESSAGE_ID = "1152921525478461234"  # str(MessageID), as the send backend records it
RECIPIENT = "recipient@example.com"

# Normalized event type -> the Mailjet event that produces it (and its extra fields).
MAILJET_EVENTS = {
    "delivered": ("sent", {"smtp_reply": "sent (250 2.0.0 OK)"}),
    "opened": ("open", {"ip": "127.0.0.1", "geo": "US", "agent": "Mozilla/5.0"}),
    "clicked": ("click", {"url": "https://example.com", "agent": "Mozilla/5.0"}),
    "bounced": (
        "bounce",
        {
            "hard_bounce": True,
            "blocked": True,
            "error_related_to": "recipient",
            "error": "user unknown",
        },
    ),
    "deferred": (
        "bounce",
        {
            "hard_bounce": False,
            "blocked": False,
            "error_related_to": "domain",
            "error": "greylisted",
        },
    ),
    "rejected": ("blocked", {"error_related_to": "mailjet", "error": "preblocked"}),
    "complained": ("spam", {"source": "JMRPP"}),
    "unsubscribed": ("unsub", {"mj_list_id": 1}),
}


def mailjet_event(spec: EventSpec) -> dict:
    event, extra = MAILJET_EVENTS[spec.event_type]
    return {
        "event": event,
        "time": int(spec.timestamp.timestamp()),
        "MessageID": int(spec.message_id),
        "Message_GUID": "1ab23cd4-e567-8901-2345-6789f0a1b2c3",
        "email": spec.recipient,
        "mj_campaign_id": 0,
        "mj_contact_id": 0,
        "customcampaign": "",
        "CustomID": "",
        "Payload": "",
        **extra,
    }


class TestMailjetWebhookContract(TrackingWebhookContract):
    esp = "mailjet"
    message_id = MESSAGE_ID

    def event_body(self, events: list[EventSpec]):
        # One event is posted as an object; several as a "group events" array.
        rendered = [mailjet_event(spec) for spec in events]
        body = rendered[0] if len(rendered) == 1 else rendered
        return json.dumps(body).encode(), "application/json"


@pytest.fixture(autouse=True)
def webhook_secret(settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": WEBHOOK_SECRET}


@pytest.fixture
def received():
    """The events the tracking signal delivers, in order."""
    events = []

    def receiver(sender, event, esp_name, **kwargs):
        assert esp_name == "Mailjet"
        events.append(event)

    tracking.connect(receiver, weak=False)
    yield events
    tracking.disconnect(receiver)


def post(client, body, content_type="application/json", auth=None):
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    return client.generic(
        "POST", URL, body, content_type=content_type, HTTP_AUTHORIZATION=auth or basic_auth()
    )


def post_fixture(client, name):
    response = post(client, (FIXTURES / name).read_bytes())
    assert response.status_code == 200, response.content
    return response


def fixture(name):
    return json.loads((FIXTURES / name).read_text())


# One test per documented event type


def test_sent_event_is_delivered_with_smtp_reply_tag_and_metadata(client, received):
    post_fixture(client, "sent.json")
    [event] = received
    assert event.event_type == "delivered"
    assert event.timestamp == datetime(2025, 11, 20, 12, 0, tzinfo=UTC)
    assert event.event_id is None
    assert event.message_id == MESSAGE_ID
    assert event.recipient == RECIPIENT
    assert event.mta_response == "sent (250 2.0.0 OK 1763640000 fa5si855896wjc.199 - gsmtp)"
    assert event.tags == ["welcome"]
    assert event.metadata == {"order": "12345", "tier": 2}
    assert event.reject_reason is None
    assert event.esp_event == fixture("sent.json")
    stored = Event.objects.get()
    assert (stored.esp, stored.event_type, stored.message_id, stored.recipient_address) == (
        "mailjet",
        "delivered",
        MESSAGE_ID,
        RECIPIENT,
    )
    assert stored.event_id == ""
    assert stored.dedupe_key.startswith("sha256:")


def test_open_event_is_opened_with_user_agent(client, received):
    post_fixture(client, "open.json")
    [event] = received
    assert event.event_type == "opened"
    assert event.timestamp == datetime(2025, 11, 20, 12, 5, tzinfo=UTC)
    assert event.user_agent == "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0"
    assert event.click_url is None
    assert event.metadata == {"order": "12345", "tier": 2}


def test_click_event_is_clicked_with_url_and_user_agent(client, received):
    post_fixture(client, "click.json")
    [event] = received
    assert event.event_type == "clicked"
    assert event.click_url == "https://example.com/orders/12345"
    assert event.user_agent == "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_10_0) AppleWebKit/537.36"
    assert Event.objects.get().click_url == "https://example.com/orders/12345"


def test_hard_bounce_is_bounced_and_suppresses_the_address(client, received):
    post_fixture(client, "bounce_hard.json")
    [event] = received
    assert event.event_type == "bounced"
    assert event.reject_reason == "bounced"
    assert event.description == "recipient: user unknown"
    assert event.mta_response == (
        "550 5.1.1 <recipient@example.com>: Recipient address rejected: User unknown"
    )
    assert event.tags == []
    assert event.metadata == {}
    assert Suppression.objects.get().address == RECIPIENT


def test_soft_bounce_is_deferred_without_reject_reason(client, received):
    post_fixture(client, "bounce_soft.json")
    [event] = received
    assert event.event_type == "deferred"
    assert event.reject_reason is None
    assert event.description == "recipient: quota exceeded"
    assert event.mta_response.startswith("452 4.2.2")
    assert not Suppression.objects.exists()


def test_blocked_event_is_rejected_with_normalized_reason(client, received):
    post_fixture(client, "blocked.json")
    [event] = received
    assert event.event_type == "rejected"
    # "preblocked": the address bounced before, so Mailjet didn't try.
    assert event.reject_reason == "bounced"
    assert event.description == "mailjet: preblocked"
    assert Event.objects.get().reject_reason == "bounced"


def test_blocked_for_template_error_is_failed(client, received):
    body = {
        **fixture("blocked.json"),
        "error_related_to": "content",
        "error": "error in template language",
    }
    assert post(client, body).status_code == 200
    [event] = received
    assert (event.event_type, event.reject_reason) == ("failed", "other")


@pytest.mark.parametrize(
    "related_to, error, reason",
    [
        ("spam", "content blocked", "spam"),
        ("spam", "sender blocked", "blocked"),
        ("domain", "relay/access denied", "blocked"),
        ("domain", "invalid domain", "bounced"),
        ("system", "connection issue", "other"),
        ("recipient", "some new error", "bounced"),
        ("spam", "some new error", "spam"),
    ],
)
def test_hard_bounce_errors_map_to_reject_reasons(client, received, related_to, error, reason):
    body = {**fixture("bounce_hard.json"), "error_related_to": related_to, "error": error}
    assert post(client, body).status_code == 200
    assert received[0].reject_reason == reason


def test_spam_event_is_complained_and_suppresses(client, received):
    post_fixture(client, "spam.json")
    [event] = received
    assert event.event_type == "complained"
    assert event.description == "reported by feedback loop JMRPP"
    assert event.tags == ["welcome"]
    assert Suppression.objects.get().reason == "complained"


def test_unsub_event_is_unsubscribed_and_suppresses(client, received):
    post_fixture(client, "unsub.json")
    [event] = received
    assert event.event_type == "unsubscribed"
    assert event.user_agent.startswith("Mozilla/5.0 (Macintosh")
    assert Suppression.objects.get().reason == "unsubscribed"


def test_unknown_event_type_is_kept_as_unknown(client, received):
    body = {**fixture("sent.json"), "event": "something_new"}
    assert post(client, body).status_code == 200
    assert received[0].event_type == "unknown"
    assert Event.objects.get().event_type == "unknown"


# Grouped events, ids and metadata


def test_grouped_events_give_one_event_each(client, received):
    response = post_fixture(client, "grouped.json")
    assert response.json()["events"] == 3
    assert [e.event_type for e in received] == ["delivered", "delivered", "opened"]
    # Grouped samples carry only the string mj_message_id: it's the same id.
    assert [e.message_id for e in received] == [
        "18858825588804172",
        "18858825588803684",
        "18858825588804172",
    ]
    assert all(e.tags == ["test"] for e in received)
    assert Event.objects.count() == 3


def test_identical_events_in_separate_calls_are_stored_once(client):
    body = fixture("open.json")
    assert post(client, body).status_code == 200
    # Mailjet resends the event in a group with another one: no event id, same content.
    assert post(client, [body, fixture("click.json")]).status_code == 200
    assert Event.objects.count() == 2


def test_payload_that_is_not_a_json_object_gives_no_metadata(client, received):
    body = {**fixture("sent.json"), "Payload": "plain text someone else set"}
    assert post(client, body).status_code == 200
    assert received[0].metadata == {}
    assert received[0].esp_event["Payload"] == "plain text someone else set"


@pytest.fixture
def mailjet_backend(settings, use_backend):
    settings.ANYMAIL = {
        **settings.ANYMAIL,
        "MAILJET_API_KEY": "key",
        "MAILJET_SECRET_KEY": "secret",
    }
    use_backend("sending.backends.mailjet.EmailBackend")


def test_events_link_to_the_recipient_the_backend_recorded(client, http, mailjet_backend):
    http.add(
        responses.POST,
        "https://api.mailjet.com/v3.1/send",
        json={
            "Messages": [
                {
                    "Status": "success",
                    "To": [
                        {
                            "Email": RECIPIENT,
                            "MessageUUID": "1ab23cd4-e567-8901-2345-6789f0a1b2c3",
                            "MessageID": int(MESSAGE_ID),
                            "MessageHref": f"https://api.mailjet.com/v3/REST/message/{MESSAGE_ID}",
                        }
                    ],
                }
            ]
        },
    )
    mail.send_mail("Subject", "Body", "from@example.com", [RECIPIENT])

    post_fixture(client, "sent.json")
    post_fixture(client, "open.json")

    recipient = Recipient.objects.get(address=RECIPIENT)
    assert recipient.esp_message_id == MESSAGE_ID
    assert (recipient.status, recipient.open_count) == ("opened", 1)
    assert recipient.delivered_at == datetime(2025, 11, 20, 12, 0, tzinfo=UTC)
    assert set(Event.objects.values_list("recipient", flat=True)) == {recipient.pk}


# Authentication: Mailjet doesn't sign, so basic auth is the only check


def test_no_signature_is_needed_with_basic_auth(client):
    assert post(client, fixture("sent.json")).status_code == 200


def test_old_events_are_accepted_as_mailjet_has_no_signed_timestamp(client, received):
    # Mailjet retries failed calls for hours; an old "time" is not a replay sign.
    body = {**fixture("sent.json"), "time": 1430812195}
    assert post(client, body).status_code == 200
    assert received[0].timestamp == datetime(2015, 5, 5, 7, 49, 55, tzinfo=UTC)


def test_missing_webhook_secret_warns_insecure(settings):
    settings.ANYMAIL = {}
    with pytest.warns(AnymailInsecureWebhookWarning):
        MailjetTrackingWebhookView()


# Bad input


def test_malformed_json_is_400_and_kept(client):
    response = post(client, b'{"event": "sent", "time":')
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED


def test_empty_body_is_400(client):
    response = post(client, b"")
    assert response.status_code == 400
    assert "Empty Mailjet webhook body" in response.json()["error"]


def test_empty_group_is_400(client):
    response = post(client, [])
    assert response.status_code == 400
    assert "empty list" in response.json()["error"]


def test_wrong_content_type_is_400(client):
    response = client.post(URL, {"event": "sent"}, HTTP_AUTHORIZATION=basic_auth())
    assert response.status_code == 400
    assert "application/json" in response.json()["error"]


def test_another_esps_payload_is_400_saying_so(client):
    mailtrap_body = (Path(__file__).parent / "fixtures" / "mailtrap" / "delivery.json").read_bytes()
    response = post(client, mailtrap_body)
    assert response.status_code == 400
    assert "another ESP" in response.json()["error"]


def test_inbound_parse_payload_is_400_pointing_at_inbound_url(client):
    inbound = {
        "Sender": "sender@example.com",
        "Recipient": "inbox@parse.example.com",
        "Subject": "Hi",
        "Headers": {"Subject": "Hi"},
        "Parts": [{"ContentRef": "Text-part", "Headers": {}}],
        "Text-part": "Hello",
    }
    response = post(client, inbound)
    assert response.status_code == 400
    assert "/anymail/mailjet/inbound/" in response.json()["error"]


def test_event_without_required_fields_is_400(client):
    response = post(client, {"email": RECIPIENT})
    assert response.status_code == 400
    assert "no 'event' and 'time'" in response.json()["error"]


def test_non_object_in_group_is_400(client):
    response = post(client, [fixture("sent.json"), "sent"])
    assert response.status_code == 400
    assert "JSON objects" in response.json()["error"]
